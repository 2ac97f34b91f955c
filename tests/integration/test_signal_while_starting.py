"""A daemon whose start waits for what it depends on (the API server for etcd, the kubelet for
the API server) still stops at once and cleanly on SIGTERM: start is cancelled, stop runs, and
the exit status is 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubelite.ports import free_port
from kubelite.testing.wait import eventually


def unreachable() -> str:
    """An address where nothing listens (a free port, not bound by anyone)."""
    return f"127.0.0.1:{free_port()}"


def apiserver(tmp: Path) -> list[str]:
    return ["apiserver", "--insecure", "--etcd-servers", unreachable(),
            "--listen", f"127.0.0.1:{free_port()}"]


def kubelet(tmp: Path) -> list[str]:
    return ["kubelet", "--server", unreachable(), "--node-name", "lonely",
            "--root-dir", str(tmp / "kubelet"), "--port", "0",
            "--health-address", f"127.0.0.1:{free_port()}"]


@pytest.mark.parametrize(("command", "waiting"), [
    (apiserver, "waiting for etcd"),
    (kubelet, "health service listening"),
], ids=["apiserver-without-etcd", "kubelet-without-apiserver"])
async def test_sigterm_while_start_waits_stops_the_daemon_cleanly(
    tmp_path: Path, command: object, waiting: str,
) -> None:
    assert callable(command)
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *command(tmp_path)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        await eventually(lambda: waiting in log.read_text(), timeout=30,
                         message=f"the daemon to log {waiting!r}")
        assert proc.poll() is None, "it is still starting"
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: proc.poll() is not None, timeout=15,
                         message="the daemon to exit after SIGTERM")
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert "signal received while starting; shutting down" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait)
