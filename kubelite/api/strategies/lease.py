"""Leases (coordination.k8s.io/v1): node heartbeats and leader election."""

from __future__ import annotations

from kubelite.api.strategies.base import Strategy
from kubelite.api.validation.core import validate_lease
from kubelite.api.validation.meta import Errors
from protos.v1 import objects_pb2 as v1


class LeaseStrategy(Strategy[v1.Lease]):
    def validate(self, obj: v1.Lease) -> Errors:
        return validate_lease(obj)
