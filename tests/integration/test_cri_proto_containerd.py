"""Our CRI stubs against a real containerd: a throwaway containerd (its own root, state,
socket and config in the test's directory) answers Version and Status through
protos/cri/v1 as a kubelet would call them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from kubelite.testing.wait import eventually
from protos.cri.v1 import api_pb2 as cri
from protos.cri.v1 import api_pb2_grpc as cri_grpc

CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
START_TIMEOUT = 30.0
"""Seconds for containerd to serve CRI after it starts."""
STOP_TIMEOUT = 10.0
"""Seconds for containerd to exit after SIGTERM before it is killed."""
CALL_TIMEOUT = 5.0
"""Seconds for one CRI call."""

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd runs as root"),
    pytest.mark.skipif(not os.access(CONTAINERD, os.X_OK), reason="containerd is not installed"),
]


def containerd_config(base: Path) -> str:
    """Version 2 with the CRI plugin on; every directory it writes or reads lies under
    ``base``, so the node's own containerd and CNI setup are untouched."""
    return f"""\
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{base / "cni" / "bin"}"
  conf_dir = "{base / "cni" / "net.d"}"
"""


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a containerd of the test's own, once it serves CRI; containerd is stopped
    with SIGTERM afterwards (SIGKILL and a failure past STOP_TIMEOUT)."""
    config = tmp_path / "config.toml"
    config.write_text(containerd_config(tmp_path))
    socket = tmp_path / "c.sock"
    log_path = tmp_path / "containerd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [CONTAINERD, "--root", str(tmp_path / "root"), "--state", str(tmp_path / "state"),
             "--address", str(socket), "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as ch:
            runtime = cri_grpc.RuntimeServiceStub(ch)  # type: ignore[no-untyped-call]

            async def serving_or_exited() -> bool:
                if process.poll() is not None:
                    return True
                # UNAVAILABLE until the socket exists, then "not initialized" until CRI is up.
                await runtime.Version(cri.VersionRequest(version="v1"), timeout=CALL_TIMEOUT)
                return True

            await eventually(serving_or_exited, timeout=START_TIMEOUT, interval=0.1,
                             message="containerd serving CRI v1")
            if process.poll() is not None:
                pytest.fail(f"containerd exited {process.returncode} at start: "
                            f"{log_path.read_text()[-2000:]}")
            yield ch
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"containerd ignored SIGTERM for {STOP_TIMEOUT}s; see {log_path}")
    # A clean stop: SIGTERM is how a node's containerd is told to stop.
    assert process.returncode == 0, f"containerd exited {process.returncode}; see {log_path}"


async def test_version_and_status_through_our_stubs(channel: grpc.aio.Channel) -> None:
    runtime = cri_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]

    reply: cri.VersionResponse = await runtime.Version(
        cri.VersionRequest(version="v1"), timeout=CALL_TIMEOUT
    )
    assert reply.runtime_name == "containerd"
    assert reply.runtime_api_version == "v1"
    assert reply.runtime_version  # e.g. "1.6.20~ds1"

    status: cri.StatusResponse = await runtime.Status(
        cri.StatusRequest(verbose=False), timeout=CALL_TIMEOUT
    )
    conditions = {c.type: c for c in status.status.conditions}
    assert conditions["RuntimeReady"].status, conditions["RuntimeReady"]
    # No CNI configuration in its conf_dir: the network is not ready, and it says why.
    assert not conditions["NetworkReady"].status
    assert conditions["NetworkReady"].reason


async def test_image_service_answers_through_our_stubs(channel: grpc.aio.Channel) -> None:
    runtime = cri_grpc.RuntimeServiceStub(channel)  # type: ignore[no-untyped-call]
    images = cri_grpc.ImageServiceStub(channel)  # type: ignore[no-untyped-call]

    listed: cri.ListImagesResponse = await images.ListImages(
        cri.ListImagesRequest(), timeout=CALL_TIMEOUT
    )
    assert list(listed.images) == []
    absent: cri.ImageStatusResponse = await images.ImageStatus(
        cri.ImageStatusRequest(image=cri.ImageSpec(image="registry.invalid/none:1")),
        timeout=CALL_TIMEOUT,
    )
    assert not absent.HasField("image")
    sandboxes: cri.ListPodSandboxResponse = await runtime.ListPodSandbox(
        cri.ListPodSandboxRequest(), timeout=CALL_TIMEOUT
    )
    assert list(sandboxes.items) == []
