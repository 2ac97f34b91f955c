"""Object validation with Kubernetes' rules, field paths and wording.

``validate(obj, old=None)`` runs after ``apply_defaults`` and returns every broken rule as a
FieldError (an empty list means valid): the object meta's, then its kind's strategy's
(kubelite.api.strategies) with the rules here. With ``old`` it applies the update rules instead:
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
from kubelite.api.names import NameValidator, name_is_dns_subdomain
from kubelite.api.validation.batch import (
    COMPLETIONS_SOFT_LIMIT,
    CRONJOB_NAME_MAX_LENGTH,
    MAX_PARALLELISM_FOR_INDEXED_JOB,
    PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS,
)
from kubelite.api.validation.core import MAX_CLIENT_IP_AFFINITY_SECONDS, MAX_SECRET_SIZE
from kubelite.api.validation.core_pod import (
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


def name_rule(kind: str) -> NameValidator:
    """The rule a kind's metadata.name follows (DNS-1123 subdomain unless its strategy says
    otherwise)."""
    from kubelite.api import registry  # it holds the strategies, which use this package

    try:
        return registry.by_kind(kind).strategy.name_errors
    except registry.UnknownResource:
        return name_is_dns_subdomain


def validate(obj: Message, old: Message | None = None) -> list[FieldError]:
    """Every rule ``obj`` breaks; with ``old``, the update rules against it.

    Raises TypeError for a message that is not a registered kind, or an ``old`` of another type.
    """
    from kubelite.api import registry  # it holds the strategies, which use this package

    try:
        rtype = registry.by_message(type(obj))
    except registry.UnknownResource:
        raise TypeError(f"no validation for {type(obj).__name__}: not a registered kind") from None
    if old is not None and type(old) is not type(obj):
        raise TypeError(f"cannot compare {type(obj).__name__} with {type(old).__name__}")
    strategy = rtype.strategy
    meta: v1.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    errs = validate_object_meta(meta, rtype.namespaced, strategy.name_errors, FieldPath("metadata"))
    if old is None:
        errs.extend(strategy.validate(obj))
    else:
        old_meta: v1.ObjectMeta = old.metadata  # type: ignore[attr-defined]
        errs.extend(validate_object_meta_update(meta, old_meta, FieldPath("metadata")))
        errs.extend(strategy.validate_update(obj, old))
    found = strategy.pod_spec(obj)
    if found is not None:
        before = strategy.pod_spec(old) if old is not None else None
        errs.extend(validate_unsupported_volumes(*found, before[0] if before else None))
    return errs
