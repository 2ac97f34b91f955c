"""What ``klctl get`` prints: kubectl's columns per kind (and -o wide), pod status, ages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.quantity import is_valid_quantity, parse_quantity
from kubelite.api.registry import ResourceType
from kubelite.cli.printers.formats import (
    NONE,
    format_labels,
    format_selector,
    human_duration,
    node_roles,
    or_none,
    parse_timestamp,
    resource_name,
    since,
)
from kubelite.cli.printers.tabwriter import render_table
from protos.v1 import objects_pb2 as v1


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
        [or_none(pod.status.pod_ip), or_none(pod.spec.node_name),
         or_none(pod.status.nominated_node_name), gates],
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
        [svc.metadata.name, svc.spec.type or "ClusterIP", or_none(cluster_ip),
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



def _node_row(node: v1.Node, now: dt.datetime) -> tuple[Cells, Cells]:
    addresses = {a.type: a.address for a in node.status.addresses}
    info = node.status.node_info
    return (
        [node.metadata.name, node_status(node), node_roles(node), _age(node, now),
         info.kubelet_version],
        [or_none(addresses.get("InternalIP", "")), or_none(addresses.get("ExternalIP", "")),
         or_none(info.os_image), or_none(info.kernel_version),
         or_none(info.container_runtime_version)],
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


def _pv_row(pv: v1.PersistentVolume, now: dt.datetime) -> tuple[Cells, Cells]:
    spec = pv.spec
    storage = spec.capacity.get("storage", "")
    if is_valid_quantity(storage):
        storage = str(parse_quantity(storage))
    modes = ",".join(short for mode, short in _ACCESS_MODES.items() if mode in spec.access_modes)
    phase = "Terminating" if pv.metadata.deletion_timestamp else pv.status.phase
    claim = (f"{spec.claim_ref.namespace}/{spec.claim_ref.name}" if spec.HasField("claim_ref")
             else "")
    storage_class = pv.metadata.annotations.get("volume.beta.kubernetes.io/storage-class",
                                                spec.storage_class_name)
    return (
        [pv.metadata.name, storage, modes, spec.persistent_volume_reclaim_policy, phase, claim,
         storage_class, pv.status.reason, _age(pv, now)],
        [spec.volume_mode if spec.HasField("volume_mode") else "<unset>"],
    )


# ---------------------------------------------------------------------------- access and policy


_ZERO_TIME = "0001-01-01T00:00:00Z"


def created_at(obj: Message) -> str:
    """CREATED AT: the creation time in RFC 3339, UTC (kubectl's column for roles and limit
    ranges, which show no age)."""
    t = parse_timestamp(m.meta(obj).creation_timestamp)
    return m.format_time(t) if t is not None else _ZERO_TIME


def _created_row(obj: Message, now: dt.datetime) -> tuple[Cells, Cells]:
    return [m.meta(obj).name, created_at(obj)], []


def _service_account_row(sa: v1.ServiceAccount, now: dt.datetime) -> tuple[Cells, Cells]:
    return [sa.metadata.name, str(len(sa.secrets)), _age(sa, now)], []


def subjects_strings(subjects: Iterable[v1.Subject]) -> tuple[list[str], list[str], list[str]]:
    """(users, groups, ServiceAccounts as namespace/name) of a binding, in order."""
    users: list[str] = []
    groups: list[str] = []
    service_accounts: list[str] = []
    for subject in subjects:
        if subject.kind == "ServiceAccount":
            service_accounts.append(f"{subject.namespace}/{subject.name}")
        elif subject.kind == "User":
            users.append(subject.name)
        elif subject.kind == "Group":
            groups.append(subject.name)
    return users, groups, service_accounts


def _binding_row(binding: v1.RoleBinding | v1.ClusterRoleBinding, now: dt.datetime
                 ) -> tuple[Cells, Cells]:
    ref = binding.role_ref
    users, groups, service_accounts = subjects_strings(binding.subjects)
    return (
        [binding.metadata.name, f"{ref.kind}/{ref.name}", _age(binding, now)],
        [", ".join(users), ", ".join(groups), ", ".join(service_accounts)],
    )


def canonical_quantity(text: str) -> str:
    """A quantity as Kubernetes prints it (``1.5Gi`` -> ``1536Mi``); text that is no quantity
    as it is."""
    return str(parse_quantity(text)) if is_valid_quantity(text) else text


def _quota_row(quota: v1.ResourceQuota, now: dt.datetime) -> tuple[Cells, Cells]:
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(quota.status.hard):
        used = canonical_quantity(quota.status.used.get(name, "0"))
        hard = canonical_quantity(quota.status.hard[name])
        pieces = name.split(".")
        column = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        column.append(f"{name}: {used}/{hard}")
    return [quota.metadata.name, _age(quota, now), ", ".join(requests), ", ".join(limits)], []


def csr_condition(csr: v1.CertificateSigningRequest) -> str:
    """CONDITION: Denied, Approved or Pending, then Failed and Issued when they are so."""
    types = {c.type for c in csr.status.conditions}
    status = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        status += ",Failed"
    if csr.status.certificate:
        status += ",Issued"
    return status


def _csr_row(csr: v1.CertificateSigningRequest, now: dt.datetime) -> tuple[Cells, Cells]:
    spec = csr.spec
    duration = (human_duration(spec.expiration_seconds) if spec.HasField("expiration_seconds")
                else NONE)
    return [csr.metadata.name, _age(csr, now), or_none(spec.signer_name), spec.username,
            duration, csr_condition(csr)], []


def _generic_row(obj: Message, now: dt.datetime) -> tuple[Cells, Cells]:
    return [m.meta(obj).name, _age(obj, now)], []


_WORKLOAD_WIDE = ("CONTAINERS", "IMAGES", "SELECTOR")
_BINDING_WIDE = ("USERS", "GROUPS", "SERVICEACCOUNTS")

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
    "PersistentVolume": (("NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM",
                          "STORAGECLASS", "REASON", "AGE"), ("VOLUMEMODE",), _pv_row),
    "ServiceAccount": (("NAME", "SECRETS", "AGE"), (), _service_account_row),
    "Role": (("NAME", "CREATED AT"), (), _created_row),
    "ClusterRole": (("NAME", "CREATED AT"), (), _created_row),
    "RoleBinding": (("NAME", "ROLE", "AGE"), _BINDING_WIDE, _binding_row),
    "ClusterRoleBinding": (("NAME", "ROLE", "AGE"), _BINDING_WIDE, _binding_row),
    "ResourceQuota": (("NAME", "AGE", "REQUEST", "LIMIT"), (), _quota_row),
    "LimitRange": (("NAME", "CREATED AT"), (), _created_row),
    "CertificateSigningRequest": (("NAME", "AGE", "SIGNERNAME", "REQUESTOR",
                                   "REQUESTEDDURATION", "CONDITION"), (), _csr_row),
}



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

