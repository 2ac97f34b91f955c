"""Leases (coordination.k8s.io/v1): node heartbeats and leader election."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class LeaseStrategy(Strategy[v1.Lease]):
    def validate(self, obj: v1.Lease) -> Errors:
        from kubelite.api.validation.core import validate_lease
        return validate_lease(obj)
