"""The kubelet's API (protos/v1/kubelet.proto): container logs and exec, for the API server.

Secured (``ServingTls``), it speaks TLS and requires a client certificate signed by the
client CA: the certificate's CN is the caller's name and its O entries its groups, as the
API server reads them. Callers are then authorized as upstream's kubelet does: the API
server's kubelet client (``kube-apiserver-kubelet-client``, or anyone in ``system:masters``)
passes, anyone else needs ``nodes/proxy`` on this node, asked of the API server with a
SubjectAccessReview whose answer is cached a while. Without TLS settings it is plaintext and
open to every caller (insecure mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import structlog
from cryptography import x509
from cryptography.x509.oid import NameOID

from kubelet.runtime.interface import Runtime
from kubelite.api.errors import ApiError
from kubelite.auth.user import ALL_AUTHENTICATED, APISERVER_KUBELET_CLIENT, MASTERS, UserInfo
from kubelite.client.client import ApiClient
from protos.v1 import apiserver_pb2 as api_pb
from protos.v1 import kubelet_pb2 as pb
from protos.v1 import kubelet_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


# ------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class ServingTls:
    """The kubelet API's TLS (upstream's --tls-cert-file, --tls-private-key-file,
    --client-ca-file)."""

    cert_file: str
    """PEM of the kubelet's serving certificate (its chain after it)."""
    key_file: str
    """PEM of its private key."""
    client_ca_file: str
    """PEM of the CA(s) that sign the callers' client certificates; a caller without one
    fails the TLS handshake."""


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    if b"-----BEGIN" not in data:
        raise ValueError(f"{what} {path}: not PEM")
    return data


class _CertificateFiles:
    """The serving certificate, key and client CA, read again when a file changes (checked
    at each new connection), so a rotated certificate is served without a restart."""

    def __init__(self, tls: ServingTls) -> None:
        self.tls = tls
        self._stamp = self._stamps()
        self.initial = self._load()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0))
            else:
                stamps.append((st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        cert = _read(self.tls.cert_file, "--tls-cert-file")
        key = _read(self.tls.key_file, "--tls-private-key-file")
        ca = _read(self.tls.client_ca_file, "--client-ca-file")
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        stamp = self._stamps()
        if stamp == self._stamp:
            return None
        try:
            config = self._load()
        except ValueError as e:  # half-written rotation: keep serving the current one
            log.warning("kubelet serving certificate not reloaded", error=str(e))
            return None
        self._stamp = stamp
        log.info("kubelet serving certificate reloaded", cert_file=self.tls.cert_file)
        return config


def server_credentials(tls: ServingTls) -> grpc.ServerCredentials:
    """TLS requiring a client certificate from the client CA. Raises ValueError naming the
    flag of a file that cannot be read."""
    files = _CertificateFiles(tls)
    return grpc.dynamic_ssl_server_credentials(
        files.initial,
        files.fetch,  # type: ignore[arg-type]  # None (no change) is documented, not typed
        require_client_authentication=True)


def peer_user(context: Context) -> UserInfo | None:
    """The caller of a TLS connection: its verified client certificate's CN and O entries.
    None without a certificate."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(next(iter(pems)))
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    name = str(names[0].value) if names else ""
    if not name:
        return None
    groups = tuple(dict.fromkeys([*(str(o.value) for o in orgs), ALL_AUTHENTICATED]))
    return UserInfo(name=name, groups=groups)


# ------------------------------------------------------------------------- authorization


class AccessReviewer(Protocol):
    """Asks the API server whether a user may do something (a SubjectAccessReview)."""

    async def review(self, review: v1.SubjectAccessReview) -> v1.SubjectAccessReview: ...


class ApiAccessReviewer:
    """An AccessReviewer over an ApiClient: creates the review and reads its status."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def review(self, review: v1.SubjectAccessReview) -> v1.SubjectAccessReview:
        return await self.client.access_review(review)


@dataclass(frozen=True)
class AuthorizationSettings:
    """How long the API server's answers are trusted (upstream's webhook cache)."""

    allowed_ttl: float = 300.0
    """Seconds an allow is cached (--authorization-webhook-cache-authorized-ttl)."""
    denied_ttl: float = 30.0
    """Seconds a denial is cached (--authorization-webhook-cache-unauthorized-ttl)."""
    max_entries: int = 1024
    """Most decisions cached at once."""

    def __post_init__(self) -> None:
        if self.allowed_ttl < 0:
            raise ValueError(f"allowed_ttl: must not be negative, got {self.allowed_ttl}")
        if self.denied_ttl < 0:
            raise ValueError(f"denied_ttl: must not be negative, got {self.denied_ttl}")
        if self.max_entries < 1:
            raise ValueError(f"max_entries: must be at least 1, got {self.max_entries}")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


class AuthorizationError(Exception):
    """The API server could not be asked (no decision, nothing cached)."""


_CacheKey = tuple[str, str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], str, str]


class CallerAuthorizer:
    """Decides whether a caller may use this kubelet's API, as upstream's kubelet: the
    attributes are ``VERB nodes/SUBRESOURCE`` named after this node."""

    def __init__(
        self,
        node_name: str,
        reviewer: AccessReviewer,
        settings: AuthorizationSettings = AuthorizationSettings(),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self.reviewer = reviewer
        self.settings = settings
        self.clock = clock
        self._cache: dict[_CacheKey, tuple[float, Decision]] = {}

    async def authorize(self, user: UserInfo, verb: str, subresource: str = "proxy"
                        ) -> Decision:
        if user.name == APISERVER_KUBELET_CLIENT or user.in_group(MASTERS):
            return Decision(True, "the API server's kubelet client")
        key: _CacheKey = (user.name, user.uid, tuple(sorted(user.groups)),
                          tuple(sorted(user.extra.items())), verb, subresource)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        review = v1.SubjectAccessReview(spec=v1.SubjectAccessReviewSpec(
            user=user.name, uid=user.uid, groups=list(user.groups),
            resource_attributes=v1.ResourceAttributes(
                verb=verb, group="", version="v1", resource="nodes", subresource=subresource,
                name=self.node_name),
        ))
        for extra_key, values in user.extra.items():
            review.spec.extra[extra_key].items.extend(values)
        try:
            answer = await self.reviewer.review(review)
        except ApiError as e:
            raise AuthorizationError(str(e)) from e
        status = answer.status
        decision = Decision(status.allowed and not status.denied,
                            status.reason or status.evaluation_error)
        ttl = self.settings.allowed_ttl if decision.allowed else self.settings.denied_ttl
        if ttl > 0:
            self._remember(key, now + ttl, decision, now)
        return decision

    def _remember(self, key: _CacheKey, until: float, decision: Decision, now: float) -> None:
        if len(self._cache) >= self.settings.max_entries:
            for stale in [k for k, (t, _) in self._cache.items() if t <= now]:
                del self._cache[stale]
            while len(self._cache) >= self.settings.max_entries:
                del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[key] = (until, decision)


# ------------------------------------------------------------------------- the service


class KubeletServicer(pb_grpc.KubeletServicer):
    def __init__(self, runtime: Runtime, authorizer: CallerAuthorizer | None = None) -> None:
        """``authorizer``: None serves every caller (insecure mode)."""
        self.runtime = runtime
        self.authorizer = authorizer

    async def _authorize(self, context: Context, verb: str) -> None:
        if self.authorizer is None:
            return
        user = peer_user(context)
        if user is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "Unauthorized")
            return
        what = f"user={user.name}, verb={verb}, resource=nodes, subresource=proxy"
        try:
            decision = await self.authorizer.authorize(user, verb)
        except AuthorizationError as e:
            log.warning("kubelet API authorization failed", user=user.name, verb=verb,
                        error=str(e))
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"Authorization error ({what}): {e}")
            return
        if not decision.allowed:
            log.info("kubelet API call forbidden", user=user.name, verb=verb,
                     reason=decision.reason or None)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Forbidden ({what})")

    async def _container_id(self, pod_uid: str, name: str, previous: bool, context: Context) -> str:
        instances = sorted(
            (c for c in await self.runtime.list_containers(pod_uid) if c.name == name),
            key=lambda c: c.attempt,
            reverse=True,
        )
        index = 1 if previous else 0
        if len(instances) <= index:
            what = "previous terminated container" if previous else "container"
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f'{what} "{name}" in pod "{pod_uid}" not found'
            )
        return instances[index].id

    async def ContainerLogs(
        self, request: pb.ContainerLogsRequest, context: Context
    ) -> AsyncIterator[api_pb.Chunk]:
        await self._authorize(context, "get")  # GET /containerLogs upstream
        cid = await self._container_id(
            request.pod_uid, request.container, request.previous, context
        )
        tail = int(request.tail_lines) if request.tail_lines >= 0 else -1
        async for data in self.runtime.read_logs(cid, follow=request.follow, tail=tail):
            yield api_pb.Chunk(fd=1, data=data)

    async def Exec(
        self, request: pb.ContainerExecRequest, context: Context
    ) -> AsyncIterator[api_pb.Chunk]:
        await self._authorize(context, "create")  # POST /exec upstream
        cid = await self._container_id(request.pod_uid, request.container, False, context)

        async def stdin() -> AsyncIterator[bytes]:
            if request.stdin:
                yield request.stdin

        async for fd, data in self.runtime.exec_stream(cid, list(request.command), stdin()):
            if fd == -1:
                yield api_pb.Chunk(fd=-1, exit_code=int(data or b"0"))
            else:
                yield api_pb.Chunk(fd=fd, data=data)


class KubeletServer:
    def __init__(
        self,
        runtime: Runtime,
        address: str,
        port: int,
        *,
        tls: ServingTls | None = None,
        authorizer: CallerAuthorizer | None = None,
    ) -> None:
        """``tls``: serve TLS with client certificates required, callers authorized by
        ``authorizer`` (which TLS needs). None: plaintext, every caller served."""
        if tls is not None and authorizer is None:
            raise ValueError("a TLS kubelet API needs an authorizer for its callers")
        if tls is None and authorizer is not None:
            raise ValueError("callers can only be authorized over TLS (client certificates)")
        self._server = grpc.aio.server()
        pb_grpc.add_KubeletServicer_to_server(  # type: ignore[no-untyped-call]
            KubeletServicer(runtime, authorizer), self._server
        )
        self.secure = tls is not None
        if tls is None:
            self.port = self._server.add_insecure_port(f"{address}:{port}")
        else:
            self.port = self._server.add_secure_port(
                f"{address}:{port}", server_credentials(tls))
        if self.port == 0:
            raise OSError(f"kubelet API cannot listen on {address}:{port}")

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(1.0)
