"""Endpoints: the ready and not-ready addresses behind a Service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class EndpointsStrategy(Strategy[v1.Endpoints]):
    def default(self, obj: v1.Endpoints) -> None:
        defaults.default_endpoints(obj)

    def validate(self, obj: v1.Endpoints) -> Errors:
        from kubelite.api.validation.core import validate_endpoints
        return validate_endpoints(obj)
