"""The ReplicaSet controller: keeps spec.replicas active pods matching the selector.

As Kubernetes' pkg/controller/replicaset: pod events lower the controller's *expectations*
(creations and deletions it has asked for but not yet seen in its cache), and a ReplicaSet
whose expectations are not met is not resized again, so a lagging cache never makes it
create or delete twice. Orphans matching the selector are adopted, owned pods that stopped
matching are released. Creations go in slow-start batches (1, 2, 4, ...) so a failing
template costs one error, not a thousand; deletions pick the pods that matter least first.

A sync looks only at the pods the ReplicaSet controls and the namespace's orphans (the pod
informer's index by controller uid), and reads each cached pod's facts once
(controller_manager.pod_facts): at 1,000 replicas it syncs after nearly every pod event.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import structlog

from controller_manager.context import ControllerContext
from controller_manager.ownership import (
    claim,
    fresh_owner_check,
    owners_to_sync_on_add,
    owners_to_sync_on_update,
    resolve_controller_ref,
)
from controller_manager.pod_facts import (
    LabelMatcher,
    PodFacts,
    PodFactsCache,
    add_controller_index,
    controlled_by,
    orphans,
    pod_facts,
)
from controller_manager.workload import delete_pod
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import ApiError, Conflict
from kubelite.api.labels import Selector, selector_from_label_selector
from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.expectations import EXPECTATIONS_TTL, ControllerExpectations
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

BURST_REPLICAS = 500
"""Most pods created or deleted in one sync (Kubernetes' burstReplicas)."""
SLOW_START_INITIAL_BATCH = 1

# ---------------------------------------------------------------- pod facts


def _time(text: str) -> dt.datetime | None:
    return m.parse_time(text) if text else None


def ready_since(pod: v1.Pod) -> dt.datetime | None:
    condition = podutil.get_condition(pod, "Ready")
    if condition is None or condition.status != "True":
        return None
    return _time(condition.last_transition_time)


def _max_restarts(pod: v1.Pod) -> int:
    return max((c.restart_count for c in pod.status.container_statuses), default=0)


_PHASE_ORDER = {"Pending": 0, "": 0, "Unknown": 1, "Running": 2}
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def deletion_order(pods: Sequence[v1.Pod]) -> list[v1.Pod]:
    """Pods in the order a scale-down removes them (Kubernetes' ActivePodsWithRanks):
    unscheduled before scheduled, Pending before Unknown before Running, not ready before
    ready, more pods of the set on the same node first, ready for less time first, more
    container restarts first, newer first."""
    per_node: dict[str, int] = {}
    for pod in pods:
        if pod.spec.node_name:
            per_node[pod.spec.node_name] = per_node.get(pod.spec.node_name, 0) + 1

    def key(pod: v1.Pod) -> tuple[int, int, int, int, float, int, float]:
        ready = podutil.is_ready(pod)
        since = ready_since(pod) if ready else None
        created = _time(pod.metadata.creation_timestamp) or _EPOCH
        return (
            1 if pod.spec.node_name else 0,
            _PHASE_ORDER.get(pod.status.phase, 3),
            1 if ready else 0,
            -per_node.get(pod.spec.node_name, 0) if pod.spec.node_name else 0,
            # Later ready time (ready for less time) first; a missing one sorts last.
            -(since.timestamp()) if since is not None else float("inf"),
            -_max_restarts(pod),
            -created.timestamp(),
        )

    return sorted(pods, key=key)


def _controller_uid(pod: v1.Pod) -> str | None:
    ref = m.controller_of(pod)
    return str(ref.uid) if ref is not None else None


# ---------------------------------------------------------------- batches


async def slow_start_batch(count: int, initial: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """Calls ``fn`` ``count`` times in batches of 1, 2, 4, ... (from ``initial``), stopping
    after the first batch with a failure; returns the successes and the first error."""
    remaining = count
    successes = 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        successes += batch - len(errors)
        for error in errors:
            if isinstance(error, asyncio.CancelledError):
                raise error
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# ---------------------------------------------------------------- the controller


class ReplicaSetController(Controller):
    name = "replicaset"

    def __init__(self, ctx: ControllerContext, *, burst_replicas: int = BURST_REPLICAS,
                 expectations_ttl: float = EXPECTATIONS_TTL) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client: ApiClient = ctx.client
        self.recorder: EventRecorder = ctx.recorder
        self.burst_replicas = burst_replicas
        self.expectations = ControllerExpectations(expectations_ttl)
        self.rs_informer = ctx.informers.informer(v1.ReplicaSet)
        self.pod_informer = ctx.informers.informer(v1.Pod)
        add_controller_index(self.pod_informer.store)
        self.pod_facts = PodFactsCache()
        self.rs_informer.add_handlers(self.enqueue, self._on_rs_update, self._on_rs_delete)
        self.pod_informer.add_handlers(self._on_pod_add, self._on_pod_update,
                                       self._on_pod_delete)

    @property
    def rs_store(self) -> Store[v1.ReplicaSet]:
        return self.rs_informer.store

    @property
    def pod_store(self) -> Store[v1.Pod]:
        return self.pod_informer.store

    # ------------------------------------------------------------ handlers

    def _on_rs_update(self, old: v1.ReplicaSet, new: v1.ReplicaSet) -> None:
        self.enqueue(new)

    def _on_rs_delete(self, rs: v1.ReplicaSet) -> None:
        self.expectations.forget(m.key_of(rs))
        self.enqueue(rs)

    def _owner(self, pod: v1.Pod) -> v1.ReplicaSet | None:
        return resolve_controller_ref(self.rs_store, pod.metadata.namespace,
                                      m.controller_of(pod), "ReplicaSet")

    def _on_pod_add(self, pod: v1.Pod) -> None:
        if pod.metadata.deletion_timestamp:
            # Seen for the first time already going (e.g. after a restart).
            self._on_pod_delete(pod)
            return
        controlled = m.controller_of(pod) is not None
        for rs in owners_to_sync_on_add(self.rs_store, "ReplicaSet", pod):
            if controlled:
                # One of the creations we asked for (or another controlled pod) arrived.
                self.expectations.creation_observed(m.key_of(rs))
            self.enqueue(rs)

    def _on_pod_update(self, old: v1.Pod, new: v1.Pod) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        old_facts, new_facts = pod_facts(old), pod_facts(new)
        labels_changed = old_facts.labels != new_facts.labels
        if new.metadata.deletion_timestamp:
            # A graceful deletion: the pod no longer counts, so this is when the deletion
            # we asked for is observed; the pod's old owner (labels changed) hears too.
            self._on_pod_delete(new)
            if labels_changed:
                self._on_pod_delete(old)
            return
        if old_facts == new_facts and _controller_uid(old) == _controller_uid(new):
            # Nothing a sync reads changed (a binding, container statuses, addresses): at
            # 1,000 replicas that is a sync of every pod saved per such update.
            return
        for rs in owners_to_sync_on_update(self.rs_store, "ReplicaSet", old, new):
            self.enqueue(rs)

    def _on_pod_delete(self, pod: v1.Pod) -> None:
        rs = self._owner(pod)
        if rs is None:
            return
        key = m.key_of(rs)
        self.expectations.deletion_observed(key, m.key_of(pod))
        self.enqueue(rs)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        rs = self.rs_store.get(key)
        if rs is None:
            self.expectations.forget(key)
            self.pod_facts.forget(key)
            return
        bound = log.bind(replicaset=key)
        try:
            selector = selector_from_label_selector(rs.spec.selector)
        except ValueError as e:
            bound.warning("invalid selector; skipping", error=str(e))
            return
        needs_sync = self.expectations.satisfied(key)
        pods, facts = await self._claim_pods(key, rs, selector)
        error: ApiError | None = None
        diff = 0
        if needs_sync and not rs.metadata.deletion_timestamp:
            diff = len(pods) - rs.spec.replicas
            try:
                await self._manage_replicas(key, rs, pods, diff)
            except ApiError as e:
                error = e
        now = m.now()
        status = calculate_status(rs, pods, now, error, diff, facts)
        await self._write_status(rs, status)
        if error is not None:
            raise error
        # A ready pod becomes available minReadySeconds later: look again then.
        wait = next_available_in(rs, facts, now)
        if wait is not None:
            self.queue.add_after(key, wait)

    async def _claim_pods(self, key: str, rs: v1.ReplicaSet, selector: Selector
                          ) -> tuple[list[v1.Pod], list[PodFacts]]:
        """The active pods ``rs`` controls after claim() (with their facts): its pods that
        still match are kept as they are; the others and the namespace's orphans go
        through claim() to be released or adopted."""
        owned = controlled_by(self.pod_store, rs.metadata.uid)
        owned_facts = self.pod_facts.facts(key, owned)
        pods: list[v1.Pod] = []
        facts: list[PodFacts] = []
        recheck: list[v1.Pod] = []
        matcher = LabelMatcher(selector)
        for pod, fact in zip(owned, owned_facts, strict=True):
            if not fact.active:
                continue
            if matcher.matches(fact):
                pods.append(pod)
                facts.append(fact)
            else:
                recheck.append(pod)
        recheck.extend(p for p in orphans(self.pod_store, rs.metadata.namespace)
                       if podutil.is_active(p))
        if recheck:
            claimed = await claim(self.client, rs, selector, recheck,
                                  fresh_owner_check(self.client, rs))
            for obj in claimed:
                if isinstance(obj, v1.Pod):
                    pods.append(obj)
                    facts.append(pod_facts(obj))
        return pods, facts

    async def _manage_replicas(self, key: str, rs: v1.ReplicaSet, pods: list[v1.Pod],
                               diff: int) -> None:
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            # Expect before creating: the informer may deliver a pod before create returns.
            self.expectations.expect_creations(key, count)
            log.info("creating pods", replicaset=key, count=count, want=rs.spec.replicas,
                     have=len(pods))

            async def create() -> None:
                await self._create_pod(rs)

            successes, error = await slow_start_batch(count, SLOW_START_INITIAL_BATCH, create)
            # Creations that failed or never ran will never be observed.
            for _ in range(count - successes):
                self.expectations.creation_observed(key)
            if error is not None:
                raise error
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            victims = deletion_order(pods)[:count]
            self.expectations.expect_deletions(key, [m.key_of(p) for p in victims])
            log.info("deleting pods", replicaset=key, count=count, want=rs.spec.replicas,
                     have=len(pods))
            results = await asyncio.gather(*(self._delete_pod(key, rs, p) for p in victims),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _create_pod(self, rs: v1.ReplicaSet) -> None:
        template = rs.spec.template
        pod = v1.Pod()
        pod.metadata.generate_name = f"{rs.metadata.name}-"
        pod.metadata.namespace = rs.metadata.namespace
        pod.metadata.labels.update(template.metadata.labels)
        pod.metadata.annotations.update(template.metadata.annotations)
        pod.metadata.finalizers.extend(template.metadata.finalizers)
        pod.metadata.owner_references.append(m.controller_reference(rs))
        pod.spec.CopyFrom(template.spec)
        try:
            created = await self.client.create(pod)
        except ApiError as e:
            self.recorder.record(rs, WARNING, "FailedCreate", f"Error creating: {e}")
            raise
        self.recorder.record(rs, NORMAL, "SuccessfulCreate",
                             f"Created pod: {created.metadata.name}")

    async def _delete_pod(self, key: str, rs: v1.ReplicaSet, pod: v1.Pod) -> None:
        await delete_pod(self.client, self.recorder, self.expectations, key, rs, pod,
                         identity=m.key_of(pod))

    async def _write_status(self, rs: v1.ReplicaSet, status: v1.ReplicaSetStatus) -> None:
        if rs.status == status:
            return
        updated = m.copy(rs)
        for attempt in range(2):
            updated.status.CopyFrom(status)
            try:
                await self.client.update_status(updated)
                return
            except Conflict:
                if attempt:
                    raise
                # Our status is computed from the pods; only the version is stale.
                updated = await self.client.get(v1.ReplicaSet, rs.metadata.name,
                                                rs.metadata.namespace)
                if updated.metadata.uid != rs.metadata.uid:
                    return


def calculate_status(rs: v1.ReplicaSet, pods: Sequence[v1.Pod], now: dt.datetime,
                     error: ApiError | None = None, diff: int = 0,
                     facts: Sequence[PodFacts] | None = None) -> v1.ReplicaSetStatus:
    """The status of ``rs`` with ``pods`` (``facts``: theirs, in order, when known)."""
    if facts is None:
        facts = [pod_facts(p) for p in pods]
    status = v1.ReplicaSetStatus()
    status.CopyFrom(rs.status)
    template_labels = frozenset(rs.spec.template.metadata.labels.items())
    min_ready = rs.spec.min_ready_seconds
    status.replicas = len(pods)
    status.fully_labeled_replicas = sum(1 for f in facts if f.fully_labeled(template_labels))
    status.ready_replicas = sum(1 for f in facts if f.ready)
    status.available_replicas = sum(1 for f in facts if f.available(min_ready, now))
    status.observed_generation = rs.metadata.generation
    failure = [c for c in status.conditions if c.type == "ReplicaFailure"]
    if error is not None and not failure:
        reason = "FailedCreate" if diff < 0 else "FailedDelete"
        status.conditions.add(type="ReplicaFailure", status="True", reason=reason,
                              message=str(error), last_transition_time=m.format_time(now))
    elif error is None and failure:
        kept = [c for c in status.conditions if c.type != "ReplicaFailure"]
        del status.conditions[:]
        status.conditions.extend(kept)
    return status


def next_available_in(rs: v1.ReplicaSet, facts: Sequence[PodFacts],
                      now: dt.datetime) -> float | None:
    """Seconds until the next ready pod passes minReadySeconds, if any is waiting to."""
    if rs.spec.min_ready_seconds <= 0:
        return None
    waits = []
    for fact in facts:
        since = fact.ready_since if fact.ready else None
        if since is None:
            continue
        due = since + dt.timedelta(seconds=rs.spec.min_ready_seconds)
        if due > now:
            waits.append((due - now).total_seconds())
    # Times have second precision: look a little after the due time.
    return min(waits) + 0.1 if waits else None
