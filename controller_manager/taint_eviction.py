"""NoExecute taint manager, as Kubernetes' pkg/controller/tainteviction: pods on a node with a
NoExecute taint they do not tolerate are deleted at once; pods that tolerate it for
tolerationSeconds are deleted that long after the taint's timeAdded; tolerating it without
tolerationSeconds keeps them.

Keyed by pod; a pod with a deadline ahead is simply re-queued for then, and the re-check
finds nothing to do if the taint went away or the pod left (level-triggered eviction, no
cancellable timers).
"""

from __future__ import annotations

import datetime as dt

import structlog

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, NotFound
from kubelite.api.scheduling import tolerates
from kubelite.client.controller import Controller
from kubelite.client.events import EventRecorder
from kubelite.client.informer import Informer, index_by_node_name
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

NO_EXECUTE = "NoExecute"
NODE_INDEX = "spec.nodeName"


def no_execute_taints(node: v1.Node) -> list[v1.Taint]:
    return [t for t in node.spec.taints if t.effect == NO_EXECUTE]


def eviction_time(
    pod: v1.Pod, taints: list[v1.Taint], first_seen: dict[tuple[str, str], dt.datetime],
    now: dt.datetime,
) -> dt.datetime | None:
    """When the pod must go because of ``taints`` (``now`` or earlier: at once), or None
    if it tolerates them all for ever. ``first_seen`` stands in for a missing timeAdded."""
    deadline: dt.datetime | None = None
    for taint in taints:
        matching = [t for t in pod.spec.tolerations if tolerates(t, taint)]
        if not matching:
            return now
        bounded = [t.toleration_seconds for t in matching if t.HasField("toleration_seconds")]
        if not bounded:
            continue  # tolerated for ever
        seconds = min(bounded)
        if seconds <= 0:
            return now
        added = (m.parse_time(taint.time_added) if taint.time_added
                 else first_seen.get((taint.key, taint.effect), now))
        due = added + dt.timedelta(seconds=seconds)
        if deadline is None or due < deadline:
            deadline = due
    return deadline


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.recorder: EventRecorder = ctx.recorder
        self.pods: Informer[v1.Pod] = ctx.informers.informer(v1.Pod)
        self.nodes: Informer[v1.Node] = ctx.informers.informer(v1.Node)
        self.pods.store.add_indexer(NODE_INDEX, index_by_node_name)
        # Taints without timeAdded: when we first saw them, per node.
        self._first_seen: dict[str, dict[tuple[str, str], dt.datetime]] = {}
        self.pods.add_handlers(
            on_add=self._pod_changed, on_update=lambda old, new: self._pod_changed(new)
        )
        self.nodes.add_handlers(
            on_add=self._node_changed, on_update=self._node_updated,
            on_delete=self._node_deleted,
        )

    def _node_deleted(self, node: v1.Node) -> None:
        self._first_seen.pop(node.metadata.name, None)

    def _pod_changed(self, pod: v1.Pod) -> None:
        if pod.spec.node_name and not pod.metadata.deletion_timestamp:
            self.enqueue(pod)

    def _node_updated(self, old: v1.Node, new: v1.Node) -> None:
        if no_execute_taints(old) != no_execute_taints(new):
            self._node_changed(new)

    def _node_changed(self, node: v1.Node) -> None:
        self._track_first_seen(node)
        if not no_execute_taints(node):
            return
        for pod in self.pods.store.by_index(NODE_INDEX, node.metadata.name):
            self._pod_changed(pod)

    def _track_first_seen(self, node: v1.Node) -> None:
        seen = self._first_seen.setdefault(node.metadata.name, {})
        current = {(t.key, t.effect) for t in no_execute_taints(node)}
        for key in [k for k in seen if k not in current]:
            del seen[key]
        for key in current:
            seen.setdefault(key, m.now())

    async def reconcile(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None or not pod.spec.node_name or pod.metadata.deletion_timestamp:
            return
        node = self.nodes.store.get(pod.spec.node_name)
        if node is None:
            return
        taints = no_execute_taints(node)
        if not taints:
            return
        now = m.now()
        due = eviction_time(pod, taints, self._first_seen.get(node.metadata.name, {}), now)
        if due is None:
            return
        if due > now:
            self.queue.add_after(key, (due - now).total_seconds())
            return
        await self._evict(pod)

    async def _evict(self, pod: v1.Pod) -> None:
        namespace, name = pod.metadata.namespace, pod.metadata.name
        log.info("evicting pod for a NoExecute taint", pod=f"{namespace}/{name}",
                 node=pod.spec.node_name)
        self.recorder.record(pod, "Normal", "TaintManagerEviction",
                             f"Marking for deletion Pod {namespace}/{name}")
        try:
            await self.client.delete(v1.Pod, name, namespace, uid=pod.metadata.uid)
        except (NotFound, Conflict):
            pass  # already gone, or replaced by a new pod of the same name
