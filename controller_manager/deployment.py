"""The Deployment controller: rolls a pod template out through ReplicaSets.

As Kubernetes' pkg/controller/deployment: each template gets a ReplicaSet named
``<deployment>-<pod-template-hash>`` (the hash also joins its selector, template labels and
pods, so generations never claim each other's pods), numbered by the revision annotation. A
rollout scales the new ReplicaSet up and the old ones down, within maxSurge and
maxUnavailable (RollingUpdate) or all old first (Recreate); a resize mid-rollout is shared
out proportionally; a template equal to an old ReplicaSet's brings that one back as the
newest revision (that is what ``rollout undo`` relies on). Progress is reported through the
Progressing and Available conditions and progressDeadlineSeconds.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar, cast

import structlog
from google.protobuf.message import Message

from controller_manager import deployment_util as du
from controller_manager.context import ControllerContext
from controller_manager.ownership import (
    claim,
    fresh_owner_check,
    owners_to_sync_on_add,
    owners_to_sync_on_update,
    resolve_controller_ref,
)
from controller_manager.pod_facts import add_controller_index, controlled_by
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api import podtemplate
from kubelite.api.errors import AlreadyExists, ApiError, NotFound
from kubelite.api.labels import Selector, selector_from_label_selector
from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=Message)


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client: ApiClient = ctx.client
        self.recorder: EventRecorder = ctx.recorder
        self.progress_check_period = ctx.settings.progress_check_period
        self._written: dict[str, Message] = {}
        """What this controller last wrote, by key: newer than the cache until the watch
        catches up, so the next sync does not start from a stale copy and conflict."""
        self.d_informer = ctx.informers.informer(v1.Deployment)
        self.rs_informer = ctx.informers.informer(v1.ReplicaSet)
        self.pod_informer = ctx.informers.informer(v1.Pod)
        add_controller_index(self.pod_informer.store)
        self.d_informer.add_handlers(self.enqueue, lambda old, new: self.enqueue(new),
                                     self._on_delete)
        self.rs_informer.add_handlers(self._on_rs_add, self._on_rs_update, self._on_rs_delete)
        self.pod_informer.add_handlers(None, self._on_pod_update, self._on_pod_delete)

    @property
    def d_store(self) -> Store[v1.Deployment]:
        return self.d_informer.store

    @property
    def rs_store(self) -> Store[v1.ReplicaSet]:
        return self.rs_informer.store

    @property
    def pod_store(self) -> Store[v1.Pod]:
        return self.pod_informer.store

    # ------------------------------------------------------------ written objects

    def remember(self, obj: Message) -> None:
        self._written[f"{type(obj).__name__}:{m.key_of(obj)}"] = obj

    def fresh(self, obj: M) -> M:
        """The newer of the cached ``obj`` and what this controller last wrote of it."""
        key = f"{type(obj).__name__}:{m.key_of(obj)}"
        written = self._written.get(key)
        if written is None:
            return obj
        meta, written_meta = m.meta(obj), m.meta(written)
        if written_meta.uid == meta.uid and _rv(written_meta) > _rv(meta):
            return cast(M, written)
        del self._written[key]  # the cache has caught up
        return obj

    # ------------------------------------------------------------ handlers

    def _on_delete(self, d: v1.Deployment) -> None:
        self._written.pop(f"Deployment:{m.key_of(d)}", None)
        self.enqueue(d)

    def _owner(self, namespace: str, ref: v1.OwnerReference | None) -> v1.Deployment | None:
        return resolve_controller_ref(self.d_store, namespace, ref, "Deployment")

    def _on_rs_add(self, rs: v1.ReplicaSet) -> None:
        for d in owners_to_sync_on_add(self.d_store, "Deployment", rs):
            self.enqueue(d)

    def _on_rs_update(self, old: v1.ReplicaSet, new: v1.ReplicaSet) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        for d in owners_to_sync_on_update(self.d_store, "Deployment", old, new):
            self.enqueue(d)

    def _on_rs_delete(self, rs: v1.ReplicaSet) -> None:
        self._written.pop(f"ReplicaSet:{m.key_of(rs)}", None)
        d = self._owner(rs.metadata.namespace, m.controller_of(rs))
        if d is not None:
            self.enqueue(d)

    def _deployment_of_pod(self, pod: v1.Pod) -> v1.Deployment | None:
        rs = resolve_controller_ref(self.rs_store, pod.metadata.namespace,
                                    m.controller_of(pod), "ReplicaSet")
        if rs is None:
            return None
        return self._owner(rs.metadata.namespace, m.controller_of(rs))

    def _on_pod_update(self, old: v1.Pod, new: v1.Pod) -> None:
        # A pod stopping frees room under maxSurge (and lets Recreate go on).
        if podutil.is_active(old) and not podutil.is_active(new):
            self._on_pod_delete(new)

    def _on_pod_delete(self, pod: v1.Pod) -> None:
        d = self._deployment_of_pod(pod)
        if d is not None:
            self.enqueue(d)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        cached = self.d_store.get(key)
        if cached is None:
            return
        await _Sync(self, m.copy(self.fresh(cached))).run()


def _rv(meta: v1.ObjectMeta) -> int:
    try:
        return int(meta.resource_version)
    except ValueError:
        return 0


class _Sync:
    """One sync of one Deployment; ``d`` and ``rss`` follow the writes made during it."""

    def __init__(self, controller: DeploymentController, d: v1.Deployment) -> None:
        self.c = controller
        self.client = controller.client
        self.d = d
        self.key = m.key_of(d)
        self.rss: list[v1.ReplicaSet] = []
        self.log = log.bind(deployment=self.key)

    # ------------------------------------------------------------ entry

    async def run(self) -> None:
        d = self.d
        try:
            selector = selector_from_label_selector(d.spec.selector)
        except ValueError as e:
            self.log.warning("invalid selector; skipping", error=str(e))
            return
        if selector.empty():
            # An empty selector would take every pod of the namespace.
            self.c.recorder.record(d, WARNING, "SelectingAll",
                                   "This deployment is selecting all pods. A non-empty"
                                   " selector is required.")
            if d.status.observed_generation < d.metadata.generation:
                status = v1.DeploymentStatus()
                status.CopyFrom(d.status)
                status.observed_generation = d.metadata.generation
                await self._write_status(status)
            return
        self.rss = await self._claim_replica_sets(selector)
        if d.metadata.deletion_timestamp:
            await self._sync_status_only()
            return
        await self._check_paused_conditions()
        if d.spec.paused:
            await self._sync_scale()
            return
        if self._is_scaling_event():
            await self._sync_scale()
            return
        if d.spec.strategy.type == "Recreate":
            await self._rollout_recreate()
        else:
            await self._rollout_rolling()

    async def _claim_replica_sets(self, selector: Selector) -> list[v1.ReplicaSet]:
        candidates = [self.c.fresh(rs) for rs in
                      self.c.rs_store.by_index("namespace", self.d.metadata.namespace)]
        claimed = await claim(self.client, self.d, selector, candidates,
                              fresh_owner_check(self.client, self.d))
        return [rs for rs in claimed if isinstance(rs, v1.ReplicaSet)]

    def _pods_by_rs(self) -> dict[str, list[v1.Pod]]:
        """The cached pods of each of the Deployment's ReplicaSets, by ReplicaSet uid."""
        return {rs.metadata.uid: controlled_by(self.c.pod_store, rs.metadata.uid)
                for rs in self.rss}

    def _active_pods(self) -> int:
        return sum(1 for pods in self._pods_by_rs().values() for p in pods
                   if podutil.is_active(p))

    def _replace(self, rs: v1.ReplicaSet) -> None:
        self.rss = [rs if r.metadata.uid == rs.metadata.uid else r for r in self.rss]
        if all(r.metadata.uid != rs.metadata.uid for r in self.rss):
            self.rss.append(rs)

    def _new_and_old(self) -> tuple[v1.ReplicaSet | None, list[v1.ReplicaSet]]:
        new = du.find_new_replica_set(self.d, self.rss)
        return new, du.find_old_replica_sets(self.rss, new)

    # ------------------------------------------------------------ new replica set, revisions

    async def _new_and_old_synced(
        self, create: bool
    ) -> tuple[v1.ReplicaSet | None, list[v1.ReplicaSet]]:
        """The new ReplicaSet (created when asked and missing) with its revision and the
        Deployment's brought up to date, and the old ones (getAllReplicaSetsAndSyncRevision)."""
        new, old = self._new_and_old()
        new_revision = du.max_revision(old) + 1
        d = self.d
        now = m.now()
        if new is not None:
            updated = m.copy(new)
            changed = du.set_new_replica_set_annotations(d, updated, new_revision, True)
            if updated.spec.min_ready_seconds != d.spec.min_ready_seconds:
                updated.spec.min_ready_seconds = d.spec.min_ready_seconds
                changed = True
            if changed:
                new = await self.client.update(updated)
                self.c.remember(new)
                self._replace(new)
            await self._sync_deployment_revision(du.revision(new))
            if du.has_progress_deadline(d) and du.get_condition(d.status, du.PROGRESSING) is None:
                status = v1.DeploymentStatus()
                status.CopyFrom(self.d.status)
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "True", du.FOUND_NEW_RS,
                    f'Found new replica set "{new.metadata.name}"', now))
                await self._write_status(status)
            return new, old
        if not create:
            return None, old
        return await self._create_new(old, new_revision), old

    async def _create_new(self, old: list[v1.ReplicaSet], new_revision: int) -> v1.ReplicaSet:
        d = self.d
        hash_ = du.template_hash(d)
        rs = v1.ReplicaSet()
        rs.metadata.name = f"{d.metadata.name}-{hash_}"
        rs.metadata.namespace = d.metadata.namespace
        rs.metadata.labels.update(d.spec.template.metadata.labels)
        rs.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] = hash_
        rs.metadata.owner_references.append(m.controller_reference(d))
        rs.spec.min_ready_seconds = d.spec.min_ready_seconds
        rs.spec.selector.CopyFrom(d.spec.selector)
        rs.spec.selector.match_labels[podtemplate.POD_TEMPLATE_HASH_LABEL] = hash_
        rs.spec.template.CopyFrom(d.spec.template)
        rs.spec.template.metadata.labels[podtemplate.POD_TEMPLATE_HASH_LABEL] = hash_
        rs.spec.replicas = 0
        rs.spec.replicas = du.new_rs_new_replicas(d, [*old, rs], rs, self._active_pods())
        du.set_new_replica_set_annotations(d, rs, new_revision, False)
        try:
            created = await self.client.create(rs)
        except AlreadyExists:
            existing = await self.client.get(v1.ReplicaSet, rs.metadata.name,
                                             rs.metadata.namespace)
            if m.is_controlled_by(existing, d) and podtemplate.equal_ignore_hash(
                    existing.spec.template, d.spec.template):
                # Ours, not yet in the cache: use it.
                self._replace(existing)
                return existing
            # A different template hashed to the same name: move the hash and retry.
            status = v1.DeploymentStatus()
            status.CopyFrom(d.status)
            status.collision_count = (status.collision_count
                                      if status.HasField("collision_count") else 0) + 1
            await self._write_status(status)
            raise
        except ApiError as e:
            status = v1.DeploymentStatus()
            status.CopyFrom(d.status)
            if du.has_progress_deadline(d):
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "False", du.FAILED_RS_CREATE,
                    f'Failed to create new replica set "{rs.metadata.name}": {e}', m.now()))
                await self._write_status(status)
            self.c.recorder.record(d, WARNING, du.FAILED_RS_CREATE,
                                   f"Failed to create new replica set"
                                   f' "{rs.metadata.name}": {e}')
            raise
        self.c.remember(created)
        self._replace(created)
        if created.spec.replicas > 0:
            self.c.recorder.record(d, NORMAL, "ScalingReplicaSet",
                                   f"Scaled up replica set {created.metadata.name}"
                                   f" to {created.spec.replicas}")
        await self._sync_deployment_revision(du.revision(created))
        status = v1.DeploymentStatus()
        status.CopyFrom(self.d.status)
        if du.has_progress_deadline(self.d):
            du.set_condition(status, du.new_condition(
                du.PROGRESSING, "True", du.NEW_RS_CREATED,
                f'Created new replica set "{created.metadata.name}"', m.now()))
        await self._write_status(status)
        return created

    async def _sync_deployment_revision(self, rev: int) -> None:
        """The Deployment carries its current revision too (as kubectl describe shows it)."""
        if rev <= 0 or self.d.metadata.annotations.get(du.REVISION_ANNOTATION) == str(rev):
            return
        d = self.d
        patch = {"metadata": {"annotations": {du.REVISION_ANNOTATION: str(rev)},
                              "resourceVersion": d.metadata.resource_version}}
        self.d = await self.client.patch(v1.Deployment, d.metadata.name, patch,
                                         d.metadata.namespace)
        self.c.remember(self.d)

    # ------------------------------------------------------------ scaling

    async def _scale(self, rs: v1.ReplicaSet, size: int) -> tuple[bool, v1.ReplicaSet]:
        """Sets the size and the desired/max annotations; True when the size moved."""
        d = self.d
        size_changed = rs.spec.replicas != size
        max_ = d.spec.replicas + du.max_surge(d)
        if not size_changed and not du.replicas_annotations_need_update(rs, d.spec.replicas,
                                                                        max_):
            return False, rs
        updated = m.copy(rs)
        old_size = rs.spec.replicas
        updated.spec.replicas = size
        du.set_replicas_annotations(updated, d.spec.replicas, max_)
        updated = await self.client.update(updated)
        self.c.remember(updated)
        self._replace(updated)
        if size_changed:
            direction = "up" if size > old_size else "down"
            self.c.recorder.record(d, NORMAL, "ScalingReplicaSet",
                                   f"Scaled {direction} replica set {rs.metadata.name}"
                                   f" to {size} from {old_size}")
            self.log.info("scaled replica set", replicaset=rs.metadata.name, size=size,
                          was=old_size)
        return size_changed, updated

    def _is_scaling_event(self) -> bool:
        """The replica count changed while the template did not: any active ReplicaSet
        remembers another desired size."""
        new, old = self._new_and_old()
        for rs in du.active([*old, new]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != self.d.spec.replicas:
                return True
        return False

    async def _sync_scale(self) -> None:
        """Resize without rolling (paused, or replicas changed): proportional scaling."""
        new, old = await self._new_and_old_synced(create=False)
        await self._scale_proportionally(new, old)
        if self.d.spec.paused:
            await self._cleanup(self._new_and_old()[1])
        await self._sync_status_only()

    async def _scale_proportionally(self, new: v1.ReplicaSet | None,
                                    old: list[v1.ReplicaSet]) -> None:
        d = self.d
        only = du.find_active_or_latest(new, old)
        if only is not None:
            await self._scale(only, d.spec.replicas)
            return
        if du.is_saturated(d, new):
            for rs in du.active(old):
                await self._scale(rs, 0)
            return
        if not du.is_rolling_update(d):
            return
        sizes = du.proportional_sizes(d, new, old)
        for rs in du.active([*old, new]):
            await self._scale(rs, sizes.get(rs.metadata.name, rs.spec.replicas))

    # ------------------------------------------------------------ rolling update

    async def _rollout_rolling(self) -> None:
        new, old = await self._new_and_old_synced(create=True)
        assert new is not None
        if await self._reconcile_new(new):
            await self._sync_rollout_status()
            return
        new = self._current(new)
        if await self._reconcile_old(new):
            await self._sync_rollout_status()
            return
        new, old = self._new_and_old()
        status = du.calculate_status(self.rss, new, self.d, m.now())
        if du.deployment_complete(self.d, status):
            await self._cleanup(old)
        await self._sync_rollout_status()

    def _current(self, rs: v1.ReplicaSet) -> v1.ReplicaSet:
        for r in self.rss:
            if r.metadata.uid == rs.metadata.uid:
                return r
        return rs

    async def _reconcile_new(self, new: v1.ReplicaSet) -> bool:
        d = self.d
        if new.spec.replicas == d.spec.replicas:
            return False
        if new.spec.replicas > d.spec.replicas:
            return (await self._scale(new, d.spec.replicas))[0]
        size = du.new_rs_new_replicas(d, self.rss, new, self._active_pods())
        return (await self._scale(new, size))[0]

    async def _reconcile_old(self, new: v1.ReplicaSet) -> bool:
        d = self.d
        old = du.active(du.find_old_replica_sets(self.rss, new))
        if du.replica_count(old) == 0:
            return False
        all_count = du.replica_count(self.rss)
        min_available = d.spec.replicas - du.max_unavailable(d)
        new_unavailable = new.spec.replicas - min(new.status.available_replicas,
                                                  new.spec.replicas)
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        # Unhealthy old pods go first: they serve nothing, so removing them costs nothing.
        cleaned = await self._cleanup_unhealthy(old, max_scaled_down)
        old = du.active(du.find_old_replica_sets(self.rss, self._current(new)))
        scaled = await self._scale_down_old_for_rolling(old)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, old: list[v1.ReplicaSet], max_cleanup: int) -> int:
        total = 0
        for rs in du.by_creation(old):
            if total >= max_cleanup:
                break
            if rs.spec.replicas == 0:
                continue
            healthy = min(rs.status.available_replicas, rs.spec.replicas)
            if rs.spec.replicas == healthy:
                continue
            count = min(max_cleanup - total, rs.spec.replicas - healthy)
            await self._scale(rs, rs.spec.replicas - count)
            total += count
        return total

    async def _scale_down_old_for_rolling(self, old: list[v1.ReplicaSet]) -> int:
        d = self.d
        min_available = d.spec.replicas - du.max_unavailable(d)
        # Spec-capped: a ReplicaSet just scaled down still reports the pods it is deleting.
        available = du.safe_available_count(self.rss)
        if available <= min_available:
            return 0
        to_scale_down = available - min_available
        total = 0
        for rs in du.by_creation(old):
            if total >= to_scale_down:
                break
            if rs.spec.replicas == 0:
                continue
            count = min(rs.spec.replicas, to_scale_down - total)
            await self._scale(rs, rs.spec.replicas - count)
            total += count
        return total

    # ------------------------------------------------------------ recreate

    async def _rollout_recreate(self) -> None:
        new, old = await self._new_and_old_synced(create=False)
        scaled_down = False
        for rs in du.active(old):
            changed, _ = await self._scale(rs, 0)
            scaled_down = scaled_down or changed
        if scaled_down:
            await self._sync_rollout_status()
            return
        new, old = self._new_and_old()
        if self._old_pods_running(new, old):
            await self._sync_rollout_status()
            return
        if new is None:
            new, old = await self._new_and_old_synced(create=True)
            assert new is not None
        await self._scale(new, self.d.spec.replicas)
        new, old = self._new_and_old()
        status = du.calculate_status(self.rss, new, self.d, m.now())
        if du.deployment_complete(self.d, status):
            await self._cleanup(old)
        await self._sync_rollout_status()

    def _old_pods_running(self, new: v1.ReplicaSet | None, old: list[v1.ReplicaSet]) -> bool:
        """Whether any pod of an old ReplicaSet is still there (terminating included)."""
        if du.actual_replica_count(old) > 0:
            return True
        new_uid = new.metadata.uid if new is not None else None
        for uid, pods in self._pods_by_rs().items():
            if uid == new_uid:
                continue
            if any(not podutil.is_terminal(p) for p in pods):
                return True
        return False

    # ------------------------------------------------------------ history

    async def _cleanup(self, old: list[v1.ReplicaSet]) -> None:
        """Deletes the oldest unused ReplicaSets beyond revisionHistoryLimit."""
        d = self.d
        if not d.spec.HasField("revision_history_limit"):
            return
        alive = [rs for rs in old if not rs.metadata.deletion_timestamp]
        excess = len(alive) - d.spec.revision_history_limit
        if excess <= 0:
            return
        for rs in du.by_revision(alive)[:excess]:
            if (rs.status.replicas != 0 or rs.spec.replicas != 0
                    or rs.metadata.generation > rs.status.observed_generation):
                continue
            self.log.info("deleting old replica set", replicaset=rs.metadata.name,
                          revision=du.revision(rs))
            try:
                await self.client.delete(v1.ReplicaSet, rs.metadata.name, rs.metadata.namespace,
                                         uid=rs.metadata.uid)
            except NotFound:
                pass
            self.rss = [r for r in self.rss if r.metadata.uid != rs.metadata.uid]

    # ------------------------------------------------------------ status

    async def _check_paused_conditions(self) -> None:
        d = self.d
        if not du.has_progress_deadline(d):
            return
        condition = du.get_condition(d.status, du.PROGRESSING)
        if condition is not None and condition.reason == du.TIMED_OUT:
            return  # a timed-out rollout stays so until a new one
        paused_cond = condition is not None and condition.reason == du.PAUSED
        now = m.now()
        status = v1.DeploymentStatus()
        status.CopyFrom(d.status)
        if d.spec.paused and not paused_cond:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.PAUSED,
                                                      "Deployment is paused", now))
        elif not d.spec.paused and paused_cond:
            du.set_condition(status, du.new_condition(du.PROGRESSING, "Unknown", du.RESUMED,
                                                      "Deployment is resumed", now))
        else:
            return
        await self._write_status(status)

    async def _sync_status_only(self) -> None:
        new, _ = self._new_and_old()
        status = du.calculate_status(self.rss, new, self.d, m.now())
        await self._write_status(status)

    async def _sync_rollout_status(self) -> None:
        d = self.d
        now = m.now()
        new, _ = self._new_and_old()
        status = du.calculate_status(self.rss, new, d, now)
        if not du.has_progress_deadline(d):
            du.remove_condition(status, du.PROGRESSING)
        current = du.get_condition(status, du.PROGRESSING)
        complete = (status.replicas == status.updated_replicas and current is not None
                    and current.reason == du.NEW_RS_AVAILABLE)
        if du.has_progress_deadline(d) and not complete:
            what = (f'ReplicaSet "{new.metadata.name}"' if new is not None
                    else f'Deployment "{d.metadata.name}"')
            if du.deployment_complete(d, status):
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "True", du.NEW_RS_AVAILABLE,
                    f"{what} has successfully progressed.", now))
            elif du.deployment_progressing(d, status):
                condition = du.new_condition(du.PROGRESSING, "True", du.RS_UPDATED,
                                             f"{what} is progressing.", now)
                # Progress moves lastUpdateTime (the deadline counts from it), not the
                # transition time.
                if current is not None and current.status == "True":
                    condition.last_transition_time = current.last_transition_time
                du.remove_condition(status, du.PROGRESSING)
                du.set_condition(status, condition)
            elif du.deployment_timed_out(d, status, now):
                du.set_condition(status, du.new_condition(
                    du.PROGRESSING, "False", du.TIMED_OUT,
                    f"{what} has timed out progressing.", now))
                self.c.recorder.record(d, WARNING, du.TIMED_OUT,
                                       f"Deployment {d.metadata.name!r} has timed out"
                                       " progressing.")
        self._mirror_replica_failure(status)
        if status == d.status:
            self._requeue_stuck(status, now)
            return
        await self._write_status(status)
        self._requeue_stuck(status, now)

    def _mirror_replica_failure(self, status: v1.DeploymentStatus) -> None:
        """A ReplicaSet that cannot create pods makes the Deployment report why."""
        failure = None
        for rs in self.rss:
            for c in rs.status.conditions:
                if c.type == "ReplicaFailure" and c.status == "True":
                    failure = c
        if failure is not None:
            du.set_condition(status, du.new_condition(
                du.REPLICA_FAILURE, failure.status, failure.reason, failure.message, m.now()))
        else:
            du.remove_condition(status, du.REPLICA_FAILURE)

    def _requeue_stuck(self, status: v1.DeploymentStatus, now: dt.datetime) -> None:
        """Look again when the progress deadline would pass (at most a check period away)."""
        d = self.d
        condition = du.get_condition(status, du.PROGRESSING)
        if (not du.has_progress_deadline(d) or condition is None
                or condition.reason in (du.NEW_RS_AVAILABLE, du.TIMED_OUT)
                or not condition.last_update_time
                or du.deployment_complete(d, status)):
            return
        due = m.parse_time(condition.last_update_time) + dt.timedelta(
            seconds=d.spec.progress_deadline_seconds)
        wait = max((due - now).total_seconds() + 1.0, 0.0)
        self.c.queue.add_after(self.key, min(wait, self.c.progress_check_period))

    async def _write_status(self, status: v1.DeploymentStatus) -> None:
        if status == self.d.status:
            return
        updated = m.copy(self.d)
        updated.status.CopyFrom(status)
        try:
            self.d = await self.client.update_status(updated)
            self.c.remember(self.d)
        except NotFound:
            return
