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
    DEFAULT_BIND_ALL_HOST_IP,
    SUCCESS,
    ClusterEvent,
    HostPort,
    HostPortInfo,
    NodeInfo,
    PodInfo,
    Status,
)

ERR_REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"


def declared_host_ports(pod: PodInfo) -> list[HostPort]:
    """The pod's hostPorts alone (not its containerPorts), sidecars' included."""
    spec = pod.pod.spec
    containers = [*spec.containers, *(c for c in spec.init_containers
                                      if c.HasField("restart_policy")
                                      and c.restart_policy == "Always")]
    return [HostPort(p.protocol or "TCP", p.host_ip or DEFAULT_BIND_ALL_HOST_IP, p.host_port)
            for c in containers for p in c.ports if p.host_port > 0]


def _has_pod_cidr(node_info: NodeInfo) -> bool:
    node = node_info.node
    return node is not None and bool(node.spec.pod_cidr or node.spec.pod_cidrs)


class NodePorts:
    name: ClassVar[str] = "NodePorts"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.ASSIGNED_POD_DELETE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        if _has_pod_cidr(node_info):
            wanted = declared_host_ports(pod)
            if not wanted:
                return SUCCESS
            used = HostPortInfo()
            for other in node_info.pods.values():
                for port in declared_host_ports(other):
                    used.add(port)
        else:
            wanted = list(pod.host_ports)
            used = node_info.used_ports
        if len(used) and any(used.conflicts(port) for port in wanted):
            return Status.unschedulable(ERR_REASON_PORTS)
        return SUCCESS
