"""Services: DNS-1035 names, a clusterIP that may not change (the API server allocates
ClusterIPs and nodePorts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.names import name_is_dns1035_label
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class ServiceStrategy(Strategy[v1.Service]):
    def name_errors(self, name: str, prefix: bool) -> list[str]:
        return name_is_dns1035_label(name, prefix)

    def default(self, obj: v1.Service) -> None:
        defaults.default_service(obj)

    def validate(self, obj: v1.Service) -> Errors:
        from kubelite.api.validation.core import validate_service
        return validate_service(obj)

    def validate_update(self, new: v1.Service, old: v1.Service) -> Errors:
        from kubelite.api.validation.core import validate_service_update
        return self.validate(new) + validate_service_update(new, old)

    def fields(self, obj: v1.Service) -> dict[str, str]:
        return {"spec.clusterIP": obj.spec.cluster_ip, "spec.type": obj.spec.type}
