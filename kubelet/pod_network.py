"""The node's pod network for container runtimes: once the node has a podCIDR (the kubelet's
--pod-cidr, or the node IPAM controller's allocation), its CNI configuration is written for
the runtime. Until then sandboxes cannot get an address and pods wait in ContainerCreating."""

from __future__ import annotations

import asyncio
import os

import structlog

from kubelet.runtime.cni import CniSettings, remove_stale_bridge, write_config
from kubelet.settings import KubeletSettings
from kubelite.api.errors import ApiError
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


def cni_settings(settings: KubeletSettings) -> CniSettings:
    return CniSettings(
        conf_dir=settings.cni_conf_dir,
        bridge=settings.cni_bridge,
        state_dir=os.path.join(settings.root_dir, "cni", "networks"),
    )


class PodNetwork:
    def __init__(self, client: ApiClient, settings: KubeletSettings,
                 poll_interval: float = 1.0) -> None:
        self.client = client
        self.settings = settings
        self.cni = cni_settings(settings)
        self.poll_interval = poll_interval
        """Seconds between looks at the Node while it has no podCIDR (then the status period)."""
        self.pod_cidr = ""
        """The podCIDR the written configuration uses ("" before)."""
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pod-network")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def readiness(self) -> tuple[bool, str]:
        if self.pod_cidr:
            return True, f"pod network configured for {self.pod_cidr}"
        return False, "pod network not configured: the node has no podCIDR yet"

    async def sync(self) -> None:
        cidr = self.settings.pod_cidr
        if not cidr:
            node = await self.client.get(v1.Node, self.settings.node_name)
            cidr = node.spec.pod_cidr
        if not cidr or cidr == self.pod_cidr:
            return
        await remove_stale_bridge(self.cni.bridge, cidr)
        path = write_config(self.cni, cidr)
        self.pod_cidr = cidr
        self.ready.set()
        log.info("pod network configured", pod_cidr=cidr, cni_config=path,
                 bridge=self.cni.bridge)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except (ApiError, OSError, ValueError) as e:
                log.warning("pod network configuration failed; will retry", error=str(e))
            await asyncio.sleep(
                self.settings.node_status_update_frequency if self.pod_cidr
                else self.poll_interval)
