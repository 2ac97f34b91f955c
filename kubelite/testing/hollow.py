"""Hollow nodes, as Kubernetes' kubemark: Node objects kept Ready and pods "run" by status
updates alone, so controllers and the scheduler can be tested and benchmarked at scale
without processes. bench/hollow_nodes.py runs them in a process of their own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from kubelite.api import convert, pods
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, ApiError, NotFound
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer
from kubelite.client.workqueue import ShutDown, WorkQueue
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


def _is_ready(node: v1.Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def ready_node(name: str, cpu: str = "4", memory: str = "8Gi", pods_: str = "110",
               labels: dict[str, str] | None = None) -> v1.Node:
    node = v1.Node(metadata=v1.ObjectMeta(name=name, labels={
        "kubernetes.io/hostname": name, **(labels or {})}))
    for field in (node.status.capacity, node.status.allocatable):
        field.update({"cpu": cpu, "memory": memory, "pods": pods_})
    now = m.now_rfc3339()
    node.status.conditions.add(type="Ready", status="True", reason="KubeletReady",
                               last_heartbeat_time=now, last_transition_time=now)
    node.status.addresses.add(type="InternalIP", address="127.0.0.1")
    return node


class HollowCluster:
    """Hollow nodes plus a hollow kubelet: every pod bound to one of them becomes Running and
    Ready (``bind_unscheduled`` also binds pods round-robin when no scheduler runs); pods
    marked for deletion are confirmed deleted at once.

    Pods are handled by key from a work queue (a pod is never handled by two workers at once;
    its events while it waits collapse into one look at the latest cached copy), ``workers``
    at a time, as a kubelet's pod workers run side by side. Heartbeats renew the nodes
    ``workers`` at a time too."""

    def __init__(self, client: ApiClient, node_names: list[str], *, cpu: str = "4",
                 memory: str = "8Gi", bind_unscheduled: bool = False,
                 heartbeat: float = 5.0, workers: int = 1, retry_delay: float = 0.1) -> None:
        if workers < 1:
            raise ValueError(f"workers: must be at least 1, not {workers}")
        self.client = client
        self.node_names = node_names
        self.cpu, self.memory = cpu, memory
        self.bind_unscheduled = bind_unscheduled
        self.heartbeat = heartbeat
        self.workers = workers
        """Pods handled at once, and nodes renewed at once."""
        self.retry_delay = retry_delay
        """Seconds before a pod whose update failed is looked at again."""
        self.informer: Informer[v1.Pod] = Informer(client, v1.Pod)
        self._queue = WorkQueue(name="hollow-kubelet")
        self._tasks: list[asyncio.Task[None]] = []
        self._next = 0
        self.paused_nodes: set[str] = set()
        """Nodes whose pods are left alone (as if their kubelet were gone)."""

    async def start(self) -> None:
        await self._each_node(self.add_node, list(self.node_names))
        self.informer.add_handlers(on_add=self._enqueue,
                                   on_update=lambda old, new: self._enqueue(new))
        self.informer.start()
        await self.informer.wait_for_sync()
        self._tasks = [asyncio.create_task(self._work(), name=f"hollow-kubelet-{i}")
                       for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="hollow-heartbeats"))

    def _enqueue(self, pod: v1.Pod) -> None:
        self._queue.add(m.key_of(pod))

    async def _each_node(self, fn: Callable[[str], Awaitable[None]], names: list[str]) -> None:
        """``fn(name)`` for every name, ``workers`` at a time; the first error is raised."""
        todo = iter(names)

        async def worker() -> None:
            for name in todo:
                await fn(name)

        await asyncio.gather(*(worker() for _ in range(min(self.workers, len(names)))))

    async def add_node(self, name: str) -> None:
        with contextlib.suppress(AlreadyExists):
            await self.client.create(ready_node(name, self.cpu, self.memory))
        if name not in self.node_names:
            self.node_names.append(name)

    async def stop(self) -> None:
        await self._queue.shut_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.informer.stop()

    async def _work(self) -> None:
        while True:
            try:
                key = await self._queue.get()
            except ShutDown:
                return
            try:
                pod = self.informer.store.get(key)
                if pod is not None:
                    await self._handle(pod)
            except NotFound:
                pass
            except ApiError as e:
                log.warning("hollow kubelet failed; retrying", pod=key, error=str(e))
                self._queue.add_after(key, self.retry_delay)
            finally:
                self._queue.done(key)

    async def _handle(self, pod: v1.Pod) -> None:
        node = pod.spec.node_name
        if not node:
            if self.bind_unscheduled and self.node_names and not pod.metadata.deletion_timestamp:
                target = self.node_names[self._next % len(self.node_names)]
                self._next += 1
                await self.client.bind(pod.metadata.namespace, pod.metadata.name, target,
                                       pod.metadata.uid)
            return
        if node not in self.node_names or node in self.paused_nodes:
            return
        if pod.metadata.deletion_timestamp:
            await self.client.delete(v1.Pod, pod.metadata.name, pod.metadata.namespace,
                                     grace_period_seconds=0, uid=pod.metadata.uid)
            return
        if pod.status.phase == "Running" or pods.is_terminal(pod):
            return
        status = v1.PodStatus()
        status.CopyFrom(pod.status)
        status.phase = "Running"
        status.host_ip = status.pod_ip = "127.0.0.1"
        status.start_time = status.start_time or m.now_rfc3339()
        holder = v1.Pod(status=status)
        for type_ in ("Initialized", "ContainersReady", "Ready"):
            pods.set_condition(holder, type_, "True")
        del holder.status.container_statuses[:]
        for c in pod.spec.containers:
            holder.status.container_statuses.add(
                name=c.name, image=c.image, ready=True, started=True,
                state=v1.ContainerState(running=v1.ContainerStateRunning(
                    started_at=m.now_rfc3339())),
            )
        await self.client.patch(v1.Pod, pod.metadata.name,
                                {"status": convert.message_to_dict(holder.status)},
                                pod.metadata.namespace, subresource="status")

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self._each_node(self._beat, list(self.node_names))

    async def _beat(self, name: str) -> None:
        if name in self.paused_nodes:
            return
        try:
            await self._renew(name)
        except ApiError as e:
            log.warning("hollow heartbeat failed", node=name, error=str(e))

    async def _post_ready(self, name: str) -> None:
        """As a kubelet: Ready=True with a fresh heartbeat (only when it is not already)."""
        node = await self.client.get(v1.Node, name)
        if _is_ready(node):
            return
        now = m.now_rfc3339()
        for condition in node.status.conditions:
            if condition.type == "Ready":
                condition.status, condition.reason = "True", "KubeletReady"
                condition.last_heartbeat_time = condition.last_transition_time = now
        await self.client.update_status(node)

    def resume_node(self, name: str) -> None:
        """Ends a simulated outage: heartbeats resume and the node's pods are looked at again."""
        self.paused_nodes.discard(name)
        for pod in self.informer.store.items():
            if pod.spec.node_name == name:
                self._enqueue(pod)

    async def _renew(self, name: str) -> None:
        await self._post_ready(name)
        now = m.format_micro_time(m.now())
        try:
            lease = await self.client.get(v1.Lease, name, "kube-node-lease")
            lease.spec.renew_time = now
            await self.client.update(lease)
        except NotFound:
            lease = v1.Lease(metadata=v1.ObjectMeta(name=name, namespace="kube-node-lease"))
            lease.spec.holder_identity = name
            lease.spec.lease_duration_seconds = 40
            lease.spec.renew_time = now
            await self.client.create(lease)
