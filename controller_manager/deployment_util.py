"""Deployment arithmetic over ReplicaSets, free of I/O (Kubernetes' deployment/util).

Revisions and the annotations that carry them, maxSurge/maxUnavailable resolution, how many
replicas a new ReplicaSet may have, proportional scaling, conditions and status.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence

from kubelite.api import meta as m
from kubelite.api import podtemplate
from protos.v1 import objects_pb2 as v1

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"

# Annotations of a Deployment that are its own, not copied to its ReplicaSets (and not
# copied back on rollback).
SKIPPED_ANNOTATIONS = frozenset({
    LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, ROLLBACK_TO_ANNOTATION,
})

# Condition types and reasons, as Kubernetes words them.
AVAILABLE, PROGRESSING, REPLICA_FAILURE = "Available", "Progressing", "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

MAX_INT32 = 2**31 - 1


# ---------------------------------------------------------------- surge and unavailability


def scaled_value(value: v1.IntOrString, total: int, round_up: bool) -> int:
    """An int, or a percentage of ``total`` rounded up or down (GetScaledValueFromIntOrPercent).

    Raises ValueError for a string that is not a percentage."""
    kind = value.WhichOneof("value")
    if kind is None:
        return 0
    if kind == "int_val":
        return int(value.int_val)
    text = value.str_val
    if not text.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: invalid type: string is not a"
                         f" percentage: {text!r}")
    percent = int(text[:-1])
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def resolve_fenceposts(max_surge: v1.IntOrString, max_unavailable: v1.IntOrString,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable): surge rounds up, unavailable down, and when both come to 0
    unavailable becomes 1 so that a rollout can always make progress."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_rolling_update(d: v1.Deployment) -> bool:
    return d.spec.strategy.type in ("RollingUpdate", "")


def max_surge(d: v1.Deployment) -> int:
    if not is_rolling_update(d):
        return 0
    ru = d.spec.strategy.rolling_update
    return resolve_fenceposts(ru.max_surge, ru.max_unavailable, d.spec.replicas)[0]


def max_unavailable(d: v1.Deployment) -> int:
    if not is_rolling_update(d) or d.spec.replicas == 0:
        return 0
    ru = d.spec.strategy.rolling_update
    unavailable = resolve_fenceposts(ru.max_surge, ru.max_unavailable, d.spec.replicas)[1]
    return min(unavailable, d.spec.replicas)


# ---------------------------------------------------------------- replica set lists


def revision(obj: v1.ReplicaSet | v1.Deployment) -> int:
    try:
        return int(obj.metadata.annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def max_revision(rss: Iterable[v1.ReplicaSet]) -> int:
    return max((revision(rs) for rs in rss), default=0)


def by_creation(rss: Iterable[v1.ReplicaSet]) -> list[v1.ReplicaSet]:
    """Oldest first; the name breaks ties (timestamps have second precision)."""
    return sorted(rss, key=lambda rs: (rs.metadata.creation_timestamp, rs.metadata.name))


def by_revision(rss: Iterable[v1.ReplicaSet]) -> list[v1.ReplicaSet]:
    """Lowest revision first, then oldest."""
    return sorted(rss, key=lambda rs: (revision(rs), rs.metadata.creation_timestamp,
                                       rs.metadata.name))


def by_size_older(rss: Iterable[v1.ReplicaSet]) -> list[v1.ReplicaSet]:
    """Largest first; among equals the oldest first."""
    return sorted(by_creation(rss), key=lambda rs: -rs.spec.replicas)


def by_size_newer(rss: Iterable[v1.ReplicaSet]) -> list[v1.ReplicaSet]:
    """Largest first; among equals the newest first."""
    return sorted(list(reversed(by_creation(rss))), key=lambda rs: -rs.spec.replicas)


def active(rss: Iterable[v1.ReplicaSet | None]) -> list[v1.ReplicaSet]:
    """ReplicaSets that have (or ought to have) pods."""
    return [rs for rs in rss if rs is not None and rs.spec.replicas > 0]


def replica_count(rss: Iterable[v1.ReplicaSet | None]) -> int:
    """Sum of spec.replicas."""
    return sum(rs.spec.replicas for rs in rss if rs is not None)


def actual_replica_count(rss: Iterable[v1.ReplicaSet | None]) -> int:
    """Sum of status.replicas."""
    return sum(rs.status.replicas for rs in rss if rs is not None)


def ready_replica_count(rss: Iterable[v1.ReplicaSet | None]) -> int:
    return sum(rs.status.ready_replicas for rs in rss if rs is not None)


def available_replica_count(rss: Iterable[v1.ReplicaSet | None]) -> int:
    return sum(rs.status.available_replicas for rs in rss if rs is not None)


def safe_available_count(rss: Iterable[v1.ReplicaSet | None]) -> int:
    """Available pods a rollout may rely on: a ReplicaSet just scaled down still reports the
    pods it is about to delete, so count at most spec.replicas of each (deletion takes the
    unavailable pods first, so that many stay)."""
    return sum(min(rs.status.available_replicas, rs.spec.replicas)
               for rs in rss if rs is not None)


def find_new_replica_set(d: v1.Deployment,
                         rss: Sequence[v1.ReplicaSet]) -> v1.ReplicaSet | None:
    """The ReplicaSet whose template is the Deployment's (the oldest, should there be two)."""
    for rs in by_creation(rss):
        if podtemplate.equal_ignore_hash(rs.spec.template, d.spec.template):
            return rs
    return None


def find_old_replica_sets(rss: Sequence[v1.ReplicaSet],
                          new: v1.ReplicaSet | None) -> list[v1.ReplicaSet]:
    new_uid = new.metadata.uid if new is not None else None
    return [rs for rs in rss if rs.metadata.uid != new_uid]


def find_active_or_latest(new: v1.ReplicaSet | None,
                          old: Sequence[v1.ReplicaSet]) -> v1.ReplicaSet | None:
    """The one ReplicaSet with pods (or the newest when none has any); None when several
    have pods."""
    if new is None and not old:
        return None
    newest_first = list(reversed(by_creation(old)))
    candidates = active([*newest_first, new])
    if not candidates:
        return new if new is not None else newest_first[0]
    if len(candidates) == 1:
        return candidates[0]
    return None


# ---------------------------------------------------------------- annotations


def desired_replicas_annotation(rs: v1.ReplicaSet) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)


def max_replicas_annotation(rs: v1.ReplicaSet) -> int | None:
    return _int_annotation(rs, MAX_REPLICAS_ANNOTATION)


def _int_annotation(rs: v1.ReplicaSet, name: str) -> int | None:
    text = rs.metadata.annotations.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def replicas_annotations_need_update(rs: v1.ReplicaSet, desired: int, max_: int) -> bool:
    annotations = rs.metadata.annotations
    return (annotations.get(DESIRED_REPLICAS_ANNOTATION) != str(desired)
            or annotations.get(MAX_REPLICAS_ANNOTATION) != str(max_))


def set_replicas_annotations(rs: v1.ReplicaSet, desired: int, max_: int) -> bool:
    changed = replicas_annotations_need_update(rs, desired, max_)
    rs.metadata.annotations[DESIRED_REPLICAS_ANNOTATION] = str(desired)
    rs.metadata.annotations[MAX_REPLICAS_ANNOTATION] = str(max_)
    return changed


def copy_annotations(d: v1.Deployment, rs: v1.ReplicaSet) -> bool:
    """The Deployment's own annotations onto its ReplicaSet (change-cause among them)."""
    changed = False
    for key, value in d.metadata.annotations.items():
        if key in SKIPPED_ANNOTATIONS or rs.metadata.annotations.get(key) == value:
            continue
        rs.metadata.annotations[key] = value
        changed = True
    return changed


def set_new_replica_set_annotations(d: v1.Deployment, rs: v1.ReplicaSet, new_revision: int,
                                    exists: bool) -> bool:
    """Annotations of the Deployment's current ReplicaSet: the Deployment's own, the new
    revision (an old ReplicaSet brought back keeps its former revisions in
    revision-history), and on creation the desired and max replicas."""
    changed = copy_annotations(d, rs)
    annotations = rs.metadata.annotations
    old_text = annotations.get(REVISION_ANNOTATION, "")
    old = revision(rs)
    if old < new_revision:
        annotations[REVISION_ANNOTATION] = str(new_revision)
        changed = True
        if old_text and old > 0:
            history = annotations.get(REVISION_HISTORY_ANNOTATION, "")
            annotations[REVISION_HISTORY_ANNOTATION] = (
                f"{history},{old_text}" if history else old_text
            )
    if not exists and set_replicas_annotations(rs, d.spec.replicas,
                                               d.spec.replicas + max_surge(d)):
        changed = True
    return changed


# ---------------------------------------------------------------- sizes


def new_rs_new_replicas(d: v1.Deployment, all_rss: Sequence[v1.ReplicaSet | None],
                        new: v1.ReplicaSet, active_pods: int = 0) -> int:
    """How many replicas the new ReplicaSet may have now (NewRSNewReplicas).

    ``active_pods``: the Deployment's active pods as the pod cache has them; a ReplicaSet just
    scaled down may not have deleted its pods yet, so the larger of that and the sum of
    spec.replicas is what counts against maxSurge."""
    if not is_rolling_update(d):
        return d.spec.replicas
    current = max(replica_count(all_rss), active_pods)
    max_total = d.spec.replicas + max_surge(d)
    if current >= max_total:
        return new.spec.replicas
    scale_up = min(max_total - current, d.spec.replicas - new.spec.replicas)
    return new.spec.replicas + max(scale_up, 0)


def is_saturated(d: v1.Deployment, rs: v1.ReplicaSet | None) -> bool:
    """The ReplicaSet runs the whole Deployment and all its pods are available."""
    if rs is None:
        return False
    return (rs.spec.replicas == d.spec.replicas
            and desired_replicas_annotation(rs) == d.spec.replicas
            and rs.status.available_replicas == d.spec.replicas)


def _round_half_away(x: float) -> int:
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def replica_set_fraction(rs: v1.ReplicaSet, d: v1.Deployment) -> int:
    """This ReplicaSet's share of a resize, from the size it had when the Deployment was
    last at rest (the max-replicas annotation)."""
    if d.spec.replicas == 0:
        return -rs.spec.replicas
    deployment_replicas = d.spec.replicas + max_surge(d)
    annotated = max_replicas_annotation(rs)
    if annotated is None:
        annotated = d.status.replicas
    if annotated == 0:
        return 0
    return _round_half_away(rs.spec.replicas * deployment_replicas / annotated) - rs.spec.replicas


def proportion(rs: v1.ReplicaSet | None, d: v1.Deployment, to_add: int, added: int) -> int:
    if rs is None or rs.spec.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(d: v1.Deployment, new: v1.ReplicaSet | None,
                       old: Sequence[v1.ReplicaSet]) -> dict[str, int]:
    """New sizes by ReplicaSet name when a Deployment with several active ReplicaSets is
    resized mid-rollout: the difference is shared out in proportion to their sizes."""
    all_rss = active([*old, new])
    total = replica_count(all_rss)
    allowed = d.spec.replicas + max_surge(d) if d.spec.replicas > 0 else 0
    to_add = allowed - total
    if to_add > 0:
        ordered = by_size_newer(all_rss)
    elif to_add < 0:
        ordered = by_size_older(all_rss)
    else:
        ordered = all_rss
    sizes: dict[str, int] = {}
    added = 0
    for rs in ordered:
        if to_add != 0:
            share = proportion(rs, d, to_add, added)
            sizes[rs.metadata.name] = rs.spec.replicas + share
            added += share
        else:
            sizes[rs.metadata.name] = rs.spec.replicas
    if to_add != added and ordered:
        first = ordered[0].metadata.name
        sizes[first] = max(sizes[first] + to_add - added, 0)
    return sizes


# ---------------------------------------------------------------- conditions


def get_condition(status: v1.DeploymentStatus, type_: str) -> v1.DeploymentCondition | None:
    for condition in status.conditions:
        if condition.type == type_:
            return condition
    return None


def new_condition(type_: str, status: str, reason: str, message: str,
                  now: dt.datetime) -> v1.DeploymentCondition:
    stamp = m.format_time(now)
    return v1.DeploymentCondition(type=type_, status=status, reason=reason, message=message,
                                  last_update_time=stamp, last_transition_time=stamp)


def set_condition(status: v1.DeploymentStatus, condition: v1.DeploymentCondition) -> None:
    """Sets a condition; an unchanged status and reason leave it as it is, an unchanged status
    keeps its lastTransitionTime."""
    current = get_condition(status, condition.type)
    if current is not None and (current.status, current.reason) == (condition.status,
                                                                     condition.reason):
        return
    if current is not None and current.status == condition.status:
        condition.last_transition_time = current.last_transition_time
    remove_condition(status, condition.type)
    status.conditions.append(condition)


def remove_condition(status: v1.DeploymentStatus, type_: str) -> None:
    kept = [c for c in status.conditions if c.type != type_]
    if len(kept) != len(status.conditions):
        del status.conditions[:]
        status.conditions.extend(kept)


def has_progress_deadline(d: v1.Deployment) -> bool:
    return d.spec.HasField("progress_deadline_seconds") and (
        d.spec.progress_deadline_seconds != MAX_INT32
    )


def deployment_complete(d: v1.Deployment, status: v1.DeploymentStatus) -> bool:
    want = d.spec.replicas
    return (status.updated_replicas == want and status.replicas == want
            and status.available_replicas == want
            and status.observed_generation >= d.metadata.generation)


def deployment_progressing(d: v1.Deployment, status: v1.DeploymentStatus) -> bool:
    """Whether the rollout moved since the Deployment's recorded status."""
    old = d.status
    return (status.updated_replicas > old.updated_replicas
            or status.replicas - status.updated_replicas < old.replicas - old.updated_replicas
            or status.ready_replicas > old.ready_replicas
            or status.available_replicas > old.available_replicas)


def deployment_timed_out(d: v1.Deployment, status: v1.DeploymentStatus,
                         now: dt.datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    condition = get_condition(status, PROGRESSING)
    if condition is None or condition.reason == NEW_RS_AVAILABLE:
        return False
    if condition.reason == TIMED_OUT:
        return True
    if not condition.last_update_time:
        return False
    since = m.parse_time(condition.last_update_time)
    return since + dt.timedelta(seconds=d.spec.progress_deadline_seconds) < now


def calculate_status(all_rss: Sequence[v1.ReplicaSet | None], new: v1.ReplicaSet | None,
                     d: v1.Deployment, now: dt.datetime) -> v1.DeploymentStatus:
    available = available_replica_count(all_rss)
    unavailable = max(replica_count(all_rss) - available, 0)
    status = v1.DeploymentStatus()
    status.CopyFrom(d.status)
    status.observed_generation = d.metadata.generation
    status.replicas = actual_replica_count(all_rss)
    status.updated_replicas = actual_replica_count([new])
    status.ready_replicas = ready_replica_count(all_rss)
    status.available_replicas = available
    status.unavailable_replicas = unavailable
    if available >= d.spec.replicas - max_unavailable(d):
        set_condition(status, new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                            "Deployment does not have minimum availability.",
                                            now))
    return status


def template_hash(d: v1.Deployment) -> str:
    collision = d.status.collision_count if d.status.HasField("collision_count") else None
    return podtemplate.compute_hash(d.spec.template, collision)
