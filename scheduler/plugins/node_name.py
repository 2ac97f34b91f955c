"""NodeName: a pod that names its node (spec.nodeName) fits only that node."""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import SKIP, SUCCESS, ClusterEvent, NodeInfo, PodInfo, Status

ERR_REASON_NODE_NAME = "node(s) didn't match the requested node name"


class NodeName:
    name: ClassVar[str] = "NodeName"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset({ClusterEvent.NODE_ADD})

    def pre_filter(self, pod: PodInfo) -> Status:
        return SUCCESS if pod.pod.spec.node_name else SKIP

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        wanted = pod.pod.spec.node_name
        if not wanted or wanted == node_info.name:
            return SUCCESS
        return Status.unresolvable(ERR_REASON_NODE_NAME)
