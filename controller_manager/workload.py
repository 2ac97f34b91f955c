"""Helpers the workload controllers here share (DaemonSet, StatefulSet, Job, CronJob,
ReplicaSet): the owner index, revision hashes, pod availability, status writes, and the pod
event handlers of a controller that tracks expectations."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api import podtemplate
from kubelite.api.errors import ApiError, Conflict, NotFound
from kubelite.client.client import ApiClient
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.expectations import ControllerExpectations
from kubelite.client.workqueue import WorkQueue
from protos.v1 import objects_pb2 as v1

M = TypeVar("M", bound=Message)

OWNER_INDEX = "owner-uid"
"""The index (kubelite.client.informer.index_by_owner_uid) of a shared informer's objects by
the uids of their owners."""
REVISION_HASH_LABEL = "controller-revision-hash"


def template_hash(template: v1.PodTemplateSpec, status: v1.DaemonSetStatus | v1.StatefulSetStatus
                  ) -> str:
    """The revision hash of a template (ComputeHash with the owner's collisionCount)."""
    collisions = status.collision_count if status.HasField("collision_count") else None
    return podtemplate.compute_hash(template, collisions)


def pod_available(pod: v1.Pod, min_ready_seconds: int, now: dt.datetime) -> bool:
    """Ready for at least minReadySeconds, counted from the Ready condition's transition
    (upstream's podutil.IsPodAvailable)."""
    condition = podutil.get_condition(pod, "Ready")
    if condition is None or condition.status != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    if not condition.last_transition_time:
        return False
    ready_since = m.parse_time(condition.last_transition_time)
    return ready_since + dt.timedelta(seconds=min_ready_seconds) <= now


def seconds_until_available(pod: v1.Pod, min_ready_seconds: int, now: dt.datetime) -> float:
    """How long until a Ready pod becomes available (0 when it is, or is not Ready)."""
    condition = podutil.get_condition(pod, "Ready")
    if (condition is None or condition.status != "True" or min_ready_seconds <= 0
            or not condition.last_transition_time):
        return 0.0
    ready_since = m.parse_time(condition.last_transition_time)
    remaining = (ready_since + dt.timedelta(seconds=min_ready_seconds) - now).total_seconds()
    return max(remaining, 0.0)


async def write_status(client: ApiClient, obj: M, status: Message) -> M | None:
    """Writes ``status`` as ``obj``'s status when it differs from the one ``obj`` has.

    Returns the object written (``obj`` itself when nothing changed), or None when our cache
    is behind (NotFound, Conflict): the newer version's event brings the key back.
    """
    if status == obj.status:  # type: ignore[attr-defined]
        return obj
    fresh = m.copy(obj)
    fresh.status.CopyFrom(status)  # type: ignore[attr-defined]
    try:
        return await client.update_status(fresh)
    except (NotFound, Conflict):
        return None


async def delete_pod(client: ApiClient, recorder: EventRecorder,
                     expectations: ControllerExpectations, key: str, owner: Message,
                     pod: v1.Pod, *, identity: str | None = None, **options: Any) -> None:
    """Deletes a pod that ``owner`` (queue key ``key``) controls and records SuccessfulDelete
    or FailedDelete on the owner (upstream's RealPodControl.DeletePod). A pod already gone, or
    one the API refused to delete, will never be seen going: its expected deletion is observed
    here (by ``identity``, the pod's uid unless given). ``options`` go to the delete call."""
    identity = pod.metadata.uid if identity is None else identity
    try:
        await client.delete(v1.Pod, pod.metadata.name, pod.metadata.namespace, **options,
                            uid=pod.metadata.uid)
    except NotFound:
        expectations.deletion_observed(key, identity)
        return
    except ApiError as e:
        expectations.deletion_observed(key, identity)
        recorder.record(owner, WARNING, "FailedDelete", f"Error deleting: {e}")
        raise
    recorder.record(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")


class ExpectedPodEvents:
    """Pod event handlers of a controller that creates and deletes the pods it controls
    directly and tracks them with expectations (DaemonSet, Job): each event is observed
    against the controlling owner of ``kind`` (deletions by pod uid) and queues its key."""

    def __init__(self, kind: str, expectations: ControllerExpectations,
                 queue: WorkQueue) -> None:
        self.kind = kind
        self.expectations = expectations
        self.queue = queue

    def added(self, pod: v1.Pod) -> None:
        key = m.controller_key(pod, self.kind)
        if key is None:
            return
        self.expectations.creation_observed(key)
        if pod.metadata.deletion_timestamp:
            self.expectations.deletion_observed(key, pod.metadata.uid)
        self.queue.add(key)

    def updated(self, old: v1.Pod, new: v1.Pod) -> None:
        key = m.controller_key(new, self.kind)
        if key is None:
            return
        if new.metadata.deletion_timestamp:
            self.expectations.deletion_observed(key, new.metadata.uid)
        self.queue.add(key)

    def deleted(self, pod: v1.Pod) -> None:
        key = m.controller_key(pod, self.kind)
        if key is None:
            return
        self.expectations.deletion_observed(key, pod.metadata.uid)
        self.queue.add(key)
