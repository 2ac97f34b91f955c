"""This node in the API: registration, status with its Ready condition, and the Lease heartbeat.

As the real kubelet: the Lease in kube-node-lease is renewed every quarter of its duration
(the cheap, frequent heartbeat the node lifecycle controller watches), and the Node's status
is written every node_status_update_frequency or when it changes.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time

import structlog

from kubelet.settings import KubeletSettings
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, ApiError, Conflict, NotFound
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

KUBELET_VERSION = "v1.31.0-kubelite"
LEASE_NAMESPACE = "kube-node-lease"

_CONDITIONS = (
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def machine_memory() -> str:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    return "0"


def parse_taint(text: str) -> v1.Taint:
    """``key[=value]:Effect`` as kubelet's --register-with-taints."""
    key_value, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(
            f"invalid taint {text!r}: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute"
        )
    key, _, value = key_value.partition("=")
    return v1.Taint(key=key, value=value, effect=effect)


class NodeAgent:
    def __init__(self, client: ApiClient, settings: KubeletSettings, kubelet_port: int) -> None:
        self.client = client
        self.settings = settings
        self.kubelet_port = kubelet_port
        self._tasks: list[asyncio.Task[None]] = []
        self.last_heartbeat: float | None = None
        """time.monotonic() of the last successful Lease renewal (None: none yet)."""
        self.heartbeat_error = ""
        """Why the last Lease renewal failed ("" when it succeeded)."""

    @property
    def heartbeat_period(self) -> float:
        """Seconds between Lease renewals: a quarter of the lease duration."""
        return self.settings.node_lease_duration / 4

    def heartbeat_readiness(self) -> tuple[bool, str]:
        """Whether the last Lease renewal succeeded, at most two periods ago."""
        if self.heartbeat_error:
            return False, f"node heartbeat failed: {self.heartbeat_error}"
        if self.last_heartbeat is None:
            return False, "no node heartbeat yet"
        age = time.monotonic() - self.last_heartbeat
        if age > 2 * self.heartbeat_period:
            return False, f"last node heartbeat {age:.1f}s ago"
        return True, "node heartbeat current"

    def desired_node(self) -> v1.Node:
        s = self.settings
        node = v1.Node(metadata=v1.ObjectMeta(name=s.node_name))
        node.metadata.labels.update(
            {
                "kubernetes.io/hostname": s.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _arch(),
                **s.labels,
            }
        )
        node.spec.taints.extend(parse_taint(t) for t in s.taints)
        if s.pod_cidr:
            node.spec.pod_cidr = s.pod_cidr
            node.spec.pod_cidrs.append(s.pod_cidr)
        self._fill_status(node.status)
        return node

    def _fill_status(self, status: v1.NodeStatus) -> None:
        s = self.settings
        capacity = {
            "cpu": s.cpu or str(os.cpu_count() or 1),
            "memory": s.memory or machine_memory(),
            "pods": str(s.max_pods),
        }
        try:
            stat = os.statvfs(s.root_dir)
            capacity["ephemeral-storage"] = f"{stat.f_blocks * stat.f_frsize // 1024}Ki"
        except OSError:
            pass
        status.capacity.clear()
        status.capacity.update(capacity)
        status.allocatable.clear()
        status.allocatable.update(capacity)
        del status.addresses[:]
        status.addresses.add(type="InternalIP", address=s.address)
        status.addresses.add(type="Hostname", address=s.node_name)
        status.daemon_endpoints.kubelet_endpoint.port = self.kubelet_port
        info = status.node_info
        info.kubelet_version = KUBELET_VERSION
        info.kube_proxy_version = KUBELET_VERSION
        info.operating_system = "linux"
        info.architecture = _arch()
        info.kernel_version = platform.release()
        info.os_image = _os_image()
        info.container_runtime_version = f"{s.runtime}://kubelite"
        info.machine_id = _read_first("/etc/machine-id")
        info.boot_id = _read_first("/proc/sys/kernel/random/boot_id")
        now = m.now_rfc3339()
        existing = {c.type: c for c in status.conditions}
        del status.conditions[:]
        for type_, value, reason, message in _CONDITIONS:
            old = existing.get(type_)
            transition = old.last_transition_time if old and old.status == value else now
            status.conditions.add(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_heartbeat_time=now,
                last_transition_time=transition,
            )

    async def register(self) -> v1.Node:
        """Creates the Node, or takes over an existing one of the same name (a restart)."""
        delay = 0.2
        while True:
            try:
                try:
                    node = await self.client.create(self.desired_node())
                    log.info("registered node", node=self.settings.node_name)
                    return node
                except AlreadyExists:
                    return await self._reconcile_existing()
            except ApiError as e:
                log.warning("node registration failed; retrying", error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reconcile_existing(self) -> v1.Node:
        current = await self.client.get(v1.Node, self.settings.node_name)
        desired = self.desired_node()
        changed = False
        for key, value in desired.metadata.labels.items():
            if current.metadata.labels.get(key) != value:
                current.metadata.labels[key] = value
                changed = True
        have = {(t.key, t.effect) for t in current.spec.taints}
        for taint in desired.spec.taints:
            if (taint.key, taint.effect) not in have:
                current.spec.taints.append(taint)
                changed = True
        # A podCIDR given to the kubelet is the node's; without one, the node IPAM controller's
        # allocation stands.
        if desired.spec.pod_cidr and (
            list(current.spec.pod_cidrs) != list(desired.spec.pod_cidrs)
            or current.spec.pod_cidr != desired.spec.pod_cidr
        ):
            current.spec.pod_cidr = desired.spec.pod_cidr
            del current.spec.pod_cidrs[:]
            current.spec.pod_cidrs.extend(desired.spec.pod_cidrs)
            changed = True
        if changed:
            current = await self.client.update(current)
        return await self.update_status()

    async def update_status(self) -> v1.Node:
        for _ in range(5):
            node = await self.client.get(v1.Node, self.settings.node_name)
            self._fill_status(node.status)
            try:
                return await self.client.update_status(node)
            except Conflict:
                continue
        raise Conflict(f"could not update status of node {self.settings.node_name}")

    async def renew_lease(self) -> None:
        s = self.settings
        now = m.format_micro_time(m.now())
        try:
            lease = await self.client.get(v1.Lease, s.node_name, LEASE_NAMESPACE)
        except NotFound:
            lease = v1.Lease(metadata=v1.ObjectMeta(name=s.node_name, namespace=LEASE_NAMESPACE))
            lease.spec.holder_identity = s.node_name
            lease.spec.lease_duration_seconds = s.node_lease_duration
            lease.spec.renew_time = now
            node = await self.client.get(v1.Node, s.node_name)
            lease.metadata.owner_references.add(
                api_version="v1", kind="Node", name=s.node_name, uid=node.metadata.uid
            )
            await self.client.create(lease)
            return
        lease.spec.holder_identity = s.node_name
        lease.spec.lease_duration_seconds = s.node_lease_duration
        lease.spec.renew_time = now
        await self.client.update(lease)

    async def heartbeat(self) -> None:
        """renew_lease, remembering when it last succeeded and why it last failed."""
        try:
            await self.renew_lease()
        except ApiError as e:
            self.heartbeat_error = str(e) or type(e).__name__
            raise
        self.last_heartbeat = time.monotonic()
        self.heartbeat_error = ""

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                self._every(self.heartbeat_period, self.heartbeat),
                name="node-lease",
            ),
            asyncio.create_task(
                self._every(self.settings.node_status_update_frequency, self.update_status),
                name="node-status",
            ),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _every(self, period: float, action) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                await action()
            except ApiError as e:
                log.warning("node heartbeat failed", action=action.__name__, error=str(e))
            await asyncio.sleep(period)


def _arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _read_first(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
