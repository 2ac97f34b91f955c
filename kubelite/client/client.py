"""The typed asyncio client of the API server.

Calls take and return typed messages (``await client.get(v1.Pod, "web-0", "default")``);
errors arrive as kubelite.api.errors classes (NotFound, Conflict, Invalid, Expired, ...)
with the gRPC error chained as their cause.

A request the server refused with TooManyRequests and a retry-after was not executed: every
verb sends it again after that many seconds, a bounded number of times (RetrySettings); a
watch, log or exec stream refused so is opened again the same way.

With several API servers (round robin), a call that never left this client when its server
went down is sent to another one by gRPC itself (a transparent retry); a read (get, list)
that was under way there is sent again, as client-go does for GETs on a connection reset
(at once, then after a short pause, a few times per other server); a write under way is not
(it may have been done): its caller sees Unavailable.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from kubelite.api.errors import ApiError, TooManyRequests, Unavailable, from_rpc_error
from kubelite.api.registry import ResourceType, by_message
from kubelite.client.config import ClientConfig, make_channel
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1

T = TypeVar("T", bound=Message)


@dataclass(frozen=True)
class WatchEvent(Generic[T]):
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    object: T | None
    """The object (None for BOOKMARK)."""
    resource_version: str


@dataclass(frozen=True)
class ObjectList(Generic[T]):
    items: list[T]
    resource_version: str
    """The revision the list was read at: watch from here to miss nothing."""


@dataclass(frozen=True)
class RetrySettings:
    """How the client sends again a request refused with TooManyRequests and a retry-after."""

    max_retries: int = 10
    """Times one request is sent again (client-go's default is 10); 0: never."""
    max_wait: float = 60.0
    """Seconds one request may spend waiting between such attempts in all; the refusal that
    would need more is raised."""
    backoff_factor: float = 2.0
    """Each further refusal of the same request multiplies its wait by this (1: always the
    retry-after), so that many refused callers thin out rather than return in waves."""
    max_delay: float = 10.0
    """Cap on one wait, seconds (never below the retry-after itself)."""
    jitter: float = 0.5
    """Each wait is stretched by 0 to ``jitter`` of itself, at random, so that callers refused
    together do not all come back in the same instant."""


READ_FAILOVERS_PER_SERVER = 3
"""Times a read under way when its API server went away is sent again, per other server. Once
is not always enough: round robin may pick the gone server again before it has seen that
connection drop (one read in about ten runs of 16 readers on 2 servers, one killed)."""
FAILOVER_PAUSE = 0.05
"""Seconds before each such send after the first, for the balancer to see the drop."""


@dataclass
class ClientStats:
    too_many_requests_retries: int = 0
    """Requests sent again after a TooManyRequests answer."""
    failover_retries: int = 0
    """Reads sent again to another API server after theirs went away mid-call."""


class _Retries:
    """The retry budget of one request."""

    def __init__(self, settings: RetrySettings, stats: ClientStats) -> None:
        self.settings = settings
        self.stats = stats
        self.attempts = 0
        self.waited = 0.0

    def delay(self, error: ApiError) -> float | None:
        """Seconds to wait before sending the request again, or None to raise ``error``."""
        if not isinstance(error, TooManyRequests) or error.retry_after_seconds <= 0:
            return None
        settings = self.settings
        base = max(
            error.retry_after_seconds,
            min(error.retry_after_seconds * settings.backoff_factor**self.attempts,
                settings.max_delay),
        )
        delay = base * (1 + settings.jitter * random.random())
        if (self.attempts >= self.settings.max_retries
                or self.waited + delay > self.settings.max_wait):
            return None
        self.attempts += 1
        self.waited += delay
        self.stats.too_many_requests_retries += 1
        return delay


CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)
"""The API client's channel: large lists, keepalives, quick reconnects."""


def _namespace(rtype: ResourceType, namespace: str, obj: Message | None = None) -> str:
    if not rtype.namespaced:
        return ""
    if obj is not None and obj.metadata.namespace:  # type: ignore[attr-defined]
        return str(obj.metadata.namespace)  # type: ignore[attr-defined]
    return namespace or "default"


R = TypeVar("R", v1.SubjectAccessReview, v1.SelfSubjectAccessReview)


@dataclass(frozen=True)
class Impersonation:
    """Acting as another user (``--as``, ``--as-group``): needs the ``impersonate`` verb."""

    user: str
    groups: tuple[str, ...] = ()

    def metadata(self) -> list[tuple[str, str]]:
        return [("impersonate-user", self.user),
                *(("impersonate-group", g) for g in self.groups)]


def _with_metadata(method: Any, impersonate: Impersonation | None) -> Any:
    """``method`` sending the impersonation headers with each call."""
    if impersonate is None:
        return method

    def call(request: Message, **kwargs: Any) -> Any:
        return method(request, metadata=impersonate.metadata(), **kwargs)

    return call


class ApiClient:
    def __init__(
        self, address: str | ClientConfig, *, timeout: float = 30.0,
        wait_for_ready: bool = True, retry: RetrySettings = RetrySettings(),
    ) -> None:
        """``address``: host:port of a plaintext server (or several, comma-separated, called
        round robin), or a ClientConfig (TLS and credentials when it has a CA).
        ``wait_for_ready``: while no server is reachable, calls wait for one (up to
        ``timeout``) instead of failing at once, so daemons ride out an API server restart.
        ``timeout`` bounds each attempt; ``retry``, the attempts after TooManyRequests."""
        self.config = address if isinstance(address, ClientConfig) else None
        """The config of a TLS or authenticated client; None for a plaintext address."""
        self.address = address.server if isinstance(address, ClientConfig) else address
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.retry = retry
        self.stats = ClientStats()
        # A plaintext address may name several servers too (comma-separated: round robin).
        self._channel = make_channel(self.config or ClientConfig(self.address), CHANNEL_OPTIONS)
        self._stub = pb_grpc.ApiServerStub(self._channel)  # type: ignore[no-untyped-call]
        servers = (self.config or ClientConfig(self.address)).servers
        self._failovers = READ_FAILOVERS_PER_SERVER * (len(servers) - 1)
        """Times a read is sent again after its server went away mid-call."""

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def _unary(self, method: Any, request: Message, *, read: bool = False) -> Any:
        """``read``: the call changes nothing, so it may be sent again to another server."""
        retries = _Retries(self.retry, self.stats)
        failovers = self._failovers if read else 0
        sent_again = 0
        while True:
            try:
                return await method(
                    request, timeout=self.timeout, wait_for_ready=self.wait_for_ready
                )
            except grpc.aio.AioRpcError as e:
                if sent_again < failovers and e.code() == grpc.StatusCode.UNAVAILABLE:
                    sent_again += 1
                    self.stats.failover_retries += 1
                    if sent_again > 1:  # it met the gone server again: give the balancer time
                        await asyncio.sleep(FAILOVER_PAUSE)
                    continue  # round robin sends it to a server that is up
                error = from_rpc_error(e)
                delay = retries.delay(error)
                if delay is None:
                    raise error from e
            await asyncio.sleep(delay)

    async def _stream(self, start: Callable[[], Any]) -> AsyncIterator[Any]:
        """The messages of the server stream ``start()`` opens; one refused with
        TooManyRequests before its first message is opened again after the retry-after."""
        retries = _Retries(self.retry, self.stats)
        while True:
            call = start()
            started = False
            try:
                async for message in call:
                    started = True
                    yield message
                return
            except grpc.aio.AioRpcError as e:
                error = from_rpc_error(e)
                delay = None if started else retries.delay(error)
                if delay is None:
                    raise error from e
            finally:
                call.cancel()
            await asyncio.sleep(delay)

    # ------------------------------------------------------------ typed verbs

    async def create(self, obj: T, namespace: str = "", *, dry_run: bool = False) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.Create,
            pb.CreateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, namespace, obj),
                object=obj.SerializeToString(),
                dry_run=dry_run,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def get(self, kind: type[T], name: str, namespace: str = "") -> T:
        rtype = by_message(kind)
        response = await self._unary(
            self._stub.Get,
            pb.GetRequest(
                resource=rtype.plural, namespace=_namespace(rtype, namespace), name=name
            ),
            read=True,
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def list(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page_size: int = 500,
    ) -> ObjectList[T]:
        """All matching objects (paged under the hood); ``namespace=""`` lists all namespaces."""
        rtype = by_message(kind)
        items: list[T] = []
        token = ""
        revision = ""
        while True:
            response = await self._unary(
                self._stub.List,
                pb.ListRequest(
                    resource=rtype.plural,
                    namespace=namespace if rtype.namespaced else "",
                    label_selector=label_selector,
                    field_selector=field_selector,
                    limit=page_size,
                    continue_token=token,
                ),
                read=True,
            )
            items.extend(rtype.decode(b) for b in response.items)  # type: ignore[misc]
            revision = revision or response.resource_version
            token = response.continue_token
            if not token:
                return ObjectList(items, revision)

    async def update(self, obj: T, *, dry_run: bool = False) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.Update,
            pb.UpdateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, "", obj),
                object=obj.SerializeToString(),
                dry_run=dry_run,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def update_status(self, obj: T) -> T:
        rtype = by_message(type(obj))
        response = await self._unary(
            self._stub.UpdateStatus,
            pb.UpdateRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, "", obj),
                object=obj.SerializeToString(),
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def patch(
        self,
        kind: type[T],
        name: str,
        patch: Mapping[str, Any] | Sequence[Any] | bytes,
        namespace: str = "",
        *,
        subresource: str = "",
        patch_type: str = "merge",
    ) -> T:
        """Patches the Kubernetes-shaped object (camelCase keys).

        ``patch_type``: "merge" (RFC 7386 JSON merge patch: lists are replaced whole),
        "strategic" (Kubernetes' strategic merge patch: containers, ports, env and the like
        merge by their keys) or "json" (RFC 6902: a list of operations). ``patch`` is the
        document, or its JSON text as bytes.
        """
        rtype = by_message(kind)
        body = patch if isinstance(patch, bytes) else json.dumps(patch).encode()
        response = await self._unary(
            self._stub.Patch,
            pb.PatchRequest(
                resource=rtype.plural,
                namespace=_namespace(rtype, namespace),
                name=name,
                patch_type=patch_type,
                patch=body,
                subresource=subresource,
            ),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def delete(
        self,
        kind: type[T],
        name: str,
        namespace: str = "",
        *,
        grace_period_seconds: int | None = None,
        propagation_policy: str = "",
        uid: str = "",
        resource_version: str = "",
    ) -> T:
        """Deletes (or marks for deletion); returns the object as the server last had it."""
        rtype = by_message(kind)
        request = pb.DeleteRequest(
            resource=rtype.plural,
            namespace=_namespace(rtype, namespace),
            name=name,
            propagation_policy=propagation_policy,
            preconditions=pb.Preconditions(uid=uid, resource_version=resource_version),
        )
        if grace_period_seconds is not None:
            request.grace_period_seconds = grace_period_seconds
        response = await self._unary(self._stub.Delete, request)
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def create_subresource(
        self, kind: type[Message], name: str, subresource: str, obj: T, namespace: str = "",
        *, impersonate: Impersonation | None = None,
    ) -> T:
        """Creates ``obj`` on a subresource of the ``kind`` object ``name`` (e.g. a
        TokenRequest on ``serviceaccounts/NAME/token``); the answer is ``obj``'s type."""
        rtype = by_message(kind)
        request = pb.CreateRequest(
            resource=rtype.plural, namespace=_namespace(rtype, namespace), name=name,
            subresource=subresource, object=obj.SerializeToString(),
        )
        response = await self._unary(_with_metadata(self._stub.Create, impersonate), request)
        answer = type(obj)()
        answer.ParseFromString(response.object)
        return answer

    async def request_token(
        self, namespace: str, service_account: str, request: v1.TokenRequest | None = None,
    ) -> v1.TokenRequest:
        """A token for the ServiceAccount (``serviceaccounts/token``): ``status.token`` and
        ``status.expirationTimestamp``; ``request.spec`` picks audiences, lifetime and the pod
        it is bound to (defaults: the API's audiences, 3600 s, unbound)."""
        return await self.create_subresource(
            v1.ServiceAccount, service_account, "token", request or v1.TokenRequest(),
            namespace or "default")

    async def access_review(self, review: R, *, impersonate: Impersonation | None = None
                            ) -> R:
        """Asks the server's authorizers: a SelfSubjectAccessReview about the caller (or
        whom it impersonates), a SubjectAccessReview about the user it names; the answer
        carries ``status.allowed`` and ``status.reason``. Nothing is stored."""
        rtype = by_message(type(review))
        response = await self._unary(
            _with_metadata(self._stub.Create, impersonate),
            pb.CreateRequest(resource=rtype.plural, object=review.SerializeToString()),
        )
        return rtype.decode(response.object)  # type: ignore[return-value]

    async def bind(self, namespace: str, name: str, node_name: str, uid: str = "") -> v1.Pod:
        response = await self._unary(
            self._stub.Bind,
            pb.BindRequest(namespace=namespace, name=name, node_name=node_name, pod_uid=uid),
        )
        pod = v1.Pod()
        pod.ParseFromString(response.object)
        return pod

    async def pod_logs(
        self, namespace: str, name: str, container: str = "", *, follow: bool = False,
        previous: bool = False, tail_lines: int = -1,
    ) -> AsyncIterator[bytes]:
        """A container's output, relayed by the API server from the pod's kubelet."""
        request = pb.PodLogsRequest(namespace=namespace or "default", name=name,
                                    container=container, follow=follow, previous=previous,
                                    tail_lines=tail_lines)
        timeout = None if follow else self.timeout
        async for chunk in self._stream(lambda: self._stub.PodLogs(request, timeout=timeout)):
            yield chunk.data

    async def pod_exec(
        self, namespace: str, name: str, command: Sequence[str], container: str = "", *,
        stdin: bytes = b"", timeout: float | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(fd, data) pairs of the command's output; the last pair is (-1, exit code)."""
        request = pb.PodExecRequest(namespace=namespace or "default", name=name,
                                    container=container, command=command, stdin=stdin,
                                    timeout_seconds=timeout or 0)
        async for chunk in self._stream(lambda: self._stub.PodExec(request, timeout=timeout)):
            if chunk.fd == -1:
                yield -1, str(chunk.exit_code).encode()
            else:
                yield chunk.fd, chunk.data

    async def watch(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        allow_bookmarks: bool = True,
    ) -> AsyncIterator[WatchEvent[T]]:
        """Changes after ``resource_version`` (or the current state, then changes).

        Ends by raising: Expired when the version is too old (relist), Unavailable when the
        stream broke (resume from the last version seen).
        """
        rtype = by_message(kind)
        request = pb.WatchRequest(
            resource=rtype.plural,
            namespace=namespace if rtype.namespaced else "",
            label_selector=label_selector,
            field_selector=field_selector,
            resource_version=resource_version,
            allow_watch_bookmarks=allow_bookmarks,
        )
        async for batch in self._stream(
            lambda: self._stub.Watch(request, wait_for_ready=self.wait_for_ready)
        ):
            for event in batch.events:
                obj = rtype.decode(event.object) if event.type != "BOOKMARK" else None
                yield WatchEvent(event.type, obj, event.resource_version)  # type: ignore[arg-type]
        # The server ended the stream without an error: the caller resumes.
        raise Unavailable("watch stream closed by the server")
