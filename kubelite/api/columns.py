"""The columns ``kubectl get`` shows for each kind and the cells of an object's row.

Column names, types, priorities and cell formats follow Kubernetes' printers
(``pkg/printers/internalversion/printers.go``), which the API server uses for its Table
responses and kubectl for its output: both klctl's tables and the HTTP API's
``meta.k8s.io/v1`` Tables are built from here, so they print alike. Columns of priority 1
are the ones ``-o wide`` adds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.cells import (
    NONE,
    format_labels,
    format_selector,
    human_duration,
    node_roles,
    or_none,
    parse_timestamp,
    since,
)
from kubelite.api.quantity import is_valid_quantity, parse_quantity
from protos.v1 import objects_pb2 as v1


@dataclass(frozen=True)
class Column:
    """One column, as upstream's metav1.TableColumnDefinition describes it."""

    name: str
    """As upstream names it (``Nominated Node``); kubectl prints it in capitals."""
    type: str = "string"
    """The cells' OpenAPI type: ``string``, ``integer``, ``boolean``, ``number`` or ``date``."""
    format: str = ""
    """``name`` for the column holding the object's name."""
    priority: int = 0
    """0 for the columns always shown, 1 for those ``-o wide`` adds."""
    description: str = ""

    @property
    def header(self) -> str:
        return self.name.upper()


Cells = list[str]
RowFunc = Callable[[Any, dt.datetime], Cells]
"""The cells of an object's row, one per column of its kind, in the columns' order."""


def _containers(spec: v1.PodSpec) -> tuple[str, str]:
    names = ",".join(c.name for c in spec.containers)
    images = ",".join(c.image for c in spec.containers)
    return names, images


def _selector(spec: Any) -> str:
    """The SELECTOR cell of a workload whose spec has a ``selector``."""
    return format_selector(spec.selector if spec.HasField("selector") else None)


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

def _age(obj: Message, now: dt.datetime) -> str:
    return since(m.meta(obj).creation_timestamp, now)


def _pod_row(pod: v1.Pod, now: dt.datetime) -> Cells:
    ready, status, restarts = pod_status(pod, now)
    gates = NONE
    if pod.spec.readiness_gates:
        true = sum(
            1 for g in pod.spec.readiness_gates if _pod_condition_true(pod, g.condition_type)
        )
        gates = f"{true}/{len(pod.spec.readiness_gates)}"
    return [pod.metadata.name, ready, status, restarts, _age(pod, now),
            or_none(pod.status.pod_ip), or_none(pod.spec.node_name),
            or_none(pod.status.nominated_node_name), gates]


def _deployment_row(d: v1.Deployment, now: dt.datetime) -> Cells:
    desired = d.spec.replicas if d.spec.HasField("replicas") else 1
    names, images = _containers(d.spec.template.spec)
    return [d.metadata.name, f"{d.status.ready_replicas}/{desired}",
            str(d.status.updated_replicas), str(d.status.available_replicas), _age(d, now),
            names, images, _selector(d.spec)]


def _replicaset_row(rs: v1.ReplicaSet, now: dt.datetime) -> Cells:
    desired = rs.spec.replicas if rs.spec.HasField("replicas") else 1
    names, images = _containers(rs.spec.template.spec)
    return [rs.metadata.name, str(desired), str(rs.status.replicas),
            str(rs.status.ready_replicas), _age(rs, now), names, images, _selector(rs.spec)]


def _daemonset_row(ds: v1.DaemonSet, now: dt.datetime) -> Cells:
    s = ds.status
    names, images = _containers(ds.spec.template.spec)
    return [ds.metadata.name, str(s.desired_number_scheduled), str(s.current_number_scheduled),
            str(s.number_ready), str(s.updated_number_scheduled), str(s.number_available),
            format_labels(ds.spec.template.spec.node_selector), _age(ds, now),
            names, images, _selector(ds.spec)]


def _statefulset_row(sts: v1.StatefulSet, now: dt.datetime) -> Cells:
    desired = sts.spec.replicas if sts.spec.HasField("replicas") else 1
    names, images = _containers(sts.spec.template.spec)
    return [sts.metadata.name, f"{sts.status.ready_replicas}/{desired}", _age(sts, now),
            names, images]


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


def _job_row(job: v1.Job, now: dt.datetime) -> Cells:
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
    return [job.metadata.name, job_status(job), completions, duration, _age(job, now),
            names, images, _selector(spec)]


def _cronjob_row(cj: v1.CronJob, now: dt.datetime) -> Cells:
    spec = cj.spec
    tz = spec.time_zone if spec.HasField("time_zone") else NONE
    suspend = "True" if spec.HasField("suspend") and spec.suspend else "False"
    last = since(cj.status.last_schedule_time, now) if cj.status.last_schedule_time else NONE
    names, images = _containers(spec.job_template.spec.template.spec)
    return [cj.metadata.name, spec.schedule, tz, suspend, str(len(cj.status.active)), last,
            _age(cj, now), names, images, _selector(spec.job_template.spec)]


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


def _service_row(svc: v1.Service, now: dt.datetime) -> Cells:
    cluster_ip = svc.spec.cluster_ips[0] if svc.spec.cluster_ips else svc.spec.cluster_ip
    return [svc.metadata.name, svc.spec.type or "ClusterIP", or_none(cluster_ip),
            _external_ip(svc), _service_ports(svc), _age(svc, now),
            format_labels(svc.spec.selector)]


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


def _endpoints_row(ep: v1.Endpoints, now: dt.datetime) -> Cells:
    return [ep.metadata.name, format_endpoints(ep), _age(ep, now)]


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


def _node_row(node: v1.Node, now: dt.datetime) -> Cells:
    addresses = {a.type: a.address for a in node.status.addresses}
    info = node.status.node_info
    return [node.metadata.name, node_status(node), node_roles(node), _age(node, now),
            info.kubelet_version,
            or_none(addresses.get("InternalIP", "")), or_none(addresses.get("ExternalIP", "")),
            or_none(info.os_image), or_none(info.kernel_version),
            or_none(info.container_runtime_version)]


def _namespace_row(ns: v1.Namespace, now: dt.datetime) -> Cells:
    return [ns.metadata.name, ns.status.phase, _age(ns, now)]


def _configmap_row(cm: v1.ConfigMap, now: dt.datetime) -> Cells:
    return [cm.metadata.name, str(len(cm.data) + len(cm.binary_data)), _age(cm, now)]


def _secret_row(s: v1.Secret, now: dt.datetime) -> Cells:
    return [s.metadata.name, s.type or "Opaque", str(len(s.data)), _age(s, now)]


def _event_row(e: v1.Event, now: dt.datetime) -> Cells:
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
    return [last, e.type, e.reason, target, ref.field_path, source, e.message.strip(), first,
            str(count), e.metadata.name]


def _lease_row(lease: v1.Lease, now: dt.datetime) -> Cells:
    holder = lease.spec.holder_identity if lease.spec.HasField("holder_identity") else ""
    return [lease.metadata.name, holder, _age(lease, now)]


def _pvc_row(pvc: v1.PersistentVolumeClaim, now: dt.datetime) -> Cells:
    spec = pvc.spec
    capacity = pvc.status.capacity.get("storage", "")
    modes = ",".join(_ACCESS_MODES.get(x, x) for x in pvc.status.access_modes)
    storage_class = spec.storage_class_name if spec.HasField("storage_class_name") else ""
    return [pvc.metadata.name, pvc.status.phase, spec.volume_name, capacity, modes,
            storage_class, _age(pvc, now),
            spec.volume_mode if spec.HasField("volume_mode") else ""]


_ACCESS_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                 "ReadWriteOncePod": "RWOP"}


def _pv_row(pv: v1.PersistentVolume, now: dt.datetime) -> Cells:
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
    return [pv.metadata.name, storage, modes, spec.persistent_volume_reclaim_policy, phase,
            claim, storage_class, pv.status.reason, _age(pv, now),
            spec.volume_mode if spec.HasField("volume_mode") else "<unset>"]


# ---------------------------------------------------------------------------- access and policy


_ZERO_TIME = "0001-01-01T00:00:00Z"


def created_at(obj: Message) -> str:
    """CREATED AT: the creation time in RFC 3339, UTC (kubectl's column for roles and limit
    ranges, which show no age)."""
    t = parse_timestamp(m.meta(obj).creation_timestamp)
    return m.format_time(t) if t is not None else _ZERO_TIME


def _created_row(obj: Message, now: dt.datetime) -> Cells:
    return [m.meta(obj).name, created_at(obj)]


def _service_account_row(sa: v1.ServiceAccount, now: dt.datetime) -> Cells:
    return [sa.metadata.name, str(len(sa.secrets)), _age(sa, now)]


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


def _binding_row(binding: v1.RoleBinding | v1.ClusterRoleBinding, now: dt.datetime) -> Cells:
    ref = binding.role_ref
    users, groups, service_accounts = subjects_strings(binding.subjects)
    return [binding.metadata.name, f"{ref.kind}/{ref.name}", _age(binding, now),
            ", ".join(users), ", ".join(groups), ", ".join(service_accounts)]


def canonical_quantity(text: str) -> str:
    """A quantity as Kubernetes prints it (``1.5Gi`` -> ``1536Mi``); text that is no quantity
    as it is."""
    return str(parse_quantity(text)) if is_valid_quantity(text) else text


def _quota_row(quota: v1.ResourceQuota, now: dt.datetime) -> Cells:
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(quota.status.hard):
        used = canonical_quantity(quota.status.used.get(name, "0"))
        hard = canonical_quantity(quota.status.hard[name])
        pieces = name.split(".")
        column = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        column.append(f"{name}: {used}/{hard}")
    return [quota.metadata.name, _age(quota, now), ", ".join(requests), ", ".join(limits)]


def csr_condition(csr: v1.CertificateSigningRequest) -> str:
    """CONDITION: Denied, Approved or Pending, then Failed and Issued when they are so."""
    types = {c.type for c in csr.status.conditions}
    status = "Denied" if "Denied" in types else "Approved" if "Approved" in types else "Pending"
    if "Failed" in types:
        status += ",Failed"
    if csr.status.certificate:
        status += ",Issued"
    return status


def _csr_row(csr: v1.CertificateSigningRequest, now: dt.datetime) -> Cells:
    spec = csr.spec
    duration = (human_duration(spec.expiration_seconds) if spec.HasField("expiration_seconds")
                else NONE)
    return [csr.metadata.name, _age(csr, now), or_none(spec.signer_name), spec.username,
            duration, csr_condition(csr)]


def _generic_row(obj: Message, now: dt.datetime) -> Cells:
    return [m.meta(obj).name, _age(obj, now)]


# ---------------------------------------------------------------------------- columns per kind

_NAME = Column("Name", format="name", description="The object's name, unique in its namespace.")
_AGE = Column("Age", description="How long ago the object was created.")
_CREATED_AT = Column("Created At", type="date", description="When the object was created.")


def _wide(name: str, description: str = "") -> Column:
    return Column(name, priority=1, description=description)


_WORKLOAD_WIDE = (
    _wide("Containers", "Names of each container in the template."),
    _wide("Images", "Images referenced by each container in the template."),
    _wide("Selector", "The label selector of the pods."),
)
_BINDING_WIDE = (_wide("Users"), _wide("Groups"), _wide("ServiceAccounts"))


@dataclass(frozen=True)
class KindColumns:
    columns: tuple[Column, ...]
    """Every column, in the order kubectl prints them (wide ones included)."""
    row: RowFunc


COLUMNS: dict[str, KindColumns] = {
    "Pod": KindColumns((
        _NAME, Column("Ready"), Column("Status"), Column("Restarts"), _AGE,
        _wide("IP"), _wide("Node"), _wide("Nominated Node"), _wide("Readiness Gates"),
    ), _pod_row),
    "Deployment": KindColumns((
        _NAME, Column("Ready"), Column("Up-to-date"), Column("Available"), _AGE,
        *_WORKLOAD_WIDE,
    ), _deployment_row),
    "ReplicaSet": KindColumns((
        _NAME, Column("Desired", "integer"), Column("Current", "integer"),
        Column("Ready", "integer"), _AGE, *_WORKLOAD_WIDE,
    ), _replicaset_row),
    "DaemonSet": KindColumns((
        _NAME, Column("Desired", "integer"), Column("Current", "integer"),
        Column("Ready", "integer"), Column("Up-to-date", "integer"),
        Column("Available", "integer"), Column("Node Selector"), _AGE, *_WORKLOAD_WIDE,
    ), _daemonset_row),
    "StatefulSet": KindColumns((
        _NAME, Column("Ready"), _AGE, *_WORKLOAD_WIDE[:2],
    ), _statefulset_row),
    "Job": KindColumns((
        _NAME, Column("Status"), Column("Completions"), Column("Duration"), _AGE,
        *_WORKLOAD_WIDE,
    ), _job_row),
    "CronJob": KindColumns((
        _NAME, Column("Schedule"), Column("Timezone"), Column("Suspend", "boolean"),
        Column("Active", "integer"), Column("Last Schedule"), _AGE, *_WORKLOAD_WIDE,
    ), _cronjob_row),
    "Service": KindColumns((
        _NAME, Column("Type"), Column("Cluster-IP"), Column("External-IP"), Column("Port(s)"),
        _AGE, _wide("Selector"),
    ), _service_row),
    "Endpoints": KindColumns((_NAME, Column("Endpoints"), _AGE), _endpoints_row),
    "Node": KindColumns((
        _NAME, Column("Status"), Column("Roles"), _AGE, Column("Version"),
        _wide("Internal-IP"), _wide("External-IP"), _wide("OS-Image"), _wide("Kernel-Version"),
        _wide("Container-Runtime"),
    ), _node_row),
    "Namespace": KindColumns((_NAME, Column("Status"), _AGE), _namespace_row),
    "ConfigMap": KindColumns((_NAME, Column("Data"), _AGE), _configmap_row),
    "Secret": KindColumns((_NAME, Column("Type"), Column("Data"), _AGE), _secret_row),
    "Event": KindColumns((
        Column("Last Seen"), Column("Type"), Column("Reason"), Column("Object"),
        _wide("Subobject"), _wide("Source"), Column("Message"), _wide("First Seen"),
        _wide("Count"), Column("Name", format="name", priority=1),
    ), _event_row),
    "Lease": KindColumns((_NAME, Column("Holder"), _AGE), _lease_row),
    "PersistentVolumeClaim": KindColumns((
        _NAME, Column("Status"), Column("Volume"), Column("Capacity"), Column("Access Modes"),
        Column("StorageClass"), _AGE, _wide("VolumeMode"),
    ), _pvc_row),
    "PersistentVolume": KindColumns((
        _NAME, Column("Capacity"), Column("Access Modes"), Column("Reclaim Policy"),
        Column("Status"), Column("Claim"), Column("StorageClass"), Column("Reason"), _AGE,
        _wide("VolumeMode"),
    ), _pv_row),
    "ServiceAccount": KindColumns((_NAME, Column("Secrets"), _AGE), _service_account_row),
    "Role": KindColumns((_NAME, _CREATED_AT), _created_row),
    "ClusterRole": KindColumns((_NAME, _CREATED_AT), _created_row),
    "RoleBinding": KindColumns((_NAME, Column("Role"), _AGE, *_BINDING_WIDE), _binding_row),
    "ClusterRoleBinding": KindColumns((_NAME, Column("Role"), _AGE, *_BINDING_WIDE),
                                      _binding_row),
    "ResourceQuota": KindColumns((_NAME, _AGE, Column("Request"), Column("Limit")), _quota_row),
    "LimitRange": KindColumns((_NAME, _CREATED_AT), _created_row),
    "CertificateSigningRequest": KindColumns((
        _NAME, _AGE, Column("SignerName"), Column("Requestor"), Column("RequestedDuration"),
        Column("Condition"),
    ), _csr_row),
}
"""Each kind's columns and row, by kind."""

GENERIC = KindColumns((_NAME, _AGE), _generic_row)
"""What a kind without columns of its own shows."""


def columns_for(kind: str) -> KindColumns:
    return COLUMNS.get(kind, GENERIC)
