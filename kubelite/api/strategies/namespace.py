"""Namespaces (pkg/registry/core/namespace): Active with the "kubernetes" finalizer on create,
Terminating once deleted, gone when the namespace controller has emptied them and dropped that
finalizer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.names import name_is_dns_label
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors

NAMESPACE_FINALIZER = "kubernetes"


class NamespaceStrategy(Strategy[v1.Namespace]):
    def name_errors(self, name: str, prefix: bool) -> list[str]:
        return name_is_dns_label(name, prefix)

    def default(self, obj: v1.Namespace) -> None:
        defaults.default_namespace(obj)

    def prepare_for_create(self, obj: v1.Namespace) -> None:
        super().prepare_for_create(obj)
        obj.status.phase = "Active"
        if NAMESPACE_FINALIZER not in obj.spec.finalizers:
            obj.spec.finalizers.append(NAMESPACE_FINALIZER)

    def validate(self, obj: v1.Namespace) -> Errors:
        from kubelite.api.validation.core import validate_namespace
        return validate_namespace(obj)

    def prepare_for_delete(self, obj: v1.Namespace) -> None:
        obj.status.phase = "Terminating"

    def finalized(self, obj: v1.Namespace) -> bool:
        return super().finalized(obj) and not obj.spec.finalizers

    def fields(self, obj: v1.Namespace) -> dict[str, str]:
        return {"status.phase": obj.status.phase}
