"""Pod garbage collection, as Kubernetes' pkg/controller/podgc:

- pods bound to a node that does not exist are force-deleted (grace 0), once the node has
  been missing for a quarantine and a live GET confirms it (a node that just registered may
  not have reached our cache);
- terminating pods that were never scheduled are force-deleted (no kubelet will confirm);
- terminating pods on a node that is not ready and carries the out-of-service taint are
  force-deleted (the operator declared the node dead);
- finished pods beyond terminated_pod_gc_threshold are deleted, oldest first.

Keyed by pod, plus one key for the terminated-pods pass; a periodic sweep catches the rest.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from controller_manager.context import ControllerContext
from controller_manager.taint_eviction import NODE_INDEX
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import Conflict, NotFound
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer, index_by_node_name
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

TERMINATED_KEY = "#terminated"
"""Work-queue key of the terminated-pods pass (never a pod key: those hold a '/')."""
GC_CHECK_PERIOD = 20.0
"""Seconds between full sweeps (Kubernetes' gcCheckPeriod)."""
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service"


def _node_ready(node: v1.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def _out_of_service(node: v1.Node) -> bool:
    return not _node_ready(node) and any(
        t.key == OUT_OF_SERVICE_TAINT and t.effect == "NoExecute" for t in node.spec.taints
    )


def terminated_to_delete(pods: list[v1.Pod], threshold: int) -> list[v1.Pod]:
    """The finished pods over ``threshold``, oldest first (0 disables, as Kubernetes)."""
    if threshold <= 0:
        return []
    finished = [p for p in pods if podutil.is_terminal(p) and not p.metadata.deletion_timestamp]
    excess = len(finished) - threshold
    if excess <= 0:
        return []
    finished.sort(key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))
    return finished[:excess]


class PodGCController(Controller):
    name = "pod-garbage-collector"

    def __init__(self, ctx: ControllerContext, *, gc_period: float = GC_CHECK_PERIOD) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.threshold = ctx.settings.terminated_pod_gc_threshold
        # Trust a node's absence only after as long as a node may go unheard (Kubernetes
        # waits 40 s, the grace period's default).
        self.quarantine = ctx.settings.node_monitor_grace_period
        self.gc_period = gc_period
        self.pods: Informer[v1.Pod] = ctx.informers.informer(v1.Pod)
        self.nodes: Informer[v1.Node] = ctx.informers.informer(v1.Node)
        self.pods.store.add_indexer(NODE_INDEX, index_by_node_name)
        self._missing_since: dict[str, float] = {}
        self.pods.add_handlers(on_add=self._pod_changed,
                               on_update=lambda old, new: self._pod_changed(new, old))
        self.nodes.add_handlers(on_add=self._node_changed,
                                on_update=lambda _old, new: self._node_changed(new),
                                on_delete=self._node_deleted)

    def _pod_changed(self, pod: v1.Pod, old: v1.Pod | None = None) -> None:
        node = pod.spec.node_name
        if (node and self.nodes.store.get(node) is None) or (
            not node and pod.metadata.deletion_timestamp
        ):
            self.enqueue(pod)
        elif pod.metadata.deletion_timestamp and node:
            found = self.nodes.store.get(node)
            if found is not None and _out_of_service(found):
                self.enqueue(pod)
        if podutil.is_terminal(pod) and (old is None or not podutil.is_terminal(old)):
            self.queue.add(TERMINATED_KEY)

    def _node_changed(self, node: v1.Node) -> None:
        self._missing_since.pop(node.metadata.name, None)
        if _out_of_service(node):
            self._enqueue_pods_on(node.metadata.name)

    def _node_deleted(self, node: v1.Node) -> None:
        self._enqueue_pods_on(node.metadata.name)

    def _enqueue_pods_on(self, node_name: str) -> None:
        for pod in self.pods.store.by_index(NODE_INDEX, node_name):
            self.enqueue(pod)

    def run(self) -> None:
        super().run()
        self._tasks.append(asyncio.create_task(self._sweep(), name=f"{self.name}-sweep"))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.gc_period)
            for pod in self.pods.store.items():
                self._pod_changed(pod)
            self.queue.add(TERMINATED_KEY)

    async def reconcile(self, key: str) -> None:
        if key == TERMINATED_KEY:
            await self._gc_terminated()
            return
        pod = self.pods.store.get(key)
        if pod is None:
            return
        node_name = pod.spec.node_name
        if not node_name:
            if pod.metadata.deletion_timestamp:
                await self._force_delete(pod, "terminating and never scheduled")
            return
        node = self.nodes.store.get(node_name)
        if node is not None:
            self._missing_since.pop(node_name, None)
            if pod.metadata.deletion_timestamp and _out_of_service(node):
                await self._force_delete(pod, "terminating on an out-of-service node")
            return
        now = time.monotonic()
        since = self._missing_since.setdefault(node_name, now)
        if now - since < self.quarantine:
            self.queue.add_after(key, self.quarantine - (now - since))
            return
        try:
            await self.client.get(v1.Node, node_name)
            return  # it exists after all; our cache will catch up
        except NotFound:
            pass
        await self._force_delete(pod, f"bound to node {node_name} that does not exist")

    async def _gc_terminated(self) -> None:
        for pod in terminated_to_delete(self.pods.store.items(), self.threshold):
            await self._force_delete(pod, "finished pods over terminated-pod-gc-threshold")

    async def _force_delete(self, pod: v1.Pod, why: str) -> None:
        log.info("deleting pod", pod=m.key_of(pod), reason=why)
        try:
            await self.client.delete(v1.Pod, pod.metadata.name, pod.metadata.namespace,
                                     grace_period_seconds=0, uid=pod.metadata.uid)
        except (NotFound, Conflict):
            pass
