"""kubelite's Python images on a real containerd: built from this node's interpreter and
kubelite, preloaded into a containerd as a node's, importing kubelite's dependencies and its
packages, kubelite/agnhost serving the pod's name, and the build cached by content."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from kubelite.containerd_process import ContainerdProcess
from kubelite.node_images import AGNHOST_IMAGE, DNS_IMAGE, node_archives
from kubelite.oci_images import AGNHOST, DNS, PYTHON, OciImage, build_python_images
from kubelite.testing.images import (
    build_test_images,
    missing_containerd_tools,
    node_containerd,
)
from kubelite.testing.wait import eventually
from protos.cri.v1 import api_pb2 as cri

pytestmark = pytest.mark.skipif(bool(missing_containerd_tools()),
                                reason=f"needs {', '.join(missing_containerd_tools())}")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory,
               images_dir: Path) -> Iterator[ContainerdProcess]:
    with node_containerd(Path(tmp_path_factory.mktemp("node")),
                         images_dir=images_dir) as containerd:
        yield containerd


def ctr_run(containerd: ContainerdProcess, image: str, container_id: str, *command: str,
            detach: bool = False, env: tuple[str, ...] = ()) -> str:
    """``ctr run`` with runc's state and the container's cgroup this containerd's own; without
    ``detach`` it waits for the container and gives its output. ``command`` replaces the
    image's entrypoint and command (as ctr does); empty, the image's run."""
    cgroup = f"/k8s.io/{containerd.socket.parent.name}-{container_id}"
    options = ["--detach"] if detach else ["--rm"]
    for variable in env:
        options += ["--env", variable]
    return containerd.ctr("run", *options, "--runc-root", str(containerd.runc_root),
                          "--cgroup", cgroup, image, container_id, *command, timeout=60)


def test_the_python_images_are_preloaded(containerd: ContainerdProcess) -> None:
    names = containerd.image_names()
    assert AGNHOST_IMAGE in names and DNS_IMAGE in names
    assert AGNHOST_IMAGE.endswith(":1.0")


def test_python_imports_kubelites_dependencies_and_packages(
    containerd: ContainerdProcess,
) -> None:
    out = ctr_run(containerd, AGNHOST_IMAGE, "imports", "python3", "-c",
                  "import sys, ssl, sqlite3, asyncio, grpc, structlog, yaml, uvloop, aetcd, "
                  "jsonpatch, google.protobuf, kubelite, kubelite.client, "
                  "kubelet.images.agnhost, protos.v1.objects_pb2; "
                  "print('ok', sys.executable, sys.prefix)")
    assert out.split() == ["ok", "/usr/local/bin/python3", "/usr/local"]
    # busybox is the image's /bin: a shell for exec and probes.
    assert ctr_run(containerd, AGNHOST_IMAGE, "shell", "sh", "-c", "echo $PYTHONPATH") == \
        "/usr/local/lib/kubelite\n"


def test_cri_runs_the_preloaded_image_unpacking_it_on_first_use(
    tmp_path: Path, images_dir: Path,
) -> None:
    """The Python images are imported without unpacking (a containerd of its own here, so no
    other test unpacked them): CRI unpacks them for the first container, as for a kubelet's."""
    logs = tmp_path / "logs"
    sandbox_config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name="py", uid="uid-py", namespace="default"),
        log_directory=str(logs),
        linux=cri.LinuxPodSandboxConfig(security_context=cri.LinuxSandboxSecurityContext(
            namespace_options=cri.NamespaceOption(network=cri.NODE))))
    with node_containerd(tmp_path / "node", images_dir=images_dir) as containerd, \
            grpc.insecure_channel(containerd.endpoint) as channel:
        def call(service: str, method: str, request: Message, response: type[Message]) -> Any:
            return channel.unary_unary(
                f"/runtime.v1.{service}/{method}", request_serializer=request.SerializeToString,
                response_deserializer=response.FromString)(request, timeout=60)

        sandbox = call("RuntimeService", "RunPodSandbox",
                       cri.RunPodSandboxRequest(config=sandbox_config),
                       cri.RunPodSandboxResponse).pod_sandbox_id
        try:
            container = call("RuntimeService", "CreateContainer", cri.CreateContainerRequest(
                pod_sandbox_id=sandbox, sandbox_config=sandbox_config,
                config=cri.ContainerConfig(
                    metadata=cri.ContainerMetadata(name="py"),
                    image=cri.ImageSpec(image=AGNHOST_IMAGE),
                    command=["python3", "-c", "import kubelite.client, grpc; print('ok')"],
                    log_path="py.log")), cri.CreateContainerResponse).container_id
            call("RuntimeService", "StartContainer",
                 cri.StartContainerRequest(container_id=container), cri.StartContainerResponse)

            def exited() -> Any:
                status = call("RuntimeService", "ContainerStatus",
                              cri.ContainerStatusRequest(container_id=container),
                              cri.ContainerStatusResponse).status
                return status if status.state == cri.CONTAINER_EXITED else None

            status = asyncio.run(eventually(exited, timeout=30, message="the container to exit"))
            assert status.exit_code == 0, (logs / "py.log").read_text()
            assert (logs / "py.log").read_text().rstrip().endswith("stdout F ok")
        finally:
            call("RuntimeService", "StopPodSandbox",
                 cri.StopPodSandboxRequest(pod_sandbox_id=sandbox), cri.StopPodSandboxResponse)
            call("RuntimeService", "RemovePodSandbox",
                 cri.RemovePodSandboxRequest(pod_sandbox_id=sandbox),
                 cri.RemovePodSandboxResponse)


def test_agnhost_serves_the_pods_name(containerd: ContainerdProcess) -> None:
    # The image's own entrypoint and default args: serve-hostname on port 9376.
    ctr_run(containerd, AGNHOST_IMAGE, "agnhost", env=("HOSTNAME=agnhost-pod",), detach=True)
    try:
        def answer() -> str:
            return containerd.ctr("tasks", "exec", "--exec-id", f"probe-{os.urandom(4).hex()}",
                                  "agnhost", "wget", "-qO-", "http://127.0.0.1:9376/")

        assert asyncio.run(eventually(answer, timeout=30,
                                      message="agnhost to answer")) == "agnhost-pod"
    finally:
        containerd.ctr("tasks", "kill", "--signal", "SIGKILL", "agnhost")

        def stopped() -> bool:
            return any(line.split()[:1] == ["agnhost"] and line.split()[-1] == "STOPPED"
                       for line in containerd.ctr("tasks", "ls").splitlines()[1:])

        asyncio.run(eventually(stopped, timeout=10, message="agnhost to stop"))
        containerd.ctr("tasks", "delete", "agnhost")
        containerd.ctr("containers", "delete", "agnhost")


def test_the_dns_image_runs_clusterdns(containerd: ContainerdProcess) -> None:
    if not (ROOT / "clusterdns" / "__main__.py").exists():
        pytest.skip("no clusterdns package in this checkout")
    out = ctr_run(containerd, DNS_IMAGE, "dns-help", "python3", "-m", "clusterdns", "--help")
    assert "usage" in out.lower()


def test_the_python_images_are_cached_and_follow_kubelites_sources(
    tmp_path: Path, images_dir: Path, containerd: ContainerdProcess,
) -> None:
    images = build_test_images(images_dir)  # built already for this session
    assert {PYTHON, AGNHOST, DNS} <= set(images)
    built = written(images_dir, images)
    assert built and build_test_images(images_dir) == images
    assert written(images_dir, images) == built  # cached: nothing is rebuilt or rewritten
    before = layers(images[AGNHOST])

    # A checkout whose sources differ: only the top layer, kubelite's packages, changes.
    checkout = tmp_path / "checkout"
    (checkout / "pyproject.toml").parent.mkdir(parents=True)
    (checkout / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    for package in ("kubelite", "kubelet", "protos"):
        for path in (ROOT / package).rglob("*.py"):
            target = checkout / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (checkout / "kubelite" / "edited.py").write_text("EDITED = True\n")
    changed = build_python_images(images_dir, source_root=str(checkout))
    after = layers(changed[AGNHOST])
    assert len(after) == len(before) == 3  # busybox, the interpreter, kubelite's packages
    assert after[:2] == before[:2] and after[2] != before[2]


def written(images_dir: Path, images: dict[str, OciImage]) -> dict[Path, tuple[int, int]]:
    """Every file of ``images`` and of the node archives, with its inode and mtime."""
    roots = [image.layout for image in images.values()] + node_archives(images_dir)
    files = [f for root in roots for f in ([root] if root.is_file() else root.rglob("*"))]
    return {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files if f.is_file()}


def layers(image: OciImage) -> list[str]:
    """The digests of the image's layers, bottom first."""
    blob = image.layout / "blobs" / "sha256" / image.digest.split(":", 1)[1]
    return [layer["digest"] for layer in json.loads(blob.read_text())["layers"]]
