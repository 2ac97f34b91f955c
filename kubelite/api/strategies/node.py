"""Nodes: the kubelet registers a node with its status, which create keeps."""

from __future__ import annotations

from kubelite.api import defaults
from kubelite.api.strategies.base import Strategy, selector_bool
from kubelite.api.validation.core import validate_node
from kubelite.api.validation.meta import Errors
from protos.v1 import objects_pb2 as v1


class NodeStrategy(Strategy[v1.Node]):
    def default(self, obj: v1.Node) -> None:
        defaults.default_node(obj)

    def prepare_for_create(self, obj: v1.Node) -> None:
        pass  # the kubelet registers its node with the status it observes

    def validate(self, obj: v1.Node) -> Errors:
        return validate_node(obj)

    def fields(self, obj: v1.Node) -> dict[str, str]:
        return {"spec.unschedulable": selector_bool(obj.spec.unschedulable)}
