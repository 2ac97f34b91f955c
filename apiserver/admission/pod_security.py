"""PodSecurity admission (k8s.io/pod-security-admission) in its enforce mode: a namespace labelled
``pod-security.kubernetes.io/enforce: baseline`` or ``restricted`` refuses pods that break that
Pod Security Standard, in Kubernetes' words (``violates PodSecurity "baseline:latest": host
namespaces (hostNetwork=true), ...``). Unlabelled namespaces are ``privileged`` (anything goes).
Workload kinds are not checked (upstream only warns about their templates).

Checks whose fields pods here do not have are left out: seccomp profiles (so ``restricted``
does not require RuntimeDefault/Localhost), sysctls, AppArmor, SELinux options, procMount and
Windows host processes. The ``-version`` labels are validated and shown, not applied: every
version is checked as ``latest``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, UPDATE, Attributes, Plugin
from kubelite.api.errors import Invalid
from kubelite.api.field_errors import FieldError, FieldPath
from protos.v1 import objects_pb2 as v1

LABEL_PREFIX = "pod-security.kubernetes.io/"
ENFORCE = LABEL_PREFIX + "enforce"
ENFORCE_VERSION = ENFORCE + "-version"
MODES = ("enforce", "audit", "warn")
PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
_VERSION = re.compile(r"^(latest|v1\.(0|[1-9][0-9]*))$")

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
RESTRICTED_VOLUME_SOURCES = ("config_map", "downward_api", "empty_dir", "persistent_volume_claim",
                             "projected", "secret")
"""The volume sources the restricted level allows (Kubernetes' also has csi and ephemeral)."""
_VOLUME_TYPE_NAMES = {"host_path": "hostPath"}


def _plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _quote(items: Iterable[str]) -> str:
    return ", ".join(f'"{i}"' for i in items)


def _containers(spec: v1.PodSpec) -> list[v1.Container]:
    return [*spec.init_containers, *spec.containers]


def _caps(c: v1.Container) -> v1.Capabilities | None:
    sc = c.security_context
    return sc.capabilities if c.HasField("security_context") and sc.HasField("capabilities") \
        else None


# Each check: the pod spec -> (reason, detail) when it is broken, else None.
Check = Callable[[v1.PodSpec], tuple[str, str] | None]


def allow_privilege_escalation(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad = [c.name for c in _containers(spec)
           if not c.security_context.HasField("allow_privilege_escalation")
           or c.security_context.allow_privilege_escalation]
    if not bad:
        return None
    return ("allowPrivilegeEscalation != false",
            f"{_plural('container', 'containers', len(bad))} {_quote(bad)} must set"
            " securityContext.allowPrivilegeEscalation=false")


def capabilities_baseline(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad, added = [], set()
    for c in _containers(spec):
        caps = _caps(c)
        extra = [cap for cap in caps.add if cap not in BASELINE_CAPABILITIES] if caps else []
        if extra:
            bad.append(c.name)
            added.update(extra)
    if not bad:
        return None
    return ("non-default capabilities",
            f"{_plural('container', 'containers', len(bad))} {_quote(bad)} must not include"
            f" {_quote(sorted(added))} in securityContext.capabilities.add")


def capabilities_restricted(spec: v1.PodSpec) -> tuple[str, str] | None:
    missing_drop, adding, added = [], [], set()
    for c in _containers(spec):
        caps = _caps(c)
        if caps is None or "ALL" not in caps.drop:
            missing_drop.append(c.name)
        extra = [cap for cap in caps.add if cap != "NET_BIND_SERVICE"] if caps else []
        if extra:
            adding.append(c.name)
            added.update(extra)
    details = []
    if missing_drop:
        details.append(f"{_plural('container', 'containers', len(missing_drop))}"
                       f" {_quote(missing_drop)} must set"
                       ' securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_plural('container', 'containers', len(adding))} {_quote(adding)} must"
                       f" not include {_quote(sorted(added))} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def host_namespaces(spec: v1.PodSpec) -> tuple[str, str] | None:
    used = sorted(name for name, on in (("hostNetwork=true", spec.host_network),
                                        ("hostPID=true", spec.host_pid),
                                        ("hostIPC=true", spec.host_ipc)) if on)
    return ("host namespaces", ", ".join(used)) if used else None


def host_path_volumes(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad = [vol.name for vol in spec.volumes if vol.HasField("host_path")]
    if not bad:
        return None
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)}")


def host_ports(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad, ports = [], set()
    for c in _containers(spec):
        used = [p.host_port for p in c.ports if p.host_port]
        if used:
            bad.append(c.name)
            ports.update(used)
    if not bad:
        return None
    return ("hostPort",
            f"{_plural('container', 'containers', len(bad))} {_quote(bad)}"
            f" {_plural('uses', 'use', len(bad))} {_plural('hostPort', 'hostPorts', len(ports))}"
            f" {', '.join(sorted(str(p) for p in ports))}")


def privileged(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad = [c.name for c in _containers(spec)
           if c.security_context.HasField("privileged") and c.security_context.privileged]
    if not bad:
        return None
    return ("privileged", f"{_plural('container', 'containers', len(bad))} {_quote(bad)} must not"
                          " set securityContext.privileged=true")


def restricted_volumes(spec: v1.PodSpec) -> tuple[str, str] | None:
    bad, types = [], set()
    for vol in spec.volumes:
        source = next((f.name for f, _ in vol.ListFields() if f.name != "name"), "")
        if source in RESTRICTED_VOLUME_SOURCES:
            continue
        bad.append(vol.name)
        types.add(_VOLUME_TYPE_NAMES.get(source, source or "unknown"))
    if not bad:
        return None
    return ("restricted volume types",
            f"{_plural('volume', 'volumes', len(bad))} {_quote(bad)}"
            f" {_plural('uses', 'use', len(bad))}"
            f" {_plural('restricted volume type', 'restricted volume types', len(types))}"
            f" {_quote(sorted(types))}")


def run_as_non_root(spec: v1.PodSpec) -> tuple[str, str] | None:
    reason = "runAsNonRoot != true"
    pod_sc = spec.security_context
    setters = []
    pod_true = False
    if pod_sc.HasField("run_as_non_root"):
        if pod_sc.run_as_non_root:
            pod_true = True
        else:
            setters.append("pod")
    explicit, implicit = [], []
    for c in _containers(spec):
        if c.security_context.HasField("run_as_non_root"):
            if not c.security_context.run_as_non_root:
                explicit.append(c.name)
        elif not pod_true:
            implicit.append(c.name)
    if explicit:
        setters.append(f"{_plural('container', 'containers', len(explicit))} {_quote(explicit)}")
    if setters:
        return reason, f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false"
    if implicit:
        return reason, (f"pod or {_plural('container', 'containers', len(implicit))}"
                        f" {_quote(implicit)} must set securityContext.runAsNonRoot=true")
    return None


def run_as_user(spec: v1.PodSpec) -> tuple[str, str] | None:
    setters = []
    if spec.security_context.HasField("run_as_user") and spec.security_context.run_as_user == 0:
        setters.append("pod")
    bad = [c.name for c in _containers(spec)
           if c.security_context.HasField("run_as_user") and c.security_context.run_as_user == 0]
    if bad:
        setters.append(f"{_plural('container', 'containers', len(bad))} {_quote(bad)}")
    if not setters:
        return None
    return "runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0"


CHECKS: dict[str, tuple[Check, ...]] = {
    PRIVILEGED: (),
    # By check ID, as Kubernetes reports them; at restricted, capabilities_restricted replaces
    # capabilities_baseline and restrictedVolumes replaces hostPathVolumes.
    BASELINE: (capabilities_baseline, host_namespaces, host_path_volumes, host_ports, privileged),
    RESTRICTED: (allow_privilege_escalation, capabilities_restricted, host_namespaces, host_ports,
                 privileged, restricted_volumes, run_as_non_root, run_as_user),
}


def violations(spec: v1.PodSpec, level: str) -> list[str]:
    """``reason (detail)`` for every check of ``level`` the pod spec breaks."""
    found = (check(spec) for check in CHECKS[level])
    return [f"{reason} ({detail})" for reason, detail in (f for f in found if f is not None)]


def label_errors(labels: dict[str, str]) -> list[FieldError]:
    """The pod-security labels of a namespace that say nothing valid."""
    errors = []
    path = FieldPath("metadata.labels")
    for mode in MODES:
        level_key = LABEL_PREFIX + mode
        if level_key in labels and labels[level_key] not in LEVELS:
            errors.append(path.key(level_key).invalid(
                labels[level_key], f"must be one of {', '.join(LEVELS)}"
            ))
        version_key = level_key + "-version"
        if version_key in labels and not _VERSION.match(labels[version_key]):
            errors.append(path.key(version_key).invalid(
                labels[version_key], 'must be "latest" or "v1.x"'
            ))
    return errors


def enforced_level(labels: dict[str, str]) -> str:
    """The namespace's enforce level; a value that is no level is taken as restricted (a
    broken label must not open the namespace)."""
    value = labels.get(ENFORCE, PRIVILEGED)
    return value if value in LEVELS else RESTRICTED


class PodSecurity(Plugin):
    name = "PodSecurity"

    def __init__(self, sources: Sources) -> None:
        self.namespaces = sources.store("namespaces")

    async def validate(self, a: Attributes) -> None:
        if a.subresource:
            return
        if isinstance(a.obj, v1.Namespace) and a.operation in (CREATE, UPDATE):
            errors = label_errors(dict(a.obj.metadata.labels))
            if errors:
                raise Invalid.from_field_errors(a.rtype.qualified_kind, a.name, errors)
            return
        if not isinstance(a.obj, v1.Pod):
            return
        if a.operation == UPDATE and not _images_changed(a.obj, a.old):
            return  # only an image change can make a stored pod less secure
        if a.operation not in (CREATE, UPDATE):
            return
        namespace = await self.namespaces.get("", a.namespace)
        if not isinstance(namespace, v1.Namespace):
            return
        labels = dict(namespace.metadata.labels)
        level = enforced_level(labels)
        if level == PRIVILEGED:
            return
        broken = violations(a.obj.spec, level)
        if broken:
            version = labels.get(ENFORCE_VERSION) or "latest"
            raise a.forbidden(f'violates PodSecurity "{level}:{version}": {", ".join(broken)}')


def _images_changed(new: v1.Pod, old: object) -> bool:
    if not isinstance(old, v1.Pod):
        return True
    images = [c.image for c in _containers(new.spec)]
    return images != [c.image for c in _containers(old.spec)]
