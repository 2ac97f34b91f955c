"""The kubelet: registers the node, keeps it alive, and runs the pods bound to it."""

from __future__ import annotations

import asyncio
import os

import structlog

from kubelet.env import EnvResolver
from kubelet.image_gc import ImageGarbageCollector, ImageGCSettings
from kubelet.node import NodeAgent
from kubelet.pod_ips import PodIPAllocator
from kubelet.pod_network import PodNetwork
from kubelet.pod_worker import NodeContext, PodWorker
from kubelet.routes import RouteAgent
from kubelet.runtime.interface import ContainerState, Runtime
from kubelet.server import ApiAccessReviewer, CallerAuthorizer, KubeletServer
from kubelet.service_env import ServiceEnv
from kubelet.settings import KubeletSettings
from kubelet.token_manager import TokenManager
from kubelet.volumes import VolumeManager
from kubelite.client.client import ApiClient
from kubelite.client.config import load_kubeconfig
from kubelite.client.events import EventRecorder
from kubelite.client.informer import Informer, InformerSettings
from kubelite.health import Readiness, all_ready, informers_readiness
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


def make_runtime(settings: KubeletSettings) -> Runtime:
    if settings.runtime == "containerd":
        from kubelet.runtime.cri import CriRuntime, CriRuntimeSettings

        return CriRuntime(CriRuntimeSettings(
            endpoint=settings.container_runtime_endpoint,
            root_dir=settings.root_dir,
            cgroup_root=settings.cgroup_root,
            pod_pids_limit=settings.pod_pids_limit,
            request_timeout=settings.runtime_request_timeout,
            image_pull_timeout=settings.image_pull_timeout,
        ))
    if settings.runtime != "process":
        raise ValueError(f"unknown runtime {settings.runtime!r} (supported: process, containerd)")
    from kubelet.runtime.process import ProcessRuntime, ProcessRuntimeSettings

    return ProcessRuntime(
        ProcessRuntimeSettings(root_dir=settings.root_dir, isolation=settings.isolation)
    )


def make_client(settings: KubeletSettings) -> ApiClient:
    """The API client of ``--kubeconfig`` (TLS and this node's credentials), else of
    ``--server`` in plaintext."""
    if settings.kubeconfig:
        return ApiClient(load_kubeconfig(settings.kubeconfig))
    return ApiClient(settings.server)


class Kubelet:
    def __init__(
        self,
        settings: KubeletSettings,
        runtime: Runtime | None = None,
        client: ApiClient | None = None,
    ) -> None:
        self.settings = settings
        self.runtime = runtime or make_runtime(settings)
        self.client = client or make_client(settings)
        self._owns_client = client is None
        tls = settings.serving_tls
        self.server = KubeletServer(
            self.runtime, settings.address, settings.port, tls=tls,
            authorizer=CallerAuthorizer(settings.node_name, ApiAccessReviewer(self.client),
                                        settings.authorization) if tls is not None else None,
        )
        self.node = NodeAgent(self.client, settings, self.server.port)
        self.recorder = EventRecorder(self.client, "kubelet", settings.node_name)
        self.pods: Informer[v1.Pod] = Informer(
            self.client,
            v1.Pod,
            field_selector=f"spec.nodeName={settings.node_name}",
            settings=InformerSettings(backoff_initial=0.2, backoff_max=2.0),
        )
        self.services = ServiceEnv(self.client)
        self.tokens = TokenManager(self.client)
        self.pod_ips = (
            PodIPAllocator(settings.pod_cidr, os.path.join(settings.root_dir, "pod-ips"),
                           reserved=(settings.address,))
            if settings.pod_cidr and settings.runtime == "process" else None
        )
        # Container runtimes give pods their addresses through CNI, from the node's podCIDR.
        self.pod_network = (
            PodNetwork(self.client, settings) if settings.runtime != "process" else None
        )
        self.routes = (
            RouteAgent(settings.node_name, settings.routes, client=self.client)
            if settings.routes.enabled else None
        )
        self.image_gc = ImageGarbageCollector(self.runtime, ImageGCSettings(
            high_threshold_percent=settings.image_gc_high_threshold,
            low_threshold_percent=settings.image_gc_low_threshold,
            interval=settings.image_gc_interval,
        ))
        self.workers: dict[str, PodWorker] = {}
        self._ctx: NodeContext | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.server.start()
        node = await self.node.register()
        allocatable = dict(node.status.allocatable)
        self._ctx = NodeContext(
            settings=self.settings,
            client=self.client,
            runtime=self.runtime,
            recorder=self.recorder,
            env=EnvResolver(self.client, allocatable),
            volumes=VolumeManager(
                self.client, self.runtime, allocatable,  # type: ignore[arg-type]
                tokens=self.tokens, recorder=self.recorder,
                # The process runtime without a mount namespace mounts nothing.
                can_mount=getattr(self.runtime, "isolation", None) != "none",
            ),
            service_env=self.services.for_pod,
            pod_ips=self.pod_ips,
        )
        self.recorder.start()
        self.node.start()
        if self.pod_network is not None:
            self.pod_network.start()
        if self.routes is not None:
            await self.routes.start()
        self.image_gc.start()
        self.pods.add_handlers(
            on_add=self._on_pod,
            on_update=lambda old, new: self._on_pod(new),
            on_delete=self._on_pod_deleted,
        )
        # Services first: a pod started before they are known would miss their variables.
        self.services.start()
        self.pods.start()
        await self.services.wait_for_sync()
        await self.pods.wait_for_sync()
        await self._remove_orphans()
        self._tasks.append(asyncio.create_task(self._resync_forever(), name="kubelet-resync"))
        log.info(
            "kubelet running",
            node=self.settings.node_name,
            address=self.settings.address,
            pod_cidr=self.settings.pod_cidr or None,
            api_port=self.server.port,
        )

    def readiness(self) -> Readiness:
        """Ready when its informers (pods, services) all watch and its last node heartbeat
        (Lease renewal) succeeded recently."""
        return all_ready(
            informers_readiness([self.pods, self.services.informer]),
            self.node.heartbeat_readiness(),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pods.stop()
        await self.services.stop()
        kill = self.settings.stop_pods_on_exit
        owned = set(self.workers)
        await asyncio.gather(*(w.stop(kill=kill) for w in self.workers.values()))
        self.workers.clear()
        if kill:
            try:
                await self._stop_containers_without_worker(owned)
            except Exception:
                log.exception("stopping the containers of pods this kubelet did not run failed")
        await self.node.stop()
        if self.pod_network is not None:
            await self.pod_network.stop()
        if self.routes is not None:
            await self.routes.stop()
        await self.image_gc.stop()
        await self.recorder.stop()
        await self.server.stop()
        await self.runtime.close()
        if self._owns_client:
            await self.client.close()
        log.info("kubelet stopped", pods_stopped=kill)

    def _on_pod(self, pod: v1.Pod) -> None:
        worker = self.workers.get(pod.metadata.uid)
        if worker is None:
            assert self._ctx is not None
            worker = PodWorker(self._ctx, pod)
            self.workers[pod.metadata.uid] = worker
            worker.start()
            asyncio.get_running_loop().create_task(self._forget_when_finished(worker))
        else:
            worker.update(pod)

    def _on_pod_deleted(self, pod: v1.Pod) -> None:
        worker = self.workers.get(pod.metadata.uid)
        if worker is not None:
            worker.remove()

    async def _forget_when_finished(self, worker: PodWorker) -> None:
        await worker.finished.wait()
        await worker.stop(kill=False)
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
            if self._ctx is not None:
                self._ctx.volumes.forget_pod(worker.uid)

    async def _stop_containers_without_worker(self, owned: set[str]) -> None:
        """Stops running containers of pods other than ``owned``: pods deleted while this
        kubelet was away, when a stop during start came before ``_remove_orphans``. (A
        finished pod's worker is gone too, but its containers have all exited and stay for
        its logs.) The next start removes them."""
        for status in await self.runtime.list_containers():
            if status.pod_uid not in owned and status.state == ContainerState.RUNNING:
                log.info("stopping a container of a pod this kubelet did not run",
                         uid=status.pod_uid, container=status.id)
                await self.runtime.stop_container(status.id, 0)

    async def _remove_orphans(self) -> None:
        """Containers of pods deleted while this kubelet was away: stop and remove them."""
        known = {p.metadata.uid for p in self.pods.store.items()}
        orphans: dict[str, list[str]] = {}
        for status in await self.runtime.list_containers():
            if status.pod_uid not in known:
                orphans.setdefault(status.pod_uid, []).append(status.id)
        for uid, ids in orphans.items():
            log.info("removing containers of a pod that no longer exists", uid=uid)
            for cid in ids:
                await self.runtime.stop_container(cid, 0)
                await self.runtime.remove_container(cid)
            await self.runtime.remove_pod_sandbox(uid)
        if self.pod_ips is not None:
            self.pod_ips.release_all_but(known)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_frequency)
            for worker in list(self.workers.values()):
                worker.wake()


__all__ = ["Kubelet"]
