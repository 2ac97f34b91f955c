"""apps/v1 (pkg/registry/apps): ReplicaSet, Deployment, DaemonSet and StatefulSet, each running
pods from a template under a selector that stays as created."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from kubelite.api import defaults
from kubelite.api.field_errors import FieldPath
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors

W = TypeVar("W", v1.ReplicaSet, v1.Deployment, v1.DaemonSet, v1.StatefulSet)


class WorkloadStrategy(Strategy[W]):
    """A kind that runs pods from ``spec.template`` and selects them by ``spec.selector``."""

    def validate_update(self, new: W, old: W) -> Errors:
        return self.validate(new) + self.selector_immutable(new, old)

    @staticmethod
    def selector_immutable(new: W, old: W) -> Errors:
        from kubelite.api.validation.meta import immutable
        return immutable(new.spec.selector, old.spec.selector, FieldPath("spec").child("selector"))

    def pod_spec(self, obj: W) -> tuple[v1.PodSpec, FieldPath]:
        return obj.spec.template.spec, FieldPath("spec").child("template", "spec")


class ReplicaSetStrategy(WorkloadStrategy[v1.ReplicaSet]):
    def default(self, obj: v1.ReplicaSet) -> None:
        defaults.default_replica_set(obj)

    def validate(self, obj: v1.ReplicaSet) -> Errors:
        from kubelite.api.validation.apps import validate_replica_set
        return validate_replica_set(obj)

    def fields(self, obj: v1.ReplicaSet) -> dict[str, str]:
        return {"status.replicas": str(obj.status.replicas)}


class DeploymentStrategy(WorkloadStrategy[v1.Deployment]):
    def default(self, obj: v1.Deployment) -> None:
        defaults.default_deployment(obj)

    def validate(self, obj: v1.Deployment) -> Errors:
        from kubelite.api.validation.apps import validate_deployment
        return validate_deployment(obj)


class DaemonSetStrategy(WorkloadStrategy[v1.DaemonSet]):
    def default(self, obj: v1.DaemonSet) -> None:
        defaults.default_daemon_set(obj)

    def validate(self, obj: v1.DaemonSet) -> Errors:
        from kubelite.api.validation.apps import validate_daemon_set
        return validate_daemon_set(obj)


class StatefulSetStrategy(WorkloadStrategy[v1.StatefulSet]):
    def default(self, obj: v1.StatefulSet) -> None:
        defaults.default_stateful_set(obj)

    def validate(self, obj: v1.StatefulSet) -> Errors:
        from kubelite.api.validation.apps import validate_stateful_set
        return validate_stateful_set(obj)

    def validate_update(self, new: v1.StatefulSet, old: v1.StatefulSet) -> Errors:
        from kubelite.api.validation.apps import validate_stateful_set_update
        return (self.validate(new) + validate_stateful_set_update(new, old)
                + self.selector_immutable(new, old))
