"""NodePorts: a pod's host ports must be free on the node.

In kubelite's process runtime pods share their node's network, so a containerPort is bound
on the node too: two pods listening on containerPort 8080 cannot share a node. PodInfo
counts containerPorts as host ports for that reason (PodInfo.of).
"""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import SUCCESS, ClusterEvent, NodeInfo, PodInfo, Status

ERR_REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"


class NodePorts:
    name: ClassVar[str] = "NodePorts"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.ASSIGNED_POD_DELETE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        used = node_info.used_ports
        if len(used) and any(used.conflicts(port) for port in pod.host_ports):
            return Status.unschedulable(ERR_REASON_PORTS)
        return SUCCESS
