"""What an object counts against a ResourceQuota (Kubernetes' pkg/quota/v1/evaluator/core), shared
by the API server's ResourceQuota admission, which charges a new object's usage before storing
it, and the controller manager's quota controller, which recomputes usage from what exists.

Resource names are Kubernetes': ``pods``, ``services``, ``secrets``, ``configmaps``,
``resourcequotas``, ``services.nodeports``, ``services.loadbalancers``, ``count/<resource>``
(``count/<resource>.<group>`` outside the core group), and for pods ``cpu``/``memory``/
``ephemeral-storage`` (their requests), ``requests.<name>`` and ``limits.<name>``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.quantity import Quantity, format_quantity, parse_quantity
from kubelite.api.registry import ResourceType
from protos.v1 import objects_pb2 as v1

Usage = dict[str, Quantity]

COMPUTE = ("cpu", "memory", "ephemeral-storage")
"""Compute resources whose requests (``cpu`` or ``requests.cpu``) and limits
(``limits.cpu``) pods are charged for."""
REQUESTS_PREFIX = "requests."
LIMITS_PREFIX = "limits."
HUGEPAGES_PREFIX = "hugepages-"
SERVICES_NODE_PORTS = "services.nodeports"
SERVICES_LOAD_BALANCERS = "services.loadbalancers"

LEGACY_COUNTS = ("pods", "services", "secrets", "configmaps", "resourcequotas",
                 "persistentvolumeclaims", "replicationcontrollers")
"""Kinds whose object count also has a name of its own (``pods`` beside ``count/pods``)."""

CONSTRAINED = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu",
                         "limits.memory"})
"""When a quota limits one of these, every container must say it (Kubernetes kept this rule
for backward compatibility; it holds for nothing else)."""

SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass",
          "CrossNamespacePodAffinity")


def object_count_name(rtype: ResourceType) -> str:
    """``count/pods``, ``count/deployments.apps``."""
    return f"count/{rtype.plural}.{rtype.group}" if rtype.group else f"count/{rtype.plural}"


def tracks(rtype: ResourceType, name: str) -> bool:
    """Whether objects of ``rtype`` use the quota resource ``name``."""
    if name == object_count_name(rtype):
        return True
    if rtype.kind == "Pod":
        return (
            name == "pods" or name in COMPUTE or name.startswith(REQUESTS_PREFIX)
            or name.startswith(HUGEPAGES_PREFIX)
            or name in (LIMITS_PREFIX + c for c in COMPUTE)
        )
    if rtype.kind == "Service":
        return name in ("services", SERVICES_NODE_PORTS, SERVICES_LOAD_BALANCERS)
    return not rtype.group and name == rtype.plural and name in LEGACY_COUNTS


def matching(rtype: ResourceType, names: Iterable[str]) -> list[str]:
    """The quota resources among ``names`` that objects of ``rtype`` use, sorted."""
    return sorted(n for n in set(names) if tracks(rtype, n))


def counts_against_quota(pod: v1.Pod, now: dt.datetime | None = None) -> bool:
    """A pod uses compute quota until it finishes or outlives its deletion grace period (a pod
    stuck terminating on a lost node must not keep its owner from replacing it)."""
    if podutil.is_terminal(pod):
        return False
    meta = pod.metadata
    if meta.deletion_timestamp and meta.HasField("deletion_grace_period_seconds"):
        deadline = m.parse_time(meta.deletion_timestamp) + dt.timedelta(
            seconds=meta.deletion_grace_period_seconds
        )
        if (now or m.now()) > deadline:
            return False
    return True


def _container_list(container: v1.Container, which: str) -> Usage:
    values = getattr(container.resources, which)
    return {name: parse_quantity(text) for name, text in values.items()}


def pod_total(spec: v1.PodSpec, which: str) -> Usage:
    """Kubernetes' PodRequests/PodLimits of ``which`` (requests or limits)."""
    return podutil.effective_total(spec, lambda c: _container_list(c, which))


def _compute_usage(requests: Usage, limits: Usage) -> Usage:
    """podComputeUsageHelper: one pod, its requests under two names, its limits."""
    result: Usage = {"pods": Quantity.from_int(1)}
    for name in COMPUTE:
        if name in requests:
            result[name] = requests[name]
            result[REQUESTS_PREFIX + name] = requests[name]
        if name in limits:
            result[LIMITS_PREFIX + name] = limits[name]
    for name, q in requests.items():
        if name.startswith(HUGEPAGES_PREFIX):
            result[name] = q
            result[REQUESTS_PREFIX + name] = q
        elif "/" in name and not name.startswith("kubernetes.io/"):
            # An extended resource (example.com/gpu): quotas name it requests.<name> only.
            result[REQUESTS_PREFIX + name] = q
    return result


def pod_usage(pod: v1.Pod, now: dt.datetime | None = None) -> Usage:
    """count/pods for every pod in storage; the rest only while it counts_against_quota."""
    result: Usage = {"count/pods": Quantity.from_int(1)}
    if not counts_against_quota(pod, now):
        return result
    result.update(_compute_usage(pod_total(pod.spec, "requests"), pod_total(pod.spec, "limits")))
    return result


def service_usage(service: v1.Service) -> Usage:
    result: Usage = {"services": Quantity.from_int(1), "count/services": Quantity.from_int(1)}
    ports = len(service.spec.ports)
    if service.spec.type == "LoadBalancer":
        result[SERVICES_LOAD_BALANCERS] = Quantity.from_int(1)
        if service.spec.HasField("allocate_load_balancer_node_ports") and (
            not service.spec.allocate_load_balancer_node_ports
        ):
            ports = sum(1 for p in service.spec.ports if p.node_port)
        result[SERVICES_NODE_PORTS] = Quantity.from_int(ports)
    elif service.spec.type == "NodePort":
        result[SERVICES_NODE_PORTS] = Quantity.from_int(ports)
    return result


def usage(rtype: ResourceType, obj: Message, now: dt.datetime | None = None) -> Usage:
    """Everything ``obj`` uses, by quota resource name."""
    if isinstance(obj, v1.Pod):
        return pod_usage(obj, now)
    if isinstance(obj, v1.Service):
        return service_usage(obj)
    result = {object_count_name(rtype): Quantity.from_int(1)}
    if tracks(rtype, rtype.plural):
        result[rtype.plural] = Quantity.from_int(1)
    return result


def _pod_cross_namespace_affinity(pod: v1.Pod) -> bool:
    affinity = pod.spec.affinity
    terms = [
        *affinity.pod_affinity.required_during_scheduling_ignored_during_execution,
        *affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution,
        *(w.pod_affinity_term for w in
          affinity.pod_affinity.preferred_during_scheduling_ignored_during_execution),
        *(w.pod_affinity_term for w in
          affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution),
    ]
    return any(t.namespaces or t.HasField("namespace_selector") for t in terms)


_POD_SCOPES: dict[str, Callable[[v1.Pod], bool]] = {
    "Terminating": lambda p: p.spec.HasField("active_deadline_seconds")
    and p.spec.active_deadline_seconds >= 0,
    "NotTerminating": lambda p: not p.spec.HasField("active_deadline_seconds")
    or p.spec.active_deadline_seconds < 0,
    "BestEffort": lambda p: podutil.qos_class(p) == "BestEffort",
    "NotBestEffort": lambda p: podutil.qos_class(p) != "BestEffort",
    "PriorityClass": lambda p: bool(p.spec.priority_class_name),
    "CrossNamespacePodAffinity": _pod_cross_namespace_affinity,
}


def matches_scopes(scopes: Iterable[str], obj: Message) -> bool:
    """A quota with scopes covers only the pods in all of them (and no other kind)."""
    scopes = list(scopes)
    if not scopes:
        return True
    if not isinstance(obj, v1.Pod):
        return False
    return all(scope in _POD_SCOPES and _POD_SCOPES[scope](obj) for scope in scopes)


def pod_constraints(required: Iterable[str], pod: v1.Pod) -> str:
    """The reason ``pod`` may not be charged to a quota limiting ``required`` ("" if it may):
    each container (init containers too) must state every limited cpu/memory request and
    limit, in Kubernetes' words (``must specify limits.cpu for: app; memory for: app``)."""
    wanted = CONSTRAINED.intersection(required)
    if not wanted:
        return ""
    missing: dict[str, list[str]] = {}
    for container in (*pod.spec.containers, *pod.spec.init_containers):
        has = _compute_usage(
            _container_list(container, "requests"), _container_list(container, "limits")
        )
        for name in sorted(wanted - set(has)):
            missing.setdefault(name, []).append(container.name)
    if not missing:
        return ""
    parts = [f"{name} for: {','.join(sorted(set(names)))}"
             for name, names in sorted(missing.items())]
    return "must specify " + "; ".join(parts)


def parse_list(values: Mapping[str, str]) -> Usage:
    """A ResourceList (name -> quantity text) as quantities; ValueError names the bad one."""
    result: Usage = {}
    for name, text in values.items():
        try:
            result[name] = parse_quantity(text)
        except ValueError as e:
            raise ValueError(f"{name}: {text!r}: {e}") from None
    return result


def format_list(values: Mapping[str, Quantity]) -> dict[str, str]:
    return {name: format_quantity(q) for name, q in values.items()}


def add(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> Usage:
    result = dict(a)
    for name, q in b.items():
        result[name] = result[name] + q if name in result else q
    return result


def mask(values: Mapping[str, Quantity], names: Iterable[str]) -> Usage:
    wanted = set(names)
    return {name: q for name, q in values.items() if name in wanted}


def exceeded(used: Mapping[str, Quantity], hard: Mapping[str, Quantity]) -> list[str]:
    """The names whose ``used`` is above ``hard`` (names without a hard limit are not)."""
    return sorted(n for n, q in used.items() if n in hard and hard[n] < q)


def pretty(values: Mapping[str, Quantity]) -> str:
    """``limits.cpu=2,pods=1``, as Kubernetes prints resource lists in quota errors."""
    return ",".join(f"{name}={format_quantity(values[name])}" for name in sorted(values))


def same(a: Mapping[str, Quantity], b: Mapping[str, Quantity]) -> bool:
    """Equal as quantities (``1000m`` is ``1``)."""
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a)
