"""apps/v1: ReplicaSet, Deployment, DaemonSet and StatefulSet (pkg/apis/apps/validation),
and the selector-and-template rule the workload kinds share."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kubelite.api.field_errors import FieldPath
from kubelite.api.labels import (
    Selector,
    selector_from_label_selector,
    validate_label_selector,
    validate_labels,
)
from kubelite.api.names import (
    is_valid_percent,
)
from kubelite.api.validation.core_pod import (
    RESTART_POLICIES,
    validate_pod_template,
    validate_quantity_value,
)
from kubelite.api.validation.meta import (
    Errors,
    copy_field,
    int_or_string,
    nonnegative,
    not_supported,
    plain,
)
from protos.v1 import objects_pb2 as v1


def validate_selector_and_template(
    spec: v1.ReplicaSetSpec
    | v1.DeploymentSpec
    | v1.DaemonSetSpec
    | v1.StatefulSetSpec
    | v1.JobSpec,
    path: FieldPath,
    kind_word: str,
    allowed_restart: Sequence[str],
    deadline_kind: str | None,
    claim_templates: Iterable[str] = (),
) -> Errors:
    """Selector required and non-empty, matching the template's labels; template valid."""
    errs: Errors = []
    sel_path = path.child("selector")
    template = spec.template
    selector: Selector | None = None
    if not spec.HasField("selector"):
        errs.append(sel_path.required())
    else:
        msg = spec.selector
        sel_errs = validate_label_selector(msg, sel_path)
        errs.extend(sel_errs)
        if not msg.match_labels and not msg.match_expressions:
            errs.append(sel_path.invalid(plain(msg), f"empty selector is invalid for {kind_word}"))
        elif not sel_errs:
            try:
                selector = selector_from_label_selector(msg)
            except ValueError:
                errs.append(sel_path.invalid(plain(msg), "invalid label selector"))
    if selector is not None and not selector.matches(dict(template.metadata.labels)):
        errs.append(
            path.child("template", "metadata", "labels").invalid(
                plain(dict(template.metadata.labels)),
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template(template, path.child("template"), claim_templates))
    restart = template.spec.restart_policy
    if restart in RESTART_POLICIES and restart not in allowed_restart:
        errs.append(
            path.child("template", "spec", "restartPolicy").not_supported(
                restart, list(allowed_restart)
            )
        )
    if deadline_kind is not None and template.spec.HasField("active_deadline_seconds"):
        errs.append(
            path.child("template", "spec", "activeDeadlineSeconds").invalid(
                template.spec.active_deadline_seconds,
                f"activeDeadlineSeconds in {deadline_kind} is not Supported",
            )
        )
    return errs


def validate_replica_set(rs: v1.ReplicaSet) -> Errors:
    path = FieldPath("spec")
    errs = nonnegative(rs.spec.replicas, path.child("replicas"))
    errs.extend(nonnegative(rs.spec.min_ready_seconds, path.child("minReadySeconds")))
    errs.extend(
        validate_selector_and_template(rs.spec, path, "deployment", ["Always"], "ReplicaSet")
    )
    return errs


def _validate_int_or_percent(value: v1.IntOrString, path: FieldPath) -> Errors:
    v = int_or_string(value)
    if isinstance(v, str):
        return [path.invalid(v, m) for m in is_valid_percent(v)]
    if isinstance(v, int):
        return nonnegative(v, path)
    return []


def _int_or_percent_value(value: v1.IntOrString) -> int:
    v = int_or_string(value)
    if isinstance(v, str):
        try:
            return int(v.rstrip("%"))
        except ValueError:
            return 0
    return v or 0


def _not_more_than_100_percent(value: v1.IntOrString, path: FieldPath) -> Errors:
    v = int_or_string(value)
    if isinstance(v, str) and not is_valid_percent(v) and int(v[:-1]) > 100:
        return [path.invalid(v, "must not be greater than 100%")]
    return []


def validate_deployment(d: v1.Deployment) -> Errors:
    spec = d.spec
    path = FieldPath("spec")
    errs = nonnegative(spec.replicas, path.child("replicas"))
    errs.extend(validate_selector_and_template(spec, path, "deployment", ["Always"], "ReplicaSet"))
    sp = path.child("strategy")
    strategy = spec.strategy
    if strategy.type == "Recreate":
        if strategy.HasField("rolling_update"):
            errs.append(
                sp.child("rollingUpdate").forbidden(
                    "may not be specified when strategy `type` is 'Recreate'"
                )
            )
    elif strategy.type == "RollingUpdate":
        rp = sp.child("rollingUpdate")
        if not strategy.HasField("rolling_update"):
            errs.append(rp.required("this should be defaulted and never be nil"))
        else:
            ru = strategy.rolling_update
            errs.extend(_validate_int_or_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_validate_int_or_percent(ru.max_surge, rp.child("maxSurge")))
            if (
                _int_or_percent_value(ru.max_unavailable) == 0
                and _int_or_percent_value(ru.max_surge) == 0
            ):
                errs.append(
                    rp.child("maxUnavailable").invalid(
                        int_or_string(ru.max_unavailable), "may not be 0 when `maxSurge` is 0"
                    )
                )
            errs.extend(_not_more_than_100_percent(ru.max_unavailable, rp.child("maxUnavailable")))
    else:
        errs.extend(not_supported(strategy.type, ["Recreate", "RollingUpdate"], sp.child("type")))
    errs.extend(nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    if spec.HasField("revision_history_limit"):
        errs.extend(nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    if spec.HasField("progress_deadline_seconds"):
        pds = path.child("progressDeadlineSeconds")
        errs.extend(nonnegative(spec.progress_deadline_seconds, pds))
        if spec.progress_deadline_seconds <= spec.min_ready_seconds:
            errs.append(
                pds.invalid(spec.progress_deadline_seconds, "must be greater than minReadySeconds")
            )
    return errs


def validate_daemon_set(ds: v1.DaemonSet) -> Errors:
    spec = ds.spec
    path = FieldPath("spec")
    errs = validate_selector_and_template(spec, path, "daemonset", ["Always"], "DaemonSet")
    errs.extend(nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    if spec.HasField("revision_history_limit"):
        errs.extend(nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    sp = path.child("updateStrategy")
    strategy = spec.update_strategy
    if strategy.type == "RollingUpdate":
        rp = sp.child("rollingUpdate")
        if not strategy.HasField("rolling_update"):
            errs.append(rp.required())
        else:
            ru = strategy.rolling_update
            errs.extend(_validate_int_or_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_validate_int_or_percent(ru.max_surge, rp.child("maxSurge")))
            errs.extend(_not_more_than_100_percent(ru.max_unavailable, rp.child("maxUnavailable")))
            errs.extend(_not_more_than_100_percent(ru.max_surge, rp.child("maxSurge")))
            has_unavailable = _int_or_percent_value(ru.max_unavailable) != 0
            has_surge = _int_or_percent_value(ru.max_surge) != 0
            if has_unavailable and has_surge:
                errs.append(
                    rp.child("maxSurge").invalid(
                        int_or_string(ru.max_surge),
                        "may not be set when maxUnavailable is non-zero",
                    )
                )
            elif not has_unavailable and not has_surge:
                errs.append(rp.child("maxUnavailable").required("cannot be 0 when maxSurge is 0"))
    elif strategy.type != "OnDelete":
        errs.extend(not_supported(strategy.type, ["OnDelete", "RollingUpdate"], sp.child("type")))
    return errs


def _validate_pvc_spec(spec: v1.PersistentVolumeClaimSpec, path: FieldPath) -> Errors:
    errs: Errors = []
    modes = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
    if not spec.access_modes:
        errs.append(path.child("accessModes").required("at least 1 access mode is required"))
    for mode in spec.access_modes:
        if mode not in modes:
            errs.append(path.child("accessModes").not_supported(mode, list(modes)))
    if spec.HasField("selector"):
        errs.extend(validate_label_selector(spec.selector, path.child("selector")))
    storage = spec.resources.requests.get("storage")
    rp = path.child("resources").key("storage")
    if storage is None:
        errs.append(rp.required())
    else:
        q, q_errs = validate_quantity_value("storage", storage, rp)
        errs.extend(q_errs)
        if q is not None and q.is_zero():
            errs.append(rp.invalid(storage, "must be greater than zero"))
    if spec.HasField("volume_mode"):
        errs.extend(
            not_supported(spec.volume_mode, ["Block", "Filesystem"], path.child("volumeMode"))
        )
    return errs


def validate_stateful_set(sts: v1.StatefulSet) -> Errors:
    spec = sts.spec
    path = FieldPath("spec")
    errs: Errors = []
    policy = spec.pod_management_policy
    if not policy:
        errs.append(path.child("podManagementPolicy").required())
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(
            path.child("podManagementPolicy").invalid(
                policy, "must be 'OrderedReady' or 'Parallel'"
            )
        )
    sp = path.child("updateStrategy")
    strategy = spec.update_strategy
    if not strategy.type:
        errs.append(sp.required())
    elif strategy.type == "OnDelete":
        if strategy.HasField("rolling_update"):
            errs.append(
                sp.child("rollingUpdate").invalid(
                    plain(strategy.rolling_update),
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif strategy.type == "RollingUpdate":
        if strategy.HasField("rolling_update"):
            rp = sp.child("rollingUpdate")
            ru = strategy.rolling_update
            if ru.HasField("partition"):
                errs.extend(nonnegative(ru.partition, rp.child("partition")))
            if ru.max_unavailable.WhichOneof("value") is not None:
                mp = rp.child("maxUnavailable")
                errs.extend(_validate_int_or_percent(ru.max_unavailable, mp))
                if _int_or_percent_value(ru.max_unavailable) == 0:
                    errs.append(
                        mp.invalid(int_or_string(ru.max_unavailable), "must be greater than 0")
                    )
                errs.extend(_not_more_than_100_percent(ru.max_unavailable, mp))
    else:
        errs.append(sp.invalid(strategy.type, "must be 'RollingUpdate' or 'OnDelete'"))
    retention = spec.persistent_volume_claim_retention_policy
    rp = path.child("persistentVolumeClaimRetentionPolicy")
    errs.extend(
        not_supported(retention.when_deleted, ["Delete", "Retain"], rp.child("whenDeleted"))
    )
    errs.extend(not_supported(retention.when_scaled, ["Delete", "Retain"], rp.child("whenScaled")))
    errs.extend(nonnegative(spec.replicas, path.child("replicas")))
    errs.extend(nonnegative(spec.min_ready_seconds, path.child("minReadySeconds")))
    errs.extend(nonnegative(spec.ordinals.start, path.child("ordinals", "start")))
    if spec.HasField("revision_history_limit"):
        errs.extend(nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit")))
    errs.extend(
        validate_selector_and_template(
            spec, path, "statefulset", ["Always"], "StatefulSet",
            [c.metadata.name for c in spec.volume_claim_templates],
        )
    )
    for i, claim in enumerate(spec.volume_claim_templates):
        cp = path.child("volumeClaimTemplates").index(i)
        errs.extend(validate_labels(dict(claim.metadata.labels), cp.child("metadata", "labels")))
        if not claim.metadata.name:
            errs.append(cp.child("metadata", "name").required())
        errs.extend(_validate_pvc_spec(claim.spec, cp.child("spec")))
    return errs


def validate_stateful_set_update(new: v1.StatefulSet, old: v1.StatefulSet) -> Errors:
    munged = v1.StatefulSetSpec()
    munged.CopyFrom(new.spec)
    for attr in (
        "replicas",
        "template",
        "update_strategy",
        "min_ready_seconds",
        "ordinals",
        "revision_history_limit",
        "persistent_volume_claim_retention_policy",
    ):
        copy_field(munged, old.spec, attr)
    if munged != old.spec:
        return [
            FieldPath("spec").forbidden(
                "updates to statefulset spec for fields other than 'replicas', 'ordinals',"
                " 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and"
                " 'minReadySeconds' are forbidden"
            )
        ]
    return []
