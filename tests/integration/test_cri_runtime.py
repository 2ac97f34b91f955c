"""The kubelet's containerd runtime end to end: an in-process kubelet against a real API server,
a real containerd (CRI v1) and real local registries.

containerd runs in a network namespace this module makes (its pods' bridge and veths are made
there), with the registries it pulls from: one open, serving docker.io's ``busybox`` and
``nginx`` (the project's test images), and one behind htpasswd auth, named by its address. The
test process reaches the registries (to push and to check they serve) through a veth pair into
the namespace; nothing else leads out of it, and the pods' addresses are routed nowhere but
inside it.

One containerd and the registries serve the module; each test starts its own API server and
kubelet, and removes every sandbox it left in containerd.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
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
from kubelet.image_gc import ImageGarbageCollector, ImageGCSettings
from kubelet.kubelet import Kubelet
from kubelet.runtime.cri import CriRuntime
from kubelet.settings import KubeletSettings
from kubelite.api import convert
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.containerd_process import DEFAULT_SANDBOX_IMAGE, ContainerdProcess
from kubelite.oci_images import BUSYBOX, OciImage
from kubelite.registry import LocalRegistry, LocalRegistrySettings, RegistryCredentials
from kubelite.testing.images import (
    build_test_images,
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
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)}")

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
def images_dir(shared_images_dir: Path) -> Path:
    return shared_images_dir


@pytest.fixture(scope="module")
def images(images_dir: Path) -> dict[str, OciImage]:
    return build_test_images(images_dir)


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


# -- the tests ---------------------------------------------------------------------------------


async def test_a_pod_runs_as_its_user_in_its_own_namespaces(node: Node,
                                                          network: Network) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod("whoami", "exec sleep 3600",
                                  securityContext={"runAsUser": 1000}))
    pod = await node.running("whoami")

    assert await node.exec("whoami", "id", "-u") == (0, "1000\n")
    code, hostname = await node.exec("whoami", "hostname")
    assert (code, hostname.strip()) == (0, "whoami")
    # Its own PID namespace: its command as PID 1, and ps itself.
    code, ps = await node.exec("whoami", "ps", "-o", "pid,comm")
    processes = [line.split() for line in ps.splitlines()[1:]]
    assert code == 0 and ["1", "sleep"] in processes, ps
    assert {comm for _, comm in processes} == {"sleep", "ps"}, ps
    # Its address, from the node's podCIDR, in the status and on its eth0.
    assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(network.pod_cidr)
    assert [p.ip for p in pod.status.pod_ips] == [pod.status.pod_ip]
    code, addresses = await node.exec("whoami", "ip", "-4", "-o", "addr", "show", "eth0")
    assert code == 0 and f" {pod.status.pod_ip}/24 " in addresses, addresses
    assert pod.status.host_ip == "127.0.0.1"
    # The container as containerd knows it: its ID and the image it runs, by digest.
    status = pod.status.container_statuses[0]
    assert re.fullmatch(r"containerd://[0-9a-f]{64}", status.container_id), status
    assert re.search(r"sha256:[0-9a-f]{64}$", status.image_id), status


async def test_run_as_non_root_refuses_a_root_image(node: Node) -> None:
    await node.start_kubelet()
    created = await node.create(busybox_pod("rootless", "exec sleep 3600",
                                            securityContext={"runAsNonRoot": True}))
    pod = await node.wait("rootless", waiting_reason("CreateContainerConfigError"),
                          "CreateContainerConfigError")
    message = waiting_message(pod)
    assert "runAsNonRoot" in message and "root" in message, message
    # Its sandbox runs; no container was made.
    assert len(await node.sandboxes(created.metadata.uid)) == 1
    assert await node.containers(created.metadata.uid) == []
    assert pod.status.phase == "Pending"


async def test_image_pull_failures_wait_with_kubernetes_reasons(
    node: Node, registries: Registries,
) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod("never", "true", image="busybox:not-here",
                                  container={"imagePullPolicy": "Never"}))
    # Named at the registry itself: a docker.io image missing from the mirror would be looked
    # for at docker.io next (unreachable from the namespace).
    missing = registries.open.reference("library/no-such-image", "1")
    await node.create(busybox_pod("missing", "true", image=missing))

    pod = await node.wait("never", waiting_reason("ErrImageNeverPull"), "ErrImageNeverPull")
    message = waiting_message(pod)
    assert 'Container image "busybox:not-here" is not present with pull policy of Never' \
        in message

    reasons: list[str] = []

    def seen(pod: v1.Pod) -> bool:
        w = waiting(pod)
        if w is not None and (not reasons or reasons[-1] != w.reason):
            reasons.append(w.reason)
        return w is not None and w.reason == "ImagePullBackOff"

    pod = await node.wait("missing", seen, "ImagePullBackOff")
    assert "ErrImagePull" in reasons and reasons.index("ErrImagePull") < len(reasons) - 1, \
        reasons
    message = waiting_message(pod)
    assert f'Failed to pull image "{missing}"' in message, message
    assert "not found" in message, message

    async def failed_event() -> list[v1.Event]:
        return [e for e in await node.events("missing")
                if e.type == "Warning" and e.reason == "Failed"]

    events = await eventually(failed_event, timeout=10, message="a Warning Failed event")
    assert "not found" in events[0].message


async def test_a_registry_behind_auth_needs_the_pods_pull_secret(
    node: Node, registries: Registries,
) -> None:
    await node.start_kubelet()
    image = registries.private.reference("library/busybox")
    await node.create(busybox_pod("anonymous", "exec sleep 3600", image=image))
    pod = await node.wait("anonymous", lambda p: (w := waiting(p)) is not None
                          and w.reason in ("ErrImagePull", "ImagePullBackOff"), "a failed pull")
    message = waiting_message(pod)
    assert re.search(r"401|[Uu]nauthori[sz]ed", message), message

    auth = base64.b64encode(f"{CREDENTIALS.username}:{CREDENTIALS.password}".encode()).decode()
    config = {"auths": {registries.private.address: {
        "username": CREDENTIALS.username, "password": CREDENTIALS.password, "auth": auth}}}
    await node.client.create(v1.Secret(
        metadata=v1.ObjectMeta(name="private-registry", namespace=NS),
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": json.dumps(config).encode()}))
    await node.create(busybox_pod("authorized", "exec sleep 3600", image=image,
                                  imagePullSecrets=[{"name": "private-registry"}]))
    await node.running("authorized")
    pulled = [e for e in await node.events("authorized") if e.reason == "Pulled"]
    assert pulled and f'Successfully pulled image "{image}"' in pulled[0].message


async def test_a_container_past_its_memory_limit_is_oom_killed(node: Node) -> None:
    await node.start_kubelet()
    await node.create(busybox_pod(
        "hungry", "exec tail /dev/zero", restartPolicy="Never",
        container={"resources": {"limits": {"memory": "32Mi"}}}))
    pod = await node.wait("hungry", lambda p: p.status.phase == "Failed", "Failed")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137), \
        MessageToJson(pod.status)


async def test_logs_tail_and_previous_attempt(node: Node) -> None:
    await node.start_kubelet()
    # The first attempt writes a mark into its emptyDir and exits; the next one stays.
    script = ("if [ -e /data/ran ]; then echo second-1; echo second-2; echo second-3; "
              "exec sleep 3600; fi; touch /data/ran; echo first-1; echo first-2; echo first-3")
    await node.create(busybox_pod(
        "chatty", script, restartPolicy="Always", volumes=[{"name": "data", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))
    pod = await node.wait("chatty", lambda p: p.status.container_statuses
                          and p.status.container_statuses[0].restart_count == 1
                          and p.status.container_statuses[0].state.HasField("running"),
                          "running again after one restart")
    assert pod.status.container_statuses[0].last_state.terminated.exit_code == 0

    async def current() -> str | None:
        text = await node.logs("chatty", tail_lines=2)
        return text if text == "second-2\nsecond-3\n" else None

    await eventually(current, timeout=10, message="the current attempt's last two lines")
    assert await node.logs("chatty") == "second-1\nsecond-2\nsecond-3\n"
    assert await node.logs("chatty", previous=True) == "first-1\nfirst-2\nfirst-3\n"
    assert await node.logs("chatty", previous=True, tail_lines=1) == "first-3\n"


async def test_image_gc_removes_unused_images_only(node: Node) -> None:
    kubelet = await node.start_kubelet()
    await node.create(busybox_pod("keeper", "exec sleep 3600"))
    web = await node.create({"metadata": {"name": "web"}, "spec": {
        "terminationGracePeriodSeconds": 1, "containers": [{"name": "web", "image": "nginx"}]}})
    await node.running("keeper")
    await node.running("web")
    await node.client.delete(v1.Pod, "web", NS)

    async def gone() -> bool:
        try:
            await node.client.get(v1.Pod, "web", NS)
        except NotFound:
            return not await node.sandboxes(web.metadata.uid)
        return False

    await eventually(gone, timeout=WAIT, message="pod web and its sandbox gone")

    runtime = kubelet.runtime
    assert isinstance(runtime, CriRuntime)

    async def tags() -> set[str]:
        return {tag for image in await runtime.list_images() for tag in image.tags}

    before = await tags()
    assert {"docker.io/library/nginx:latest", "docker.io/library/busybox:latest",
            DEFAULT_SANDBOX_IMAGE} <= before
    collection = await ImageGarbageCollector(runtime, ImageGCSettings(
        high_threshold_percent=0, low_threshold_percent=0)).collect()
    after = await tags()
    assert "docker.io/library/nginx:latest" in collection.removed
    assert "docker.io/library/nginx:latest" not in after
    # In use by a running pod, and the sandbox image: kept.
    assert "docker.io/library/busybox:latest" in after
    assert DEFAULT_SANDBOX_IMAGE in after
    assert (await node.running("keeper")).status.phase == "Running"


async def test_a_restarted_kubelet_adopts_its_running_pods(node: Node) -> None:
    first = await node.start_kubelet()
    created = await node.create(busybox_pod("steady", "exec sleep 3600"))
    before = (await node.running("steady")).status.container_statuses[0]
    sandboxes = await node.sandboxes(created.metadata.uid)
    assert len(sandboxes) == 1

    await node.stop_kubelet(first)
    containers = await node.containers(created.metadata.uid)
    assert [c.state for c in containers] == [cri.CONTAINER_RUNNING]

    await node.start_kubelet()
    # The new kubelet writes its own status; the container is the same one.
    await node.wait("steady", lambda p: p.status.container_statuses[0].state.HasField("running"),
                    "running")
    after_ids = [c.id for c in await node.containers(created.metadata.uid)]
    assert after_ids == [c.id for c in containers]
    pod = await node.client.get(v1.Pod, "steady", NS)
    status = pod.status.container_statuses[0]
    assert status.container_id == before.container_id
    assert status.container_id == f"containerd://{containers[0].id}"
    assert status.restart_count == before.restart_count == 0
    assert [s.id for s in await node.sandboxes(created.metadata.uid)] == [sandboxes[0].id]
    assert await node.exec("steady", "true") == (0, "")


async def test_deleting_a_pod_removes_its_containers_sandbox_and_logs(node: Node) -> None:
    await node.start_kubelet()
    created = await node.create(busybox_pod("short", "echo hello; exec sleep 3600"))
    await node.running("short")
    uid = created.metadata.uid
    log_dir = Path(node.settings.root_dir, "pod-logs", f"{NS}_short_{uid}")
    assert log_dir.is_dir()
    assert await node.containers(uid) and await node.sandboxes(uid)

    await node.client.delete(v1.Pod, "short", NS)

    async def removed() -> bool:
        with contextlib.suppress(NotFound):
            await node.client.get(v1.Pod, "short", NS)
            return False
        return not await node.sandboxes(uid) and not await node.containers(uid) \
            and not log_dir.exists()

    await eventually(removed, timeout=WAIT, interval=0.1,
                     message="the pod, its sandbox, containers and log directory gone")
    assert not Path(node.settings.root_dir, "pods", uid).exists()
