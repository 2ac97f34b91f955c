"""NodeResourcesBalancedAllocation: favours nodes whose cpu and memory would be used in equal
proportions after placing the pod (upstream's BalancedAllocation)."""

from __future__ import annotations

import math
from typing import ClassVar

from scheduler.framework import CPU, MAX_NODE_SCORE, MEMORY, ClusterEvent, NodeInfo, PodInfo

DEFAULT_RESOURCES: tuple[str, ...] = (CPU, MEMORY)


def balanced_score(requested: list[int], allocatable: list[int]) -> int:
    """(1 - standard deviation of the requested/allocatable fractions) * 100."""
    fractions = [
        min(1.0, req / alloc) for req, alloc in zip(requested, allocatable, strict=True) if alloc
    ]
    std = 0.0
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


class NodeResourcesBalancedAllocation:
    name: ClassVar[str] = "NodeResourcesBalancedAllocation"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset()

    def __init__(self, resources: tuple[str, ...] = DEFAULT_RESOURCES) -> None:
        self.resources = resources

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        if self.resources is DEFAULT_RESOURCES:
            want_cpu, want_memory = pod.requests.milli_cpu, pod.requests.memory
            cpu, memory = node_info.allocatable.milli_cpu, node_info.allocatable.memory
            if (want_cpu or want_memory) and cpu and memory:
                # The default (cpu and memory), without the general loop: the standard
                # deviation of two fractions is half their difference.
                used = node_info.requested
                cpu_fraction = min(1.0, (used.milli_cpu + want_cpu) / cpu)
                memory_fraction = min(1.0, (used.memory + want_memory) / memory)
                return int((1 - abs((cpu_fraction - memory_fraction) / 2)) * MAX_NODE_SCORE)
        wants = [pod.requests.get(r) for r in self.resources]
        if not any(wants):
            # Best-effort pods are not scored: every node would look equally balanced for
            # them and they would pile up on one node (kubernetes#129138).
            return 0
        requested: list[int] = []
        allocatable: list[int] = []
        for resource, want in zip(self.resources, wants, strict=True):
            alloc = node_info.allocatable.get(resource)
            if alloc == 0 or (want == 0 and resource not in (CPU, MEMORY)):
                continue
            # Balance is judged on actual requests, not the non-zero defaults.
            requested.append(node_info.requested.get(resource) + want)
            allocatable.append(alloc)
        return balanced_score(requested, allocatable)
