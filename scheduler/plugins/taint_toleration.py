"""TaintToleration: NoSchedule and NoExecute taints keep out pods that do not tolerate them;
fewer untolerated PreferNoSchedule taints score higher (upstream's TaintToleration)."""

from __future__ import annotations

from typing import ClassVar

from kubelite.api.scheduling import find_untolerated_taint, tolerated
from protos.v1 import objects_pb2 as v1
from scheduler.framework import (
    SUCCESS,
    ClusterEvent,
    NodeInfo,
    PodInfo,
    Status,
    default_normalize_score,
)

FILTERED_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_taint_reason(taint: v1.Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


class TaintToleration:
    name: ClassVar[str] = "TaintToleration"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        taints = node_info.no_schedule_taints
        if not taints:
            return SUCCESS
        taint = find_untolerated_taint(taints, pod.pod.spec.tolerations, FILTERED_EFFECTS)
        if taint is not None:
            return Status.unresolvable(untolerated_taint_reason(taint))
        return SUCCESS

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        """The number of PreferNoSchedule taints the pod does not tolerate (lower is better)."""
        taints = node_info.prefer_no_schedule_taints
        if not taints:
            return 0
        # Only tolerations that could apply to PreferNoSchedule taints count here.
        tolerations = [
            t for t in pod.pod.spec.tolerations if t.effect in ("", "PreferNoSchedule")
        ]
        return sum(1 for taint in taints if not tolerated(tolerations, taint))

    def normalize_scores(self, pod: PodInfo, scores: list[int]) -> None:
        default_normalize_score(scores, reverse=True)
