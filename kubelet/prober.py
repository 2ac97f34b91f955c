"""Liveness, readiness and startup probes, and lifecycle hooks' handlers.

One ProbeWorker per (container instance, probe kind) runs the probe every periodSeconds after
initialDelaySeconds and turns results into a verdict with Kubernetes' thresholds: a liveness
or startup verdict of failure asks the pod worker to kill the container; readiness feeds the
Ready condition. A startup probe, while it has not succeeded, holds back the other two.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from kubelet.runtime.interface import Runtime
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)


class ProbeKind(enum.Enum):
    LIVENESS = "Liveness"
    READINESS = "Readiness"
    STARTUP = "Startup"


@dataclass(frozen=True)
class ProbeOutcome:
    success: bool
    message: str = ""


def resolve_port(port: v1.IntOrString, container: v1.Container) -> int:
    if port.WhichOneof("value") == "str_val":
        for p in container.ports:
            if p.name == port.str_val:
                return int(p.container_port)
        raise ValueError(f"container has no port named {port.str_val!r}")
    return int(port.int_val)


async def http_get(
    host: str, port: int, path: str, headers: list[v1.HTTPHeader], timeout: float
) -> ProbeOutcome:
    """Kubernetes' HTTP probe: 200-399 is success; anything else, or no answer, failure."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as e:
        return ProbeOutcome(False, f'Get "http://{host}:{port}{path}": dial tcp: {e}')
    try:
        lines = [
            f"GET {path or '/'} HTTP/1.1",
            f"Host: {host}:{port}",
            "User-Agent: kube-probe/1.31",
            "Connection: close",
        ]
        lines += [f"{h.name}: {h.value}" for h in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.decode(errors="replace").split()
        code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if 200 <= code < 400:
            return ProbeOutcome(True)
        return ProbeOutcome(False, f"HTTP probe failed with statuscode: {code}")
    except (OSError, TimeoutError) as e:
        return ProbeOutcome(False, f'Get "http://{host}:{port}{path}": {e or "timeout"}')
    finally:
        writer.close()


async def tcp_connect(host: str, port: int, timeout: float) -> ProbeOutcome:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as e:
        return ProbeOutcome(False, f"dial tcp {host}:{port}: {e or 'i/o timeout'}")
    writer.close()
    return ProbeOutcome(True)


async def run_handler(
    handler: v1.Probe | v1.LifecycleHandler,
    container: v1.Container,
    container_id: str,
    runtime: Runtime,
    pod_ip: str,
    timeout: float,
) -> ProbeOutcome:
    """Runs one exec/httpGet/tcpSocket/sleep handler (a probe's or a hook's)."""
    try:
        if handler.HasField("exec"):
            result = await runtime.exec_sync(container_id, list(handler.exec.command), timeout)
            if result.timed_out:
                return ProbeOutcome(False, f"command timed out after {timeout:g}s")
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            if result.exit_code == 0:
                return ProbeOutcome(True, output)
            return ProbeOutcome(
                False,
                f"command {list(handler.exec.command)!r} exited with {result.exit_code}: {output}",
            )
        if handler.HasField("http_get"):
            get = handler.http_get
            port = resolve_port(get.port, container)
            return await http_get(
                get.host or pod_ip, port, get.path, list(get.http_headers), timeout
            )
        if handler.HasField("tcp_socket"):
            tcp = handler.tcp_socket
            return await tcp_connect(tcp.host or pod_ip, resolve_port(tcp.port, container), timeout)
        if isinstance(handler, v1.LifecycleHandler) and handler.HasField("sleep"):
            await asyncio.sleep(handler.sleep.seconds)
            return ProbeOutcome(True)
    except ValueError as e:
        return ProbeOutcome(False, str(e))
    return ProbeOutcome(False, "probe has no handler this kubelet supports")


class ProbeWorker:
    """Probes one running container instance until cancelled."""

    def __init__(
        self,
        kind: ProbeKind,
        probe: v1.Probe,
        container: v1.Container,
        container_id: str,
        runtime: Runtime,
        pod_ip: str,
        on_change: Callable[[], None],
        gate: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kind = kind
        self.probe = probe
        self.container = container
        self.container_id = container_id
        self.runtime = runtime
        self.pod_ip = pod_ip
        self.on_change = on_change
        self.gate = gate
        # Readiness starts false; liveness starts passing; startup starts "not yet".
        self.result = kind == ProbeKind.LIVENESS
        self.failed = False
        """Liveness/startup: the failure threshold was reached; the container must go."""
        self.last_message = ""
        self._successes = 0
        self._failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            self._run(), name=f"probe-{self.kind.value}-{self.container.name}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        p = self.probe
        await asyncio.sleep(max(0, p.initial_delay_seconds))
        period = max(1, p.period_seconds)
        while True:
            if self.gate():
                try:
                    outcome = await run_handler(
                        p,
                        self.container,
                        self.container_id,
                        self.runtime,
                        self.pod_ip,
                        max(1, p.timeout_seconds),
                    )
                except Exception as e:
                    log.exception(
                        "probe crashed", kind=self.kind.value, container=self.container.name
                    )
                    outcome = ProbeOutcome(False, f"probe error: {e}")
                self._record(outcome)
                if self.failed or (self.kind == ProbeKind.STARTUP and self.result):
                    return  # startup probes end at success; a failed container is killed
            await asyncio.sleep(period)

    def _record(self, outcome: ProbeOutcome) -> None:
        self.last_message = outcome.message
        before = (self.result, self.failed)
        if outcome.success:
            self._successes += 1
            self._failures = 0
            if self._successes >= max(1, self.probe.success_threshold):
                self.result = True
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= max(1, self.probe.failure_threshold):
                self.result = False
                self.failed = self.kind != ProbeKind.READINESS
        if (self.result, self.failed) != before or not outcome.success:
            self.on_change()
