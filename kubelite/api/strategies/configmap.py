"""ConfigMaps: config keys, and data that stays as it is once immutable."""

from __future__ import annotations

from kubelite.api.strategies.base import Strategy
from kubelite.api.validation.core import validate_config_map, validate_config_map_update
from kubelite.api.validation.meta import Errors
from protos.v1 import objects_pb2 as v1


class ConfigMapStrategy(Strategy[v1.ConfigMap]):
    def validate(self, obj: v1.ConfigMap) -> Errors:
        return validate_config_map(obj)

    def validate_update(self, new: v1.ConfigMap, old: v1.ConfigMap) -> Errors:
        return self.validate(new) + validate_config_map_update(new, old)
