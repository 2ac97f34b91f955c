"""What ``klctl describe`` prints: kubectl's describers, per kind and for any message."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.quantity import Quantity, is_valid_quantity, parse_quantity
from kubelite.api.registry import ResourceType
from kubelite.cli.printers.formats import (
    LAST_APPLIED,
    NONE,
    describe_time,
    format_labels,
    format_selector,
    int_or_string,
    node_roles,
    or_none,
    since,
)
from kubelite.cli.printers.tabwriter import tabwrite
from protos.v1 import objects_pb2 as v1


class DescribeWriter:
    """kubectl's PrefixWriter over a tabwriter: levels indent by two spaces."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.lines.append("  " * level + text)

    def pair(self, level: int, key: str, value: Any) -> None:
        self.write(level, f"{key}:\t{value}")

    def multiline(self, level: int, key: str, values: Sequence[str]) -> None:
        """Title on the first value's line, the others aligned under it."""
        if not values:
            self.pair(level, key, NONE)
            return
        self.pair(level, key, values[0])
        for value in values[1:]:
            self.write(level, f"\t{value}")

    def render(self) -> str:
        return "\n".join(tabwrite(self.lines, minwidth=0, padding=2)) + "\n"


def _labels_lines(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={labels[k]}" for k in sorted(labels)]


def _annotation_lines(annotations: Mapping[str, str]) -> list[str]:
    out = []
    for key in sorted(annotations):
        if key == LAST_APPLIED:
            continue  # kubectl hides the applied manifest
        value = annotations[key]
        if len(value) > 200:
            value = value[:197] + "..."
        out.append(f"{key}: {value}")
    return out


def _describe_meta(w: DescribeWriter, rtype: ResourceType, obj: Message,
                   *, creation: bool = True) -> None:
    meta = m.meta(obj)
    w.pair(0, "Name", meta.name)
    if rtype.namespaced:
        w.pair(0, "Namespace", meta.namespace)
    if creation:
        w.pair(0, "CreationTimestamp", describe_time(meta.creation_timestamp))
    w.multiline(0, "Labels", _labels_lines(meta.labels))
    w.multiline(0, "Annotations", _annotation_lines(meta.annotations))
    if meta.deletion_timestamp:
        w.pair(0, "DeletionTimestamp", describe_time(meta.deletion_timestamp))
    if meta.finalizers:
        w.pair(0, "Finalizers", "[" + " ".join(meta.finalizers) + "]")
    owner = next((r for r in meta.owner_references if r.controller), None)
    if owner is not None:
        w.pair(0, "Controlled By", f"{owner.kind}/{owner.name}")


def _describe_container(w: DescribeWriter, level: int, c: v1.Container,
                        status: v1.ContainerStatus | None) -> None:
    w.write(level, f"{c.name}:")
    level += 1
    if status is not None and status.container_id:
        w.pair(level, "Container ID", status.container_id)
    w.pair(level, "Image", c.image)
    if status is not None:
        w.pair(level, "Image ID", status.image_id)
    if c.ports:
        ports = [f"{p.container_port}/{p.protocol or 'TCP'}" for p in c.ports]
        w.pair(level, "Port" if len(ports) == 1 else "Ports", ", ".join(ports))
        host = [f"{p.host_port}/{p.protocol or 'TCP'}" for p in c.ports]
        w.pair(level, "Host Port" if len(host) == 1 else "Host Ports", ", ".join(host))
    else:
        w.pair(level, "Port", NONE)
        w.pair(level, "Host Port", NONE)
    for title, values in (("Command", c.command), ("Args", c.args)):
        if values:
            w.write(level, f"{title}:")
            for v in values:
                w.write(level + 1, v)
    if status is not None:
        _describe_state(w, level, "State", status.state)
        if status.last_state.ListFields():
            _describe_state(w, level, "Last State", status.last_state)
        w.pair(level, "Ready", "True" if status.ready else "False")
        w.pair(level, "Restart Count", status.restart_count)
    for title, amounts in (("Limits", c.resources.limits), ("Requests", c.resources.requests)):
        if amounts:
            w.write(level, f"{title}:")
            for key in sorted(amounts):
                w.pair(level + 1, key, amounts[key])
    for title, probe in (("Liveness", c.liveness_probe), ("Readiness", c.readiness_probe),
                         ("Startup", c.startup_probe)):
        if c.HasField(f"{title.lower()}_probe"):
            w.pair(level, title, _probe(probe))
    if c.env or c.env_from:
        w.write(level, "Environment:")
        for env in c.env:
            if env.HasField("value_from"):
                source = env.value_from
                if source.HasField("field_ref"):
                    value = f"({source.field_ref.api_version or 'v1'}:"\
                            f"{source.field_ref.field_path})"
                elif source.HasField("config_map_key_ref"):
                    ref = source.config_map_key_ref
                    value = f"<set to the key '{ref.key}' of config map '{ref.name}'>"
                elif source.HasField("secret_key_ref"):
                    ref2 = source.secret_key_ref
                    value = f"<set to the key '{ref2.key}' in secret '{ref2.name}'>"
                else:
                    value = "(resource)"
            else:
                value = env.value
            w.pair(level + 1, env.name, value)
    else:
        w.pair(level, "Environment", NONE)
    if c.volume_mounts:
        w.write(level, "Mounts:")
        for mount in c.volume_mounts:
            mode = "ro" if mount.read_only else "rw"
            w.write(level + 1, f"{mount.mount_path} from {mount.name} ({mode})")
    else:
        w.pair(level, "Mounts", NONE)


def _probe(p: v1.Probe) -> str:
    if p.HasField("http_get"):
        action = f"http-get {p.http_get.scheme.lower() or 'http'}://{p.http_get.host}:"\
                 f"{int_or_string(p.http_get.port)}{p.http_get.path}"
    elif p.HasField("tcp_socket"):
        action = f"tcp-socket {p.tcp_socket.host}:{int_or_string(p.tcp_socket.port)}"
    elif p.HasField("exec"):
        action = f"exec [{' '.join(p.exec.command)}]"
    elif p.HasField("grpc"):
        action = f"grpc <pod>:{p.grpc.port}"
    else:
        action = "unknown"
    return (f"{action} delay={p.initial_delay_seconds}s timeout={p.timeout_seconds}s"
            f" period={p.period_seconds}s #success={p.success_threshold}"
            f" #failure={p.failure_threshold}")


def _describe_state(w: DescribeWriter, level: int, title: str, state: v1.ContainerState) -> None:
    if state.HasField("running"):
        w.pair(level, title, "Running")
        w.pair(level + 1, "Started", describe_time(state.running.started_at))
    elif state.HasField("waiting"):
        w.pair(level, title, "Waiting")
        if state.waiting.reason:
            w.pair(level + 1, "Reason", state.waiting.reason)
        if state.waiting.message:
            w.pair(level + 1, "Message", state.waiting.message)
    elif state.HasField("terminated"):
        t = state.terminated
        w.pair(level, title, "Terminated")
        if t.reason:
            w.pair(level + 1, "Reason", t.reason)
        if t.message:
            w.pair(level + 1, "Message", t.message)
        w.pair(level + 1, "Exit Code", t.exit_code)
        if t.signal:
            w.pair(level + 1, "Signal", t.signal)
        w.pair(level + 1, "Started", describe_time(t.started_at))
        w.pair(level + 1, "Finished", describe_time(t.finished_at))
    else:
        w.pair(level, title, "Waiting")


def _conditions(w: DescribeWriter, conditions: Sequence[Any], columns: Sequence[str]) -> None:
    """A Conditions table with the named condition attributes as columns."""
    if not conditions:
        return
    w.write(0, "Conditions:")
    titles = [_title(c) for c in columns]
    w.write(1, "\t".join(titles))
    w.write(1, "\t".join("-" * len(t) for t in titles))
    for condition in conditions:
        w.write(1, "\t".join(str(getattr(condition, c)) for c in columns))


def _pod_template(w: DescribeWriter, level: int, template: v1.PodTemplateSpec) -> None:
    w.write(level, "Pod Template:")
    w.multiline(level + 1, "Labels", _labels_lines(template.metadata.labels))
    if template.spec.init_containers:
        w.write(level + 1, "Init Containers:")
        for c in template.spec.init_containers:
            _describe_container(w, level + 2, c, None)
    w.write(level + 1, "Containers:")
    for c in template.spec.containers:
        _describe_container(w, level + 2, c, None)
    _volumes(w, level + 1, template.spec.volumes)


def _volumes(w: DescribeWriter, level: int, volumes: Sequence[v1.Volume]) -> None:
    if not volumes:
        w.pair(level, "Volumes", NONE)
        return
    w.write(level, "Volumes:")
    for vol in volumes:
        w.write(level + 1, f"{vol.name}:")
        for fd, value in vol.ListFields():
            if fd.name == "name":
                continue
            w.pair(level + 2, "Type", _title(fd.json_name))
            if isinstance(value, Message):
                for sub, subvalue in value.ListFields():
                    if not isinstance(subvalue, Message) and not sub.is_repeated:
                        w.pair(level + 2, _title(sub.json_name), subvalue)


def _describe_pod(w: DescribeWriter, rtype: ResourceType, pod: v1.Pod) -> None:
    meta = pod.metadata
    w.pair(0, "Name", meta.name)
    w.pair(0, "Namespace", meta.namespace)
    w.pair(0, "Priority", pod.spec.priority if pod.spec.HasField("priority") else 0)
    w.pair(0, "Service Account", pod.spec.service_account_name or "default")
    node = pod.spec.node_name
    if node and pod.status.host_ip:
        node = f"{node}/{pod.status.host_ip}"
    w.pair(0, "Node", node or NONE)
    if pod.status.start_time:
        w.pair(0, "Start Time", describe_time(pod.status.start_time))
    w.multiline(0, "Labels", _labels_lines(meta.labels))
    w.multiline(0, "Annotations", _annotation_lines(meta.annotations))
    if meta.deletion_timestamp:
        status = "Terminating"
        w.pair(0, "Status", f"{status} (lasts {since(meta.deletion_timestamp, m.now())})")
        w.pair(0, "Termination Grace Period", f"{meta.deletion_grace_period_seconds}s")
    else:
        w.pair(0, "Status", pod.status.phase)
    if pod.status.reason:
        w.pair(0, "Reason", pod.status.reason)
    if pod.status.message:
        w.pair(0, "Message", pod.status.message)
    w.pair(0, "IP", pod.status.pod_ip)
    if pod.status.pod_ips:
        w.write(0, "IPs:")
        for ip in pod.status.pod_ips:
            w.pair(1, "IP", ip.ip)
    else:
        w.pair(0, "IPs", NONE)
    owner = next((r for r in meta.owner_references if r.controller), None)
    if owner is not None:
        w.pair(0, "Controlled By", f"{owner.kind}/{owner.name}")
    statuses = {s.name: s for s in pod.status.container_statuses}
    init_statuses = {s.name: s for s in pod.status.init_container_statuses}
    if pod.spec.init_containers:
        w.write(0, "Init Containers:")
        for c in pod.spec.init_containers:
            _describe_container(w, 1, c, init_statuses.get(c.name))
    w.write(0, "Containers:")
    for c in pod.spec.containers:
        _describe_container(w, 1, c, statuses.get(c.name))
    _conditions(w, pod.status.conditions, ("type", "status"))
    _volumes(w, 0, pod.spec.volumes)
    if pod.status.qos_class:
        w.pair(0, "QoS Class", pod.status.qos_class)
    w.multiline(0, "Node-Selectors", _labels_lines(pod.spec.node_selector))
    tolerations = []
    for t in pod.spec.tolerations:
        text = t.key
        if t.value:
            text += f"={t.value}"
        if t.effect:
            text += f":{t.effect}"
        if t.operator == "Exists" and not t.key:
            text = "op=Exists" + (f":{t.effect}" if t.effect else "")
        elif t.operator == "Exists":
            text += " op=Exists"
        if t.HasField("toleration_seconds"):
            text += f" for {t.toleration_seconds}s"
        tolerations.append(text)
    w.multiline(0, "Tolerations", tolerations)


def _replicas(desired: int, status: Any) -> str:
    return (f"{desired} desired | {status.updated_replicas} updated | {status.replicas} total"
            f" | {status.available_replicas} available | {status.unavailable_replicas}"
            " unavailable")


def _describe_deployment(w: DescribeWriter, rtype: ResourceType, d: v1.Deployment) -> None:
    _describe_meta(w, rtype, d)
    w.pair(0, "Selector",
           format_selector(d.spec.selector if d.spec.HasField("selector") else None))
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    w.pair(0, "Replicas", _replicas(desired, d.status))
    strategy = d.spec.strategy.type or "RollingUpdate"
    w.pair(0, "StrategyType", strategy)
    w.pair(0, "MinReadySeconds", d.spec.min_ready_seconds)
    if strategy == "RollingUpdate":
        ru = d.spec.strategy.rolling_update
        unavailable = int_or_string(ru.max_unavailable) or "25%"
        surge = int_or_string(ru.max_surge) or "25%"
        w.pair(0, "RollingUpdateStrategy", f"{unavailable} max unavailable, {surge} max surge")
    _pod_template(w, 0, d.spec.template)
    _conditions(w, d.status.conditions, ("type", "status", "reason"))


def _describe_replicaset(w: DescribeWriter, rtype: ResourceType, rs: v1.ReplicaSet) -> None:
    _describe_meta(w, rtype, rs, creation=False)
    w.pair(0, "Selector",
           format_selector(rs.spec.selector if rs.spec.HasField("selector") else None))
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    w.pair(0, "Replicas", f"{rs.status.replicas} current / {desired} desired")
    w.pair(0, "Ready Replicas", rs.status.ready_replicas)
    w.pair(0, "Available Replicas", rs.status.available_replicas)
    _pod_template(w, 0, rs.spec.template)
    _conditions(w, rs.status.conditions, ("type", "status", "reason"))


def _describe_service(w: DescribeWriter, rtype: ResourceType, svc: v1.Service) -> None:
    _describe_meta(w, rtype, svc, creation=False)
    spec = svc.spec
    w.pair(0, "Selector", format_labels(spec.selector))
    w.pair(0, "Type", spec.type or "ClusterIP")
    if spec.HasField("ip_family_policy"):
        w.pair(0, "IP Family Policy", spec.ip_family_policy)
    if spec.ip_families:
        w.pair(0, "IP Families", ",".join(spec.ip_families))
    w.pair(0, "IP", or_none(spec.cluster_ip))
    w.pair(0, "IPs", ",".join(spec.cluster_ips) or or_none(spec.cluster_ip))
    if spec.external_ips:
        w.pair(0, "External IPs", ",".join(spec.external_ips))
    if spec.type == "ExternalName":
        w.pair(0, "External Name", spec.external_name)
    for p in spec.ports:
        protocol = p.protocol or "TCP"
        w.pair(0, "Port", f"{p.name or '<unset>'}  {p.port}/{protocol}")
        target = int_or_string(p.target_port) or str(p.port)
        w.pair(0, "TargetPort", f"{target}/{protocol}")
        if p.node_port:
            w.pair(0, "NodePort", f"{p.name or '<unset>'}  {p.node_port}/{protocol}")
    w.pair(0, "Session Affinity", spec.session_affinity or "None")


def _describe_node(w: DescribeWriter, rtype: ResourceType, node: v1.Node) -> None:
    w.pair(0, "Name", node.metadata.name)
    w.pair(0, "Roles", node_roles(node))
    w.multiline(0, "Labels", _labels_lines(node.metadata.labels))
    w.multiline(0, "Annotations", _annotation_lines(node.metadata.annotations))
    w.pair(0, "CreationTimestamp", describe_time(node.metadata.creation_timestamp))
    taints = [f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}" for t in node.spec.taints]
    w.multiline(0, "Taints", taints)
    w.pair(0, "Unschedulable", "true" if node.spec.unschedulable else "false")
    _conditions(w, node.status.conditions,
                ("type", "status", "last_heartbeat_time", "last_transition_time", "reason",
                 "message"))
    if node.status.addresses:
        w.write(0, "Addresses:")
        for a in node.status.addresses:
            w.pair(1, a.type, a.address)
    for title, values in (("Capacity", node.status.capacity),
                          ("Allocatable", node.status.allocatable)):
        if values:
            w.write(0, f"{title}:")
            for key in sorted(values):
                w.pair(1, key, values[key])
    info = node.status.node_info
    w.write(0, "System Info:")
    for title, value in (("Machine ID", info.machine_id), ("System UUID", info.system_uuid),
                         ("Boot ID", info.boot_id), ("Kernel Version", info.kernel_version),
                         ("OS Image", info.os_image), ("Operating System", info.operating_system),
                         ("Architecture", info.architecture),
                         ("Container Runtime Version", info.container_runtime_version),
                         ("Kubelet Version", info.kubelet_version),
                         ("Kube-Proxy Version", info.kube_proxy_version)):
        w.pair(1, title, value)
    if node.spec.pod_cidr:
        w.pair(0, "PodCIDR", node.spec.pod_cidr)


def _describe_namespace(w: DescribeWriter, rtype: ResourceType, ns: v1.Namespace) -> None:
    w.pair(0, "Name", ns.metadata.name)
    w.multiline(0, "Labels", _labels_lines(ns.metadata.labels))
    w.multiline(0, "Annotations", _annotation_lines(ns.metadata.annotations))
    w.pair(0, "Status", ns.status.phase)
    w.write(0, "")
    w.write(0, "No resource quota.")
    w.write(0, "")
    w.write(0, "No LimitRange resource.")


def _describe_configmap(w: DescribeWriter, rtype: ResourceType, cm: v1.ConfigMap) -> None:
    _describe_meta(w, rtype, cm, creation=False)
    w.write(0, "")
    w.write(0, "Data")
    w.write(0, "====")
    for key in sorted(cm.data):
        w.write(0, f"{key}:")
        w.write(0, "----")
        w.lines.extend(cm.data[key].rstrip("\n").split("\n"))
        w.write(0, "")
    w.write(0, "")
    w.write(0, "BinaryData")
    w.write(0, "====")
    for key in sorted(cm.binary_data):
        w.pair(0, key, f"{len(cm.binary_data[key])} bytes")
    w.write(0, "")


def _describe_secret(w: DescribeWriter, rtype: ResourceType, s: v1.Secret) -> None:
    _describe_meta(w, rtype, s, creation=False)
    w.write(0, "")
    w.pair(0, "Type", s.type or "Opaque")
    w.write(0, "")
    w.write(0, "Data")
    w.write(0, "====")
    for key in sorted(s.data):
        w.pair(0, key, f"{len(s.data[key])} bytes")


def _describe_job(w: DescribeWriter, rtype: ResourceType, job: v1.Job) -> None:
    _describe_meta(w, rtype, job, creation=False)
    spec, status = job.spec, job.status
    w.pair(0, "Selector", format_selector(spec.selector if spec.HasField("selector") else None))
    w.pair(0, "Parallelism", spec.parallelism if spec.HasField("parallelism") else 1)
    w.pair(0, "Completions", spec.completions if spec.HasField("completions") else NONE)
    w.pair(0, "Completion Mode",
           spec.completion_mode if spec.HasField("completion_mode") else "NonIndexed")
    w.pair(0, "Suspend", "true" if spec.HasField("suspend") and spec.suspend else "false")
    w.pair(0, "Backoff Limit", spec.backoff_limit if spec.HasField("backoff_limit") else 6)
    if status.start_time:
        w.pair(0, "Start Time", describe_time(status.start_time))
    if status.completion_time:
        w.pair(0, "Completed At", describe_time(status.completion_time))
    w.pair(0, "Pods Statuses",
           f"{status.active} Active ({status.ready} Ready) / {status.succeeded} Succeeded"
           f" / {status.failed} Failed")
    _pod_template(w, 0, spec.template)
    _conditions(w, status.conditions, ("type", "status", "reason"))


# ---------------------------------------------------------------------------- access and policy


def _go_list(values: Sequence[str]) -> str:
    """A list as kubectl prints one (Go's %v): ``[get list]``."""
    return "[" + " ".join(values) + "]"


@dataclass
class _Rule:
    """A policy rule as describe breaks it down and compacts it again."""

    verbs: list[str]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def sort_key(self) -> str:
        # kubectl orders rules by the Go text of the PolicyRule message.
        return (f"&PolicyRule{{Verbs:{_go_list(self.verbs)},"
                f"APIGroups:{_go_list(self.api_groups)},"
                f"Resources:{_go_list(self.resources)},"
                f"ResourceNames:{_go_list(self.resource_names)},"
                f"NonResourceURLs:{_go_list(self.non_resource_urls)},}}")


def policy_rule_rows(rules: Sequence[v1.PolicyRule]) -> list[tuple[str, str, str, str]]:
    """(Resources, Non-Resource URLs, Resource Names, Verbs) lines of a role's PolicyRule
    table, as kubectl describe makes them: every rule broken down to one group, resource,
    name (or URL) and verb, the verbs of each group/resource/name gathered again."""
    compacted: list[_Rule] = []
    by_resource: dict[tuple[str, str, str | None], _Rule] = {}
    for rule in rules:
        names: list[str | None] = list(rule.resource_names) or [None]
        for group in rule.api_groups:
            for resource in rule.resources:
                for verb in rule.verbs:
                    for name in names:
                        key = (group, resource, name)
                        if key in by_resource:
                            by_resource[key].verbs.append(verb)
                        else:
                            by_resource[key] = _Rule(
                                [verb], (group,), (resource,), () if name is None else (name,))
        compacted.extend(_Rule([verb], non_resource_urls=(url,))
                         for url in rule.non_resource_urls for verb in rule.verbs)
    compacted.extend(by_resource.values())
    compacted.sort(key=_Rule.sort_key)
    return [(_combine_resource_group(r.resources, r.api_groups), _go_list(r.non_resource_urls),
             _go_list(r.resource_names), _go_list(r.verbs)) for r in compacted]


def _combine_resource_group(resources: Sequence[str], groups: Sequence[str]) -> str:
    """``deployments.apps``, ``pods/log``, ``deployments.apps/scale``: a resource in its group
    (the core group has no suffix)."""
    if not resources:
        return ""
    resource, slash, subresource = resources[0].partition("/")
    if groups and groups[0]:
        resource += "." + groups[0]
    return resource + slash + subresource


def _describe_role(w: DescribeWriter, rtype: ResourceType, role: v1.Role | v1.ClusterRole
                   ) -> None:
    w.pair(0, "Name", role.metadata.name)
    w.multiline(0, "Labels", _labels_lines(role.metadata.labels))
    w.multiline(0, "Annotations", _annotation_lines(role.metadata.annotations))
    w.write(0, "PolicyRule:")
    w.write(1, "Resources\tNon-Resource URLs\tResource Names\tVerbs")
    w.write(1, "---------\t-----------------\t--------------\t-----")
    for row in policy_rule_rows(role.rules):
        w.write(1, "\t".join(row))


def _describe_binding(w: DescribeWriter, rtype: ResourceType,
                      binding: v1.RoleBinding | v1.ClusterRoleBinding) -> None:
    w.pair(0, "Name", binding.metadata.name)
    w.multiline(0, "Labels", _labels_lines(binding.metadata.labels))
    w.multiline(0, "Annotations", _annotation_lines(binding.metadata.annotations))
    w.write(0, "Role:")
    w.pair(1, "Kind", binding.role_ref.kind)
    w.pair(1, "Name", binding.role_ref.name)
    w.write(0, "Subjects:")
    w.write(1, "Kind\tName\tNamespace")
    w.write(1, "----\t----\t---------")
    for s in binding.subjects:
        w.write(1, f"{s.kind}\t{s.name}\t{s.namespace}")


_QUOTA_SCOPE_HELP = {
    "Terminating": "Matches all pods that have an active deadline. These pods have a limited"
                   " lifespan on a node before being actively terminated by the system.",
    "NotTerminating": "Matches all pods that do not have an active deadline. These pods usually"
                      " include long running pods whose container command is not expected to"
                      " terminate.",
    "BestEffort": "Matches all pods that do not have resource requirements set. These pods have"
                  " a best effort quality of service.",
    "NotBestEffort": "Matches all pods that have at least one resource requirement set. These"
                     " pods have a burstable or guaranteed quality of service.",
}


def _parsed(text: str) -> Quantity | None:
    return parse_quantity(text) if is_valid_quantity(text) else None


def _quota_used(used_text: str, hard_text: str) -> str:
    """The used amount in the hard limit's format (``0`` of ``1Gi``, ``512Mi`` of ``1Gi``)."""
    used, hard = _parsed(used_text), _parsed(hard_text)
    if used is None or hard is None:
        return used_text
    if used.format != hard.format:
        used = Quantity.from_int(used.value(), hard.format)
    return str(used)


def _describe_quota(w: DescribeWriter, rtype: ResourceType, quota: v1.ResourceQuota) -> None:
    w.pair(0, "Name", quota.metadata.name)
    w.pair(0, "Namespace", quota.metadata.namespace)
    if quota.spec.scopes:
        scopes = sorted(quota.spec.scopes)
        w.pair(0, "Scopes", ", ".join(scopes))
        for scope in scopes:
            if scope in _QUOTA_SCOPE_HELP:
                w.write(0, f"* {_QUOTA_SCOPE_HELP[scope]}")
    w.write(0, "Resource\tUsed\tHard")
    w.write(0, "--------\t----\t----")
    for name in sorted(quota.status.hard):
        hard = quota.status.hard[name]
        used = _quota_used(quota.status.used.get(name, "0"), hard)
        shown = _parsed(hard)
        w.write(0, f"{name}\t{used}\t{shown if shown is not None else hard}")


def _title(name: str) -> str:
    """``lastTransitionTime`` / ``last_transition_time`` -> ``Last Transition Time``."""
    words: list[str] = []
    current = ""
    for ch in name:
        if ch == "_":
            words.append(current)
            current = ""
        elif ch.isupper() and current and not current[-1].isupper():
            words.append(current)
            current = ch
        else:
            current += ch
    words.append(current)
    return " ".join(w[:1].upper() + w[1:] for w in words if w)


def _describe_fields(w: DescribeWriter, level: int, msg: Message) -> None:
    """Any message, field by field, as kubectl describes objects it has no describer for."""
    for fd, value in msg.ListFields():
        _describe_field(w, level, fd, value)


def _describe_field(w: DescribeWriter, level: int, fd: FieldDescriptor, value: Any) -> None:
    title = _title(fd.json_name)
    message_type = fd.message_type
    is_int_or_string = message_type is not None and message_type.full_name.endswith("IntOrString")
    if message_type is not None and message_type.GetOptions().map_entry:
        # Map keys are data (label keys, resource names): printed as they are.
        w.write(level, f"{title}:")
        value_field = message_type.fields_by_name["value"]
        for key in sorted(value):
            item = value[key]
            if value_field.message_type is not None:
                w.write(level + 1, f"{key}:")
                _describe_fields(w, level + 2, item)
            else:
                w.pair(level + 1, key, _scalar_text(value_field, item))
    elif fd.is_repeated:
        w.write(level, f"{title}:")
        for item in value:
            if is_int_or_string:
                w.write(level + 1, int_or_string(item))
            elif isinstance(item, Message):
                _describe_fields(w, level + 1, item)
            else:
                w.write(level + 1, _scalar_text(fd, item))
    elif is_int_or_string:
        w.pair(level, title, int_or_string(value))
    elif isinstance(value, Message):
        if value.ListFields():
            w.write(level, f"{title}:")
            _describe_fields(w, level + 1, value)
        else:
            w.pair(level, title, "")
    else:
        w.pair(level, title, _scalar_text(fd, value))


def _scalar_text(fd: FieldDescriptor, value: Any) -> str:
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return f"{len(value)} bytes"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe_generic(w: DescribeWriter, rtype: ResourceType, obj: Message) -> None:
    _describe_meta(w, rtype, obj)
    for fd, value in obj.ListFields():
        if fd.name != "metadata":
            _describe_field(w, 0, fd, value)


Describer = Callable[[DescribeWriter, ResourceType, Any], None]

DESCRIBERS: dict[str, Describer] = {
    "Pod": _describe_pod,
    "Deployment": _describe_deployment,
    "ReplicaSet": _describe_replicaset,
    "Service": _describe_service,
    "Node": _describe_node,
    "Namespace": _describe_namespace,
    "ConfigMap": _describe_configmap,
    "Secret": _describe_secret,
    "Job": _describe_job,
    "Role": _describe_role,
    "ClusterRole": _describe_role,
    "RoleBinding": _describe_binding,
    "ClusterRoleBinding": _describe_binding,
    "ResourceQuota": _describe_quota,
}

_WITHOUT_EVENTS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                             "ResourceQuota"})
"""Kinds kubectl describes without their events."""


def describe_events(w: DescribeWriter, events: Sequence[v1.Event], now: dt.datetime) -> None:
    if not events:
        w.pair(0, "Events", NONE)
        return
    w.write(0, "Events:")
    w.write(1, "Type\tReason\tAge\tFrom\tMessage")
    w.write(1, "----\t------\t----\t----\t-------")
    for e in events:
        first = since(e.event_time, now) if e.event_time else since(e.first_timestamp, now)
        if e.HasField("series"):
            interval = (f"{since(e.series.last_observed_time, now)}"
                        f" (x{e.series.count} over {first})")
        elif e.count > 1:
            interval = f"{since(e.last_timestamp, now)} (x{e.count} over {first})"
        else:
            interval = first
        source = e.source.component or e.reporting_component
        w.write(1, f"{e.type}\t{e.reason}\t{interval}\t{source}\t{e.message.strip()}")


def event_sort_key(e: v1.Event) -> str:
    return e.last_timestamp or e.event_time or e.first_timestamp or \
        e.metadata.creation_timestamp


def describe(rtype: ResourceType, obj: Message, events: Sequence[v1.Event] | None,
             now: dt.datetime | None = None) -> str:
    """The describe text of one object; ``events`` None leaves the Events section out."""
    now = now or m.now()
    w = DescribeWriter()
    DESCRIBERS.get(rtype.kind, _describe_generic)(w, rtype, obj)
    if events is not None and rtype.kind not in _WITHOUT_EVENTS:
        describe_events(w, sorted(events, key=event_sort_key), now)
    return w.render()
