"""Secrets: stringData merged into data, the keys each type requires, a type that stays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class SecretStrategy(Strategy[v1.Secret]):
    def default(self, obj: v1.Secret) -> None:
        defaults.default_secret(obj)

    def validate(self, obj: v1.Secret) -> Errors:
        from kubelite.api.validation.core import validate_secret
        return validate_secret(obj)

    def validate_update(self, new: v1.Secret, old: v1.Secret) -> Errors:
        from kubelite.api.validation.core import validate_secret_update
        return self.validate(new) + validate_secret_update(new, old)

    def fields(self, obj: v1.Secret) -> dict[str, str]:
        return {"type": obj.type}
