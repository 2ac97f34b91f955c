"""A component's readiness: the standard gRPC health service, flipped by a periodic check.

Every control-plane component and node agent serves ``grpc.health.v1.Health`` (as the API
server does) on its ``--health-address``. A check function, evaluated every second, says
whether the component is ready and why; the status of service ``""`` and of the component's
name is SERVING while it is and NOT_SERVING otherwise, and each flip is logged once with its
reason::

    health = HealthServer(HealthSettings("127.0.0.1:10259", "scheduler"), scheduler.readiness)
    await health.start()    # binds (OSError when it cannot), serves, checks every second
    ...
    await health.stop()     # NOT_SERVING to watchers, then closes

Query it with ``grpc_health.v1`` (``kubelite status`` does) or with :func:`check_health`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from kubelite.client.informer import Informer

log = structlog.get_logger(__name__)

Readiness = tuple[bool, str]
"""(ready, reason): the reason says what is wrong, or briefly what is fine."""
Check = Callable[[], Readiness | Awaitable[Readiness]]
"""A sync or async callable returning Readiness; an exception counts as not ready."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class HealthSettings:
    address: str
    """host:port to serve the gRPC health service on; port 0 picks a free port."""
    service: str
    """The component's name: its status is served for this service and for ``""``."""
    interval: float = 1.0
    """Seconds between evaluations of the check."""
    check_timeout: float = 1.0
    """Seconds an async check may take; a slower one counts as not ready."""
    shutdown_grace: float = 0.5
    """Seconds in-flight health calls get to finish on stop."""


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def informers_readiness(informers: Iterable[Informer[Any]]) -> Readiness:
    """Ready when there are informers and every one is synced and watching."""
    informers = list(informers)
    if not informers:
        return False, "informers not started"
    broken = [i.description for i in informers if not i.healthy]
    if broken:
        return False, f"informers not watching: {', '.join(broken)}"
    return True, f"{len(informers)} informers watching"


def all_ready(*results: Readiness) -> Readiness:
    """The first failing result, or every reason joined when all are ready."""
    for ok, reason in results:
        if not ok:
            return False, reason
    return True, "; ".join(reason for _, reason in results)


class HealthServer:
    """Serves grpc.health.v1 on one address and keeps its status in step with a check."""

    def __init__(
        self,
        settings: HealthSettings,
        check: Check,
        log_fields: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        """``log_fields`` adds context (e.g. the leader state) to the line logged on a flip;
        it does not affect readiness."""
        self.settings = settings
        self.check = check
        self.log_fields = log_fields
        self.servicer = HealthServicer()
        self.serving: bool | None = None
        """The status served now (None before the first check)."""
        self.reason = "not checked yet"
        """The reason the last check gave."""
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """host:port actually served (the chosen port when the settings asked for 0)."""
        host = self.settings.address.rpartition(":")[0].strip("[]")
        return join_host_port(host, self.port)

    async def start(self) -> None:
        """Binds and serves (NOT_SERVING until the first check, which runs at once)."""
        if self._server is not None:
            return
        # No SO_REUSEPORT: a second process on the same address must fail, not share it.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        try:
            port = server.add_insecure_port(self.settings.address)
        except RuntimeError as e:
            port, error = 0, str(e)
        else:
            error = ""
        if port == 0:
            await server.stop(None)
            raise OSError(f"cannot serve health on {self.settings.address} {error}".rstrip())
        self.port = port
        await self._set(NOT_SERVING)
        await server.start()
        self._server = server
        await self.evaluate()
        self._task = asyncio.create_task(self._check_forever(),
                                         name=f"health-{self.settings.service}")
        log.info("health service listening", address=self.address,
                 service=self.settings.service)

    async def stop(self) -> None:
        """Reports NOT_SERVING to watchers, stops checking and closes the server."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._server is not None:
            await self.servicer.enter_graceful_shutdown()
            await self._server.stop(self.settings.shutdown_grace)
            self._server = None

    async def evaluate(self) -> bool:
        """Runs the check once, updates the served status and logs a flip; returns it."""
        ok, reason = await self._run_check()
        self.reason = reason
        if ok != self.serving:
            self.serving = ok
            await self._set(SERVING if ok else NOT_SERVING)
            fields: dict[str, object] = {}
            if self.log_fields is not None:
                try:
                    fields = dict(self.log_fields())
                except Exception:
                    log.exception("readiness log fields failed")
            emit = log.info if ok else log.warning
            emit("readiness changed", service=self.settings.service,
                 status="SERVING" if ok else "NOT_SERVING", reason=reason, **fields)
        return ok

    async def _run_check(self) -> Readiness:
        try:
            result = self.check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.settings.check_timeout)
            ok, reason = result
            return bool(ok), str(reason)
        except TimeoutError:
            return False, f"readiness check took over {self.settings.check_timeout}s"
        except Exception as e:  # noqa: BLE001 - a failing check means not ready
            return False, f"readiness check failed: {e!r}"

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval)
            await self.evaluate()

    async def _set(self, status: int) -> None:
        await self.servicer.set("", status)
        await self.servicer.set(self.settings.service, status)


def maybe_health_server(
    address: str,
    service: str,
    check: Check,
    log_fields: Callable[[], Mapping[str, object]] | None = None,
) -> HealthServer | None:
    """A HealthServer on ``address``, or None when the address is empty (disabled)."""
    if not address:
        return None
    return HealthServer(HealthSettings(address, service), check, log_fields)


async def check_health(address: str, service: str = "", timeout: float = 1.0) -> str:
    """The status ``address`` reports for ``service`` (SERVING, NOT_SERVING, ...),
    SERVICE_UNKNOWN for a service it does not serve, or UNREACHABLE when it does not answer."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                        timeout=timeout)
        except grpc.aio.AioRpcError as e:
            return "SERVICE_UNKNOWN" if e.code() == grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
