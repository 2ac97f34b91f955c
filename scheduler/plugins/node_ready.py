"""NodeReady: only nodes whose Ready condition is True take new pods.

Upstream leaves this to the node lifecycle controller's not-ready taints; kubelite checks
the condition directly so a cluster without that controller still avoids dead nodes.
"""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import SUCCESS, ClusterEvent, NodeInfo, PodInfo, Status

ERR_REASON_NOT_READY = "node(s) were not ready"


def node_is_ready(node_info: NodeInfo) -> bool:
    return node_info.ready


class NodeReady:
    name: ClassVar[str] = "NodeReady"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if node_info.ready:
            return SUCCESS
        return Status.unschedulable(ERR_REASON_NOT_READY)
