"""Pod facts every component agrees on: conditions, readiness, phase, resource requests."""

from __future__ import annotations

from collections.abc import Callable

from kubelite.api import meta as m
from kubelite.api.quantity import Quantity, parse_quantity
from protos.v1 import objects_pb2 as v1

TERMINAL_PHASES = ("Succeeded", "Failed")


def get_condition(pod: v1.Pod, type_: str) -> v1.PodCondition | None:
    for condition in pod.status.conditions:
        if condition.type == type_:
            return condition
    return None


def set_condition(
    pod: v1.Pod, type_: str, status: str, reason: str = "", message: str = ""
) -> bool:
    """Sets a pod condition; lastTransitionTime moves only when the status changes.

    Returns whether anything changed.
    """
    condition = get_condition(pod, type_)
    if condition is None:
        pod.status.conditions.add(
            type=type_, status=status, reason=reason, message=message,
            last_transition_time=m.now_rfc3339(),
        )
        return True
    changed = (condition.status, condition.reason, condition.message) != (status, reason, message)
    if condition.status != status:
        condition.last_transition_time = m.now_rfc3339()
    condition.status, condition.reason, condition.message = status, reason, message
    return changed


def is_ready(pod: v1.Pod) -> bool:
    condition = get_condition(pod, "Ready")
    return condition is not None and condition.status == "True"


def is_terminal(pod: v1.Pod) -> bool:
    return pod.status.phase in TERMINAL_PHASES


def is_active(pod: v1.Pod) -> bool:
    """Counts toward a controller's replicas: not finished and not being deleted."""
    return not is_terminal(pod) and not pod.metadata.deletion_timestamp


def _container_requests(container: v1.Container) -> dict[str, Quantity]:
    # As Kubernetes: a limit without a request counts as the request.
    result = {name: parse_quantity(value) for name, value in container.resources.limits.items()}
    result.update(
        {name: parse_quantity(value) for name, value in container.resources.requests.items()}
    )
    return result


def pod_requests(pod: v1.Pod | v1.PodSpec) -> dict[str, Quantity]:
    """What a pod asks of a node: the larger of the sum over its containers (plus sidecar
    init containers) and the largest regular init container, per resource (Kubernetes'
    effective request)."""
    spec = pod.spec if isinstance(pod, v1.Pod) else pod
    return effective_total(spec, _container_requests)


def effective_total(
    spec: v1.PodSpec, per_container: Callable[[v1.Container], dict[str, Quantity]]
) -> dict[str, Quantity]:
    """Kubernetes' PodRequests/PodLimits over ``per_container``'s amounts: the larger of the
    regular containers plus sidecars and the largest regular init container (beside the
    sidecars started before it), per resource."""
    total: dict[str, Quantity] = {}
    for container in spec.containers:
        for name, q in per_container(container).items():
            total[name] = total.get(name, Quantity.zero()) + q
    init_max: dict[str, Quantity] = {}
    sidecars: dict[str, Quantity] = {}
    for container in spec.init_containers:
        amounts = per_container(container)
        if container.HasField("restart_policy") and container.restart_policy == "Always":
            for name, q in amounts.items():
                sidecars[name] = sidecars.get(name, Quantity.zero()) + q
                total[name] = total.get(name, Quantity.zero()) + q
            continue
        for name, q in amounts.items():
            # A regular init container runs beside the sidecars started before it.
            with_sidecars = q + sidecars.get(name, Quantity.zero())
            if name not in init_max or init_max[name] < with_sidecars:
                init_max[name] = with_sidecars
    for name, q in init_max.items():
        if name not in total or total[name] < q:
            total[name] = q
    return total


def qos_class(pod: v1.Pod) -> str:
    """Guaranteed, Burstable or BestEffort, by Kubernetes' rules on cpu and memory."""
    containers = [*pod.spec.init_containers, *pod.spec.containers]
    requests_seen = limits_seen = False
    guaranteed = True
    for c in containers:
        requests = {k: v for k, v in c.resources.requests.items() if k in ("cpu", "memory")}
        limits = {k: v for k, v in c.resources.limits.items() if k in ("cpu", "memory")}
        requests_seen = requests_seen or any(
            not parse_quantity(v).is_zero() for v in requests.values()
        )
        limits_seen = limits_seen or any(not parse_quantity(v).is_zero() for v in limits.values())
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
            continue
        for name, value in requests.items():
            if parse_quantity(value) != parse_quantity(limits[name]):
                guaranteed = False
    if not requests_seen and not limits_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed and limits_seen else "Burstable"
