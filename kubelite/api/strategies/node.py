"""Nodes: the kubelet registers a node with its status, which create keeps. podCIDR and
podCIDRs name the same blocks (either is filled from the other); they may be set once, by the
kubelet at registration or by the node IPAM controller, and never changed after."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.strategies.base import Strategy, selector_bool
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


def default_pod_cidrs(spec: v1.NodeSpec) -> None:
    """As Kubernetes' v1 conversion: podCIDRs from podCIDR when only that is set, podCIDR
    as podCIDRs[0] when only those are."""
    if spec.pod_cidr and not spec.pod_cidrs:
        spec.pod_cidrs.append(spec.pod_cidr)
    elif spec.pod_cidrs and not spec.pod_cidr:
        spec.pod_cidr = spec.pod_cidrs[0]


class NodeStrategy(Strategy[v1.Node]):
    def default(self, obj: v1.Node) -> None:
        defaults.default_node(obj)
        default_pod_cidrs(obj.spec)

    def prepare_for_create(self, obj: v1.Node) -> None:
        pass  # the kubelet registers its node with the status it observes

    def validate(self, obj: v1.Node) -> Errors:
        from kubelite.api.validation.core import validate_node
        return validate_node(obj)

    def validate_update(self, new: v1.Node, old: v1.Node) -> Errors:
        from kubelite.api.validation.core import validate_node_update
        return self.validate(new) + validate_node_update(new, old)

    def fields(self, obj: v1.Node) -> dict[str, str]:
        return {"spec.unschedulable": selector_bool(obj.spec.unschedulable)}
