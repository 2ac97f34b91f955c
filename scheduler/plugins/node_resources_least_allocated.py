"""NodeResourcesLeastAllocated: favours nodes with more of their cpu and memory unrequested
(upstream's NodeResourcesFit score with the LeastAllocated strategy)."""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import CPU, MAX_NODE_SCORE, MEMORY, ClusterEvent, NodeInfo, PodInfo

DEFAULT_RESOURCES: tuple[tuple[str, int], ...] = ((CPU, 1), (MEMORY, 1))


def least_requested_score(requested: int, capacity: int) -> int:
    """(capacity - requested) * 100 / capacity, 0 when over capacity (integer, as upstream)."""
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


class NodeResourcesLeastAllocated:
    name: ClassVar[str] = "NodeResourcesLeastAllocated"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset()

    def __init__(self, resources: tuple[tuple[str, int], ...] = DEFAULT_RESOURCES) -> None:
        self.resources = resources
        """(resource, weight) pairs; cpu and memory weigh 1 each by default."""

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        if self.resources is DEFAULT_RESOURCES:
            cpu, memory = node_info.allocatable.milli_cpu, node_info.allocatable.memory
            if cpu and memory:
                # The default (cpu and memory, weight 1 each), without the general loop.
                used = node_info.non_zero_requested
                return (least_requested_score(used.milli_cpu + pod.non_zero_milli_cpu, cpu)
                        + least_requested_score(used.memory + pod.non_zero_memory, memory)) // 2
        total = weight_sum = 0
        for resource, weight in self.resources:
            allocatable = node_info.allocatable.get(resource)
            if allocatable == 0:
                continue
            # Pods without requests count upstream's defaults (100m, 200Mi) here.
            if resource == CPU:
                requested = node_info.non_zero_requested.milli_cpu + pod.non_zero_milli_cpu
            elif resource == MEMORY:
                requested = node_info.non_zero_requested.memory + pod.non_zero_memory
            else:
                want = pod.requests.get(resource)
                if want == 0:
                    continue
                requested = node_info.requested.get(resource) + want
            total += least_requested_score(requested, allocatable) * weight
            weight_sum += weight
        return total // weight_sum if weight_sum else 0
