"""NodeResourcesFit: the pod's requests must fit in the node's allocatable minus what the pods
already on it request (upstream's noderesources.Fit filter)."""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import (
    CPU,
    EPHEMERAL_STORAGE,
    MEMORY,
    SUCCESS,
    ClusterEvent,
    NodeInfo,
    PodInfo,
    Status,
)

TOO_MANY_PODS = "Too many pods"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


class NodeResourcesFit:
    name: ClassVar[str] = "NodeResourcesFit"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE, ClusterEvent.ASSIGNED_POD_DELETE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        allocatable, requested, want = node_info.allocatable, node_info.requested, pod.requests
        if (
            len(node_info.pods) < allocatable.allowed_pod_number
            and want.milli_cpu <= allocatable.milli_cpu - requested.milli_cpu
            and want.memory <= allocatable.memory - requested.memory
            and want.ephemeral_storage <= allocatable.ephemeral_storage
            - requested.ephemeral_storage
            and not want.scalar
        ):
            return SUCCESS  # fits (the common case, checked without building reasons)
        reasons = insufficient_resources(pod, node_info)
        return Status.unschedulable(*reasons) if reasons else SUCCESS


def insufficient_resources(pod: PodInfo, node_info: NodeInfo) -> list[str]:
    """Every reason the pod does not fit, in upstream's order (pods, cpu, memory, ...)."""
    reasons: list[str] = []
    allocatable, requested, want = node_info.allocatable, node_info.requested, pod.requests
    if len(node_info.pods) + 1 > allocatable.allowed_pod_number:
        reasons.append(TOO_MANY_PODS)
    if want.is_empty():
        return reasons
    if want.milli_cpu > 0 and want.milli_cpu > allocatable.milli_cpu - requested.milli_cpu:
        reasons.append(insufficient(CPU))
    if want.memory > 0 and want.memory > allocatable.memory - requested.memory:
        reasons.append(insufficient(MEMORY))
    if (
        want.ephemeral_storage > 0
        and want.ephemeral_storage > allocatable.ephemeral_storage - requested.ephemeral_storage
    ):
        reasons.append(insufficient(EPHEMERAL_STORAGE))
    for name in sorted(want.scalar):
        amount = want.scalar[name]
        if amount > 0 and amount > allocatable.scalar.get(name, 0) - requested.scalar.get(name, 0):
            reasons.append(insufficient(name))
    return reasons
