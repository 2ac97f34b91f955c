"""Pods (pkg/registry/core/pod/strategy.go): Pending on create with their QoS class, nodeName set
only through binding, graceful deletion confirmed by the kubelet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults, pods
from kubelite.api.field_errors import FieldPath
from kubelite.api.strategies.base import MAX_GRACE_PERIOD_SECONDS, Strategy, selector_bool
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class PodStrategy(Strategy[v1.Pod]):
    def default(self, obj: v1.Pod) -> None:
        defaults.default_pod(obj)

    def prepare_for_create(self, obj: v1.Pod) -> None:
        super().prepare_for_create(obj)
        obj.status.phase = "Pending"

    def complete_create(self, obj: v1.Pod) -> None:
        obj.status.qos_class = pods.qos_class(obj)  # needs valid quantities

    def prepare_for_update(self, new: v1.Pod, old: v1.Pod) -> None:
        super().prepare_for_update(new, old)
        if not new.spec.node_name:
            # nodeName is set only through binding; an update may not drop it.
            new.spec.node_name = old.spec.node_name

    def validate(self, obj: v1.Pod) -> Errors:
        from kubelite.api.validation.core_pod import validate_pod
        return validate_pod(obj)

    def validate_update(self, new: v1.Pod, old: v1.Pod) -> Errors:
        from kubelite.api.validation.core_pod import validate_pod_update
        return self.validate(new) + validate_pod_update(new, old)

    def pod_spec(self, obj: v1.Pod) -> tuple[v1.PodSpec, FieldPath]:
        return obj.spec, FieldPath("spec")

    def grace_period(self, obj: v1.Pod, requested: int | None, default: int) -> int:
        # Unbound and finished pods have no kubelet to confirm a graceful stop.
        if not obj.spec.node_name or obj.status.phase in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return requested
        if obj.spec.HasField("termination_grace_period_seconds"):
            # Any larger is as good as forever, and beyond what a deletionTimestamp can say.
            return min(int(obj.spec.termination_grace_period_seconds), MAX_GRACE_PERIOD_SECONDS)
        return default

    def fields(self, obj: v1.Pod) -> dict[str, str]:
        return {
            "spec.nodeName": obj.spec.node_name,
            "spec.restartPolicy": obj.spec.restart_policy,
            "spec.schedulerName": obj.spec.scheduler_name,
            "spec.serviceAccountName": obj.spec.service_account_name,
            "spec.hostNetwork": selector_bool(obj.spec.host_network),
            "status.phase": obj.status.phase,
            "status.podIP": obj.status.pod_ip,
            "status.nominatedNodeName": obj.status.nominated_node_name,
        }
