"""Object validation with Kubernetes' rules, field paths and wording.

``validate(obj, old=None)`` runs after ``apply_defaults`` and returns every broken rule as a
FieldError (an empty list means valid). With ``old`` it also applies the update rules:
immutable metadata, pod spec immutability, workload selector immutability and so on.

One module per API group, as upstream's pkg/apis/<group>/validation:

- ``meta``: object metadata (apimachinery's ValidateObjectMeta) and the helpers every group
  shares;
- ``core_pod`` with ``core_volumes`` and ``core_scheduling``: the pod spec (containers,
  probes, env, resources; volumes; tolerations, affinity, topology spread) and pod updates;
- ``core``: the other core kinds (Service, Endpoints, ConfigMap, Secret, Event, Lease, Node,
  Namespace);
- ``apps``: ReplicaSet, Deployment, DaemonSet, StatefulSet;
- ``batch``: Job, CronJob.
"""

from __future__ import annotations

from google.protobuf.message import Message

from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.api.names import (
    NameValidator,
    name_is_dns1035_label,
    name_is_dns_label,
    name_is_dns_subdomain,
)
from kubelite.api.registry import RESOURCES, ResourceType
from kubelite.api.validation.apps import (
    validate_daemon_set,
    validate_deployment,
    validate_replica_set,
    validate_stateful_set,
    validate_stateful_set_update,
)
from kubelite.api.validation.batch import (
    COMPLETIONS_SOFT_LIMIT,
    CRONJOB_NAME_MAX_LENGTH,
    MAX_PARALLELISM_FOR_INDEXED_JOB,
    PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS,
    validate_cron_job,
    validate_job,
    validate_job_update,
)
from kubelite.api.validation.core import (
    MAX_CLIENT_IP_AFFINITY_SECONDS,
    MAX_SECRET_SIZE,
    validate_config_map,
    validate_config_map_update,
    validate_endpoints,
    validate_event,
    validate_lease,
    validate_namespace,
    validate_node,
    validate_secret,
    validate_secret_update,
    validate_service,
    validate_service_update,
)
from kubelite.api.validation.core_pod import (
    validate_pod,
    validate_pod_spec,
    validate_pod_template,
    validate_pod_update,
    validate_resource_requirements,
)
from kubelite.api.validation.core_volumes import (
    FILE_MODE_ERROR,
    PVC_VOLUMES_UNSUPPORTED,
    validate_unsupported_volumes,
)
from kubelite.api.validation.meta import (
    FIELD_IMMUTABLE,
    IS_NEGATIVE_ERROR,
    MAX_UINT32,
    TOTAL_ANNOTATION_SIZE_LIMIT,
    Errors,
    immutable,
    validate_annotations,
    validate_object_meta,
    validate_object_meta_update,
)
from protos.v1 import objects_pb2 as v1

__all__ = [
    "COMPLETIONS_SOFT_LIMIT",
    "CRONJOB_NAME_MAX_LENGTH",
    "FIELD_IMMUTABLE",
    "FILE_MODE_ERROR",
    "IS_NEGATIVE_ERROR",
    "MAX_CLIENT_IP_AFFINITY_SECONDS",
    "MAX_PARALLELISM_FOR_INDEXED_JOB",
    "MAX_SECRET_SIZE",
    "MAX_UINT32",
    "PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS",
    "PVC_VOLUMES_UNSUPPORTED",
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "Errors",
    "name_rule",
    "validate",
    "validate_annotations",
    "validate_object_meta",
    "validate_object_meta_update",
    "validate_pod_spec",
    "validate_pod_template",
    "validate_pod_update",
    "validate_resource_requirements",
]

_NAME_RULES: dict[str, NameValidator] = {
    "Namespace": name_is_dns_label,
    "Service": name_is_dns1035_label,
}


def _validate_kind(obj: Message, old: Message | None) -> Errors:
    """The kind-specific create rules, plus the update rules when ``old`` is given."""
    errs: Errors = []
    if isinstance(obj, v1.Pod):
        errs = validate_pod(obj)
        if isinstance(old, v1.Pod):
            errs.extend(validate_pod_update(obj, old))
    elif isinstance(obj, v1.ReplicaSet):
        errs = validate_replica_set(obj)
    elif isinstance(obj, v1.Deployment):
        errs = validate_deployment(obj)
    elif isinstance(obj, v1.DaemonSet):
        errs = validate_daemon_set(obj)
    elif isinstance(obj, v1.StatefulSet):
        errs = validate_stateful_set(obj)
        if isinstance(old, v1.StatefulSet):
            errs.extend(validate_stateful_set_update(obj, old))
    elif isinstance(obj, v1.Job):
        errs = validate_job(obj)
        if isinstance(old, v1.Job):
            errs.extend(validate_job_update(obj, old))
    elif isinstance(obj, v1.CronJob):
        errs = validate_cron_job(obj, old if isinstance(old, v1.CronJob) else None)
    elif isinstance(obj, v1.Service):
        errs = validate_service(obj)
        if isinstance(old, v1.Service):
            errs.extend(validate_service_update(obj, old))
    elif isinstance(obj, v1.Endpoints):
        errs = validate_endpoints(obj)
    elif isinstance(obj, v1.ConfigMap):
        errs = validate_config_map(obj)
        if isinstance(old, v1.ConfigMap):
            errs.extend(validate_config_map_update(obj, old))
    elif isinstance(obj, v1.Secret):
        errs = validate_secret(obj)
        if isinstance(old, v1.Secret):
            errs.extend(validate_secret_update(obj, old))
    elif isinstance(obj, v1.Event):
        errs = validate_event(obj)
    elif isinstance(obj, v1.Lease):
        errs = validate_lease(obj)
    elif isinstance(obj, v1.Node):
        errs = validate_node(obj)
    elif isinstance(obj, v1.Namespace):
        errs = validate_namespace(obj)
    if isinstance(obj, (v1.ReplicaSet, v1.Deployment, v1.DaemonSet, v1.StatefulSet)) and (
        isinstance(old, type(obj))
    ):
        errs.extend(
            immutable(obj.spec.selector, old.spec.selector, FieldPath("spec").child("selector"))
        )
    found = _pod_spec_of(obj)
    if found is not None:
        before = _pod_spec_of(old)
        errs.extend(validate_unsupported_volumes(
            *found, before[0] if before is not None else None))
    return errs


def _pod_spec_of(obj: Message | None) -> tuple[v1.PodSpec, FieldPath] | None:
    """The pod spec an object carries (its own or its template's) and its path."""
    spec = FieldPath("spec")
    if isinstance(obj, v1.Pod):
        return obj.spec, spec
    if isinstance(obj, (v1.ReplicaSet, v1.Deployment, v1.DaemonSet, v1.StatefulSet, v1.Job)):
        return obj.spec.template.spec, spec.child("template", "spec")
    if isinstance(obj, v1.CronJob):
        return (obj.spec.job_template.spec.template.spec,
                spec.child("jobTemplate", "spec", "template", "spec"))
    return None


_BY_MESSAGE: dict[type[Message], ResourceType] = {r.message: r for r in RESOURCES}


def name_rule(kind: str) -> NameValidator:
    """The rule a kind's metadata.name follows (DNS-1123 subdomain unless noted)."""
    return _NAME_RULES.get(kind, name_is_dns_subdomain)


def validate(obj: Message, old: Message | None = None) -> list[FieldError]:
    """Every rule ``obj`` breaks; with ``old``, also the update rules against it.

    Raises TypeError for a message that is not a registered kind, or an ``old`` of another type.
    """
    rtype = _BY_MESSAGE.get(type(obj))
    if rtype is None:
        raise TypeError(f"no validation for {type(obj).__name__}: not a registered kind")
    if old is not None and type(old) is not type(obj):
        raise TypeError(f"cannot compare {type(obj).__name__} with {type(old).__name__}")
    meta: v1.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    errs = validate_object_meta(
        meta, rtype.namespaced, name_rule(rtype.kind), FieldPath("metadata")
    )
    if old is not None:
        old_meta: v1.ObjectMeta = old.metadata  # type: ignore[attr-defined]
        errs.extend(validate_object_meta_update(meta, old_meta, FieldPath("metadata")))
    errs.extend(_validate_kind(obj, old))
    return errs
