"""Discovery documents of the HTTP API: /version, /api, /apis, /apis/GROUP and the resource
lists of /api/v1 and /apis/GROUP/VERSION, built from the registry of kinds.

kubectl and client-go find everything through these: which groups and versions exist, which
resources each serves, their kinds, short names, verbs and subresources, and the ``all``
category of ``kubectl get all``. The shapes are apimachinery's (meta/v1 APIVersions,
APIGroupList, APIGroup, APIResourceList), in the order kube-apiserver serves them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import RESOURCES, ResourceType

KUBERNETES_VERSION = "v1.31.0-kubelite"
"""The Kubernetes version whose API this server follows (the kubelet reports the same)."""

VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
"""What a stored resource supports, sorted as upstream lists them."""

CATEGORY_ALL = frozenset(
    {"pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs",
     "cronjobs"}
)
"""Resources in the ``all`` category (``kubectl get all``), as upstream puts them."""

_GROUP_ORDER = (
    "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
    "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io", "networking.k8s.io",
    "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "admissionregistration.k8s.io",
    "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "node.k8s.io",
    "discovery.k8s.io", "flowcontrol.apiserver.k8s.io",
)
"""kube-apiserver's order of groups in /apis; clients resolve a name served by several groups
to the first."""

_READ_WRITE = ("get", "patch", "update")


@dataclass(frozen=True)
class Subresource:
    """A subresource as discovery lists it: ``pods/log`` is resource ``pods``, name ``log``."""

    resource: str
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str = ""
    """Set when the subresource's kind is of another group (``autoscaling`` for scale)."""
    version: str = ""


SUBRESOURCES: tuple[Subresource, ...] = (
    Subresource("pods", "binding", "Binding", ("create",)),
    Subresource("pods", "log", "Pod", ("get",)),
    Subresource("pods", "exec", "PodExecOptions", ("create", "get")),
    *(Subresource(plural, "scale", "Scale", _READ_WRITE, "autoscaling", "v1")
      for plural in ("deployments", "replicasets", "statefulsets")),
    Subresource("serviceaccounts", "token", "TokenRequest", ("create",),
                "authentication.k8s.io", "v1"),
    Subresource("certificatesigningrequests", "approval", "CertificateSigningRequest",
                _READ_WRITE),
)
"""The subresources served besides every kind's ``status``."""


def version() -> dict[str, Any]:
    """/version: the server's version.Info."""
    major, minor = KUBERNETES_VERSION.removeprefix("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "",
        "platform": f"{platform.system().lower()}/{_go_arch(platform.machine())}",
    }


def _go_arch(machine: str) -> str:
    """Go's GOARCH name for a machine name: clients compare platforms in Go's terms."""
    machine = machine.lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "i386": "386"}.get(machine, machine)


def api_versions() -> dict[str, Any]:
    """/api: the core group's APIVersions."""
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def groups() -> list[str]:
    """Every named group served, in kube-apiserver's order (known groups first)."""
    names = {r.group for r in RESOURCES if r.group}
    known = [g for g in _GROUP_ORDER if g in names]
    return known + sorted(names - set(known))


def _group_versions(group: str) -> list[str]:
    versions: list[str] = []
    for r in RESOURCES:
        version = r.api_version.rpartition("/")[2]
        if r.group == group and version not in versions:
            versions.append(version)
    return versions


def api_group(group: str) -> dict[str, Any] | None:
    """/apis/GROUP: one APIGroup; None for a group not served."""
    versions = _group_versions(group) if group else []
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
            "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    """/apis: every named group served."""
    entries = []
    for group in groups():
        document = api_group(group)
        assert document is not None
        document.pop("kind")
        document.pop("apiVersion")
        entries.append(document)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": entries}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    """/api/v1 or /apis/GROUP/VERSION: an APIResourceList; None for a group/version not
    served."""
    group_version = f"{group}/{version}" if group else version
    served = [r for r in RESOURCES if r.api_version == group_version]
    if not served:
        return None
    entries = [_resource(r) for r in served]
    for r in served:
        if r.stored and r.has_status:
            entries.append(_subresource(r, Subresource(r.plural, "status", r.kind, _READ_WRITE)))
        entries += [_subresource(r, s) for s in SUBRESOURCES if s.resource == r.plural]
    entries.sort(key=lambda e: e["name"])
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": entries}


def _resource(r: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        # Evaluated kinds (access reviews) are only ever created.
        "verbs": list(VERBS) if r.stored else ["create"],
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.plural in CATEGORY_ALL:
        entry["categories"] = ["all"]
    return entry


def _subresource(r: ResourceType, s: Subresource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{s.resource}/{s.name}",
        "singularName": "",
        "namespaced": r.namespaced,
    }
    if s.group:
        entry["group"] = s.group
        entry["version"] = s.version
    entry["kind"] = s.kind
    entry["verbs"] = list(s.verbs)
    return entry
