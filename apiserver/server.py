"""The API server process in one object: etcd client, API, gRPC server, health, compactor."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from apiserver import encryption
from apiserver.api import Api, ApiSettings
from apiserver.authn import AuthenticationSettings
from apiserver.authz.escalation import EscalationCheck
from apiserver.bootstrap import BootstrapSettings, KubernetesService
from apiserver.etcd import Etcd, EtcdSettings, put_op, version_is
from apiserver.http.server import HttpApi, HttpSettings, tls_context
from apiserver.inflight import InflightSettings, RequestAdmission
from apiserver.kubelet_proxy import KubeletClientSettings
from apiserver.security import AuthorizationSettings, Security
from apiserver.servicer import ApiServicer
from apiserver.storage import Storage
from apiserver.token_request import TokenRequestSettings
from apiserver.txn_batch import TxnBatcher, TxnBatchSettings
from kubelite.api.errors import ApiError
from kubelite.auth.anonymous_transport import ANONYMOUS_CA_PEM
from protos.v1 import apiserver_pb2_grpc as pb_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = "kubelite.v1.ApiServer"


def grpc_server_options(max_pending_calls: int) -> list[tuple[str, int]]:
    """The API server's gRPC server options (the benchmark's do-nothing server takes them
    too, so that it measures the same transport)."""
    return [
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
        # The client library pings every 10 s, also between calls (kubelite/client/client.py).
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        # Calls wait here until the server's loop takes them up; past this backlog gRPC
        # cancels them (CANCELLED) before admission could answer TooManyRequests.
        ("grpc.server.max_pending_requests", max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", max_pending_calls),
    ]


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str = ""
    """--tls-cert-file: the serving certificate (PEM), followed by its CA so that clients
    (and ``kubelite join``'s discovery) get the chain."""
    key_file: str = ""
    """--tls-private-key-file: its private key (PEM)."""
    client_ca_file: str = ""
    """--client-ca-file: the CA whose client certificates are identities (x509
    authentication); empty: clients authenticate with bearer tokens only."""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file or self.key_file)


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path}: {e}") from e


def server_credentials(tls: TlsSettings) -> tuple[grpc.ServerCredentials, bytes | None]:
    """The port's TLS credentials and the client CA's PEM (None without one).

    gRPC's Python server cannot ask for an optional client certificate, so it requires one
    and trusts the client CA and the public anonymous-transport CA, whose certificate
    token-only clients present (kubelite.auth.anonymous_transport); only the client CA's
    certificates are identities. Any other issuer fails the handshake.
    """
    if not tls.cert_file or not tls.key_file:
        raise ValueError("--tls-cert-file and --tls-private-key-file go together")
    cert = _read("--tls-cert-file", tls.cert_file)
    key = _read("--tls-private-key-file", tls.key_file)
    client_ca = _read("--client-ca-file", tls.client_ca_file) if tls.client_ca_file else None
    roots = (client_ca.rstrip(b"\n") + b"\n" if client_ca else b"") + ANONYMOUS_CA_PEM
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=roots, require_client_auth=True)
    return credentials, client_ca


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
    etcd_write_batching: TxnBatchSettings = field(default_factory=TxnBatchSettings)
    """Group commit: how the writes of concurrent requests share etcd transactions."""
    compaction_interval: float = 300.0
    """Seconds between etcd compactions; each keeps one interval of history (0: never)."""
    health_interval: float = 2.0
    """Seconds between checks that etcd answers; health turns NOT_SERVING when it does not."""
    shutdown_grace: float = 5.0
    """Seconds in-flight requests get to finish on stop."""
    insecure: bool = True
    """Plaintext, and no authentication nor authorization: every request may do anything.
    The command line refuses to start so unless --insecure is given; in-process servers
    (tests) default to it."""
    tls: TlsSettings = field(default_factory=TlsSettings)
    """Serving certificate and client CA of a secure server."""
    authentication: AuthenticationSettings = field(default_factory=AuthenticationSettings)
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)
    token_requests: TokenRequestSettings = field(default_factory=TokenRequestSettings)
    """How ServiceAccount tokens are signed (serviceaccounts/token)."""
    kubelet_client: KubeletClientSettings = field(default_factory=KubeletClientSettings)
    """How the server reaches kubelets for logs and exec."""
    encryption_provider_config: str | None = None
    """Path of an EncryptionConfiguration (--encryption-provider-config): the resources it
    names are encrypted in etcd; None: every value is stored as it is."""
    http_listen: str = ""
    """host:port to serve the Kubernetes-compatible HTTP/JSON API on (kubectl, client-go,
    the official client libraries), over TLS with the serving certificate unless insecure;
    port 0 picks a free port; empty: no HTTP API."""
    http: HttpSettings = field(default_factory=HttpSettings)
    """Timers of the HTTP API (how long its watches last)."""

    def __post_init__(self) -> None:
        if self.insecure and self.tls.enabled:
            raise ValueError("--insecure serves plaintext: drop --tls-cert-file and"
                             " --tls-private-key-file, or --insecure")
        if not self.insecure and not (self.tls.cert_file and self.tls.key_file):
            raise ValueError("a secure API server needs --tls-cert-file and"
                             " --tls-private-key-file (or --insecure, for learning only)")


class ApiServer:
    def __init__(self, settings: ApiServerSettings) -> None:
        self.settings = settings
        self.etcd = Etcd(settings.etcd)
        self.batcher = TxnBatcher(self.etcd, settings.etcd_write_batching)
        self.storage = Storage(
            self.etcd, settings.api.storage_prefix,
            encryption.load(settings.encryption_provider_config).transformers()
            if settings.encryption_provider_config else None,
            batcher=self.batcher,
        )
        # Admission plugins that need a user (ServiceAccount) are on when requests have one.
        api_settings = dataclasses.replace(settings.api, admission=dataclasses.replace(
            settings.api.admission,
            secured=settings.api.admission.secured or not settings.insecure))
        self.api = Api(self.storage, api_settings)
        self.bootstrap = KubernetesService(self.api, settings.bootstrap)
        self.health = HealthServicer()
        self.admission = RequestAdmission(settings.inflight)
        self._credentials: grpc.ServerCredentials | None = None
        client_ca = None
        if not settings.insecure:
            self._credentials, client_ca = server_credentials(settings.tls)
        self._client_ca = client_ca
        self.security = Security(
            self.api, enabled=not settings.insecure,
            authentication=settings.authentication, authorization=settings.authorization,
            token_requests=settings.token_requests, client_ca_pem=client_ca,
        )
        if not settings.insecure and "RBAC" in settings.authorization.modes:
            # Nobody grants RBAC permissions they do not hold (checked on the stored object,
            # with the admission plugins).
            self.api.admission.plugins.append(
                EscalationCheck(self.security.rbac, self.security.authorizer))
        for cache in self.api.caches.values():
            # Watches from before a cache's window hold an uncached-watch slot while they
            # replay from etcd, and give it back once the cache serves them.
            cache.take_private_watch_slot = self.admission.take_uncached_watch
        self._server = grpc.aio.server(
            options=grpc_server_options(settings.inflight.max_pending_calls))
        self._tasks: list[asyncio.Task[None]] = []
        self.servicer: ApiServicer | None = None
        self.http: HttpApi | None = None
        self.port = 0
        self.http_port = 0
        self.serving = False
        """Whether etcd answered the last health check (the HTTP API's /readyz)."""

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    @property
    def http_address(self) -> str:
        """host:port of the HTTP API ("" without one)."""
        if self.http is None:
            return ""
        return f"{self.settings.http_listen.rpartition(':')[0]}:{self.http_port}"

    async def start(self) -> None:
        await self._wait_for_etcd()
        await self.api.start()
        await self.security.start()
        self.servicer = ApiServicer(self.api, self.security, self.settings.kubelet_client)
        pb_grpc.add_ApiServerServicer_to_server(  # type: ignore[no-untyped-call]
            self.admission.admitting(self.servicer), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        if self._credentials is not None:
            self.port = self._server.add_secure_port(self.settings.listen, self._credentials)
        else:
            self.port = self._server.add_insecure_port(self.settings.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        await self._server.start()
        if self.settings.http_listen:
            tls = self.settings.tls
            self.http = HttpApi(
                self.api, self.security, self.admission, self.servicer,
                settings=self.settings.http,
                ssl_context=None if self.settings.insecure
                else tls_context(tls.cert_file, tls.key_file, self._client_ca),
                ready=lambda: self.serving, shutdown_grace=self.settings.shutdown_grace)
            self.http_port = await self.http.start(self.settings.http_listen)
        await self.bootstrap.start(self.settings.listen.rpartition(":")[0], self.port)
        await self._set_health(True)
        self._tasks.append(asyncio.create_task(self._watch_etcd_health(), name="etcd-health"))
        if self.settings.compaction_interval > 0:
            self._tasks.append(asyncio.create_task(self._compact_forever(), name="compactor"))
        log.info("API server serving", address=self.address,
                 etcd=",".join(self.settings.etcd.endpoints),
                 secure=not self.settings.insecure)

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        await self.bootstrap.stop(self.settings.shutdown_grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        await self.security.stop()
        await self.api.stop()
        await self._server.stop(self.settings.shutdown_grace)
        if self.servicer is not None:
            await self.servicer.kubelets.close()
        await self.batcher.close()
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
        self.serving = serving
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
