"""A real containerd (with CRI) per test, as a node's: the pause image preloaded and seen by CRI,
the test server pulled from the local registry and serving, two containerds side by side, and
stopping, also after a crash, leaving no containerd, shim or container process and no mount."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from kubelite.containerd_process import (
    DEFAULT_SANDBOX_IMAGE,
    ContainerdError,
    ContainerdProcess,
    ContainerdSettings,
)
from kubelite.registry import LocalRegistry
from kubelite.testing.images import (
    image_registry,
    missing_containerd_tools,
    node_containerd,
    pause_archive,
    started_node_containerd,
)
from kubelite.testing.wait import eventually
from protos.cri.v1 import api_pb2 as cri

pytestmark = pytest.mark.skipif(bool(missing_containerd_tools()),
                                reason=f"needs {', '.join(missing_containerd_tools())}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory,
             images_dir: Path) -> Iterator[LocalRegistry]:
    with image_registry(Path(tmp_path_factory.mktemp("registry")), images_dir) as registry:
        yield registry


def processes_of(directory: Path) -> list[int]:
    """Live processes that belong to the containerd in ``directory``: containerd and its shims
    (their command lines name its files) and containers (their root is under its state)."""
    prefix = str(directory.absolute()) + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            status = Path(f"/proc/{entry}/stat").read_text()
            if status[status.rindex(")") + 2] in "ZX":
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            root = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if prefix in cmdline or root.startswith(prefix):
            found.append(int(entry))
    return found


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory.absolute()) + "/"
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefix)]


def run_detached(containerd: ContainerdProcess, image: str, container_id: str,
                 *command: str) -> None:
    """``ctr run``, with runc's state and the container's cgroup this containerd's own (ctr's
    default cgroup, /NAMESPACE/ID, would be shared by same-named containers of two
    containerds; CRI's containers have unique IDs)."""
    cgroup = f"/k8s.io/{containerd.socket.parent.name}-{container_id}"
    containerd.ctr("run", "--detach", "--runc-root", str(containerd.runc_root),
                   "--cgroup", cgroup, image, container_id, *command)


def exec_in(containerd: ContainerdProcess, container_id: str, *command: str) -> str:
    return containerd.ctr("tasks", "exec", "--exec-id", f"probe-{os.urandom(4).hex()}",
                          container_id, *command)


def task_status(containerd: ContainerdProcess, container_id: str) -> str:
    for line in containerd.ctr("tasks", "ls").splitlines()[1:]:
        columns = line.split()
        if columns and columns[0] == container_id:
            return columns[-1]
    return ""


def cri_call(channel: grpc.Channel, service: str, method: str, request: Message,
             response: type[Message]) -> Any:
    """One CRI call (runtime.v1) over ``channel``."""
    call = channel.unary_unary(f"/runtime.v1.{service}/{method}",
                               request_serializer=request.SerializeToString,
                               response_deserializer=response.FromString)
    return call(request, timeout=30)


def test_cri_pulls_docker_io_images_through_the_local_registry(
    tmp_path: Path, images_dir: Path, registry: LocalRegistry,
) -> None:
    with node_containerd(tmp_path / "node", images_dir=images_dir,
                         registry=registry) as containerd, \
            grpc.insecure_channel(containerd.endpoint) as channel:
        version = cri_call(channel, "RuntimeService", "Version", cri.VersionRequest(),
                           cri.VersionResponse)
        assert version.runtime_name == "containerd"
        pulled = {}
        for image in ("busybox", "nginx:latest", "docker.io/kubelite/testserver:latest",
                      registry.reference("kubelite/testserver")):
            pulled[image] = cri_call(
                channel, "ImageService", "PullImage",
                cri.PullImageRequest(image=cri.ImageSpec(image=image)),
                cri.PullImageResponse).image_ref
        # nginx is the test server, under each of its names.
        assert pulled["nginx:latest"] == pulled["docker.io/kubelite/testserver:latest"] == \
            pulled[registry.reference("kubelite/testserver")]
        assert pulled["busybox"] != pulled["nginx:latest"]
        status = cri_call(channel, "ImageService", "ImageStatus",
                          cri.ImageStatusRequest(image=cri.ImageSpec(image="busybox")),
                          cri.ImageStatusResponse)
        assert "docker.io/library/busybox:latest" in status.image.repo_tags


def test_cri_runs_a_sandbox_from_the_preloaded_pause_image(
    tmp_path: Path, images_dir: Path,
) -> None:
    # No registry at all: the sandbox image can only come from the preloaded archive.
    directory = tmp_path / "node"
    with node_containerd(directory, images_dir=images_dir) as containerd, \
            grpc.insecure_channel(containerd.endpoint) as channel:
        config = cri.PodSandboxConfig(
            metadata=cri.PodSandboxMetadata(name="web", uid="uid-1", namespace="default"),
            log_directory=str(tmp_path / "logs"),
            linux=cri.LinuxPodSandboxConfig(
                security_context=cri.LinuxSandboxSecurityContext(
                    namespace_options=cri.NamespaceOption(network=cri.NODE))))
        sandbox = cri_call(channel, "RuntimeService", "RunPodSandbox",
                           cri.RunPodSandboxRequest(config=config),
                           cri.RunPodSandboxResponse).pod_sandbox_id
        status = cri_call(channel, "RuntimeService", "PodSandboxStatus",
                          cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox),
                          cri.PodSandboxStatusResponse)
        assert status.status.state == cri.SANDBOX_READY
        assert containerd.shim_pids()
    # Stopped with the sandbox still running: nothing of it stays.
    assert processes_of(directory) == []
    assert mounts_under(directory) == []


async def test_the_pause_image_is_preloaded_for_cri(tmp_path: Path, images_dir: Path) -> None:
    directory = tmp_path / "node"
    async with started_node_containerd(directory, images_dir=images_dir) as containerd:
        assert DEFAULT_SANDBOX_IMAGE in containerd.image_names()

        def managed_by_cri() -> bool:
            listing = containerd.ctr("images", "ls")
            return any(line.startswith(DEFAULT_SANDBOX_IMAGE + " ")
                       and "io.cri-containerd.image=managed" in line
                       for line in listing.splitlines())

        await eventually(lambda: asyncio.to_thread(managed_by_cri), timeout=10,
                         message="CRI to index the imported pause image")
        assert processes_of(directory)
    assert processes_of(directory) == []


async def test_pulls_the_test_server_from_the_local_registry(
    tmp_path: Path, images_dir: Path, registry: LocalRegistry,
) -> None:
    directory = tmp_path / "node"
    async with started_node_containerd(directory, images_dir=images_dir,
                                       registry=registry) as containerd:
        reference = registry.reference("kubelite/testserver")
        await asyncio.to_thread(containerd.pull, reference, plain_http=True)
        assert reference in containerd.image_names()

        await asyncio.to_thread(run_detached, containerd, reference, "web")

        def index() -> str:
            return exec_in(containerd, "web", "wget", "-qO-", "http://127.0.0.1/")

        page = await eventually(lambda: asyncio.to_thread(index), timeout=10,
                                message="the test server to answer")
        assert "kubelite's test server" in page
        hostname = exec_in(containerd, "web", "hostname").strip()
        answered = exec_in(containerd, "web", "wget", "-qO-",
                           "http://127.0.0.1/cgi-bin/hostname").strip()
        assert answered == hostname
        assert task_status(containerd, "web") == "RUNNING"
    assert processes_of(directory) == []
    assert mounts_under(directory) == []


def test_two_containerds_at_once(tmp_path: Path, images_dir: Path) -> None:
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    with node_containerd(first_dir, images_dir=images_dir) as first:
        with node_containerd(second_dir, images_dir=images_dir) as second:
            assert first.socket != second.socket
            # The same container name in each: runc's state is per containerd.
            run_detached(first, DEFAULT_SANDBOX_IMAGE, "sandbox")
            run_detached(second, DEFAULT_SANDBOX_IMAGE, "sandbox")
            assert task_status(first, "sandbox") == "RUNNING"
            assert task_status(second, "sandbox") == "RUNNING"
            first.stop()
            assert processes_of(first_dir) == []
            assert task_status(second, "sandbox") == "RUNNING"
            assert second.ctr("version", namespace=None)
        assert processes_of(second_dir) == []
    assert mounts_under(tmp_path) == []


def test_stop_after_a_crash_leaves_no_process_or_mount(tmp_path: Path, images_dir: Path) -> None:
    directory = tmp_path / "node"
    containerd = ContainerdProcess(ContainerdSettings.under(directory))
    containerd.start()
    try:
        containerd.import_image(pause_archive(images_dir))
        run_detached(containerd, DEFAULT_SANDBOX_IMAGE, "sandbox")
        shims = containerd.shim_pids()
        assert shims
        assert containerd._process is not None
        containerd._process.kill()  # as a crash: shims and containers outlive containerd
        assert containerd.shim_pids() == shims
        assert mounts_under(directory)
    finally:
        containerd.stop()
    assert containerd.shim_pids() == []
    assert processes_of(directory) == []
    assert mounts_under(directory) == []
    # The container's cgroup went with it (runc deleted what the killed shim could not).
    assert not list(Path("/sys/fs/cgroup").glob("*/k8s.io/node-sandbox"))
    assert not any(containerd.runc_root.glob("*/sandbox"))


def test_a_containerd_that_cannot_start_says_why(tmp_path: Path) -> None:
    directory = tmp_path / "node"
    # A program that exits at once in containerd's place.
    containerd = ContainerdProcess(ContainerdSettings.under(directory, binary="false"))
    with pytest.raises(ContainerdError, match="containerd exited with 1"):
        containerd.start()
    assert not containerd.running()
    assert processes_of(directory) == []
