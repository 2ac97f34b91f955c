"""The StatefulSet controller: pods with stable identities ``<set>-<ordinal>`` (upstream's
pkg/controller/statefulset, stateful_set_control.go).

OrderedReady creates ordinal N only when every lower ordinal is Running and Ready, and on scale
down deletes the highest ordinal first, one at a time; Parallel does both without waiting. A
failed or deleted pod is recreated under the same name. RollingUpdate replaces pods whose
``controller-revision-hash`` is not the update revision from the highest ordinal down to the
partition, one at a time and only while every pod is healthy; OnDelete waits for the user to
delete them.

Storage: kubelite serves no PersistentVolumeClaims yet, so where upstream creates a claim
``<claim>-<pod>`` per volumeClaimTemplate, each pod gets an emptyDir volume of the template's
name instead, bounded by the template's storage request. The pods run and mount what the
manifest asks for, but the data lives as long as the pod, not as long as the claim.

Revisions: kubelite serves no ControllerRevision kind, so a revision is
``<set>-<template hash>`` and the templates seen are remembered in memory to recreate pods below
the partition at the current revision. After a restart a revision no longer remembered falls
back to the update revision.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controller_manager.context import ControllerContext
from controller_manager.workload import (
    OWNER_INDEX,
    REVISION_HASH_LABEL,
    pod_available,
    seconds_until_available,
    template_hash,
    write_status,
)
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import AlreadyExists, ApiError, NotFound
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING
from kubelite.client.informer import index_by_owner_uid
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
_REVISION_CACHE_LIMIT = 64
"""Templates remembered per StatefulSet (upstream keeps revisionHistoryLimit revisions)."""


def parse_ordinal(set_name: str, pod_name: str) -> int | None:
    """The ordinal of ``<set>-<n>``, None for a pod that is not one of the set's."""
    match = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(match.group(1)) if match else None


def running_and_ready(pod: v1.Pod) -> bool:
    return pod.status.phase == "Running" and podutil.is_ready(pod)


def terminating(pod: v1.Pod) -> bool:
    return bool(pod.metadata.deletion_timestamp)


def _failed(pod: v1.Pod) -> bool:
    return pod.status.phase in ("Failed", "Succeeded")


@dataclass(frozen=True)
class Revisions:
    current: str
    update: str
    current_template: v1.PodTemplateSpec | None
    """None when the current revision's template is no longer remembered (a restart)."""
    update_template: v1.PodTemplateSpec


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.clock: Callable[[], dt.datetime] = m.now
        self._templates: dict[str, dict[str, v1.PodTemplateSpec]] = {}
        self.sets = ctx.informers.informer(v1.StatefulSet)
        self.pods = ctx.informers.informer(v1.Pod)
        self.pods.store.add_indexer(OWNER_INDEX, index_by_owner_uid)
        self.sets.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new),
                               on_delete=self.enqueue)
        self.pods.add_handlers(on_add=self._pod_changed,
                               on_update=lambda _o, new: self._pod_changed(new),
                               on_delete=self._pod_changed)

    def _pod_changed(self, pod: v1.Pod) -> None:
        key = m.controller_key(pod, "StatefulSet")
        if key is not None:
            self.queue.add(key)

    # ------------------------------------------------------------ revisions

    def _revisions(self, sts: v1.StatefulSet) -> Revisions:
        uid = sts.metadata.uid
        known = self._templates.setdefault(uid, {})
        update = f"{sts.metadata.name}-{template_hash(sts.spec.template, sts.status)}"
        if update not in known:
            if len(known) >= _REVISION_CACHE_LIMIT:
                known.pop(next(iter(known)))
            known[update] = m.copy(sts.spec.template)
        current = sts.status.current_revision or update
        return Revisions(current, update, known.get(current), known[update])

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        sts = self.sets.store.get(key)
        if sts is None:
            return
        if not sts.spec.service_name:
            # The product requires the governing headless Service; validation lets it pass.
            self.recorder.record(sts, WARNING, "FailedCreate",
                                 "spec.serviceName is required: a StatefulSet needs the"
                                 " headless Service that governs its pods' identities")
            return
        revisions = self._revisions(sts)
        start = sts.spec.ordinals.start
        count = sts.spec.replicas
        slots: list[v1.Pod | None] = [None] * count
        condemned: list[v1.Pod] = []
        for pod in self.pods.store.by_index(OWNER_INDEX, sts.metadata.uid):
            ordinal = parse_ordinal(sts.metadata.name, pod.metadata.name)
            if ordinal is None or not m.is_controlled_by(pod, sts):
                continue
            if start <= ordinal < start + count:
                slots[ordinal - start] = pod
            else:
                condemned.append(pod)
        condemned.sort(key=lambda p: parse_ordinal(sts.metadata.name, p.metadata.name) or 0)
        now = self.clock()
        if not sts.metadata.deletion_timestamp:
            await self._update_pods(sts, revisions, slots, condemned, now)
        await self._update_status(sts, revisions, [p for p in slots if p] + condemned, now)
        waits = [seconds_until_available(p, sts.spec.min_ready_seconds, now)
                 for p in slots if p is not None]
        waits = [w for w in waits if w > 0]
        if waits:
            self.queue.add_after(key, min(waits) + 0.05)

    async def _update_pods(self, sts: v1.StatefulSet, revisions: Revisions,
                           slots: list[v1.Pod | None], condemned: list[v1.Pod],
                           now: dt.datetime) -> None:
        """One pass of upstream's updateStatefulSet; returns where it must wait."""
        monotonic = sts.spec.pod_management_policy != "Parallel"
        min_ready = sts.spec.min_ready_seconds
        start = sts.spec.ordinals.start

        def healthy(pod: v1.Pod) -> bool:
            return (running_and_ready(pod) and not terminating(pod)
                    and pod_available(pod, min_ready, now))

        for index, pod in enumerate(slots):
            ordinal = start + index
            if pod is not None and _failed(pod) and not terminating(pod):
                self.recorder.record(
                    sts, WARNING, "RecreatingFailedPod",
                    f"StatefulSet {m.key_of(sts)} is recreating failed Pod {pod.metadata.name}")
                await self._delete_pod(sts, pod)
                if monotonic:
                    return
                continue
            if pod is None:
                await self._create_pod(sts, revisions, index, ordinal)
                if monotonic:
                    return
                continue
            if monotonic and (terminating(pod) or not healthy(pod)):
                return
        # Scale down: highest ordinal first, each after the previous one is gone.
        unhealthy = [p for p in condemned if not running_and_ready(p)]
        first_unhealthy = unhealthy[0] if unhealthy else None
        for pod in reversed(condemned):
            if terminating(pod):
                if monotonic:
                    return
                continue
            if monotonic and not running_and_ready(pod) and pod is not first_unhealthy:
                return
            await self._delete_pod(sts, pod)
            if monotonic:
                return
        strategy = sts.spec.update_strategy
        if strategy.type == "OnDelete":
            return
        partition = strategy.rolling_update.partition
        for index in range(len(slots) - 1, partition - 1, -1):
            pod = slots[index]
            if pod is None:
                return
            if (pod.metadata.labels.get(REVISION_HASH_LABEL) != revisions.update
                    and not terminating(pod)):
                await self._delete_pod(sts, pod)
                return
            if not healthy(pod):
                return

    # ------------------------------------------------------------ pods and claims

    def _new_pod(self, sts: v1.StatefulSet, revisions: Revisions, index: int,
                 ordinal: int) -> v1.Pod:
        strategy = sts.spec.update_strategy
        revision, template = revisions.update, revisions.update_template
        if (strategy.type == "RollingUpdate" and index < strategy.rolling_update.partition
                and revisions.current_template is not None):
            revision, template = revisions.current, revisions.current_template
        name = f"{sts.metadata.name}-{ordinal}"
        pod = v1.Pod(metadata=v1.ObjectMeta(
            name=name, namespace=sts.metadata.namespace,
            labels={**template.metadata.labels, POD_NAME_LABEL: name,
                    POD_INDEX_LABEL: str(ordinal), REVISION_HASH_LABEL: revision},
            annotations=dict(template.metadata.annotations),
            owner_references=[m.controller_reference(sts)],
        ))
        pod.spec.CopyFrom(template.spec)
        pod.spec.hostname = name
        pod.spec.subdomain = sts.spec.service_name
        for claim in sts.spec.volume_claim_templates:
            volumes = [v for v in pod.spec.volumes if v.name != claim.metadata.name]
            del pod.spec.volumes[:]
            pod.spec.volumes.extend(volumes)
            volume = pod.spec.volumes.add(name=claim.metadata.name)
            volume.empty_dir.SetInParent()
            storage = claim.spec.resources.requests.get("storage")
            if storage:
                volume.empty_dir.size_limit = storage
        return pod

    async def _create_pod(self, sts: v1.StatefulSet, revisions: Revisions, index: int,
                          ordinal: int) -> None:
        pod = self._new_pod(sts, revisions, index, ordinal)
        try:
            await self.client.create(pod)
        except AlreadyExists:
            return  # the cache is behind; the pod's event brings us back
        except ApiError as e:
            self.recorder.record(
                sts, WARNING, "FailedCreate",
                f"create Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} failed"
                f" error: {e}")
            raise
        self.recorder.record(
            sts, NORMAL, "SuccessfulCreate",
            f"create Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful")

    async def _delete_pod(self, sts: v1.StatefulSet, pod: v1.Pod) -> None:
        try:
            await self.client.delete(v1.Pod, pod.metadata.name, pod.metadata.namespace,
                                     uid=pod.metadata.uid)
        except NotFound:
            return
        except ApiError as e:
            self.recorder.record(
                sts, WARNING, "FailedDelete",
                f"delete Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} failed"
                f" error: {e}")
            raise
        self.recorder.record(
            sts, NORMAL, "SuccessfulDelete",
            f"delete Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful")

    # ------------------------------------------------------------ status

    async def _update_status(self, sts: v1.StatefulSet, revisions: Revisions,
                             pods: list[v1.Pod], now: dt.datetime) -> None:
        status = v1.StatefulSetStatus()
        status.CopyFrom(sts.status)
        replicas = ready = available = current = updated = 0
        for pod in pods:
            replicas += 1
            if running_and_ready(pod):
                ready += 1
                if pod_available(pod, sts.spec.min_ready_seconds, now):
                    available += 1
            if not terminating(pod):
                revision = pod.metadata.labels.get(REVISION_HASH_LABEL)
                current += revision == revisions.current
                updated += revision == revisions.update
        status.replicas, status.ready_replicas = replicas, ready
        status.available_replicas = available
        status.current_replicas, status.updated_replicas = current, updated
        status.current_revision, status.update_revision = revisions.current, revisions.update
        status.observed_generation = sts.metadata.generation
        if (sts.spec.update_strategy.type == "RollingUpdate"
                and updated == ready == replicas == sts.spec.replicas):
            # The rollout is complete: the update revision becomes the current one.
            status.current_revision = revisions.update
            status.current_replicas = updated
        await write_status(self.client, sts, status)
