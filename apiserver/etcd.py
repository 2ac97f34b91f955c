"""A small asyncio etcd v3 client over the generated etcd stubs (shipped by aetcd).

The API server needs exactly: ranges at a revision, guarded transactions, prefix watches from
a revision with prev_kv and progress requests, compaction and status. Going to the stubs
directly keeps compaction and cancellation visible (aetcd's watcher hides them) and keeps the
hot path to one RPC per request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aetcd.rpc import kv_pb2, rpc_pb2, rpc_pb2_grpc

from kubelite.api.errors import RequestEntityTooLarge, Unavailable

KeyValue = kv_pb2.KeyValue
Event = kv_pb2.Event
Compare = rpc_pb2.Compare
RequestOp = rpc_pb2.RequestOp


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with ``prefix``."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\0"


class CompactedError(Exception):
    """The requested revision has been compacted away."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"required revision has been compacted (compacted at {compact_revision})")
        self.compact_revision = compact_revision


class FutureRevisionError(Exception):
    """The requested revision is beyond etcd's current one."""


@dataclass(frozen=True)
class EtcdSettings:
    endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    """host:port of each etcd member (an http:// or https:// in front is dropped: TLS is
    on when ``ca_file`` is given)."""
    request_timeout: float = 10.0
    """Deadline for one unary etcd request, seconds."""
    ca_file: str | None = None
    """CA bundle that etcd's serving certificate must chain to (--etcd-cafile); given, the
    connection is TLS, else plaintext."""
    cert_file: str | None = None
    """Client certificate shown to etcd (--etcd-certfile), for etcd's --client-cert-auth."""
    key_file: str | None = None
    """Private key of ``cert_file`` (--etcd-keyfile)."""

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("--etcd-certfile and --etcd-keyfile must be given together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("--etcd-certfile needs --etcd-cafile (client certificates are only"
                             " sent over TLS)")

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials from the files (read now); None for a plaintext channel."""
        if self.ca_file is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "--etcd-cafile"),
            private_key=_read(self.key_file, "--etcd-keyfile") if self.key_file else None,
            certificate_chain=_read(self.cert_file, "--etcd-certfile") if self.cert_file else None,
        )


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"{flag}: cannot read {path}: {e.strerror or e}") from e


def _host_port(endpoint: str) -> str:
    for scheme in ("https://", "http://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):].rstrip("/")
    return endpoint


class OwnRevisions:
    """The revisions this client's own writes made in etcd, each with the keys it changed.

    A revision belongs to one transaction, so one recorded here holds exactly those keys: a
    watch cache whose resource has none of them knows it missed nothing there, without
    waiting for an event or a progress notification (etcd before 3.4.31 sends those too
    early to be trusted). Revisions of anyone else's writes are never recorded, so they
    prove nothing.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        """Revisions remembered, the newest ones."""
        self._keys: OrderedDict[int, tuple[bytes, ...]] = OrderedDict()

    def record(self, revision: int, keys: tuple[bytes, ...]) -> None:
        self._keys[revision] = keys
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def elsewhere(self, revision: int, prefix: bytes) -> bool:
        """Whether ``revision`` is one of these writes and changed no key under ``prefix``."""
        keys = self._keys.get(revision)
        return keys is not None and not any(key.startswith(prefix) for key in keys)


def _written_keys(ops: Sequence[rpc_pb2.RequestOp],
                  responses: Sequence[rpc_pb2.ResponseOp]) -> tuple[bytes, ...] | None:
    """The keys a transaction branch changed; None when it changed none (etcd then makes no
    revision: the header names whatever revision was last) or may have changed a range."""
    if len(ops) != len(responses):
        return None  # etcd answers every operation; anything else proves nothing
    keys: list[bytes] = []
    for op, response in zip(ops, responses, strict=True):
        which = op.WhichOneof("request")
        if which == "request_put":
            keys.append(op.request_put.key)
        elif which == "request_delete_range":
            if op.request_delete_range.range_end:
                return None
            if response.response_delete_range.deleted:
                keys.append(op.request_delete_range.key)
        elif which != "request_range":
            return None  # a nested transaction: not worth following
    return tuple(keys) or None


class Etcd:
    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.own_revisions = OwnRevisions()
        """What this client's writes changed, revision by revision."""
        endpoints = [_host_port(e) for e in settings.endpoints]
        target = endpoints[0] if len(endpoints) == 1 else "ipv4:" + ",".join(endpoints)
        options = [
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        credentials = settings.credentials()
        self._channel = (
            grpc.aio.insecure_channel(target, options=options)
            if credentials is None
            else grpc.aio.secure_channel(target, credentials, options=options)
        )
        self._kv = rpc_pb2_grpc.KVStub(self._channel)
        self._watch = rpc_pb2_grpc.WatchStub(self._channel)
        self._maintenance = rpc_pb2_grpc.MaintenanceStub(self._channel)
        self._leases = rpc_pb2_grpc.LeaseStub(self._channel)

    async def close(self) -> None:
        await self._channel.close(None)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self.settings.request_timeout)
        except grpc.aio.AioRpcError as e:
            details = e.details() or ""
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
                raise CompactedError(0) from e
            if e.code() == grpc.StatusCode.OUT_OF_RANGE and "future revision" in details:
                raise FutureRevisionError(details) from e
            if (e.code() == grpc.StatusCode.INVALID_ARGUMENT and "too large" in details) or (
                e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details
            ):
                # Over etcd's --max-request-bytes (1.5 MiB by default), or over its gRPC
                # message limit a little above that: no retry can help.
                raise RequestEntityTooLarge(f"Request entity too large: etcd: {details}") from e
            raise Unavailable(f"etcd request failed: {e.code().name}: {details}") from e

    async def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        revision: int = 0,
        limit: int = 0,
        count_only: bool = False,
    ) -> rpc_pb2.RangeResponse:
        request = rpc_pb2.RangeRequest(
            key=key, range_end=range_end, revision=revision, limit=limit, count_only=count_only
        )
        return await self._call(self._kv.Range, request)

    async def txn(
        self,
        compare: Sequence[rpc_pb2.Compare],
        success: Sequence[rpc_pb2.RequestOp],
        failure: Sequence[rpc_pb2.RequestOp] = (),
    ) -> rpc_pb2.TxnResponse:
        request = rpc_pb2.TxnRequest(compare=compare, success=success, failure=failure)
        response: rpc_pb2.TxnResponse = await self._call(self._kv.Txn, request)
        keys = _written_keys(success if response.succeeded else failure, response.responses)
        if keys is not None:
            self.own_revisions.record(int(response.header.revision), keys)
        return response

    async def put(self, key: bytes, value: bytes) -> rpc_pb2.PutResponse:
        response: rpc_pb2.PutResponse = await self._call(
            self._kv.Put, rpc_pb2.PutRequest(key=key, value=value))
        self.own_revisions.record(int(response.header.revision), (key,))
        return response

    async def grant_lease(self, ttl: int) -> int:
        """A new etcd lease of ``ttl`` seconds; keys put with it vanish when it expires."""
        response = await self._call(self._leases.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=ttl))
        return int(response.ID)

    async def compact(self, revision: int) -> None:
        await self._call(self._kv.Compact, rpc_pb2.CompactionRequest(revision=revision))

    async def status(self) -> rpc_pb2.StatusResponse:
        return await self._call(self._maintenance.Status, rpc_pb2.StatusRequest())

    async def current_revision(self) -> int:
        """etcd's revision now (a linearizable read). It looks up one key that is never
        written: a range to the end of the keyspace would count every key, at a cost that
        grows with the store, on every consistent read."""
        response = await self.range(b"\0")
        return int(response.header.revision)

    def watch(self, key: bytes, range_end: bytes, start_revision: int) -> EtcdWatch:
        return EtcdWatch(self._watch, key, range_end, start_revision)


# Builders for transaction parts, so storage code reads as the condition it checks.
def mod_revision_is(key: bytes, revision: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key, result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.MOD, mod_revision=revision
    )


def absent(key: bytes) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key, result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.CREATE, create_revision=0
    )


def version_is(key: bytes, version: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(
        key=key, result=rpc_pb2.Compare.EQUAL, target=rpc_pb2.Compare.VERSION, version=version
    )


def put_op(key: bytes, value: bytes, lease: int = 0) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, lease=lease))


def replace_op(key: bytes, value: bytes) -> rpc_pb2.RequestOp:
    """A put that keeps whatever lease the key has (an Event keeps its time to live)."""
    return rpc_pb2.RequestOp(
        request_put=rpc_pb2.PutRequest(key=key, value=value, ignore_lease=True)
    )


def get_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))


def delete_op(key: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))


class EtcdWatch:
    """One etcd watch stream on a key range, from a revision, with prev_kv.

    Iterating yields lists of events (one etcd response each, in revision order) and, for
    progress notifications, an empty list; ``revision`` is then the revision up to which the
    stream is complete. Raises CompactedError when the start revision is gone and Unavailable
    when the stream breaks.
    """

    def __init__(
        self, stub: rpc_pb2_grpc.WatchStub, key: bytes, range_end: bytes, start_revision: int
    ) -> None:
        self._requests: asyncio.Queue[rpc_pb2.WatchRequest | None] = asyncio.Queue()
        create = rpc_pb2.WatchCreateRequest(
            key=key,
            range_end=range_end,
            start_revision=start_revision,
            prev_kv=True,
            progress_notify=True,
        )
        self._requests.put_nowait(rpc_pb2.WatchRequest(create_request=create))
        self._call = stub.Watch(self._request_stream())
        self.revision = start_revision - 1

    async def _request_stream(self) -> AsyncIterator[rpc_pb2.WatchRequest]:
        while True:
            request = await self._requests.get()
            if request is None:
                return
            yield request

    def request_progress(self) -> None:
        """Ask etcd to report the revision the stream has reached (a progress notify)."""
        progress = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
        self._requests.put_nowait(progress)

    def cancel(self) -> None:
        self._requests.put_nowait(None)
        self._call.cancel()

    def __aiter__(self) -> AsyncIterator[list[kv_pb2.Event]]:
        return self._events()

    async def _events(self) -> AsyncIterator[list[kv_pb2.Event]]:
        try:
            async for response in self._call:
                if response.compact_revision:
                    raise CompactedError(response.compact_revision)
                if response.canceled:
                    raise Unavailable(f"etcd cancelled the watch: {response.cancel_reason}")
                if response.created and not response.events:
                    continue
                if response.events:
                    self.revision = response.events[-1].kv.mod_revision
                    yield list(response.events)
                else:
                    # A progress notification: everything up to header.revision was sent.
                    self.revision = max(self.revision, response.header.revision)
                    yield []
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise Unavailable(f"etcd watch failed: {e.code().name}: {e.details()}") from e
        raise Unavailable("etcd closed the watch stream")
