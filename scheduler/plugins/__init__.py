"""The in-tree plugins, one module each, and the registry that builds them by name."""

from __future__ import annotations

from scheduler.framework import Registry
from scheduler.plugins.node_affinity import NodeAffinity
from scheduler.plugins.node_name import NodeName
from scheduler.plugins.node_ports import NodePorts
from scheduler.plugins.node_ready import NodeReady
from scheduler.plugins.node_resources_balanced_allocation import NodeResourcesBalancedAllocation
from scheduler.plugins.node_resources_fit import NodeResourcesFit
from scheduler.plugins.node_resources_least_allocated import NodeResourcesLeastAllocated
from scheduler.plugins.node_unschedulable import NodeUnschedulable
from scheduler.plugins.taint_toleration import TaintToleration

IN_TREE: Registry = {
    plugin.name: plugin
    for plugin in (
        NodeAffinity,
        NodeName,
        NodePorts,
        NodeReady,
        NodeResourcesBalancedAllocation,
        NodeResourcesFit,
        NodeResourcesLeastAllocated,
        NodeUnschedulable,
        TaintToleration,
    )
}
"""Plugin name -> factory (the class; every in-tree plugin builds with no arguments)."""

__all__ = [
    "IN_TREE",
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "NodeReady",
    "NodeResourcesBalancedAllocation",
    "NodeResourcesFit",
    "NodeResourcesLeastAllocated",
    "NodeUnschedulable",
    "TaintToleration",
]
