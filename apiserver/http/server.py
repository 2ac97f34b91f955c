"""The HTTP/JSON API's server: aiohttp in the API server's own event loop, beside gRPC.

It serves Kubernetes' REST paths (apiserver.http.routes) over the same Api, watch caches,
authentication, authorization and admission as the gRPC face, so kubectl, client-go and the
official client libraries talk to kubelite as to kube-apiserver.

- Transport: TLS with the API server's serving certificate and *optional* client certificates
  of the client CA (Python's CERT_OPTIONAL: unlike gRPC, a client with only a bearer token
  needs no certificate at all); plain HTTP on an insecure server.
- Authentication: the verified peer certificate (DER, as PEM) and the ``Authorization``
  header go to the same Authenticator as gRPC's; ``Impersonate-User``, ``Impersonate-Group``,
  ``Impersonate-Uid`` and ``Impersonate-Extra-KEY`` headers through the same impersonation
  checks. A failure is a 401 Status ("Unauthorized"); a refusal a 403 with Kubernetes'
  message.
- Request admission: the same limits as gRPC's (reads, writes, long-running), a 429 with
  Retry-After past them. /healthz, /livez and /readyz answer "ok" to anyone.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import structlog
from aiohttp import web

from apiserver.api import Api
from apiserver.authz import impersonation
from apiserver.http import discovery, openapi
from apiserver.http.handlers import OBJECT_NAME, Handlers
from apiserver.http.routes import (
    NOT_FOUND,
    Endpoint,
    NonResourceRequest,
    ResourceRequest,
    parse,
)
from apiserver.http.status import error_response, json_response
from apiserver.http.watch import Watches, WatchSettings
from apiserver.inflight import LONG_RUNNING, MUTATING, READONLY, RequestAdmission
from apiserver.security import Security
from apiserver.servicer import ApiServicer
from kubelite.api.errors import ApiError, BadRequest, InternalError, NotFound, Unavailable
from kubelite.api.registry import ResourceType, UnknownResource
from kubelite.auth.user import UserInfo

log = structlog.get_logger(__name__)

IMPERSONATE_PREFIX = "impersonate-"


@dataclass(frozen=True)
class HttpSettings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    """How long watches last."""


def tls_context(cert_file: str, key_file: str, client_ca_pem: bytes | None) -> ssl.SSLContext:
    """The server's TLS: its certificate chain, and client certificates of the client CA
    asked for but not required (a token-only client presents none)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"--tls-cert-file/--tls-private-key-file: cannot load {cert_file}"
                         f" and {key_file}: {e}") from e
    if client_ca_pem:
        context.load_verify_locations(cadata=client_ca_pem.decode())
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        context.verify_mode = ssl.CERT_NONE
    # HTTP/1.1 only: clients that offer h2 fall back to it.
    context.set_alpn_protocols(["http/1.1"])
    return context


def peer_certificate(request: web.Request) -> bytes | None:
    """The client certificate the handshake verified, as PEM (None: it presented none)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode() if der else None


def impersonation_metadata(request: web.Request) -> list[tuple[str, str | bytes]]:
    """The Impersonate-* headers as the impersonation checks read them (lower-case names;
    an extra's key percent-decoded, as upstream encodes it in a header name)."""
    found: list[tuple[str, str | bytes]] = []
    for name, value in request.headers.items():
        key = name.lower()
        if not key.startswith(IMPERSONATE_PREFIX):
            continue
        if key.startswith(impersonation.EXTRA_PREFIX):
            key = impersonation.EXTRA_PREFIX + unquote(key.removeprefix(
                impersonation.EXTRA_PREFIX))
        found.append((key, value))
    return found


class HttpApi:
    """The HTTP face of one API server: ``start`` listens, ``stop`` ends watches and closes."""

    def __init__(self, api: Api, security: Security, admission: RequestAdmission,
                 servicer: ApiServicer, *, settings: HttpSettings = HttpSettings(),
                 ssl_context: ssl.SSLContext | None = None,
                 ready: Callable[[], bool] = lambda: True, shutdown_grace: float = 5.0) -> None:
        self.api = api
        self.security = security
        self.admission = admission
        self.settings = settings
        self.ssl_context = ssl_context
        self.ready = ready
        """Whether the server is ready (/readyz): etcd answers."""
        self.shutdown_grace = shutdown_grace
        """Seconds requests in flight get to finish on stop (watches end at once)."""
        self.watches = Watches(settings.watch)
        self.handlers = Handlers(api, security, servicer, servicer.kubelets, self.watches)
        self.app = web.Application(client_max_size=api.settings.max_request_bytes)
        self.app.router.add_route("*", "/{path:.*}", self.handle)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, listen: str) -> int:
        """Listens on ``listen`` (host:port; port 0 picks one) and returns the port."""
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            port_number = int(port)
        except ValueError:
            raise ValueError(f"--http-listen: {listen!r} is not host:port") from None
        # A client that goes away cancels its handler (a watch's slot and stream end then).
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                     handler_cancellation=True,
                                     shutdown_timeout=self.shutdown_grace)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port_number, ssl_context=self.ssl_context,
                           reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("HTTP API serving", address=f"{host}:{self.port}",
                 tls=self.ssl_context is not None)
        return self.port

    async def stop(self) -> None:
        self.watches.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------ requests

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: what it asks, a place among those served, who asks, the answer."""
        rtype: ResourceType | None = None
        name = ""
        try:
            target = parse(request.method, request.path, request.query)
            if isinstance(target, NonResourceRequest) and target.endpoint is Endpoint.HEALTH:
                return self._health(request)
            if isinstance(target, ResourceRequest):
                rtype, name = target.rtype, target.name
                kind = (LONG_RUNNING if target.long_running
                        else MUTATING if target.mutating else READONLY)
            else:
                kind = READONLY
            slot = self.admission.take(kind)
            try:
                user = await self.user(request)
                if isinstance(target, NonResourceRequest):
                    return self._non_resource(target, request.headers.get("Accept", ""))
                return await self.handlers.serve(request, target, user)
            finally:
                slot.release()
        except ApiError as e:
            return error_response(e, rtype, name or OBJECT_NAME.get())
        except UnknownResource as e:
            return error_response(BadRequest(str(e)), rtype, name)
        except ConnectionResetError:
            raise  # the client went away: nobody to answer
        except Exception as e:  # the one place unexpected errors become statuses
            log.exception("HTTP request failed", method=request.method, path=request.path)
            return error_response(InternalError(f"internal error: {type(e).__name__}: {e}"),
                                   rtype, name)

    async def user(self, request: web.Request) -> UserInfo | None:
        """Who the request comes from (impersonation applied); None on an insecure server.
        Unauthorized, or Forbidden for an impersonation the caller may not do."""
        if not self.security.enabled:
            return None
        user = await self.security.authenticator.authenticate(
            peer_certificate(request), request.headers.get("Authorization"))
        metadata = impersonation_metadata(request)
        if impersonation.requested(metadata):
            user = impersonation.impersonate(user, metadata, self.security.authorizer)
        return user

    def _health(self, request: web.Request) -> web.Response:
        if request.path.startswith("/readyz") and not self.ready():
            raise Unavailable("etcd is not reachable")
        return web.Response(text="ok", content_type="text/plain")

    @staticmethod
    def _non_resource(target: NonResourceRequest, accept: str) -> web.Response:
        if target.endpoint is Endpoint.VERSION:
            return json_response(discovery.version())
        if target.endpoint is Endpoint.CORE_VERSIONS:
            return json_response(discovery.api_versions())
        if target.endpoint is Endpoint.GROUPS:
            return json_response(discovery.api_group_list())
        if target.endpoint is Endpoint.OPENAPI:
            # JSON, or the protobuf kubectl downloads for its validation and explain.
            body, content_type = openapi.serialized(accept)
            return web.Response(body=body, headers={"Content-Type": content_type})
        if target.endpoint is Endpoint.GROUP:
            group = discovery.api_group(target.group)
            if group is None:
                raise NotFound(NOT_FOUND)
            return json_response(group)
        resources = discovery.resource_list(target.group, target.version)
        if resources is None:
            raise NotFound(NOT_FOUND)
        return json_response(resources)

