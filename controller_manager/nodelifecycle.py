"""Node lifecycle, as Kubernetes' pkg/controller/nodelifecycle: a node that stops
heartbeating becomes Ready=Unknown, nodes that are not ready get taints, and (through the
taint eviction controller it runs) pods leave tainted nodes.

Every node_monitor_period each node is checked: when both its Lease's renewTime and its
Ready condition's lastHeartbeatTime are older than node_monitor_grace_period, its
conditions become Unknown ("Kubelet stopped posting node status.") and its pods Ready=False.
The Ready condition then decides the taints: False -> node.kubernetes.io/not-ready, Unknown ->
node.kubernetes.io/unreachable, each with NoSchedule and NoExecute; True -> neither. When no
node at all is Ready (Kubernetes' full disruption) the NoExecute ones are withheld: losing
every node at once more likely means we are cut off, and evicting everything would not help.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import structlog

from controller_manager.context import ControllerContext
from controller_manager.taint_eviction import NODE_INDEX, TaintEvictionController
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import Conflict, NotFound
from kubelite.client.controller import Controller
from kubelite.client.events import EventRecorder
from kubelite.client.informer import Informer, index_by_node_name
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
LIFECYCLE_TAINT_KEYS = (TAINT_NOT_READY, TAINT_UNREACHABLE)
TAINT_EFFECTS = ("NoSchedule", "NoExecute")
# Conditions the kubelet owns and the controller marks Unknown when it goes silent.
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
REASON_UNKNOWN = "NodeStatusUnknown"
MESSAGE_UNKNOWN = "Kubelet stopped posting node status."
REASON_NEVER = "NodeStatusNeverUpdated"
MESSAGE_NEVER = "Kubelet never posted node status."


def ready_condition(node: v1.Node) -> v1.NodeCondition | None:
    for condition in node.status.conditions:
        if condition.type == "Ready":
            return condition
    return None


def last_heard(node: v1.Node, lease: v1.Lease | None) -> dt.datetime:
    """The latest sign of life: the Lease's renewTime or the Ready heartbeat, whichever is
    newer; a node never heard from counts from its creation."""
    times = []
    if lease is not None and lease.spec.renew_time:
        times.append(m.parse_time(lease.spec.renew_time))
    ready = ready_condition(node)
    if ready is not None and ready.last_heartbeat_time:
        times.append(m.parse_time(ready.last_heartbeat_time))
    if not times and node.metadata.creation_timestamp:
        times.append(m.parse_time(node.metadata.creation_timestamp))
    return max(times) if times else m.now()


def mark_unknown(node: v1.Node, now: dt.datetime) -> bool:
    """Sets the kubelet's conditions to Unknown in place; returns whether anything changed."""
    stamp = m.format_time(now)
    changed = False
    if ready_condition(node) is None:
        node.status.conditions.add(type="Ready", status="Unknown", reason=REASON_NEVER,
                                   message=MESSAGE_NEVER, last_transition_time=stamp)
        changed = True
    for condition in node.status.conditions:
        if condition.type not in KUBELET_CONDITIONS or condition.status == "Unknown":
            continue
        # lastHeartbeatTime stays: it is when the kubelet last spoke.
        condition.status = "Unknown"
        condition.reason = REASON_UNKNOWN
        condition.message = MESSAGE_UNKNOWN
        condition.last_transition_time = stamp
        changed = True
    return changed


def desired_taints(node: v1.Node, now: dt.datetime, *, no_execute: bool = True
                   ) -> list[v1.Taint]:
    """The node's taints with the lifecycle ones made to match its Ready condition; kept
    taints keep their timeAdded. ``no_execute=False`` (every node down) leaves out the
    NoExecute ones."""
    ready = ready_condition(node)
    if ready is None:
        return list(node.spec.taints)  # not heard of yet: the grace period decides first
    want_key = {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE}.get(ready.status)
    effects = TAINT_EFFECTS if no_execute else ("NoSchedule",)
    result: list[v1.Taint] = []
    for taint in node.spec.taints:
        if taint.key in LIFECYCLE_TAINT_KEYS and (
            taint.key != want_key or taint.effect not in effects
        ):
            continue
        result.append(taint)
    if want_key is not None:
        have = {(t.key, t.effect) for t in result}
        for effect in effects:
            if (want_key, effect) not in have:
                result.append(v1.Taint(key=want_key, effect=effect,
                                       time_added=m.format_time(now)))
    return result


class NodeLifecycleController(Controller):
    name = "node-lifecycle-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.settings = ctx.settings
        self.recorder: EventRecorder = ctx.recorder
        self.nodes: Informer[v1.Node] = ctx.informers.informer(v1.Node)
        self.leases: Informer[v1.Lease] = ctx.informers.informer(v1.Lease)
        self.pods: Informer[v1.Pod] = ctx.informers.informer(v1.Pod)
        self.pods.store.add_indexer(NODE_INDEX, index_by_node_name)
        self.taint_eviction = TaintEvictionController(ctx)
        self.watching_since = m.now()
        self._all_down = False
        self.nodes.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new))
        self.leases.add_handlers(on_add=self._lease_changed,
                                 on_update=lambda _o, new: self._lease_changed(new))

    def _lease_changed(self, lease: v1.Lease) -> None:
        # A renewed lease may mean a node came back: look at it now, not next period.
        if lease.metadata.namespace == LEASE_NAMESPACE:
            self.queue.add(lease.metadata.name)

    async def start(self) -> None:
        self.watching_since = m.now()
        await self.taint_eviction.start()

    def run(self) -> None:
        super().run()
        self.taint_eviction.run()
        self._tasks.append(asyncio.create_task(self._monitor(), name=f"{self.name}-monitor"))

    async def stop(self) -> None:
        await super().stop()
        await self.taint_eviction.stop()

    async def _monitor(self) -> None:
        """Kubernetes' monitorNodeHealth loop: every node, every node_monitor_period."""
        while True:
            for key in self.nodes.store.keys():
                self.queue.add(key)
            await asyncio.sleep(self.settings.node_monitor_period)

    async def reconcile(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            return
        now = m.now()
        lease = self.leases.store.get_by_name(LEASE_NAMESPACE, node.metadata.name)
        # As Kubernetes, the grace period also runs from when we started watching: a
        # controller that was down itself gives kubelets a chance before judging them.
        heard = max(last_heard(node, lease), self.watching_since)
        if (now - heard).total_seconds() > self.settings.node_monitor_grace_period:
            node = await self._mark_unknown(node, now)
        ready = ready_condition(node)
        if ready is not None and ready.status == "Unknown":
            await self._mark_pods_not_ready(node)
        await self._update_taints(node, now)

    async def _mark_unknown(self, node: v1.Node, now: dt.datetime) -> v1.Node:
        updated = m.copy(node)
        was_ready = (ready_condition(node) or v1.NodeCondition()).status == "True"
        if not mark_unknown(updated, now):
            return node
        log.info("node stopped posting status; marking Unknown", node=node.metadata.name)
        result = await self.client.update_status(updated)
        if was_ready:
            self.recorder.record(node, "Normal", "NodeNotReady",
                                 f"Node {node.metadata.name} status is now: NodeNotReady")
        return result

    def _all_nodes_down(self, latest: v1.Node) -> bool:
        """Kubernetes' full disruption: when no node is Ready, the fault is more likely
        ours (or the network's) than every node's, so nothing is evicted. ``latest`` is
        newer than its cached copy (we may have just marked it Unknown)."""
        nodes = [n for n in self.nodes.store.items() if n.metadata.name != latest.metadata.name]
        return not any(
            (ready_condition(n) or v1.NodeCondition()).status == "True" for n in [*nodes, latest]
        )

    async def _update_taints(self, node: v1.Node, now: dt.datetime) -> None:
        all_down = self._all_nodes_down(node)
        if all_down != self._all_down:
            self._all_down = all_down
            log.warning("no node is ready; not evicting" if all_down
                        else "a node is ready again; evicting from unready nodes")
        taints = desired_taints(node, now, no_execute=not all_down)
        if list(node.spec.taints) == taints:
            return
        updated = m.copy(node)
        del updated.spec.taints[:]
        updated.spec.taints.extend(taints)
        log.info("updating node taints", node=node.metadata.name,
                 taints=[f"{t.key}:{t.effect}" for t in taints])
        await self.client.update(updated)

    async def _mark_pods_not_ready(self, node: v1.Node) -> None:
        """Kubernetes' MarkPodsNotReady: nobody on a silent node can vouch for its pods."""
        for pod in self.pods.store.by_index(NODE_INDEX, node.metadata.name):
            ready = podutil.get_condition(pod, "Ready")
            if ready is not None and ready.status == "False":
                continue
            updated = m.copy(pod)
            podutil.set_condition(updated, "Ready", "False")
            try:
                await self.client.update_status(updated)
            except (NotFound, Conflict):
                continue  # gone, or changed meanwhile: the next period looks again
            self.recorder.record(pod, "Warning", "NodeNotReady", "Node is not ready")
