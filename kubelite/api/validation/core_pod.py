"""The pod spec (core/v1 ValidatePodSpec): containers, init containers, ports, env, resources,
probes and lifecycle handlers, host ports; pod updates (ValidatePodUpdate) and pod templates.
Volumes are in ``core_volumes``, placement (tolerations, affinity, spreading) in
``core_scheduling``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from kubelite.api.field_errors import FieldPath
from kubelite.api.labels import (
    is_qualified_name,
    validate_labels,
)
from kubelite.api.names import (
    inclusive_range_error,
    is_config_map_key,
    is_env_var_name,
    is_valid_ip,
    is_valid_port_name,
    is_valid_port_num,
)
from kubelite.api.quantity import Quantity, parse_quantity
from kubelite.api.validation.core_scheduling import (
    validate_affinity,
    validate_tolerations,
    validate_topology_spread,
)
from kubelite.api.validation.core_volumes import (
    validate_field_ref,
    validate_local_descending_path,
    validate_resource_field_ref,
    validate_volumes,
)
from kubelite.api.validation.meta import (
    IS_NEGATIVE_ERROR,
    MAX_UINT32,
    Errors,
    copy_field,
    dns_label,
    dns_subdomain,
    int_or_string,
    nonnegative,
    not_supported,
    validate_annotations,
)
from protos.v1 import objects_pb2 as v1

RESTART_POLICIES = ("Always", "OnFailure", "Never")


_DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")

# Limits of a pod's resolver configuration, from libc's (MaxDNSNameservers,
# MaxDNSSearchPaths, MaxDNSSearchListChars); the kubelet trims what it builds to them too.
MAX_DNS_NAMESERVERS = 3
MAX_DNS_SEARCH_PATHS = 32
MAX_DNS_SEARCH_LIST_CHARS = 2048
"""Characters of the search list, the spaces between its domains included."""


_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


_TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")


PROTOCOLS = ("SCTP", "TCP", "UDP")


_HTTP_SCHEMES = ("HTTP", "HTTPS")


_MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")


_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")


_ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)


def _validate_env(env: Sequence[v1.EnvVar], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, ev in enumerate(env):
        p = path.index(i)
        if not ev.name:
            errs.append(p.child("name").required())
        else:
            errs.extend(p.child("name").invalid(ev.name, m) for m in is_env_var_name(ev.name))
        if not ev.HasField("value_from"):
            continue
        vf = ev.value_from
        vp = p.child("valueFrom")
        sources = 0
        if vf.HasField("field_ref"):
            sources += 1
            errs.extend(validate_field_ref(vf.field_ref, _ENV_FIELD_PATHS, vp.child("fieldRef")))
        if vf.HasField("resource_field_ref"):
            sources += 1
            errs.extend(
                validate_resource_field_ref(
                    vf.resource_field_ref, vp.child("resourceFieldRef"), False
                )
            )
        for attr, json_name in (
            ("config_map_key_ref", "configMapKeyRef"),
            ("secret_key_ref", "secretKeyRef"),
        ):
            if vf.HasField(attr):
                sources += 1
                ref = getattr(vf, attr)
                rp = vp.child(json_name)
                if not ref.name:
                    errs.append(rp.child("name").required())
                else:
                    errs.extend(dns_subdomain(ref.name, rp.child("name")))
                if not ref.key:
                    errs.append(rp.child("key").required())
                else:
                    errs.extend(
                        rp.child("key").invalid(ref.key, m) for m in is_config_map_key(ref.key)
                    )
        if sources == 0:
            errs.append(
                vp.invalid(
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`"
                    " or `secretKeyRef`",
                )
            )
        elif ev.value:
            errs.append(vp.invalid("", "may not be specified when `value` is not empty"))
        elif sources > 1:
            errs.append(vp.invalid("", "may not have more than one field specified at a time"))
    return errs


def _validate_env_from(env_from: Sequence[v1.EnvFromSource], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, ef in enumerate(env_from):
        p = path.index(i)
        if ef.prefix:
            errs.extend(p.child("prefix").invalid(ef.prefix, m) for m in is_env_var_name(ef.prefix))
        sources = 0
        for attr, json_name in (("config_map_ref", "configMapRef"), ("secret_ref", "secretRef")):
            if ef.HasField(attr):
                sources += 1
                ref = getattr(ef, attr)
                if not ref.name:
                    errs.append(p.child(json_name, "name").required())
                else:
                    errs.extend(dns_subdomain(ref.name, p.child(json_name, "name")))
        if sources == 0:
            errs.append(p.invalid("", "must specify one of: `configMapRef` or `secretRef`"))
        elif sources > 1:
            errs.append(p.invalid("", "may not have more than one field specified at a time"))
    return errs


def _validate_volume_mounts(
    mounts: Sequence[v1.VolumeMount], volumes: set[str], path: FieldPath
) -> Errors:
    errs: Errors = []
    mount_points: set[str] = set()
    for i, mnt in enumerate(mounts):
        p = path.index(i)
        if not mnt.name:
            errs.append(p.child("name").required())
        if mnt.name not in volumes:
            errs.append(p.child("name").not_found(mnt.name))
        if not mnt.mount_path:
            errs.append(p.child("mountPath").required())
        if mnt.mount_path in mount_points:
            errs.append(p.child("mountPath").invalid(mnt.mount_path, "must be unique"))
        mount_points.add(mnt.mount_path)
        if mnt.sub_path:
            errs.extend(validate_local_descending_path(mnt.sub_path, p.child("subPath")))
        if mnt.sub_path and mnt.sub_path_expr:
            errs.append(
                p.child("subPathExpr").invalid(
                    mnt.sub_path_expr, "subPathExpr and subPath are mutually exclusive"
                )
            )
        if mnt.mount_propagation and mnt.mount_propagation not in _MOUNT_PROPAGATIONS:
            errs.append(
                p.child("mountPropagation").not_supported(
                    mnt.mount_propagation, list(_MOUNT_PROPAGATIONS)
                )
            )
    return errs


def _validate_ports(ports: Sequence[v1.ContainerPort], path: FieldPath) -> Errors:
    errs: Errors = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = path.index(i)
        if port.name:
            msgs = is_valid_port_name(port.name)
            if msgs:
                errs.extend(p.child("name").invalid(port.name, m) for m in msgs)
            elif port.name in names:
                errs.append(p.child("name").duplicate(port.name))
            else:
                names.add(port.name)
        if port.container_port == 0:
            errs.append(p.child("containerPort").required())
        else:
            errs.extend(
                p.child("containerPort").invalid(port.container_port, m)
                for m in is_valid_port_num(port.container_port)
            )
        if port.host_port != 0:
            errs.extend(
                p.child("hostPort").invalid(port.host_port, m)
                for m in is_valid_port_num(port.host_port)
            )
        errs.extend(not_supported(port.protocol, PROTOCOLS, p.child("protocol")))
        if port.host_ip:
            errs.extend(
                p.child("hostIP").invalid(port.host_ip, m) for m in is_valid_ip(port.host_ip)
            )
    return errs


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def _validate_container_resource_name(name: str, path: FieldPath) -> Errors:
    msgs = is_qualified_name(name)
    if msgs:
        return [path.invalid(name, m) for m in msgs]
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
            return [path.invalid(name, "must be a standard resource for containers")]
    elif not _is_native(name) and not _is_extended(name):
        return [path.invalid(name, "doesn't follow extended resource name standard")]
    return []


def validate_quantity_value(
    name: str, text: str, path: FieldPath
) -> tuple[Quantity | None, Errors]:
    try:
        q = parse_quantity(text)
    except ValueError as e:
        return None, [path.invalid(text, str(e))]
    if q.sign() < 0:
        return q, [path.invalid(str(q), IS_NEGATIVE_ERROR)]
    if _is_extended(name) and q.amount.denominator != 1:
        return q, [path.invalid(str(q), "must be an integer")]
    return q, []


def validate_resource_requirements(res: v1.ResourceRequirements, path: FieldPath) -> Errors:
    errs: Errors = []
    lim_path = path.child("limits")
    req_path = path.child("requests")
    limits: dict[str, Quantity] = {}
    has_cpu_mem = False
    has_hugepages = False
    for name in sorted(res.limits):
        p = lim_path.key(name)
        errs.extend(_validate_container_resource_name(name, p))
        q, q_errs = validate_quantity_value(name, res.limits[name], p)
        errs.extend(q_errs)
        if q is not None:
            limits[name] = q
        has_cpu_mem = has_cpu_mem or name in ("cpu", "memory")
        has_hugepages = has_hugepages or _is_hugepages(name)
    for name in sorted(res.requests):
        p = req_path.key(name)
        errs.extend(_validate_container_resource_name(name, p))
        q, q_errs = validate_quantity_value(name, res.requests[name], p)
        errs.extend(q_errs)
        has_cpu_mem = has_cpu_mem or name in ("cpu", "memory")
        has_hugepages = has_hugepages or _is_hugepages(name)
        overcommit = _is_native(name) and not _is_hugepages(name)
        limit = limits.get(name)
        if q is None:
            continue
        if limit is not None:
            if q != limit and not overcommit:
                errs.append(p.invalid(str(q), f"must be equal to {name} limit of {limit}"))
            elif q > limit:
                errs.append(
                    p.invalid(str(q), f"must be less than or equal to {name} limit of {limit}")
                )
        elif name not in res.limits and not overcommit:
            errs.append(lim_path.required("Limit must be set for non overcommitable resources"))
    if has_hugepages and not has_cpu_mem:
        errs.append(path.forbidden("HugePages require cpu or memory"))
    return errs


def validate_port_ref(
    port: v1.IntOrString, path: FieldPath, port_names: set[str] | None
) -> Errors:
    value = int_or_string(port)
    if value is None:
        return [path.required()]
    if isinstance(value, int):
        return [path.invalid(value, m) for m in is_valid_port_num(value)]
    msgs = is_valid_port_name(value)
    if msgs:
        return [path.invalid(value, m) for m in msgs]
    if port_names is not None and value not in port_names:
        # The kubelet resolves a named probe port among the container's own ports.
        return [
            path.invalid(
                value,
                f"must match the name of one of the container's ports (none is named {value!r})",
            )
        ]
    return []


def _validate_http_get(
    action: v1.HTTPGetAction, path: FieldPath, port_names: set[str] | None
) -> Errors:
    errs: Errors = []
    if not action.path:
        errs.append(path.child("path").required())
    errs.extend(validate_port_ref(action.port, path.child("port"), port_names))
    if action.scheme not in _HTTP_SCHEMES:
        errs.append(path.child("scheme").not_supported(action.scheme, list(_HTTP_SCHEMES)))
    for header in action.http_headers:
        if not re.fullmatch(r"[-A-Za-z0-9!#$%&'*+.^_`|~]+", header.name):
            errs.append(
                path.child("httpHeaders").invalid(
                    header.name,
                    "a valid HTTP header must consist of alphanumeric characters or '-' (e.g."
                    " 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
                )
            )
    return errs


def _validate_handler(
    handler: v1.Probe | v1.LifecycleHandler,
    kinds: Sequence[tuple[str, str]],
    path: FieldPath,
    port_names: set[str] | None,
) -> Errors:
    errs: Errors = []
    count = 0
    for attr, json_name in kinds:
        if not handler.HasField(attr):
            continue
        p = path.child(json_name)
        if count > 0:
            errs.append(p.forbidden("may not specify more than 1 handler type"))
            continue
        count += 1
        if attr == "exec":
            if not handler.exec.command:
                errs.append(p.child("command").required())
        elif attr == "http_get":
            errs.extend(_validate_http_get(handler.http_get, p, port_names))
        elif attr == "tcp_socket":
            errs.extend(validate_port_ref(handler.tcp_socket.port, p.child("port"), port_names))
        elif attr == "grpc" and isinstance(handler, v1.Probe):
            errs.extend(
                p.child("port").invalid(handler.grpc.port, m)
                for m in is_valid_port_num(handler.grpc.port)
            )
        elif (
            attr == "sleep"
            and isinstance(handler, v1.LifecycleHandler)
            and handler.sleep.seconds <= 0
        ):
            errs.append(p.child("seconds").invalid(handler.sleep.seconds, "must be greater than 0"))
    if count == 0:
        errs.append(path.required("must specify a handler type"))
    return errs


_PROBE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("grpc", "grpc"),
)


_LIFECYCLE_HANDLERS = (
    ("exec", "exec"),
    ("http_get", "httpGet"),
    ("tcp_socket", "tcpSocket"),
    ("sleep", "sleep"),
)


def _validate_probe(probe: v1.Probe, path: FieldPath, port_names: set[str]) -> Errors:
    errs = _validate_handler(probe, _PROBE_HANDLERS, path, port_names)
    errs.extend(nonnegative(probe.initial_delay_seconds, path.child("initialDelaySeconds")))
    errs.extend(nonnegative(probe.timeout_seconds, path.child("timeoutSeconds")))
    errs.extend(nonnegative(probe.period_seconds, path.child("periodSeconds")))
    errs.extend(nonnegative(probe.success_threshold, path.child("successThreshold")))
    errs.extend(nonnegative(probe.failure_threshold, path.child("failureThreshold")))
    if (
        probe.HasField("termination_grace_period_seconds")
        and probe.termination_grace_period_seconds <= 0
    ):
        errs.append(
            path.child("terminationGracePeriodSeconds").invalid(
                probe.termination_grace_period_seconds, "must be greater than 0"
            )
        )
    return errs


def _validate_container_probes(ctr: v1.Container, path: FieldPath) -> Errors:
    errs: Errors = []
    port_names = {p.name for p in ctr.ports if p.name}
    if ctr.HasField("liveness_probe"):
        p = path.child("livenessProbe")
        errs.extend(_validate_probe(ctr.liveness_probe, p, port_names))
        if ctr.liveness_probe.success_threshold != 1:
            errs.append(
                p.child("successThreshold").invalid(
                    ctr.liveness_probe.success_threshold, "must be 1"
                )
            )
    if ctr.HasField("readiness_probe"):
        p = path.child("readinessProbe")
        errs.extend(_validate_probe(ctr.readiness_probe, p, port_names))
        if ctr.readiness_probe.HasField("termination_grace_period_seconds"):
            errs.append(
                p.child("terminationGracePeriodSeconds").invalid(
                    ctr.readiness_probe.termination_grace_period_seconds,
                    "must not be set for readinessProbes",
                )
            )
    if ctr.HasField("startup_probe"):
        p = path.child("startupProbe")
        errs.extend(_validate_probe(ctr.startup_probe, p, port_names))
        if ctr.startup_probe.success_threshold != 1:
            errs.append(
                p.child("successThreshold").invalid(
                    ctr.startup_probe.success_threshold, "must be 1"
                )
            )
    if ctr.HasField("lifecycle"):
        for attr, json_name in (("post_start", "postStart"), ("pre_stop", "preStop")):
            if ctr.lifecycle.HasField(attr):
                errs.extend(
                    _validate_handler(
                        getattr(ctr.lifecycle, attr),
                        _LIFECYCLE_HANDLERS,
                        path.child("lifecycle", json_name),
                        None,
                    )
                )
    return errs


def _validate_container_common(ctr: v1.Container, volumes: set[str], path: FieldPath) -> Errors:
    errs: Errors = []
    if not ctr.image:
        errs.append(path.child("image").required())
    elif ctr.image != ctr.image.strip():
        errs.append(
            path.child("image").invalid(ctr.image, "must not have leading or trailing whitespace")
        )
    errs.extend(_validate_ports(ctr.ports, path.child("ports")))
    errs.extend(_validate_env(ctr.env, path.child("env")))
    errs.extend(_validate_env_from(ctr.env_from, path.child("envFrom")))
    errs.extend(_validate_volume_mounts(ctr.volume_mounts, volumes, path.child("volumeMounts")))
    errs.extend(
        not_supported(ctr.image_pull_policy, _PULL_POLICIES, path.child("imagePullPolicy"))
    )
    errs.extend(validate_resource_requirements(ctr.resources, path.child("resources")))
    errs.extend(
        not_supported(
            ctr.termination_message_policy,
            _TERMINATION_MESSAGE_POLICIES,
            path.child("terminationMessagePolicy"),
        )
    )
    return errs


def _validate_container_name(name: str, seen: set[str], path: FieldPath) -> Errors:
    errs: Errors = []
    if not name:
        errs.append(path.required())
    else:
        errs.extend(dns_label(name, path))
    if name in seen:
        errs.append(path.duplicate(name))
    seen.add(name)
    return errs


def _validate_containers(
    containers: Sequence[v1.Container], volumes: set[str], path: FieldPath
) -> Errors:
    if not containers:
        return [path.required()]
    errs: Errors = []
    seen: set[str] = set()
    for i, ctr in enumerate(containers):
        p = path.index(i)
        errs.extend(_validate_container_name(ctr.name, seen, p.child("name")))
        errs.extend(_validate_container_common(ctr, volumes, p))
        errs.extend(_validate_container_probes(ctr, p))
        if ctr.HasField("restart_policy"):
            errs.append(
                p.child("restartPolicy").forbidden("may not be set for non-init containers")
            )
    return errs


def _validate_init_containers(
    inits: Sequence[v1.Container],
    regular: Sequence[v1.Container],
    volumes: set[str],
    path: FieldPath,
) -> Errors:
    errs: Errors = []
    seen = {c.name for c in regular}
    for i, ctr in enumerate(inits):
        p = path.index(i)
        errs.extend(_validate_container_name(ctr.name, seen, p.child("name")))
        errs.extend(_validate_container_common(ctr, volumes, p))
        sidecar = ctr.HasField("restart_policy") and ctr.restart_policy == "Always"
        if ctr.HasField("restart_policy") and not sidecar:
            errs.append(p.child("restartPolicy").not_supported(ctr.restart_policy, ["Always"]))
        if sidecar:
            errs.extend(_validate_container_probes(ctr, p))
            continue
        for attr, json_name in (
            ("lifecycle", "lifecycle"),
            ("liveness_probe", "livenessProbe"),
            ("readiness_probe", "readinessProbe"),
            ("startup_probe", "startupProbe"),
        ):
            if ctr.HasField(attr):
                errs.append(
                    p.child(json_name).forbidden(
                        "may not be set for init containers without restartPolicy=Always"
                    )
                )
    return errs


def _validate_host_ports(spec: v1.PodSpec, path: FieldPath) -> Errors:
    """Host ports may not collide within a pod (AccumulateUniqueHostPorts)."""
    errs: Errors = []
    seen: set[str] = set()
    for field, json_name in (
        (spec.containers, "containers"),
        (spec.init_containers, "initContainers"),
    ):
        for i, ctr in enumerate(field):
            for j, port in enumerate(ctr.ports):
                if port.host_port == 0:
                    continue
                key = f"{port.host_ip}/{port.protocol}/{port.host_port}"
                if key in seen:
                    errs.append(
                        path.child(json_name)
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort")
                        .duplicate(key)
                    )
                seen.add(key)
                if spec.host_network and port.host_port != port.container_port:
                    errs.append(
                        path.child(json_name)
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("containerPort")
                        .invalid(
                            port.container_port, "must match `hostPort` when `hostNetwork` is true"
                        )
                    )
    return errs


def _validate_dns_config(spec: v1.PodSpec, path: FieldPath) -> Errors:
    """validatePodDNSConfig: dnsPolicy None needs a nameserver; libc's limits; valid IPs,
    search domains and option names."""
    if spec.dns_policy == "None":
        if not spec.HasField("dns_config"):
            return [path.required("must provide `dnsConfig` when `dnsPolicy` is None")]
        if not spec.dns_config.nameservers:
            return [path.child("nameservers").required(
                "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if not spec.HasField("dns_config"):
        return []
    config, errs = spec.dns_config, []
    nameservers = list(config.nameservers)
    if len(nameservers) > MAX_DNS_NAMESERVERS:
        errs.append(path.child("nameservers").invalid(
            nameservers, f"must not have more than {MAX_DNS_NAMESERVERS} nameservers"))
    for i, server in enumerate(nameservers):
        sp = path.child("nameservers").index(i)
        errs.extend(sp.invalid(server, msg) for msg in is_valid_ip(server))
    searches = list(config.searches)
    if len(searches) > MAX_DNS_SEARCH_PATHS:
        errs.append(path.child("searches").invalid(
            searches, f"must not have more than {MAX_DNS_SEARCH_PATHS} search paths"))
    if len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        errs.append(path.child("searches").invalid(
            searches, f"must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters"
            " (including spaces) in the search list"))
    for i, search in enumerate(searches):
        # A trailing dot (a fully qualified domain) is fine.
        errs.extend(dns_subdomain(search.removesuffix("."), path.child("searches").index(i)))
    for i, option in enumerate(config.options):
        if not option.name:
            errs.append(path.child("options").index(i).required("must not be empty"))
    return errs


def validate_pod_spec(
    spec: v1.PodSpec, path: FieldPath, claim_templates: Iterable[str] = ()
) -> Errors:
    """ValidatePodSpec (after defaults). ``claim_templates``: names of a StatefulSet's
    volumeClaimTemplates, which its pods get as volumes, so mounts may name them."""
    volumes, errs = validate_volumes(spec.volumes, path.child("volumes"))
    volumes |= set(claim_templates)
    errs.extend(_validate_containers(spec.containers, volumes, path.child("containers")))
    errs.extend(
        _validate_init_containers(
            spec.init_containers, spec.containers, volumes, path.child("initContainers")
        )
    )
    errs.extend(_validate_host_ports(spec, path))
    errs.extend(not_supported(spec.restart_policy, RESTART_POLICIES, path.child("restartPolicy")))
    errs.extend(not_supported(spec.dns_policy, _DNS_POLICIES, path.child("dnsPolicy")))
    errs.extend(_validate_dns_config(spec, path.child("dnsConfig")))
    errs.extend(validate_labels(dict(spec.node_selector), path.child("nodeSelector")))
    for attr, json_name in (
        ("service_account_name", "serviceAccountName"),
        ("node_name", "nodeName"),
        ("scheduler_name", "schedulerName"),
        ("priority_class_name", "priorityClassName"),
    ):
        value = getattr(spec, attr)
        if value:
            errs.extend(dns_subdomain(value, path.child(json_name)))
    for attr in ("hostname", "subdomain"):
        value = getattr(spec, attr)
        if value:
            errs.extend(dns_label(value, path.child(attr)))
    if spec.HasField("active_deadline_seconds"):
        ads = spec.active_deadline_seconds
        if not 1 <= ads <= MAX_UINT32:
            errs.append(
                path.child("activeDeadlineSeconds").invalid(
                    ads, inclusive_range_error(1, MAX_UINT32)
                )
            )
    if spec.HasField("termination_grace_period_seconds"):
        errs.extend(
            nonnegative(
                spec.termination_grace_period_seconds, path.child("terminationGracePeriodSeconds")
            )
        )
    if spec.HasField("affinity"):
        errs.extend(validate_affinity(spec.affinity, path.child("affinity")))
    errs.extend(validate_tolerations(spec.tolerations, path.child("tolerations")))
    for i, alias in enumerate(spec.host_aliases):
        ap = path.child("hostAliases").index(i)
        errs.extend(ap.child("ip").invalid(alias.ip, m) for m in is_valid_ip(alias.ip))
        for j, host in enumerate(alias.hostnames):
            errs.extend(dns_subdomain(host, ap.child("hostnames").index(j)))
    errs.extend(
        validate_topology_spread(
            spec.topology_spread_constraints, path.child("topologySpreadConstraints")
        )
    )
    for i, gate in enumerate(spec.readiness_gates):
        gp = path.child("readinessGates").index(i).child("conditionType")
        errs.extend(
            gp.invalid(gate.condition_type, m) for m in is_qualified_name(gate.condition_type)
        )
    if spec.preemption_policy:
        errs.extend(
            not_supported(
                spec.preemption_policy,
                ("Never", "PreemptLowerPriority"),
                path.child("preemptionPolicy"),
            )
        )
    for i, secret in enumerate(spec.image_pull_secrets):
        if secret.name:
            errs.extend(
                dns_subdomain(secret.name, path.child("imagePullSecrets").index(i).child("name"))
            )
    return errs


_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only"
    " additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be"
    " set to 1 if it was previously negative)"
)


def _validate_only_added_tolerations(
    new: Sequence[v1.Toleration], old: Sequence[v1.Toleration], path: FieldPath
) -> Errors:
    for old_tol in old:
        found = False
        for new_tol in new:
            clone = v1.Toleration()
            clone.CopyFrom(old_tol)
            clone.ClearField("toleration_seconds")
            if new_tol.HasField("toleration_seconds"):
                clone.toleration_seconds = new_tol.toleration_seconds
            if clone == new_tol:
                found = True
                break
        if not found:
            return [
                path.forbidden(
                    "existing toleration can not be modified except its tolerationSeconds"
                )
            ]
    return []


def validate_pod_update(new: v1.Pod, old: v1.Pod) -> Errors:
    errs: Errors = []
    spec_path = FieldPath("spec")
    for field, json_name in (("containers", "containers"), ("init_containers", "initContainers")):
        for i, ctr in enumerate(getattr(new.spec, field)):
            if not ctr.image:
                errs.append(spec_path.child(json_name).index(i).child("image").required())
    if new.spec.HasField("active_deadline_seconds"):
        ads = new.spec.active_deadline_seconds
        if not 0 <= ads <= MAX_UINT32:
            return errs + [
                spec_path.child("activeDeadlineSeconds").invalid(
                    ads, inclusive_range_error(0, MAX_UINT32)
                )
            ]
        if old.spec.HasField("active_deadline_seconds") and old.spec.active_deadline_seconds < ads:
            return errs + [
                spec_path.child("activeDeadlineSeconds").invalid(
                    ads, "must be less than or equal to previous value"
                )
            ]
    elif old.spec.HasField("active_deadline_seconds"):
        errs.append(
            spec_path.child("activeDeadlineSeconds").invalid(
                None, "must not update from a positive integer to nil value"
            )
        )
    errs.extend(
        _validate_only_added_tolerations(
            new.spec.tolerations, old.spec.tolerations, spec_path.child("tolerations")
        )
    )
    # Take the old spec, apply the changes that are allowed, and anything left is forbidden.
    munged = v1.PodSpec()
    munged.CopyFrom(old.spec)
    for field in ("containers", "init_containers"):
        old_list = getattr(munged, field)
        new_list = getattr(new.spec, field)
        if len(old_list) == len(new_list):
            for o, n in zip(old_list, new_list, strict=True):
                o.image = n.image
    copy_field(munged, new.spec, "active_deadline_seconds")
    munged.ClearField("tolerations")
    munged.tolerations.extend(new.spec.tolerations)
    if (
        old.spec.HasField("termination_grace_period_seconds")
        and old.spec.termination_grace_period_seconds < 0
        and new.spec.HasField("termination_grace_period_seconds")
        and new.spec.termination_grace_period_seconds == 1
    ):
        munged.termination_grace_period_seconds = 1
    if munged != new.spec:
        errs.append(spec_path.forbidden(_POD_UPDATE_FORBIDDEN))
    return errs


def validate_pod_template(
    template: v1.PodTemplateSpec, path: FieldPath, claim_templates: Iterable[str] = ()
) -> Errors:
    """ValidatePodTemplateSpec: template labels/annotations and the pod spec."""
    errs = validate_labels(dict(template.metadata.labels), path.child("metadata", "labels"))
    errs.extend(
        validate_annotations(
            dict(template.metadata.annotations), path.child("metadata", "annotations")
        )
    )
    errs.extend(validate_pod_spec(template.spec, path.child("spec"), claim_templates))
    return errs


def validate_pod(pod: v1.Pod) -> Errors:
    return validate_pod_spec(pod.spec, FieldPath("spec"))
