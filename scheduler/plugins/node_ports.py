"""NodePorts: a pod's host ports must be free on the node.

As in Kubernetes, only hostPorts are host ports on a node whose pods have IPs of their own:
one with a podCIDR, where the kubelet gives each pod its own (loopback) address. On a node
without one, kubelite's process runtime gives pods the node's IP, so a containerPort is bound
on the node too and two pods listening on containerPort 8080 cannot share it: there PodInfo's
host ports (which count containerPorts, see PodInfo.of) apply.
"""

from __future__ import annotations

from typing import ClassVar

from scheduler.framework import (
    SKIP,
    SUCCESS,
    ClusterEvent,
    NodeInfo,
    PodInfo,
    Status,
)

ERR_REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"


class NodePorts:
    name: ClassVar[str] = "NodePorts"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.ASSIGNED_POD_DELETE}
    )

    def pre_filter(self, pod: PodInfo) -> Status:
        # Its hostPorts are among these: a pod holding no port fits every node.
        return SUCCESS if pod.host_ports else SKIP

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if node_info.has_pod_cidr:
            wanted, used = pod.declared_host_ports, node_info.used_declared_ports
        else:
            wanted, used = pod.host_ports, node_info.used_ports
        if wanted and len(used) and any(used.conflicts(port) for port in wanted):
            return Status.unschedulable(ERR_REASON_PORTS)
        return SUCCESS
