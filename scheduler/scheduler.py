"""The scheduler: informers feed the cache and the queue; one loop places pods one at a time.

As kube-scheduler's schedule_one.go: a *scheduling cycle* (synchronous, so it sees one
consistent cache) filters every node, scores the feasible ones, picks the best (random
among ties) and assumes the pod there; a *binding cycle* (its own task) then calls Bind, so
the next pod is scheduled while the previous bind is in flight. A pod that fits nowhere
gets PodScheduled=False/Unschedulable with upstream's message and a FailedScheduling event,
and waits in the queue for backoff or a cluster change.

With leader election, all of that runs only while this instance holds the Lease; each term
starts from fresh informers, cache and queue.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from google.protobuf.json_format import MessageToDict

from kubelite.api import meta as m
from kubelite.api.defaults import DEFAULT_SCHEDULER_NAME
from kubelite.api.errors import ApiError, Conflict, NotFound
from kubelite.api.pods import is_terminal, set_condition
from kubelite.client.client import ApiClient
from kubelite.client.events import NORMAL, WARNING, EventRecorder
from kubelite.client.informer import InformerFactory, InformerSettings
from kubelite.client.leaderelection import LeaderElectionSettings, LeaderElector
from kubelite.health import Readiness, all_ready, informers_readiness
from protos.v1 import objects_pb2 as v1
from scheduler.cache import SchedulerCache
from scheduler.framework import (
    NO_NODES_AVAILABLE,
    SUCCESS,
    ClusterEvent,
    Code,
    FilterPlugin,
    FitError,
    Framework,
    NodeInfo,
    PodInfo,
    Profile,
    Registry,
    Status,
)
from scheduler.plugins import IN_TREE
from scheduler.queue import QueueClosed, QueuedPodInfo, QueueSettings, SchedulingQueue

log = structlog.get_logger(__name__)

COMPONENT = "default-scheduler"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_SCHEDULER_ERROR = "SchedulerError"
# Finished pods hold nothing on their node: the API server drops them from this watch.
NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODE_PERCENTAGE_TO_FIND = 5


@dataclass(frozen=True)
class SchedulerSettings:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    """Pods whose spec.schedulerName is this one are scheduled here; others are left alone."""
    queue: QueueSettings = QueueSettings()
    """Backoff and unschedulable-pod timers."""
    profile: Profile = Profile()
    """Enabled filter and score plugins, and score weights."""
    assumed_pod_ttl: float = 30.0
    """Seconds after a bind returns before an assumed pod the informer never confirmed is
    dropped from the cache."""
    percentage_of_nodes_to_score: int = 0
    """Stop filtering once this percentage of nodes was found feasible (at least 100 nodes,
    or all of them when there are fewer), starting each cycle where the last one stopped;
    0 picks upstream's adaptive value (50% minus 1% per 125 nodes, at least 5%); 100 filters
    and scores every node."""
    container_ports_are_host_ports: bool = True
    """Pods share their node's network (the process runtime): containerPorts conflict."""
    leader_election: LeaderElectionSettings | None = None
    """Run only while holding this Lease; None schedules at once, unconditionally."""
    identity: str = ""
    """This instance's name in Events it writes (defaults to the leader election identity)."""
    informer: InformerSettings = field(default_factory=InformerSettings)
    """Watch resume backoff for the node and pod informers."""
    cache_cleanup_interval: float = 1.0
    """Seconds between sweeps for expired assumed pods."""
    health_address: str = ""
    """host:port of the gRPC health service the process serves (empty: none)."""

    def __post_init__(self) -> None:
        if not 0 <= self.percentage_of_nodes_to_score <= 100:
            raise ValueError(
                f"percentageOfNodesToScore: Invalid value: {self.percentage_of_nodes_to_score}:"
                " not in valid range [0-100]")


@dataclass
class SchedulerStats:
    attempts: int = 0
    """Scheduling cycles run."""
    scheduled: int = 0
    """Pods this instance bound."""
    unschedulable: int = 0
    """Attempts that found no feasible node."""
    errors: int = 0
    """Attempts that failed for another reason (bind errors included)."""


def _node_scheduling_changed(old: v1.Node, new: v1.Node) -> bool:
    """Whether a node update may let a parked pod fit (heartbeats alone do not)."""
    if (
        old.spec.unschedulable != new.spec.unschedulable
        or dict(old.status.allocatable) != dict(new.status.allocatable)
        or dict(old.metadata.labels) != dict(new.metadata.labels)
        or list(old.spec.taints) != list(new.spec.taints)
    ):
        return True

    def conditions(node: v1.Node) -> dict[str, str]:
        return {c.type: c.status for c in node.status.conditions}

    return conditions(old) != conditions(new)


class Scheduler:
    def __init__(
        self, settings: SchedulerSettings, client: ApiClient, *, registry: Registry = IN_TREE
    ) -> None:
        self.settings = settings
        self.client = client
        self.framework = Framework(settings.profile, registry)
        self.stats = SchedulerStats()
        self.identity = settings.identity or (
            settings.leader_election.identity if settings.leader_election else ""
        )
        self._event_plugins = {e: self.framework.plugins_for_event(e) for e in ClusterEvent}
        self.cache = self._new_cache()
        self.queue = self._new_queue()
        self.informers: InformerFactory | None = None
        self.recorder: EventRecorder | None = None
        self._leading = False
        self._election: asyncio.Task[None] | None = None
        self._elector: LeaderElector | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._binds: set[asyncio.Task[None]] = set()
        self._status_writes: dict[str, asyncio.Task[None]] = {}
        self._next_start_node_index = 0

    def _pod_info(self, pod: v1.Pod) -> PodInfo:
        return PodInfo.of(
            pod, container_ports_are_host_ports=self.settings.container_ports_are_host_ports
        )

    def _new_cache(self) -> SchedulerCache:
        return SchedulerCache(
            assumed_pod_ttl=self.settings.assumed_pod_ttl, make_pod_info=self._pod_info
        )

    def _new_queue(self) -> SchedulingQueue:
        return SchedulingQueue(
            self.settings.queue, make_pod_info=self._pod_info, event_plugins=self._event_plugins
        )

    @property
    def is_leading(self) -> bool:
        """Whether this instance is scheduling now (always, without leader election)."""
        return self._leading

    def readiness(self) -> Readiness:
        """Ready while connected: with leader election, the API server answers its lease
        reads (leader and standby alike); while scheduling, its informers all watch."""
        results: list[Readiness] = []
        if self.settings.leader_election is not None:
            if self._elector is None:
                return False, "not standing for election yet"
            results.append(self._elector.connected())
        if self._leading or self.settings.leader_election is None:
            informers = self.informers.informers() if self.informers is not None else []
            results.append(informers_readiness(informers))
        return all_ready(*results)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Starts scheduling, or standing for election when leader election is configured."""
        election = self.settings.leader_election
        if election is None:
            await self._begin()
        elif self._election is None:
            self._election = asyncio.create_task(
                self._elect_forever(election), name="scheduler-election"
            )

    async def stop(self) -> None:
        if self._election is not None:
            self._election.cancel()
            await asyncio.gather(self._election, return_exceptions=True)
            self._election = None
        await self._end()

    async def _elect_forever(self, settings: LeaderElectionSettings) -> None:
        while True:
            self._elector = LeaderElector(self.client, settings)
            await self._elector.run(self._lead)
            log.warning("stopped leading; standing for election again",
                        identity=settings.identity)

    async def _lead(self) -> None:
        try:
            await self._begin()
            await asyncio.gather(*self._tasks)
        finally:
            await self._end()

    async def _begin(self) -> None:
        """A new term: fresh informers, cache and queue, then the scheduling loop."""
        self.cache = self._new_cache()
        self.queue = self._new_queue()
        self._next_start_node_index = 0
        self.recorder = EventRecorder(self.client, COMPONENT, host=self.identity)
        self.recorder.start()
        self.informers = InformerFactory(self.client, self.settings.informer)
        nodes = self.informers.informer(v1.Node)
        pods = self.informers.informer(v1.Pod, field_selector=NON_TERMINAL_PODS)
        nodes.add_handlers(self._on_node_add, self._on_node_update, self._on_node_delete)
        pods.add_handlers(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        self._leading = True
        self.informers.start()
        await self.informers.wait_for_sync()
        self._tasks = [
            asyncio.create_task(self.queue.run(), name="scheduler-queue-flush"),
            asyncio.create_task(self._cleanup_forever(), name="scheduler-cache-cleanup"),
            asyncio.create_task(self._schedule_forever(), name="scheduler-loop"),
        ]
        for task in self._tasks:
            task.add_done_callback(_log_crash)
        log.info("scheduler started", scheduler_name=self.settings.scheduler_name,
                 nodes=len(self.cache.node_infos()), queued=len(self.queue))

    async def _end(self) -> None:
        if not self._leading:
            return
        self._leading = False
        self.queue.close()
        pending = [*self._tasks, *self._binds, *self._status_writes.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._tasks, self._binds, self._status_writes = [], set(), {}
        if self.informers is not None:
            await self.informers.stop()
            self.informers = None
        if self.recorder is not None:
            await self.recorder.stop()
            self.recorder = None
        log.info("scheduler stopped", stats=self.stats)

    async def _cleanup_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cache_cleanup_interval)
            if self.cache.cleanup_expired_assumed_pods():
                self.queue.move_all_to_active_or_backoff(ClusterEvent.ASSIGNED_POD_DELETE)

    async def _schedule_forever(self) -> None:
        try:
            while True:
                await self.schedule_one()
                # A pop from a non-empty queue does not suspend: let binds and watches run.
                await asyncio.sleep(0)
        except QueueClosed:
            return

    # ---------------------------------------------------------------- informer handlers

    def _responsible(self, pod: v1.Pod) -> bool:
        return pod.spec.scheduler_name == self.settings.scheduler_name

    def _on_node_add(self, node: v1.Node) -> None:
        self.cache.add_node(node)
        self.queue.move_all_to_active_or_backoff(ClusterEvent.NODE_ADD)

    def _on_node_update(self, old: v1.Node, new: v1.Node) -> None:
        self.cache.update_node(new)
        if _node_scheduling_changed(old, new):
            self.queue.move_all_to_active_or_backoff(ClusterEvent.NODE_UPDATE)

    def _on_node_delete(self, node: v1.Node) -> None:
        self.cache.remove_node(node.metadata.name)

    def _on_pod_add(self, pod: v1.Pod) -> None:
        if is_terminal(pod):
            return
        if pod.spec.node_name:
            self.cache.add_pod(pod)
        elif self._responsible(pod):
            self.queue.add(pod)

    def _on_pod_update(self, old: v1.Pod, new: v1.Pod) -> None:
        if new.spec.node_name:
            if not old.spec.node_name:
                self.queue.delete(new)  # bound (by us or anyone): no longer ours to place
            if is_terminal(new):
                self._on_pod_delete(new)
            else:
                self.cache.update_pod(new)
        elif self._responsible(new):
            if old.metadata.resource_version == new.metadata.resource_version:
                return  # a resync, not a change
            if self.cache.is_assumed(new.metadata.uid):
                return  # a stale report from before our bind landed
            self.queue.update(old, new)

    def _on_pod_delete(self, pod: v1.Pod) -> None:
        if pod.spec.node_name:
            self.cache.remove_pod(pod)
            self.queue.move_all_to_active_or_backoff(ClusterEvent.ASSIGNED_POD_DELETE)
        else:
            self.queue.delete(pod)

    # ---------------------------------------------------------------- scheduling cycle

    async def schedule_one(self) -> None:
        """Pops one pod and runs its scheduling cycle; the bind continues in its own task."""
        info = await self.queue.pop()
        try:
            self._scheduling_cycle(info)
        except Exception as e:
            log.exception("scheduling cycle failed", pod=m.key_of(info.pod))
            self._fail(info, Status.error(str(e)), str(e))

    def _scheduling_cycle(self, info: QueuedPodInfo) -> None:
        pod = info.pod
        if pod.metadata.deletion_timestamp or self.cache.is_assumed(info.uid):
            self.queue.done(info.uid)  # being deleted, or already on its way to a node
            return
        self.stats.attempts += 1
        nodes = self.cache.node_infos()
        if not nodes:
            self._fail(info, Status.unresolvable(NO_NODES_AVAILABLE), NO_NODES_AVAILABLE)
            return
        filters, pre_status = self.framework.run_pre_filters(info.pod_info)
        if pre_status.code == Code.ERROR:
            self._fail(info, pre_status, f'running PreFilter plugin "{pre_status.plugin}": '
                       f"{pre_status.message()}")
            return
        if pre_status.is_rejected():
            # Rejected before any node was looked at: the same reason for every node.
            fit = FitError(len(nodes), {n.name: pre_status for n in nodes})
            info.unschedulable_plugins = fit.unschedulable_plugins()
            self._fail(info, Status.unschedulable(), fit.message())
            return
        feasible, statuses = self._find_nodes_that_fit(info.pod_info, nodes, filters)
        errors = [s for s in statuses.values() if s.code == Code.ERROR]
        if errors:
            self._fail(info, errors[0], f'running "{errors[0].plugin}" filter plugin: '
                       f"{errors[0].message()}")
            return
        if not feasible:
            fit = FitError(len(nodes), statuses)
            info.unschedulable_plugins = fit.unschedulable_plugins()
            self._fail(info, Status.unschedulable(), fit.message())
            return
        node = self._select_host(info.pod_info, feasible)
        assumed = self.cache.assume_pod(info.pod_info, node.name)
        task = asyncio.create_task(
            self._binding_cycle(info, assumed, node.name), name=f"bind-{info.pod_info.key}"
        )
        self._binds.add(task)
        task.add_done_callback(self._binds.discard)

    def _num_feasible_nodes_to_find(self, num_all: int) -> int:
        percentage = self.settings.percentage_of_nodes_to_score
        if num_all < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
            return num_all
        if percentage <= 0:
            percentage = max(MIN_FEASIBLE_NODE_PERCENTAGE_TO_FIND, 50 - num_all // 125)
        return max(num_all * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)

    def _find_nodes_that_fit(
        self, pod: PodInfo, nodes: list[NodeInfo], filters: Sequence[FilterPlugin]
    ) -> tuple[list[NodeInfo], dict[str, Status]]:
        """Filters nodes from where the last cycle stopped (so that every node gets its
        turn) until enough are feasible; the Status of each node that is not."""
        count = len(nodes)
        wanted = self._num_feasible_nodes_to_find(count)
        start = self._next_start_node_index % count
        statuses: dict[str, Status] = {}
        if not filters:
            feasible = [nodes[(start + i) % count] for i in range(wanted)]
            self._next_start_node_index = (start + wanted) % count
            return feasible, statuses
        feasible = []
        processed = 0
        for index in range(start - count, start):
            node = nodes[index]  # negative first: start..end, then 0..start
            processed += 1
            for plugin in filters:
                status = plugin.filter(pod, node)
                if status is not SUCCESS and status.code != Code.SUCCESS:
                    statuses[node.name] = status.with_plugin(plugin.name)
                    break
            else:
                feasible.append(node)
                if len(feasible) >= wanted:
                    break
        self._next_start_node_index = (start + processed) % count
        return feasible, statuses

    def _select_host(self, pod: PodInfo, feasible: list[NodeInfo]) -> NodeInfo:
        if len(feasible) == 1:
            return feasible[0]
        scores = self.framework.run_scores(pod, feasible)
        best = max(scores)
        return random.choice([n for n, s in zip(feasible, scores, strict=True) if s == best])

    # ---------------------------------------------------------------- binding cycle

    async def _binding_cycle(self, info: QueuedPodInfo, assumed: PodInfo, node_name: str) -> None:
        pod = info.pod
        uid = info.uid
        try:
            earlier = self._status_writes.get(uid)
            if earlier is not None:
                # A late "Unschedulable" write must not land after the bind's "True".
                await asyncio.wait([earlier])
            await self.client.bind(pod.metadata.namespace, pod.metadata.name, node_name, uid)
        except (NotFound, Conflict) as e:
            # Deleted, replaced or bound by someone else meanwhile: nothing left to do.
            log.info("bind skipped", pod=info.pod_info.key, node=node_name, error=str(e))
            self.cache.forget_pod(uid)
            self.queue.done(uid)
            return
        except ApiError as e:
            self.cache.forget_pod(uid)
            self.queue.move_all_to_active_or_backoff(ClusterEvent.ASSIGNED_POD_DELETE)
            message = f'running Bind plugin "DefaultBinder": {e}'
            self._fail(info, Status.error(message), message)
            return
        self.cache.finish_binding(uid)
        self.queue.done(uid)
        self.stats.scheduled += 1
        if self.recorder is not None:
            self.recorder.record(
                pod, NORMAL, "Scheduled",
                f"Successfully assigned {pod.metadata.namespace}/{pod.metadata.name}"
                f" to {node_name}",
            )

    # ---------------------------------------------------------------- failures

    def _fail(self, info: QueuedPodInfo, status: Status, message: str) -> None:
        """Back to the queue, a FailedScheduling event and PodScheduled=False on the pod."""
        error = not status.is_rejected()
        if error:
            self.stats.errors += 1
        else:
            self.stats.unschedulable += 1
        self.queue.add_unschedulable_if_not_present(info, error=error)
        self.queue.done(info.uid)
        pod = info.pod
        log.info("pod not scheduled", pod=info.pod_info.key, reason=message)
        if self.recorder is not None:
            self.recorder.record(pod, WARNING, "FailedScheduling", message)
        reason = REASON_SCHEDULER_ERROR if error else REASON_UNSCHEDULABLE
        self._spawn_status_write(pod, reason, message)

    def _spawn_status_write(self, pod: v1.Pod, reason: str, message: str) -> None:
        uid = pod.metadata.uid
        updated = m.copy(pod)
        if not set_condition(updated, "PodScheduled", "False", reason, message):
            return
        earlier = self._status_writes.get(uid)
        task = asyncio.create_task(
            self._write_status(updated, earlier), name=f"pod-condition-{m.key_of(pod)}"
        )
        self._status_writes[uid] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self._status_writes.get(uid) is t:
                del self._status_writes[uid]

        task.add_done_callback(forget)

    async def _write_status(
        self, pod: v1.Pod, earlier: asyncio.Task[None] | None
    ) -> None:
        if earlier is not None:
            await asyncio.wait([earlier])  # in order, the newest message last
        conditions = [MessageToDict(c) for c in pod.status.conditions]
        try:
            await self.client.patch(
                v1.Pod, pod.metadata.name, {"status": {"conditions": conditions}},
                pod.metadata.namespace, subresource="status",
            )
        except ApiError as e:
            log.info("could not update pod condition", pod=m.key_of(pod), error=str(e))


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("scheduler task failed", task=task.get_name(), exc_info=task.exception())
