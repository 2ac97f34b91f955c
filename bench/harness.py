"""Shared pieces of the benchmarks: a temporary etcd, daemons as real processes, statistics."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kubelite.etcd_process import EtcdProcess
from kubelite.ports import free_port


@contextmanager
def temporary_etcd() -> Iterator[EtcdProcess]:
    with tempfile.TemporaryDirectory(prefix="kubelite-bench-") as tmp:
        etcd = EtcdProcess(Path(tmp) / "etcd")
        etcd.start()
        try:
            yield etcd
        finally:
            etcd.stop()


@contextmanager
def apiserver_process(etcd_endpoint: str, *extra: str) -> Iterator[str]:
    """``python -m apiserver`` in its own process (as deployed); yields its address."""
    with module_process(
        "apiserver", "--etcd-servers", etcd_endpoint, "--log-level", "warning", *extra
    ) as address:
        yield address


@contextmanager
def module_process(module: str, *args: str) -> Iterator[str]:
    """``python -m MODULE --listen ADDRESS ARGS`` until the block ends; yields ADDRESS."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--listen", address, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for_port("127.0.0.1", port, proc)
        yield address
    finally:
        stop(proc)


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not listening after {timeout}s")


async def rate(
    op: Callable[[int], Awaitable[object]], concurrency: int, total: int
) -> float:
    """Operations per second for ``total`` calls of ``op(i)`` with ``concurrency`` in flight."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def child_serving(address: str) -> int:
    """The pid of this process's child started with ``--listen address``."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if parent == me and address.encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no child process of this one serves {address}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0
         ) -> None:
    """Asks ``proc`` to end with ``sig``, and kills it if it has not after ``timeout``
    seconds (nothing if it has ended already)."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def py_spy() -> str:
    """The py-spy executable (on PATH or beside this interpreter); not a dependency."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise FileNotFoundError("--profile needs py-spy: pip install py-spy")
    return found
