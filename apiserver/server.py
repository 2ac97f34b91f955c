"""The API server process in one object: etcd client, API, gRPC server, health, compactor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from apiserver import encryption
from apiserver.api import Api, ApiSettings
from apiserver.bootstrap import BootstrapSettings, KubernetesService
from apiserver.etcd import Etcd, EtcdSettings, put_op, version_is
from apiserver.inflight import InflightSettings, RequestAdmission
from apiserver.servicer import ApiServicer
from apiserver.storage import Storage
from kubelite.api.errors import ApiError
from protos.v1 import apiserver_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = "kubelite.v1.ApiServer"


@dataclass(frozen=True)
class ApiServerSettings:
    listen: str = "127.0.0.1:6443"
    """host:port to serve gRPC on; port 0 picks a free port."""
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    """The advertised address and timers of the ``kubernetes`` Service's upkeep."""
    inflight: InflightSettings = field(default_factory=InflightSettings)
    """How many requests of each class are served at once (request admission)."""
    compaction_interval: float = 300.0
    """Seconds between etcd compactions; each keeps one interval of history (0: never)."""
    health_interval: float = 2.0
    """Seconds between checks that etcd answers; health turns NOT_SERVING when it does not."""
    shutdown_grace: float = 5.0
    """Seconds in-flight requests get to finish on stop."""
    encryption_provider_config: str | None = None
    """Path of an EncryptionConfiguration (--encryption-provider-config): the resources it
    names are encrypted in etcd; None: every value is stored as it is."""


class ApiServer:
    def __init__(self, settings: ApiServerSettings) -> None:
        self.settings = settings
        self.etcd = Etcd(settings.etcd)
        self.storage = Storage(
            self.etcd, settings.api.storage_prefix,
            encryption.load(settings.encryption_provider_config).transformers()
            if settings.encryption_provider_config else None,
        )
        self.api = Api(self.storage, settings.api)
        self.bootstrap = KubernetesService(self.api, settings.bootstrap)
        self.health = HealthServicer()
        self.admission = RequestAdmission(settings.inflight)
        for cache in self.api.caches.values():
            # Watches from before a cache's window hold an uncached-watch slot while they
            # replay from etcd, and give it back once the cache serves them.
            cache.take_private_watch_slot = self.admission.take_uncached_watch
        pending = settings.inflight.max_pending_calls
        self._server = grpc.aio.server(
            interceptors=[self.admission],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                # Calls wait here until the server's loop takes them up; past this backlog
                # gRPC cancels them (CANCELLED) before admission could answer TooManyRequests.
                ("grpc.server.max_pending_requests", pending),
                ("grpc.server.max_pending_requests_hard_limit", pending),
            ],
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.servicer: ApiServicer | None = None
        self.port = 0

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        await self._wait_for_etcd()
        await self.api.start()
        self.servicer = ApiServicer(self.api)
        pb_grpc.add_ApiServerServicer_to_server(  # type: ignore[no-untyped-call]
            self.servicer, self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.port = self._server.add_insecure_port(self.settings.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        await self._server.start()
        await self.bootstrap.start(self.settings.listen.rpartition(":")[0], self.port)
        await self._set_health(True)
        self._tasks.append(asyncio.create_task(self._watch_etcd_health(), name="etcd-health"))
        if self.settings.compaction_interval > 0:
            self._tasks.append(asyncio.create_task(self._compact_forever(), name="compactor"))
        log.info("API server serving", address=self.address,
                 etcd=",".join(self.settings.etcd.endpoints))

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.bootstrap.stop(self.settings.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.api.stop()
        await self._server.stop(self.settings.shutdown_grace)
        if self.servicer is not None:
            await self.servicer.kubelets.close()
        await self.etcd.close()
        log.info("API server stopped")

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def _wait_for_etcd(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.etcd.current_revision()
                return
            except ApiError as e:
                log.warning("waiting for etcd", error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _set_health(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    async def _watch_etcd_health(self) -> None:
        serving = True
        while True:
            await asyncio.sleep(self.settings.health_interval)
            try:
                await self.etcd.current_revision()
                healthy = True
            except ApiError as e:
                healthy = False
                if serving:
                    log.warning("etcd unreachable; reporting NOT_SERVING", error=str(e))
            if healthy != serving:
                serving = healthy
                await self._set_health(serving)
                if serving:
                    log.info("etcd reachable again; reporting SERVING")

    async def _compact_forever(self) -> None:
        """Compacts to the revision seen one interval ago, as Kubernetes does.

        A compare-and-swap on a shared key makes sure several API servers compact once per
        interval between them.
        """
        key = f"{self.settings.api.storage_prefix}/compact_rev_key".encode()
        seen_version = 0
        last_revision = 0
        while True:
            await asyncio.sleep(self.settings.compaction_interval)
            try:
                revision = await self.etcd.current_revision()
                response = await self.etcd.txn(
                    [version_is(key, seen_version)], [put_op(key, str(revision).encode())]
                )
                if response.succeeded:
                    seen_version += 1
                    if last_revision:
                        await self.etcd.compact(last_revision)
                        log.info("compacted etcd", revision=last_revision)
                    last_revision = revision
                else:
                    current = await self.etcd.range(key)
                    seen_version = current.kvs[0].version if current.kvs else 0
            except Exception:
                log.exception("compaction failed")
