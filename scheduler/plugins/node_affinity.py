"""NodeAffinity: spec.nodeSelector and required node affinity filter nodes; preferred terms
score them by the summed weights of the terms a node matches (upstream's NodeAffinity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from kubelite.api.scheduling import required_node_affinity_matches, term_matches
from scheduler.framework import (
    SKIP,
    SUCCESS,
    ClusterEvent,
    NodeInfo,
    PodInfo,
    Status,
    default_normalize_score,
)

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"


class NodeAffinity:
    name: ClassVar[str] = "NodeAffinity"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}
    )

    def pre_filter(self, pod: PodInfo) -> Status:
        spec = pod.pod.spec
        if spec.node_selector or (
            spec.affinity.HasField("node_affinity")
            and spec.affinity.node_affinity.HasField(
                "required_during_scheduling_ignored_during_execution")
        ):
            return SUCCESS
        return SKIP

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        node = node_info.node
        if node is None or not required_node_affinity_matches(pod.pod.spec, node):
            return Status.unresolvable(ERR_REASON_POD)
        return SUCCESS

    def pre_score(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        affinity = pod.pod.spec.affinity.node_affinity
        if affinity.preferred_during_scheduling_ignored_during_execution:
            return SUCCESS
        return SKIP

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        node = node_info.node
        if node is None:
            return 0
        affinity = pod.pod.spec.affinity.node_affinity
        preferred = affinity.preferred_during_scheduling_ignored_during_execution
        return sum(
            term.weight for term in preferred
            if term.weight and term_matches(term.preference, node)
        )

    def normalize_scores(self, pod: PodInfo, scores: list[int]) -> None:
        default_normalize_score(scores, reverse=False)
