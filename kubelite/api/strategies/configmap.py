"""ConfigMaps: config keys, and data that stays as it is once immutable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class ConfigMapStrategy(Strategy[v1.ConfigMap]):
    def validate(self, obj: v1.ConfigMap) -> Errors:
        from kubelite.api.validation.core import validate_config_map
        return validate_config_map(obj)

    def validate_update(self, new: v1.ConfigMap, old: v1.ConfigMap) -> Errors:
        from kubelite.api.validation.core import validate_config_map_update
        return self.validate(new) + validate_config_map_update(new, old)
