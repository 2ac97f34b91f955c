"""A containerd node for the CRI integration tests in this directory: the network namespace
containerd runs in, the local registries it pulls the test images from, containerd itself
(one per test module), and a kubelet with an API server per test (``node``). The fixtures
reach the tests through this directory's conftest.py; the rest is imported.

containerd runs in a network namespace made here (its pods' bridge and veths are made there),
with the registries it pulls from: one open, serving docker.io's ``busybox`` and ``nginx`` (the
project's test images), and one behind htpasswd auth, named by its address. The test process
reaches the registries (to push and to check they serve) through a veth pair into the
namespace; nothing else leads out of it, and the pods' addresses are routed nowhere but inside
it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToJson

from apiserver.server import ApiServer
from kubelet.kubelet import Kubelet
from kubelet.settings import KubeletSettings
from kubelite.api import convert
from kubelite.client.client import ApiClient
from kubelite.containerd_process import ContainerdProcess
from kubelite.oci_images import BUSYBOX, OciImage
from kubelite.registry import LocalRegistry, LocalRegistrySettings, RegistryCredentials
from kubelite.testing.images import (
    missing_containerd_tools,
    node_containerd,
    push_test_images,
)
from kubelite.testing.wait import eventually
from protos.cri.v1 import api_pb2 as cri
from protos.cri.v1 import api_pb2_grpc as cri_grpc
from protos.v1 import objects_pb2 as v1


def _missing() -> list[str]:
    missing = missing_containerd_tools()
    if shutil.which("ip") is None:
        missing.append("ip (Debian's iproute2)")
    if shutil.which("nsenter") is None:
        missing.append("nsenter (Debian's util-linux)")
    missing += [f"/usr/lib/cni/{p} (Debian's containernetworking-plugins)"
                for p in ("bridge", "host-local", "loopback", "portmap")
                if not os.access(f"/usr/lib/cni/{p}", os.X_OK)]
    return missing


MISSING = _missing()

RUN = secrets.token_hex(2)
PREFIX = f"kcri{RUN}"
"""Names of this run's namespace, links and cgroup (never another run's or harness's)."""
NETNS = PREFIX
BRIDGE = f"{PREFIX}br"
HOST_VETH = f"{PREFIX}h"
NS_VETH = f"{PREFIX}n"
CGROUP_ROOT = f"/{PREFIX}"
CGROUP_FS = Path("/sys/fs/cgroup")
LINK_BASE = "10.217"
"""The veth pair's /24 is LINK_BASE.N (N free on this host); pods get POD_BASE.N.0/24."""
POD_BASE = "10.218"
OPEN_PORT = 5000
PRIVATE_PORT = 5001
"""The registries' ports in the namespace (all of its ports are free)."""
CREDENTIALS = RegistryCredentials("puller", secrets.token_hex(8))
NS = "default"
NODE = "cri-node"
WAIT = 60.0
"""Seconds any one condition may take (pulls, sandboxes, a loaded 2-core machine)."""


# -- the namespace, the registries, containerd -------------------------------------------------


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> int:
    """N such that no address or route of this host is in LINK_BASE.N or POD_BASE.N."""
    text = ip("-o", "-4", "addr", "show") + ip("-4", "route", "show")
    used = {int(n) for base in (LINK_BASE, POD_BASE)
            for n in re.findall(rf"{re.escape(base)}\.(\d+)\.", text)}
    free = [n for n in range(1, 255) if n not in used]
    if not free:
        raise RuntimeError(f"no free /24 in {LINK_BASE}.0.0/16")
    return secrets.choice(free)


@dataclass(frozen=True)
class Network:
    subnet: int

    @property
    def registry_host(self) -> str:
        """The namespace's end of the veth pair: where the registries listen."""
        return f"{LINK_BASE}.{self.subnet}.2"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_BASE}.{self.subnet}.0/24"

    @property
    def launcher(self) -> tuple[str, ...]:
        # nsenter keeps the root mount namespace (runc needs the cgroup file systems).
        return ("nsenter", f"--net=/var/run/netns/{NETNS}")


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    """A network namespace with lo up and a veth pair to it from this one."""
    net = Network(free_subnet())
    ip("netns", "add", NETNS)
    try:
        ip("-n", NETNS, "link", "set", "lo", "up")
        ip("link", "add", HOST_VETH, "type", "veth", "peer", "name", NS_VETH)
        ip("link", "set", NS_VETH, "netns", NETNS)
        ip("addr", "add", f"{LINK_BASE}.{net.subnet}.1/24", "dev", HOST_VETH)
        ip("link", "set", HOST_VETH, "up")
        ip("-n", NETNS, "addr", "add", f"{net.registry_host}/24", "dev", NS_VETH)
        ip("-n", NETNS, "link", "set", NS_VETH, "up")
        yield net
    finally:
        left = ip("netns", "pids", NETNS, check=False).split()
        ip("link", "del", HOST_VETH, check=False)
        # Deleting the namespace deletes what is in it: the pods' bridge and veths.
        ip("netns", "del", NETNS, check=False)
        assert not left, f"processes left in the namespace: {left}"


@dataclass(frozen=True)
class Registries:
    open: LocalRegistry
    """docker.io's library/busybox and library/nginx, no auth."""
    private: LocalRegistry
    """library/busybox behind :data:`CREDENTIALS`."""


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory, network: Network,
               images: dict[str, OciImage]) -> Iterator[Registries]:
    def registry(name: str, port: int, credentials: RegistryCredentials | None) -> LocalRegistry:
        return LocalRegistry(LocalRegistrySettings(
            Path(tmp_path_factory.mktemp(name)), host=network.registry_host, port=port,
            credentials=credentials, launcher=network.launcher))

    with registry("registry", OPEN_PORT, None) as open_, \
            registry("private-registry", PRIVATE_PORT, CREDENTIALS) as private:
        push_test_images(open_, images)
        busybox = images[BUSYBOX]
        private.push(busybox.layout, busybox.tag, "library/busybox", dest_tag="latest")
        yield Registries(open_, private)


def remove_cgroups(root: str) -> None:
    """The kubelet's cgroup root and everything below it, in every hierarchy."""
    for hierarchy in [CGROUP_FS, *CGROUP_FS.iterdir()]:
        top = hierarchy / root.lstrip("/")
        if not (hierarchy / "cgroup.procs").exists() or not top.is_dir():
            continue
        for directory, _, _ in os.walk(top, topdown=False):
            Path(directory).rmdir()


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory, network: Network,
               registries: Registries, images_dir: Path) -> Iterator[ContainerdProcess]:
    mirrors = {"docker.io": [registries.open.url],
               registries.private.address: [registries.private.url]}
    try:
        with node_containerd(Path(tmp_path_factory.mktemp("cri")), images_dir=images_dir,
                             registry_mirrors=mirrors, launcher=network.launcher) as process:
            yield process
    finally:
        remove_cgroups(CGROUP_ROOT)


# -- a node: a kubelet (or two in turn) on containerd ------------------------------------------


@dataclass
class Node:
    client: ApiClient
    settings: KubeletSettings
    runtime_service: cri_grpc.RuntimeServiceStub
    kubelets: list[Kubelet] = field(default_factory=list)

    async def start_kubelet(self) -> Kubelet:
        kubelet = Kubelet(self.settings)
        self.kubelets.append(kubelet)
        await kubelet.start()
        return kubelet

    async def stop_kubelet(self, kubelet: Kubelet) -> None:
        self.kubelets.remove(kubelet)
        await kubelet.stop()

    @property
    def kubelet(self) -> Kubelet:
        return self.kubelets[-1]

    async def create(self, pod: dict[str, Any]) -> v1.Pod:
        message = convert.message_from_dict(v1.Pod, pod)
        assert isinstance(message, v1.Pod)
        message.metadata.namespace = NS
        message.spec.node_name = NODE
        return await self.client.create(message)

    async def wait(self, name: str, check: Callable[[v1.Pod], Any], what: str,
                   timeout: float = WAIT) -> v1.Pod:
        """The pod once ``check`` holds for it; on time-out its last status is shown."""
        last = v1.Pod()

        async def done() -> v1.Pod | None:
            nonlocal last
            last = await self.client.get(v1.Pod, name, NS)
            return last if check(last) else None

        try:
            found: v1.Pod = await eventually(done, timeout=timeout, interval=0.05,
                                             message=f"pod {name}: {what}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast status: {MessageToJson(last.status)}") from None
        return found

    async def running(self, name: str) -> v1.Pod:
        return await self.wait(name, lambda p: p.status.phase == "Running" and all(
            c.state.HasField("running") for c in p.status.container_statuses), "running")

    async def exec(self, name: str, *command: str) -> tuple[int, str]:
        """Through the API server's exec, relayed to the kubelet: exit code and output."""
        output, code = b"", -1
        async for fd, data in self.client.pod_exec(NS, name, list(command), timeout=30):
            if fd == -1:
                code = int(data)
            else:
                output += data
        return code, output.decode()

    async def logs(self, name: str, **options: Any) -> str:
        chunks = [c async for c in self.client.pod_logs(NS, name, **options)]
        return b"".join(chunks).decode()

    async def sandboxes(self, uid: str) -> list[cri.PodSandbox]:
        response = await self.runtime_service.ListPodSandbox(cri.ListPodSandboxRequest(
            filter=cri.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})))
        return list(response.items)

    async def containers(self, uid: str) -> list[cri.Container]:
        response = await self.runtime_service.ListContainers(cri.ListContainersRequest(
            filter=cri.ContainerFilter(label_selector={"io.kubernetes.pod.uid": uid})))
        return list(response.containers)

    async def events(self, name: str) -> list[v1.Event]:
        listed = await self.client.list(v1.Event, NS)
        return [e for e in listed.items if e.involved_object.name == name]

    async def remove_every_sandbox(self) -> None:
        """What the test left in containerd (its sandboxes take their containers along)."""
        service = self.runtime_service
        for sandbox in (await service.ListPodSandbox(cri.ListPodSandboxRequest())).items:
            await service.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox.id))
            await service.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id))


@pytest.fixture
async def node(api_server: ApiServer, client: ApiClient, containerd: ContainerdProcess,
               network: Network, tmp_path: Path) -> AsyncIterator[Node]:
    """A node's settings and CRI clients; the test starts its kubelet(s)."""
    settings = KubeletSettings(
        node_name=NODE, address="127.0.0.1", port=0, server=api_server.address,
        root_dir=str(tmp_path / "kubelet"), runtime="containerd",
        container_runtime_endpoint=containerd.endpoint, cgroup_root=CGROUP_ROOT,
        cni_conf_dir=str(containerd.settings.cni_conf_dir), cni_bridge=BRIDGE,
        pod_cidr=network.pod_cidr, node_status_update_frequency=1, node_lease_duration=8,
        sync_frequency=2, housekeeping_interval=0.2, backoff_initial=1, backoff_max=4,
        default_grace_seconds=2, runtime_request_timeout=60, image_pull_timeout=60,
        # No collection by the kubelet's own schedule; the GC test runs one itself.
        image_gc_high_threshold=100, image_gc_low_threshold=100)
    async with grpc.aio.insecure_channel(containerd.endpoint) as channel:
        stub = cri_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
        node = Node(client, settings, stub)
        try:
            yield node
        finally:
            for kubelet in list(node.kubelets):
                await node.stop_kubelet(kubelet)
            await node.remove_every_sandbox()


def busybox_pod(name: str, command: str, *, image: str = "busybox",
                container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", command],
                            **(container or {})}],
            **spec,
        },
    }


def waiting(pod: v1.Pod) -> v1.ContainerStateWaiting | None:
    statuses = pod.status.container_statuses
    if statuses and statuses[0].state.HasField("waiting"):
        return statuses[0].state.waiting
    return None


def waiting_message(pod: v1.Pod) -> str:
    w = waiting(pod)
    assert w is not None, MessageToJson(pod.status)
    return w.message


def waiting_reason(reason: str) -> Callable[[v1.Pod], bool]:
    return lambda pod: (w := waiting(pod)) is not None and w.reason == reason
