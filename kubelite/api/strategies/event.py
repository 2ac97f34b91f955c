"""Events (the API server stores each with a lease, so that it expires)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class EventStrategy(Strategy[v1.Event]):
    def validate(self, obj: v1.Event) -> Errors:
        from kubelite.api.validation.core import validate_event
        return validate_event(obj)

    def fields(self, obj: v1.Event) -> dict[str, str]:
        ref = obj.involved_object
        return {
            "involvedObject.kind": ref.kind,
            "involvedObject.namespace": ref.namespace,
            "involvedObject.name": ref.name,
            "involvedObject.uid": ref.uid,
            "involvedObject.apiVersion": ref.api_version,
            "involvedObject.resourceVersion": ref.resource_version,
            "involvedObject.fieldPath": ref.field_path,
            "reason": obj.reason,
            "reportingComponent": obj.reporting_component,
            "source": obj.source.component,
            "type": obj.type,
        }
