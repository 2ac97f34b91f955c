"""The core kinds other than Pod: Service, Endpoints, ConfigMap, Secret, Event, Lease, Node
and Namespace, with their update rules (core/v1 validation)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from kubelite.api.field_errors import ErrorType, FieldError, FieldPath
from kubelite.api.labels import (
    is_qualified_name,
    is_valid_label_value,
    validate_label_name,
    validate_labels,
)
from kubelite.api.names import (
    is_config_map_key,
    is_valid_cidr,
    is_valid_ip,
    is_valid_port_num,
)
from kubelite.api.validation.core_pod import PROTOCOLS, validate_port_ref, validate_quantity_value
from kubelite.api.validation.core_scheduling import TAINT_EFFECTS
from kubelite.api.validation.meta import (
    FIELD_IMMUTABLE,
    IS_NEGATIVE_ERROR,
    Errors,
    dns_label,
    dns_subdomain,
    immutable,
    not_supported,
)
from protos.v1 import objects_pb2 as v1

MAX_SECRET_SIZE = 1024 * 1024


MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def validate_service(svc: v1.Service) -> Errors:
    spec = svc.spec
    path = FieldPath("spec")
    errs: Errors = []
    headless = spec.cluster_ip == "None"
    if not spec.ports and not headless and spec.type != "ExternalName":
        errs.append(path.child("ports").required())
    if spec.type == "ExternalName":
        if spec.cluster_ip and spec.cluster_ip != "None":
            errs.append(
                path.child("clusterIP").forbidden("may not be set for ExternalName services")
            )
        cname = spec.external_name.removesuffix(".")
        if cname:
            errs.extend(dns_subdomain(cname, path.child("externalName")))
        else:
            errs.append(path.child("externalName").required())
    names: set[str] = set()
    ports_path = path.child("ports")
    seen_ports: set[tuple[str, int]] = set()
    seen_node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(spec.ports):
        p = ports_path.index(i)
        if len(spec.ports) > 1 and not port.name:
            errs.append(p.child("name").required())
        elif port.name:
            errs.extend(dns_label(port.name, p.child("name")))
            if port.name in names:
                errs.append(p.child("name").duplicate(port.name))
            names.add(port.name)
        errs.extend(p.child("port").invalid(port.port, m) for m in is_valid_port_num(port.port))
        errs.extend(not_supported(port.protocol, PROTOCOLS, p.child("protocol")))
        errs.extend(validate_port_ref(port.target_port, p.child("targetPort"), None))
        if port.HasField("app_protocol"):
            errs.extend(
                p.child("appProtocol").invalid(port.app_protocol, m)
                for m in is_qualified_name(port.app_protocol)
            )
        if port.node_port != 0:
            if spec.type not in ("NodePort", "LoadBalancer"):
                errs.append(
                    p.child("nodePort").forbidden(f"may not be used when `type` is '{spec.type}'")
                )
            else:
                errs.extend(
                    p.child("nodePort").invalid(port.node_port, m)
                    for m in is_valid_port_num(port.node_port)
                )
            key = (port.protocol, port.node_port)
            if key in seen_node_ports:
                errs.append(p.child("nodePort").duplicate(port.node_port))
            seen_node_ports.add(key)
        key = (port.protocol, port.port)
        if key in seen_ports:
            errs.append(p.duplicate(f"{port.protocol}/{port.port}"))
        seen_ports.add(key)
    errs.extend(validate_labels(dict(spec.selector), path.child("selector")))
    affinity = spec.session_affinity
    errs.extend(not_supported(affinity, ["ClientIP", "None"], path.child("sessionAffinity")))
    ap = path.child("sessionAffinityConfig")
    if affinity == "ClientIP":
        detail = "when session affinity type is ClientIP"
        if not spec.HasField("session_affinity_config"):
            errs.append(ap.required(detail))
        elif not spec.session_affinity_config.HasField("client_ip"):
            errs.append(ap.child("clientIP").required(detail))
        elif not spec.session_affinity_config.client_ip.HasField("timeout_seconds"):
            errs.append(ap.child("clientIP", "timeoutSeconds").required(detail))
        else:
            timeout = spec.session_affinity_config.client_ip.timeout_seconds
            if not 0 < timeout <= MAX_CLIENT_IP_AFFINITY_SECONDS:
                errs.append(
                    ap.child("clientIP", "timeoutSeconds").invalid(
                        timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}",
                    )
                )
    elif affinity == "None" and spec.HasField("session_affinity_config"):
        errs.append(ap.forbidden("must not be set when session affinity is None"))
    ip_path = path.child("clusterIP")
    if spec.cluster_ip and spec.cluster_ip != "None":
        errs.extend(ip_path.invalid(spec.cluster_ip, m) for m in is_valid_ip(spec.cluster_ip))
    if headless and spec.type in ("NodePort", "LoadBalancer"):
        errs.append(ip_path.invalid("None", f"may not be set to 'None' for {spec.type} services"))
    for i, ip in enumerate(spec.cluster_ips):
        cp = path.child("clusterIPs").index(i)
        if i == 0 and ip == "None":
            if len(spec.cluster_ips) > 1:
                errs.append(cp.invalid(ip, "'None' must be the first and only value"))
            continue
        errs.extend(cp.invalid(ip, m) for m in is_valid_ip(ip))
    if spec.cluster_ips and spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
        errs.append(
            path.child("clusterIPs")
            .index(0)
            .invalid(spec.cluster_ips[0], "must match `clusterIP` if set")
        )
    for i, ip in enumerate(spec.external_ips):
        errs.extend(path.child("externalIPs").index(i).invalid(ip, m) for m in is_valid_ip(ip))
    errs.extend(not_supported(spec.type, _SERVICE_TYPES, path.child("type")))
    if spec.external_traffic_policy and spec.external_traffic_policy not in ("Cluster", "Local"):
        errs.append(
            path.child("externalTrafficPolicy").not_supported(
                spec.external_traffic_policy, ["Cluster", "Local"]
            )
        )
    if spec.HasField("internal_traffic_policy") and spec.internal_traffic_policy not in (
        "Cluster",
        "Local",
    ):
        errs.append(
            path.child("internalTrafficPolicy").not_supported(
                spec.internal_traffic_policy, ["Cluster", "Local"]
            )
        )
    return errs


def validate_service_update(new: v1.Service, old: v1.Service) -> Errors:
    # A cleared clusterIP is left to the API server to carry over; changing it is not allowed.
    if (
        old.spec.cluster_ip
        and new.spec.cluster_ip
        and new.spec.cluster_ip != old.spec.cluster_ip
        and "ExternalName" not in (new.spec.type, old.spec.type)
    ):
        return [FieldPath("spec").child("clusterIP").invalid(new.spec.cluster_ip, FIELD_IMMUTABLE)]
    return []


def validate_endpoints(ep: v1.Endpoints) -> Errors:
    errs: Errors = []
    path = FieldPath("subsets")
    for i, subset in enumerate(ep.subsets):
        sp = path.index(i)
        if not subset.addresses and not subset.not_ready_addresses:
            errs.append(sp.required("must specify `addresses` or `notReadyAddresses`"))
        for field, json_name in (
            (subset.addresses, "addresses"),
            (subset.not_ready_addresses, "notReadyAddresses"),
        ):
            for j, addr in enumerate(field):
                ap = sp.child(json_name).index(j)
                # Loopback addresses are allowed (unlike upstream): kubelite's process runtime
                # gives pods their node's 127.0.0.x address.
                msgs = is_valid_ip(addr.ip)
                errs.extend(ap.child("ip").invalid(addr.ip, m) for m in msgs)
                if not msgs and ipaddress.ip_address(addr.ip).is_unspecified:
                    errs.append(ap.child("ip").invalid(addr.ip, "may not be unspecified (0.0.0.0)"))
                if addr.hostname:
                    errs.extend(dns_label(addr.hostname, ap.child("hostname")))
                if addr.HasField("node_name"):
                    errs.extend(dns_subdomain(addr.node_name, ap.child("nodeName")))
        for j, port in enumerate(subset.ports):
            pp = sp.child("ports").index(j)
            if len(subset.ports) > 1 and not port.name:
                errs.append(pp.child("name").required())
            elif port.name:
                errs.extend(dns_label(port.name, pp.child("name")))
            errs.extend(
                pp.child("port").invalid(port.port, m) for m in is_valid_port_num(port.port)
            )
            errs.extend(not_supported(port.protocol, PROTOCOLS, pp.child("protocol")))
    return errs


def validate_config_map(cm: v1.ConfigMap) -> Errors:
    errs: Errors = []
    total = 0
    for key in sorted(cm.data):
        p = FieldPath("data").key(key)
        errs.extend(p.invalid(key, m) for m in is_config_map_key(key))
        if key in cm.binary_data:
            errs.append(p.invalid(key, "duplicate of key present in binaryData"))
        total += len(cm.data[key].encode())
    for key in sorted(cm.binary_data):
        p = FieldPath("binaryData").key(key)
        errs.extend(p.invalid(key, m) for m in is_config_map_key(key))
        total += len(cm.binary_data[key])
    if total > MAX_SECRET_SIZE:
        errs.append(FieldPath("").too_long("", MAX_SECRET_SIZE))
    return errs


def _validate_immutable_data(
    new: v1.ConfigMap | v1.Secret,
    old: v1.ConfigMap | v1.Secret,
    data_fields: Sequence[tuple[str, str]],
) -> Errors:
    if not (old.HasField("immutable") and old.immutable):
        return []
    errs: Errors = []
    if not (new.HasField("immutable") and new.immutable):
        errs.append(FieldPath("immutable").forbidden("field is immutable when `immutable` is set"))
    for attr, json_name in data_fields:
        if dict(getattr(new, attr)) != dict(getattr(old, attr)):
            errs.append(
                FieldPath(json_name).forbidden("field is immutable when `immutable` is set")
            )
    return errs


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


def validate_secret(secret: v1.Secret) -> Errors:
    errs: Errors = []
    data_path = FieldPath("data")
    total = 0
    for key in sorted(secret.data):
        errs.extend(data_path.key(key).invalid(key, m) for m in is_config_map_key(key))
        total += len(secret.data[key])
    for key in sorted(secret.string_data):
        if key not in secret.data:
            errs.extend(
                FieldPath("stringData").key(key).invalid(key, m) for m in is_config_map_key(key)
            )
            total += len(secret.string_data[key].encode())
    if total > MAX_SECRET_SIZE:
        errs.append(data_path.too_long("", MAX_SECRET_SIZE))
    keys = set(secret.data) | set(secret.string_data)
    if secret.type == "kubernetes.io/service-account-token":
        if not secret.metadata.annotations.get("kubernetes.io/service-account.name"):
            errs.append(
                FieldPath("metadata")
                .child("annotations")
                .key("kubernetes.io/service-account.name")
                .required()
            )
    elif secret.type == "kubernetes.io/basic-auth" and not keys & {"username", "password"}:
        errs.append(data_path.key("username").required())
        errs.append(data_path.key("password").required())
    for key in _SECRET_REQUIRED_KEYS.get(secret.type, ()):
        if key not in keys:
            errs.append(data_path.key(key).required())
    return errs


def validate_event(ev: v1.Event) -> Errors:
    errs: Errors = []
    ns_path = FieldPath("involvedObject").child("namespace")
    involved_ns = ev.involved_object.namespace
    if not ev.event_time:
        if not involved_ns:
            if ev.metadata.namespace not in ("", "default"):
                errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
        elif ev.metadata.namespace != involved_ns:
            errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
    else:
        if not involved_ns and ev.metadata.namespace not in ("default", "kube-system"):
            errs.append(ns_path.invalid(involved_ns, "does not match event.namespace"))
        rc = FieldPath("reportingComponent")
        if not ev.reporting_component:
            errs.append(rc.required())
        errs.extend(
            rc.invalid(ev.reporting_component, m) for m in is_qualified_name(ev.reporting_component)
        )
        for value, name, limit in (
            (ev.reporting_instance, "reportingInstance", 128),
            (ev.action, "action", 128),
            (ev.reason, "reason", 128),
        ):
            if not value:
                errs.append(FieldPath(name).required())
            elif len(value) > limit:
                errs.append(FieldPath(name).invalid("", f"can have at most {limit} characters"))
        if len(ev.message) > 1024:
            errs.append(FieldPath("message").invalid("", "can have at most 1024 characters"))
    if ev.type and ev.type not in ("Normal", "Warning"):
        errs.append(FieldPath("type").not_supported(ev.type, ["Normal", "Warning"]))
    return errs


def validate_lease(lease: v1.Lease) -> Errors:
    errs: Errors = []
    spec = lease.spec
    path = FieldPath("spec")
    if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
        errs.append(
            path.child("leaseDurationSeconds").invalid(
                spec.lease_duration_seconds, "must be greater than 0"
            )
        )
    if spec.HasField("lease_transitions") and spec.lease_transitions < 0:
        errs.append(
            path.child("leaseTransitions").invalid(spec.lease_transitions, IS_NEGATIVE_ERROR)
        )
    return errs


def validate_node(node: v1.Node) -> Errors:
    errs: Errors = []
    path = FieldPath("spec")
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(node.spec.taints):
        p = path.child("taints").index(i)
        errs.extend(validate_label_name(taint.key, p.child("key")))
        msgs = is_valid_label_value(taint.value)
        if msgs:
            errs.append(p.child("value").invalid(taint.value, ";".join(msgs)))
        if not taint.effect:
            errs.append(p.child("effect").required())
        elif taint.effect not in TAINT_EFFECTS:
            errs.append(p.child("effect").not_supported(taint.effect, list(TAINT_EFFECTS)))
        key = (taint.key, taint.effect)
        if key in seen:
            errs.append(
                FieldError(
                    ErrorType.DUPLICATE,
                    str(p),
                    "taints must be unique by key and effect pair",
                    f"{taint.key}:{taint.effect}",
                )
            )
        seen.add(key)
    errs.extend(_validate_pod_cidrs(node.spec, path))
    for field, json_name in (
        (node.status.capacity, "capacity"),
        (node.status.allocatable, "allocatable"),
    ):
        for name in sorted(field):
            p = FieldPath("status").child(json_name).key(name)
            errs.extend(p.invalid(name, m) for m in is_qualified_name(name))
            _, q_errs = validate_quantity_value(name, field[name], p)
            errs.extend(q_errs)
    return errs


def _validate_pod_cidrs(spec: v1.NodeSpec, path: FieldPath) -> Errors:
    """podCIDRs: valid CIDRs, at most one per IP family (dual stack), no repeats; podCIDR is
    the first of them (the API fills either from the other)."""
    errs: Errors = []
    if spec.pod_cidr:
        errs.extend(
            path.child("podCIDR").invalid(spec.pod_cidr, m) for m in is_valid_cidr(spec.pod_cidr)
        )
    families: list[int] = []
    for i, cidr in enumerate(spec.pod_cidrs):
        msgs = is_valid_cidr(cidr)
        errs.extend(path.child("podCIDRs").index(i).invalid(cidr, m) for m in msgs)
        if not msgs:
            families.append(ipaddress.ip_network(cidr, strict=False).version)
    if len(spec.pod_cidrs) > 1:
        if len(spec.pod_cidrs) > 2 or len(set(families)) != len(families):
            errs.append(path.child("podCIDRs").invalid(
                list(spec.pod_cidrs), "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, cidr in enumerate(spec.pod_cidrs):
            if cidr in seen:
                errs.append(path.child("podCIDRs").index(i).duplicate(cidr))
            seen.add(cidr)
    if spec.pod_cidr and spec.pod_cidrs and spec.pod_cidr != spec.pod_cidrs[0]:
        errs.append(path.child("podCIDR").invalid(
            spec.pod_cidr, f"must equal podCIDRs[0] ({spec.pod_cidrs[0]})"))
    return errs


POD_CIDR_CHANGE = 'node updates may not change podCIDR except from "" to valid'
PROVIDER_ID_CHANGE = 'node updates may not change providerID except from "" to valid'


def validate_node_update(new: v1.Node, old: v1.Node) -> Errors:
    """Kubernetes' ValidateNodeUpdate: podCIDRs and providerID may be set once (the node IPAM
    controller assigns a podCIDR to a node that has none), never changed or cleared after."""
    errs: Errors = []
    path = FieldPath("spec")
    old_cidrs = list(old.spec.pod_cidrs) or ([old.spec.pod_cidr] if old.spec.pod_cidr else [])
    new_cidrs = list(new.spec.pod_cidrs) or ([new.spec.pod_cidr] if new.spec.pod_cidr else [])
    if old_cidrs and new_cidrs != old_cidrs:
        errs.append(path.child("podCIDRs").forbidden(POD_CIDR_CHANGE))
    if old.spec.provider_id and new.spec.provider_id != old.spec.provider_id:
        errs.append(path.child("providerID").forbidden(PROVIDER_ID_CHANGE))
    return errs


def validate_namespace(ns: v1.Namespace) -> Errors:
    errs: Errors = []
    for i, name in enumerate(ns.spec.finalizers):
        p = FieldPath("spec").child("finalizers").index(i)
        msgs = is_qualified_name(name)
        errs.extend(p.invalid(name, m) for m in msgs)
        if not msgs and "/" not in name and name != "kubernetes":
            errs.append(
                p.invalid(
                    name, "name is neither a standard finalizer name nor is it fully qualified"
                )
            )
    if ns.status.phase and ns.status.phase not in ("Active", "Terminating"):
        errs.append(
            FieldPath("status")
            .child("phase")
            .not_supported(ns.status.phase, ["Active", "Terminating"])
        )
    return errs


def validate_secret_update(new: v1.Secret, old: v1.Secret) -> Errors:
    errs = immutable(new.type, old.type, FieldPath("type"))
    errs.extend(_validate_immutable_data(new, old, [("data", "data")]))
    return errs


def validate_config_map_update(new: v1.ConfigMap, old: v1.ConfigMap) -> Errors:
    return _validate_immutable_data(new, old, [("data", "data"), ("binary_data", "binaryData")])
