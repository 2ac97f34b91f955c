"""The DaemonSet controller: one daemon pod on every node that should run it (upstream's
pkg/controller/daemon).

A node should run the pod when the template's nodeSelector and required node affinity match it
and its NoSchedule/NoExecute taints are tolerated, counting the tolerations Kubernetes adds to
every daemon pod; a pod keeps running on a node whose only untolerated taints are NoSchedule.
Pods are created already bound (spec.nodeName), named ``<ds>-xxxxx``, labelled with the
template's ``controller-revision-hash``. RollingUpdate replaces out-of-date pods while at most
maxUnavailable desired pods are unavailable; OnDelete replaces them only when deleted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from controller_manager.context import ControllerContext
from controller_manager.workload import (
    OWNER_INDEX,
    REVISION_HASH_LABEL,
    ExpectedPodEvents,
    delete_pod,
    pod_available,
    seconds_until_available,
    template_hash,
    write_status,
)
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import ApiError
from kubelite.api.scheduling import find_untolerated_taint, required_node_affinity_matches
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING
from kubelite.client.expectations import ControllerExpectations
from kubelite.client.informer import index_by_owner_uid
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

FAILED_POD_BACKOFF = (1.0, 900.0)
"""Delay before deleting a node's next failed daemon pod: doubles from 1 s up to 15 min."""

# Upstream's AddOrUpdateDaemonPodTolerations: daemons survive node trouble and cordons.
DAEMON_TOLERATIONS = (
    v1.Toleration(key="node.kubernetes.io/not-ready", operator="Exists", effect="NoExecute"),
    v1.Toleration(key="node.kubernetes.io/unreachable", operator="Exists", effect="NoExecute"),
    v1.Toleration(key="node.kubernetes.io/disk-pressure", operator="Exists", effect="NoSchedule"),
    v1.Toleration(key="node.kubernetes.io/memory-pressure", operator="Exists",
                  effect="NoSchedule"),
    v1.Toleration(key="node.kubernetes.io/pid-pressure", operator="Exists", effect="NoSchedule"),
    v1.Toleration(key="node.kubernetes.io/unschedulable", operator="Exists", effect="NoSchedule"),
)
HOST_NETWORK_TOLERATION = v1.Toleration(
    key="node.kubernetes.io/network-unavailable", operator="Exists", effect="NoSchedule"
)

# ---------------------------------------------------------------- helpers


def scaled_value(value: v1.IntOrString, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    which = value.WhichOneof("value")
    if which == "int_val":
        return value.int_val
    if which == "str_val" and value.str_val.endswith("%"):
        exact = int(value.str_val[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if which == "str_val" and value.str_val.isdigit():
        return int(value.str_val)
    return 0


# ---------------------------------------------------------------- placement


def daemon_tolerations(spec: v1.PodSpec) -> list[v1.Toleration]:
    """The template's tolerations plus those Kubernetes adds to daemon pods."""
    result = list(spec.tolerations)
    extra = [*DAEMON_TOLERATIONS, *([HOST_NETWORK_TOLERATION] if spec.host_network else [])]
    for toleration in extra:
        if not any(t.key == toleration.key and t.effect == toleration.effect for t in result):
            result.append(toleration)
    return result


def node_should_run_daemon_pod(node: v1.Node, ds: v1.DaemonSet) -> tuple[bool, bool]:
    """(should run, should continue running), upstream's NodeShouldRunDaemonPod."""
    spec = ds.spec.template.spec
    if spec.node_name and spec.node_name != node.metadata.name:
        return False, False
    if not required_node_affinity_matches(spec, node):
        return False, False
    tolerations = daemon_tolerations(spec)

    def untolerated(effects: tuple[str, ...]) -> bool:
        return find_untolerated_taint(node.spec.taints, tolerations, effects) is not None

    if untolerated(("NoSchedule", "NoExecute")):
        return False, not untolerated(("NoExecute",))
    return True, True


# ---------------------------------------------------------------- the controller


def _age_order(pod: v1.Pod) -> tuple[int, str, str]:
    # Bound first, then oldest, then by name (podByCreationTimestampAndPhase).
    return (0 if pod.spec.node_name else 1, pod.metadata.creation_timestamp, pod.metadata.name)


@dataclass
class _Plan:
    create_on: list[str] = field(default_factory=list)
    delete: list[v1.Pod] = field(default_factory=list)
    requeue_after: float | None = None


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.clock: Callable[[], dt.datetime] = m.now
        self.expectations = ControllerExpectations()
        self._failed_backoff: dict[str, tuple[float, float]] = {}
        self.daemonsets = ctx.informers.informer(v1.DaemonSet)
        self.pods = ctx.informers.informer(v1.Pod)
        self.nodes = ctx.informers.informer(v1.Node)
        self.pods.store.add_indexer(OWNER_INDEX, index_by_owner_uid)
        self.daemonsets.add_handlers(on_add=self.enqueue,
                                     on_update=lambda _old, new: self.enqueue(new),
                                     on_delete=self.enqueue)
        self._pod_events = ExpectedPodEvents("DaemonSet", self.expectations, self.queue)
        self.pods.add_handlers(on_add=self._pod_events.added, on_update=self._pod_updated,
                               on_delete=self._pod_events.deleted)
        self.nodes.add_handlers(on_add=lambda _n: self._enqueue_all(),
                                on_update=self._node_updated,
                                on_delete=lambda _n: self._enqueue_all())

    # ------------------------------------------------------------ handlers

    def _enqueue_all(self) -> None:
        for key in self.daemonsets.store.keys():
            self.queue.add(key)

    def _node_updated(self, old: v1.Node, new: v1.Node) -> None:
        if (old.metadata.labels != new.metadata.labels or old.spec.taints != new.spec.taints
                or old.spec.unschedulable != new.spec.unschedulable):
            self._enqueue_all()

    def _pod_updated(self, old: v1.Pod, new: v1.Pod) -> None:
        # A pod that changed controllers is news to its previous owner too.
        old_key = m.controller_key(old, "DaemonSet")
        if old_key is not None and old_key != m.controller_key(new, "DaemonSet"):
            self.queue.add(old_key)
        self._pod_events.updated(old, new)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        ds = self.daemonsets.store.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        now = self.clock()
        nodes = {n.metadata.name: n for n in self.nodes.store.items()}
        by_node = self._pods_by_node(ds)
        revision = template_hash(ds.spec.template, ds.status)
        requeue: float | None = None
        if not ds.metadata.deletion_timestamp and self.expectations.satisfied(key):
            plan = self._manage(key, ds, nodes, by_node)
            if ds.spec.update_strategy.type == "RollingUpdate":
                self._rolling_update(ds, nodes, by_node, revision, plan, now)
            await self._sync_nodes(key, ds, plan, revision)
            requeue = plan.requeue_after
        await self._update_status(ds, nodes, by_node, revision, now)
        wait = self._next_availability_check(ds, by_node, now)
        for delay in (requeue, wait):
            if delay is not None and delay > 0:
                self.queue.add_after(key, delay)

    def _pods_by_node(self, ds: v1.DaemonSet) -> dict[str, list[v1.Pod]]:
        by_node: dict[str, list[v1.Pod]] = {}
        for pod in self.pods.store.by_index(OWNER_INDEX, ds.metadata.uid):
            if m.is_controlled_by(pod, ds):
                by_node.setdefault(pod.spec.node_name, []).append(pod)
        for pods in by_node.values():
            pods.sort(key=_age_order)
        return by_node

    def _manage(self, key: str, ds: v1.DaemonSet, nodes: dict[str, v1.Node],
                by_node: dict[str, list[v1.Pod]]) -> _Plan:
        plan = _Plan()
        for name, node in nodes.items():
            should_run, should_continue = node_should_run_daemon_pod(node, ds)
            pods = by_node.get(name, [])
            if should_run and not pods:
                plan.create_on.append(name)
            elif should_continue:
                running = []
                for pod in pods:
                    if pod.metadata.deletion_timestamp:
                        continue
                    if pod.status.phase == "Failed":
                        delay = self._failed_pod_delay(key, name)
                        if delay > 0:
                            plan.requeue_after = min(plan.requeue_after or delay, delay)
                            continue
                        plan.delete.append(pod)
                    elif pod.status.phase == "Succeeded":
                        plan.delete.append(pod)
                    else:
                        running.append(pod)
                # More than one daemon pod on a node: keep the oldest.
                plan.delete.extend(running[1:])
            elif pods:
                plan.delete.extend(p for p in pods if not p.metadata.deletion_timestamp)
        # Pods whose node is gone (or that were never bound) have nowhere to run.
        for name, pods in by_node.items():
            if name not in nodes:
                plan.delete.extend(p for p in pods if not p.metadata.deletion_timestamp)
        return plan

    def _failed_pod_delay(self, key: str, node: str) -> float:
        """0 to delete a failed pod now, else seconds to wait (kubelets may keep rejecting)."""
        backoff_key = f"{key}/{node}"
        now = time.monotonic()
        initial, cap = FAILED_POD_BACKOFF
        delay, last = self._failed_backoff.get(backoff_key, (0.0, 0.0))
        if delay and now - last < delay:
            return delay - (now - last)
        if delay and now - last > 2 * cap:
            delay = 0.0  # a long quiet spell resets the backoff
        self._failed_backoff[backoff_key] = (min(delay * 2, cap) if delay else initial, now)
        return 0.0

    def _rolling_update(self, ds: v1.DaemonSet, nodes: dict[str, v1.Node],
                        by_node: dict[str, list[v1.Pod]], revision: str, plan: _Plan,
                        now: dt.datetime) -> None:
        """Upstream's rollingUpdate without surge: replace old pods while at most
        maxUnavailable desired pods are unavailable; unavailable old pods go first."""
        desired = sum(1 for n in nodes.values() if node_should_run_daemon_pod(n, ds)[0])
        ru = ds.spec.update_strategy.rolling_update
        max_unavailable = scaled_value(ru.max_unavailable, desired, round_up=True)
        if max_unavailable == 0:
            max_unavailable = 1  # maxSurge is not implemented: replace one at a time
        touched = set(plan.create_on) | {p.spec.node_name for p in plan.delete}
        unavailable = 0
        replace_now: list[v1.Pod] = []
        candidates: list[v1.Pod] = []
        for name, node in nodes.items():
            if not node_should_run_daemon_pod(node, ds)[0]:
                continue
            pods = [p for p in by_node.get(name, []) if not p.metadata.deletion_timestamp]
            new = [p for p in pods if p.metadata.labels.get(REVISION_HASH_LABEL) == revision]
            old = [p for p in pods if p.metadata.labels.get(REVISION_HASH_LABEL) != revision]
            if name in touched or len(new) > 1 or len(old) > 1 or bool(new) == bool(old):
                unavailable += 1  # manage() is fixing this node, or nothing runs there yet
            elif new:
                if not pod_available(new[0], ds.spec.min_ready_seconds, now):
                    unavailable += 1
            elif not pod_available(old[0], ds.spec.min_ready_seconds, now):
                replace_now.append(old[0])  # already unavailable: replacing it costs nothing
                unavailable += 1
            else:
                candidates.append(old[0])
        budget = max(0, min(max_unavailable - unavailable, len(candidates)))
        candidates.sort(key=lambda p: p.spec.node_name)
        plan.delete.extend([*replace_now, *candidates[:budget]])

    async def _sync_nodes(self, key: str, ds: v1.DaemonSet, plan: _Plan, revision: str) -> None:
        if not plan.create_on and not plan.delete:
            return
        self.expectations.expect(key, creations=len(plan.create_on),
                                 deletions=[p.metadata.uid for p in plan.delete])
        results = await asyncio.gather(
            *(self._create(key, ds, node, revision) for node in plan.create_on),
            *(self._delete(key, ds, pod) for pod in plan.delete),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _create(self, key: str, ds: v1.DaemonSet, node: str, revision: str) -> None:
        template = ds.spec.template
        pod = v1.Pod(metadata=v1.ObjectMeta(
            generate_name=f"{ds.metadata.name}-", namespace=ds.metadata.namespace,
            labels={**template.metadata.labels, REVISION_HASH_LABEL: revision},
            annotations=dict(template.metadata.annotations),
            owner_references=[m.controller_reference(ds)],
        ))
        pod.spec.CopyFrom(template.spec)
        del pod.spec.tolerations[:]
        pod.spec.tolerations.extend(daemon_tolerations(template.spec))
        # Upstream pins the pod with node affinity and lets the scheduler bind it; binding at
        # creation is what that amounts to.
        pod.spec.node_name = node
        try:
            created = await self.client.create(pod)
        except ApiError as e:
            self.expectations.creation_observed(key)
            self.recorder.record(ds, WARNING, "FailedCreate",
                                 f"Error creating: {e}")
            raise
        self.recorder.record(ds, NORMAL, "SuccessfulCreate",
                             f"Created pod: {created.metadata.name}")

    async def _delete(self, key: str, ds: v1.DaemonSet, pod: v1.Pod) -> None:
        node_gone = self.nodes.store.get(pod.spec.node_name) is None
        # No kubelet will confirm a graceful deletion on a node that is gone.
        await delete_pod(self.client, self.recorder, self.expectations, key, ds, pod,
                         grace_period_seconds=0 if node_gone else None)

    # ------------------------------------------------------------ status

    async def _update_status(self, ds: v1.DaemonSet, nodes: dict[str, v1.Node],
                             by_node: dict[str, list[v1.Pod]], revision: str,
                             now: dt.datetime) -> None:
        status = v1.DaemonSetStatus()
        status.CopyFrom(ds.status)
        desired = current = misscheduled = ready = updated = available = 0
        for name, node in nodes.items():
            should_run, _ = node_should_run_daemon_pod(node, ds)
            pods = by_node.get(name, [])
            if not should_run:
                misscheduled += 1 if pods else 0
                continue
            desired += 1
            if not pods:
                continue
            current += 1
            pod = pods[0]
            if podutil.is_ready(pod):
                ready += 1
                if pod_available(pod, ds.spec.min_ready_seconds, now):
                    available += 1
            if pod.metadata.labels.get(REVISION_HASH_LABEL) == revision:
                updated += 1
        status.desired_number_scheduled = desired
        status.current_number_scheduled = current
        status.number_misscheduled = misscheduled
        status.number_ready = ready
        status.updated_number_scheduled = updated
        status.number_available = available
        status.number_unavailable = desired - available
        status.observed_generation = ds.metadata.generation
        await write_status(self.client, ds, status)

    def _next_availability_check(self, ds: v1.DaemonSet, by_node: dict[str, list[v1.Pod]],
                                 now: dt.datetime) -> float | None:
        waits = [seconds_until_available(p, ds.spec.min_ready_seconds, now)
                 for pods in by_node.values() for p in pods]
        waits = [w for w in waits if w > 0]
        return min(waits) + 0.05 if waits else None
