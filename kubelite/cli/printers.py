"""What klctl prints: kubectl's tables, ages, pod status and describe text.

Column sets, cell formats and the tabwriter layout follow kubectl's printers
(``pkg/printers/internalversion/printers.go`` and ``describe.go``) so that output reads the
same as kubectl's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.registry import ResourceType
from protos.v1 import objects_pb2 as v1

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
NONE = "<none>"

# ---------------------------------------------------------------------------- layout


def tabwrite(lines: Sequence[str], minwidth: int = 6, padding: int = 3) -> list[str]:
    """Go's text/tabwriter: tab-terminated cells aligned per column block.

    A column block is a run of consecutive lines that have a cell in that column; the last
    cell of a line (after its last tab) is not part of any column and is never padded.
    kubectl's tables use minwidth 6 / padding 3, its describe output 0 / 2.
    """
    cells = [line.split("\t") for line in lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(start: int, end: int) -> None:
        for i in range(start, end):
            row = cells[i]
            text = []
            for j, cell in enumerate(row):
                text.append(cell.ljust(widths[j]) if j < len(widths) and j < len(row) - 1
                            else cell)
            out.append("".join(text))

    def format_block(start: int, end: int) -> None:
        column = len(widths)
        this = start
        while this < end:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            write_lines(start, this)
            start = this
            width = minwidth
            while this < end and column < len(cells[this]) - 1:
                width = max(width, len(cells[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(start, this)
            widths.pop()
            start = this
        write_lines(start, end)

    format_block(0, len(cells))
    return out


def render_table(rows: Sequence[Sequence[str]]) -> list[str]:
    return tabwrite(["\t".join(r) for r in rows])


# ---------------------------------------------------------------------------- times


def parse_timestamp(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        return m.parse_time(text)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 5s, 3m12s, 4h, 2d3h, 3y45d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str, now: dt.datetime) -> str:
    """kubectl's translateTimestampSince: the age of a timestamp, <unknown> when unset."""
    t = parse_timestamp(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def describe_time(timestamp: str) -> str:
    """RFC 1123 with numeric zone, as kubectl describe prints times."""
    t = parse_timestamp(timestamp)
    if t is None:
        return NONE
    return t.strftime("%a, %d %b %Y %H:%M:%S %z")


# ---------------------------------------------------------------------------- small formats


def format_labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return NONE
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_selector(selector: v1.LabelSelector | None) -> str:
    """metav1.FormatLabelSelector."""
    if selector is None:
        return NONE
    parts = [f"{k}={selector.match_labels[k]}" for k in sorted(selector.match_labels)]
    for req in selector.match_expressions:
        op = req.operator
        if op == "In":
            parts.append(f"{req.key} in ({','.join(req.values)})")
        elif op == "NotIn":
            parts.append(f"{req.key} notin ({','.join(req.values)})")
        elif op == "Exists":
            parts.append(req.key)
        elif op == "DoesNotExist":
            parts.append(f"!{req.key}")
        else:
            parts.append(f"{req.key} {op} ({','.join(req.values)})")
    return ",".join(parts) or NONE


def _or_none(text: str) -> str:
    return text if text else NONE


def _int_or_string(value: v1.IntOrString) -> str:
    which = value.WhichOneof("value")
    return str(getattr(value, which)) if which else ""


def _containers(spec: v1.PodSpec) -> tuple[str, str]:
    names = ",".join(c.name for c in spec.containers)
    images = ",".join(c.image for c in spec.containers)
    return names, images


# ---------------------------------------------------------------------------- pod status


def _restartable_init(container: v1.Container | None) -> bool:
    return container is not None and container.HasField("restart_policy") and (
        container.restart_policy == "Always"
    )


def _pod_condition_true(pod: v1.Pod, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in pod.status.conditions)


def pod_status(pod: v1.Pod, now: dt.datetime) -> tuple[str, str, str]:
    """(READY, STATUS, RESTARTS) exactly as kubectl's printPod computes them."""
    restarts = 0
    restartable_restarts = 0
    total = len(pod.spec.containers)
    ready = 0
    last_restart: dt.datetime | None = None
    last_restartable_restart: dt.datetime | None = None

    def later(a: dt.datetime | None, text: str) -> dt.datetime | None:
        t = parse_timestamp(text)
        if t is None:
            return a
        return t if a is None or a < t else a

    reason = pod.status.reason or pod.status.phase
    for condition in pod.status.conditions:
        if condition.type == "PodScheduled" and condition.reason == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {c.name: c for c in pod.spec.init_containers}
    total += sum(1 for c in pod.spec.init_containers if _restartable_init(c))

    initializing = False
    for i, status in enumerate(pod.status.init_container_statuses):
        restarts += status.restart_count
        if status.last_state.HasField("terminated"):
            last_restart = later(last_restart, status.last_state.terminated.finished_at)
        spec = init_specs.get(status.name)
        if _restartable_init(spec):
            restartable_restarts += status.restart_count
            if status.last_state.HasField("terminated"):
                last_restartable_restart = later(
                    last_restartable_restart, status.last_state.terminated.finished_at
                )
        state = status.state
        if state.HasField("terminated") and state.terminated.exit_code == 0:
            continue
        if _restartable_init(spec) and status.HasField("started") and status.started:
            if status.ready:
                ready += 1
            continue
        if state.HasField("terminated"):
            t = state.terminated
            if not t.reason:
                reason = (f"Init:Signal:{t.signal}" if t.signal
                          else f"Init:ExitCode:{t.exit_code}")
            else:
                reason = "Init:" + t.reason
        elif state.HasField("waiting") and state.waiting.reason and (
            state.waiting.reason != "PodInitializing"
        ):
            reason = "Init:" + state.waiting.reason
        else:
            reason = f"Init:{i}/{len(pod.spec.init_containers)}"
        initializing = True
        break

    if not initializing or _pod_condition_true(pod, "Initialized"):
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for status in reversed(pod.status.container_statuses):
            restarts += status.restart_count
            if status.last_state.HasField("terminated"):
                last_restart = later(last_restart, status.last_state.terminated.finished_at)
            state = status.state
            if state.HasField("waiting") and state.waiting.reason:
                reason = state.waiting.reason
            elif state.HasField("terminated") and state.terminated.reason:
                reason = state.terminated.reason
            elif state.HasField("terminated"):
                t = state.terminated
                reason = f"Signal:{t.signal}" if t.signal else f"ExitCode:{t.exit_code}"
            elif status.ready and state.HasField("running"):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _pod_condition_true(pod, "Ready") else "NotReady"

    if pod.metadata.deletion_timestamp and pod.status.reason == "NodeLost":
        reason = "Unknown"
    elif pod.metadata.deletion_timestamp and pod.status.phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{total}", reason, restarts_text


# ---------------------------------------------------------------------------- table rows

Cells = list[str]
RowFunc = Callable[[Any, dt.datetime], tuple[Cells, Cells]]


def _age(obj: Message, now: dt.datetime) -> str:
    return since(m.meta(obj).creation_timestamp, now)


def _pod_row(pod: v1.Pod, now: dt.datetime) -> tuple[Cells, Cells]:
    ready, status, restarts = pod_status(pod, now)
    gates = NONE
    if pod.spec.readiness_gates:
        true = sum(
            1 for g in pod.spec.readiness_gates if _pod_condition_true(pod, g.condition_type)
        )
        gates = f"{true}/{len(pod.spec.readiness_gates)}"
    return (
        [pod.metadata.name, ready, status, restarts, _age(pod, now)],
        [_or_none(pod.status.pod_ip), _or_none(pod.spec.node_name),
         _or_none(pod.status.nominated_node_name), gates],
    )


def _deployment_row(d: v1.Deployment, now: dt.datetime) -> tuple[Cells, Cells]:
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    names, images = _containers(d.spec.template.spec)
    return (
        [d.metadata.name, f"{d.status.ready_replicas}/{desired}",
         str(d.status.updated_replicas), str(d.status.available_replicas), _age(d, now)],
        [names, images, format_selector(d.spec.selector if d.spec.HasField("selector") else None)],
    )


def _replicaset_row(rs: v1.ReplicaSet, now: dt.datetime) -> tuple[Cells, Cells]:
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    names, images = _containers(rs.spec.template.spec)
    return (
        [rs.metadata.name, str(desired), str(rs.status.replicas), str(rs.status.ready_replicas),
         _age(rs, now)],
        [names, images,
         format_selector(rs.spec.selector if rs.spec.HasField("selector") else None)],
    )


def _daemonset_row(ds: v1.DaemonSet, now: dt.datetime) -> tuple[Cells, Cells]:
    s = ds.status
    names, images = _containers(ds.spec.template.spec)
    return (
        [ds.metadata.name, str(s.desired_number_scheduled), str(s.current_number_scheduled),
         str(s.number_ready), str(s.updated_number_scheduled), str(s.number_available),
         format_labels(ds.spec.template.spec.node_selector), _age(ds, now)],
        [names, images,
         format_selector(ds.spec.selector if ds.spec.HasField("selector") else None)],
    )


def _statefulset_row(sts: v1.StatefulSet, now: dt.datetime) -> tuple[Cells, Cells]:
    desired = sts.spec.replicas if sts.spec.HasField("replicas") else 1
    names, images = _containers(sts.spec.template.spec)
    return (
        [sts.metadata.name, f"{sts.status.ready_replicas}/{desired}", _age(sts, now)],
        [names, images],
    )


def _has_condition(conditions: Iterable[Any], type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in conditions)


def job_status(job: v1.Job) -> str:
    conditions = job.status.conditions
    if _has_condition(conditions, "Complete"):
        return "Complete"
    if _has_condition(conditions, "Failed"):
        return "Failed"
    if job.metadata.deletion_timestamp:
        return "Terminating"
    if _has_condition(conditions, "Suspended"):
        return "Suspended"
    if _has_condition(conditions, "FailureTarget"):
        return "FailureTarget"
    if _has_condition(conditions, "SuccessCriteriaMet"):
        return "SuccessCriteriaMet"
    return "Running"


def _job_row(job: v1.Job, now: dt.datetime) -> tuple[Cells, Cells]:
    spec, status = job.spec, job.status
    if spec.HasField("completions"):
        completions = f"{status.succeeded}/{spec.completions}"
    elif spec.HasField("parallelism") and spec.parallelism > 1:
        completions = f"{status.succeeded}/1 of {spec.parallelism}"
    else:
        completions = f"{status.succeeded}/1"
    start = parse_timestamp(status.start_time)
    end = parse_timestamp(status.completion_time)
    duration = ""
    if start is not None:
        duration = human_duration(((end or now) - start).total_seconds())
    names, images = _containers(spec.template.spec)
    return (
        [job.metadata.name, job_status(job), completions, duration, _age(job, now)],
        [names, images,
         format_selector(spec.selector if spec.HasField("selector") else None)],
    )


def _cronjob_row(cj: v1.CronJob, now: dt.datetime) -> tuple[Cells, Cells]:
    spec = cj.spec
    tz = spec.time_zone if spec.HasField("time_zone") else NONE
    suspend = "True" if spec.HasField("suspend") and spec.suspend else "False"
    last = since(cj.status.last_schedule_time, now) if cj.status.last_schedule_time else NONE
    names, images = _containers(spec.job_template.spec.template.spec)
    selector = spec.job_template.spec.selector
    return (
        [cj.metadata.name, spec.schedule, tz, suspend, str(len(cj.status.active)), last,
         _age(cj, now)],
        [names, images,
         format_selector(selector if spec.job_template.spec.HasField("selector") else None)],
    )


def _service_ports(svc: v1.Service) -> str:
    parts = []
    for p in svc.spec.ports:
        protocol = p.protocol or "TCP"
        if p.node_port:
            parts.append(f"{p.port}:{p.node_port}/{protocol}")
        else:
            parts.append(f"{p.port}/{protocol}")
    return ",".join(parts) or NONE


def _external_ip(svc: v1.Service) -> str:
    spec = svc.spec
    type_ = spec.type or "ClusterIP"
    if type_ == "ClusterIP":
        return ",".join(spec.external_ips) or NONE
    if type_ == "NodePort":
        return ",".join(spec.external_ips) or NONE
    if type_ == "LoadBalancer":
        ingress = [i.ip or i.hostname for i in svc.status.load_balancer.ingress]
        ips = ingress + list(spec.external_ips)
        return ",".join(ips) if ips else "<pending>"
    if type_ == "ExternalName":
        return spec.external_name
    return "<unknown>"


def _service_row(svc: v1.Service, now: dt.datetime) -> tuple[Cells, Cells]:
    cluster_ip = svc.spec.cluster_ips[0] if svc.spec.cluster_ips else svc.spec.cluster_ip
    return (
        [svc.metadata.name, svc.spec.type or "ClusterIP", _or_none(cluster_ip),
         _external_ip(svc), _service_ports(svc), _age(svc, now)],
        [format_labels(svc.spec.selector)],
    )


def format_endpoints(ep: v1.Endpoints) -> str:
    if not ep.subsets:
        return NONE
    shown: list[str] = []
    limit, count, more = 3, 0, False
    for subset in ep.subsets:
        if not subset.ports:
            count += len(subset.addresses)
            for address in subset.addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(address.ip)
            continue
        for port in subset.ports:
            count += len(subset.addresses)
            for address in subset.addresses:
                if len(shown) == limit:
                    more = True
                    break
                host = f"[{address.ip}]" if ":" in address.ip else address.ip
                shown.append(f"{host}:{port.port}")
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text or NONE


def _endpoints_row(ep: v1.Endpoints, now: dt.datetime) -> tuple[Cells, Cells]:
    return [ep.metadata.name, format_endpoints(ep), _age(ep, now)], []


def node_status(node: v1.Node) -> str:
    status = []
    ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
    if ready is None:
        status.append("Unknown")
    elif ready.status == "True":
        status.append("Ready")
    elif ready.status == "False":
        status.append("NotReady")
    else:
        status.append("Unknown")
    if node.spec.unschedulable:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: v1.Node) -> str:
    roles = set()
    for key, value in node.metadata.labels.items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or NONE


def _node_row(node: v1.Node, now: dt.datetime) -> tuple[Cells, Cells]:
    addresses = {a.type: a.address for a in node.status.addresses}
    info = node.status.node_info
    return (
        [node.metadata.name, node_status(node), node_roles(node), _age(node, now),
         info.kubelet_version],
        [_or_none(addresses.get("InternalIP", "")), _or_none(addresses.get("ExternalIP", "")),
         _or_none(info.os_image), _or_none(info.kernel_version),
         _or_none(info.container_runtime_version)],
    )


def _namespace_row(ns: v1.Namespace, now: dt.datetime) -> tuple[Cells, Cells]:
    return [ns.metadata.name, ns.status.phase, _age(ns, now)], []


def _configmap_row(cm: v1.ConfigMap, now: dt.datetime) -> tuple[Cells, Cells]:
    return [cm.metadata.name, str(len(cm.data) + len(cm.binary_data)), _age(cm, now)], []


def _secret_row(s: v1.Secret, now: dt.datetime) -> tuple[Cells, Cells]:
    return [s.metadata.name, s.type or "Opaque", str(len(s.data)), _age(s, now)], []


def _event_row(e: v1.Event, now: dt.datetime) -> tuple[Cells, Cells]:
    first = since(e.first_timestamp, now) if e.first_timestamp else since(e.event_time, now)
    last = since(e.last_timestamp, now) if e.last_timestamp else first
    count = e.count or 1
    if e.HasField("series"):
        last = since(e.series.last_observed_time, now)
        count = e.series.count
    ref = e.involved_object
    target = f"{ref.kind.lower()}/{ref.name}" if ref.name else ref.kind.lower()
    source = ", ".join(x for x in (e.source.component or e.reporting_component,
                                   e.source.host or e.reporting_instance) if x)
    return (
        [last, e.type, e.reason, target, e.message.strip()],
        [ref.field_path, source, first, str(count), e.metadata.name],
    )


def _lease_row(lease: v1.Lease, now: dt.datetime) -> tuple[Cells, Cells]:
    holder = lease.spec.holder_identity if lease.spec.HasField("holder_identity") else ""
    return [lease.metadata.name, holder, _age(lease, now)], []


def _pvc_row(pvc: v1.PersistentVolumeClaim, now: dt.datetime) -> tuple[Cells, Cells]:
    spec = pvc.spec
    capacity = pvc.status.capacity.get("storage", "")
    modes = ",".join(_ACCESS_MODES.get(x, x) for x in pvc.status.access_modes)
    storage_class = spec.storage_class_name if spec.HasField("storage_class_name") else ""
    return (
        [pvc.metadata.name, pvc.status.phase, spec.volume_name, capacity, modes, storage_class,
         _age(pvc, now)],
        [spec.volume_mode if spec.HasField("volume_mode") else ""],
    )


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _generic_row(obj: Message, now: dt.datetime) -> tuple[Cells, Cells]:
    return [m.meta(obj).name, _age(obj, now)], []


_WORKLOAD_WIDE = ("CONTAINERS", "IMAGES", "SELECTOR")

# kind -> (columns, wide columns, row function)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], RowFunc]] = {
    "Pod": (("NAME", "READY", "STATUS", "RESTARTS", "AGE"),
            ("IP", "NODE", "NOMINATED NODE", "READINESS GATES"), _pod_row),
    "Deployment": (("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"), _WORKLOAD_WIDE,
                   _deployment_row),
    "ReplicaSet": (("NAME", "DESIRED", "CURRENT", "READY", "AGE"), _WORKLOAD_WIDE,
                   _replicaset_row),
    "DaemonSet": (("NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE",
                   "NODE SELECTOR", "AGE"), _WORKLOAD_WIDE, _daemonset_row),
    "StatefulSet": (("NAME", "READY", "AGE"), ("CONTAINERS", "IMAGES"), _statefulset_row),
    "Job": (("NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"), _WORKLOAD_WIDE, _job_row),
    "CronJob": (("NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"),
                _WORKLOAD_WIDE, _cronjob_row),
    "Service": (("NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), ("SELECTOR",),
                _service_row),
    "Endpoints": (("NAME", "ENDPOINTS", "AGE"), (), _endpoints_row),
    "Node": (("NAME", "STATUS", "ROLES", "AGE", "VERSION"),
             ("INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
             _node_row),
    "Namespace": (("NAME", "STATUS", "AGE"), (), _namespace_row),
    "ConfigMap": (("NAME", "DATA", "AGE"), (), _configmap_row),
    "Secret": (("NAME", "TYPE", "DATA", "AGE"), (), _secret_row),
    "Event": (("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"),
              ("SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME"), _event_row),
    "Lease": (("NAME", "HOLDER", "AGE"), (), _lease_row),
    "PersistentVolumeClaim": (("NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES",
                               "STORAGECLASS", "AGE"), ("VOLUMEMODE",), _pvc_row),
}


def resource_name(rtype: ResourceType, name: str) -> str:
    """``deployment.apps/web``, as kubectl names an object in messages and -o name."""
    kind = f"{rtype.singular}.{rtype.group}" if rtype.group else rtype.singular
    return f"{kind}/{name}"


class Table:
    """Header and rows of one kind's table, in kubectl's layout."""

    def __init__(
        self,
        rtype: ResourceType,
        *,
        wide: bool = False,
        namespace_column: bool = False,
        show_labels: bool = False,
        show_kind: bool = False,
    ) -> None:
        self.rtype = rtype
        self.wide = wide
        self.namespace_column = namespace_column
        self.show_labels = show_labels
        self.show_kind = show_kind
        columns, wide_columns, self._row = TABLES.get(
            rtype.kind, (("NAME", "AGE"), (), _generic_row)
        )
        headers = list(columns) + (list(wide_columns) if wide else [])
        if namespace_column:
            headers.insert(0, "NAMESPACE")
        if show_labels:
            headers.append("LABELS")
        self.headers = headers
        self._widths: list[int] = []

    def row(self, obj: Message, now: dt.datetime) -> list[str]:
        cells, wide_cells = self._row(obj, now)
        cells = list(cells)
        if self.show_kind and self.rtype.kind != "Event":
            cells[0] = resource_name(self.rtype, cells[0])
        if self.wide:
            cells += wide_cells
        if self.namespace_column:
            cells.insert(0, m.meta(obj).namespace)
        if self.show_labels:
            cells.append(format_labels(m.meta(obj).labels))
        return cells

    def render(
        self, objects: Iterable[Message], now: dt.datetime, headers: bool = True
    ) -> list[str]:
        rows = [self.row(o, now) for o in objects]
        lines = render_table(([self.headers] if headers else []) + rows)
        self._remember([self.headers, *rows])
        return lines

    def _remember(self, rows: Sequence[Sequence[str]]) -> None:
        for r in rows:
            for i, cell in enumerate(r):
                if i >= len(self._widths):
                    self._widths.append(6)
                self._widths[i] = max(self._widths[i], len(cell) + 3)

    def render_one(self, row: Sequence[str]) -> str:
        """A watch line, padded like the table printed before it (widths only grow)."""
        self._remember([row])
        return "".join(
            cell.ljust(self._widths[i]) if i < len(row) - 1 else cell
            for i, cell in enumerate(row)
        )


# ---------------------------------------------------------------------------- describe


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
                 f"{_int_or_string(p.http_get.port)}{p.http_get.path}"
    elif p.HasField("tcp_socket"):
        action = f"tcp-socket {p.tcp_socket.host}:{_int_or_string(p.tcp_socket.port)}"
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
        unavailable = _int_or_string(ru.max_unavailable) or "25%"
        surge = _int_or_string(ru.max_surge) or "25%"
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
    w.pair(0, "IP", _or_none(spec.cluster_ip))
    w.pair(0, "IPs", ",".join(spec.cluster_ips) or _or_none(spec.cluster_ip))
    if spec.external_ips:
        w.pair(0, "External IPs", ",".join(spec.external_ips))
    if spec.type == "ExternalName":
        w.pair(0, "External Name", spec.external_name)
    for p in spec.ports:
        protocol = p.protocol or "TCP"
        w.pair(0, "Port", f"{p.name or '<unset>'}  {p.port}/{protocol}")
        target = _int_or_string(p.target_port) or str(p.port)
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
    int_or_string = message_type is not None and message_type.full_name.endswith("IntOrString")
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
            if int_or_string:
                w.write(level + 1, _int_or_string(item))
            elif isinstance(item, Message):
                _describe_fields(w, level + 1, item)
            else:
                w.write(level + 1, _scalar_text(fd, item))
    elif int_or_string:
        w.pair(level, title, _int_or_string(value))
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
}


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
    if events is not None:
        describe_events(w, sorted(events, key=event_sort_key), now)
    return w.render()
