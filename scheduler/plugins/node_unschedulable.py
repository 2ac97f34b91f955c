"""NodeUnschedulable: cordoned nodes (spec.unschedulable) take only pods that tolerate
node.kubernetes.io/unschedulable:NoSchedule."""

from __future__ import annotations

from typing import ClassVar

from kubelite.api.scheduling import tolerated
from protos.v1 import objects_pb2 as v1
from scheduler.framework import SUCCESS, ClusterEvent, NodeInfo, PodInfo, Status

ERR_REASON_UNSCHEDULABLE = "node(s) were unschedulable"
TAINT_NODE_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

_UNSCHEDULABLE_TAINT = v1.Taint(key=TAINT_NODE_UNSCHEDULABLE, effect="NoSchedule")


class NodeUnschedulable:
    name: ClassVar[str] = "NodeUnschedulable"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if not node_info.unschedulable:
            return SUCCESS
        if tolerated(pod.pod.spec.tolerations, _UNSCHEDULABLE_TAINT):
            return SUCCESS
        return Status.unresolvable(ERR_REASON_UNSCHEDULABLE)
