"""Objects in etcd: one key per object, value = the serialized message.

Key: ``<prefix>/<resource>/<namespace>/<name>`` (cluster-scoped kinds omit the namespace).
resourceVersion is the key's etcd mod_revision; it is not stored in the value but set on every
object read back, so it can never disagree with etcd. Writes are transactions guarded by the
mod_revision the caller read, so a stale write is a Conflict and never a silent overwrite.

A value that is not the object its key names (it does not decode, or decodes to another
object) is corrupt: reading that key is an InternalError naming it, and lists skip it with a
logged error, so one bad value never takes a whole resource down.

Resources named in the encryption configuration (apiserver/encryption.py) go through their
ValueTransformer on the way in and out: etcd holds ciphertext, everything above this module
plaintext. A value that cannot be decrypted is an InternalError naming its key, like a corrupt
one. Other resources are stored as they are, at no cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from google.protobuf.message import DecodeError, Message

from apiserver.encryption import TransformError, ValueTransformer
from apiserver.etcd import (
    CompactedError,
    Compare,
    Etcd,
    FutureRevisionError,
    KeyValue,
    RequestOp,
    absent,
    delete_op,
    get_op,
    mod_revision_is,
    prefix_end,
    put_op,
    replace_op,
)
from apiserver.txn_batch import TxnBatcher, TxnResult
from kubelite.api.errors import (
    AlreadyExists,
    ApiError,
    Conflict,
    Expired,
    InternalError,
    NotFound,
    TooLargeResourceVersion,
)
from kubelite.api.registry import ResourceType

log = structlog.get_logger(__name__)


def encode(obj: Message) -> bytes:
    """The stored form: the object without its resourceVersion."""
    meta = obj.metadata  # type: ignore[attr-defined]
    rv = meta.resource_version
    meta.resource_version = ""
    try:
        return obj.SerializeToString()
    finally:
        meta.resource_version = rv


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_resource_version(value: bytes, revision: int) -> bytes:
    """The wire form of a stored object with its resourceVersion, without decoding it.

    Every kind has ``ObjectMeta metadata = 1`` and ``resource_version = 5`` in it, and a
    parser merges a repeated embedded message, so appending ``metadata {resource_version}``
    to the stored bytes yields exactly the object with that resourceVersion set.
    """
    rv = str(revision).encode()
    inner = b"\x2a" + _varint(len(rv)) + rv
    return value + b"\x0a" + _varint(len(inner)) + inner


def corrupt_object(key: bytes, problem: str) -> InternalError:
    return InternalError(
        f"Internal error occurred: corrupt object: key {key.decode(errors='replace')}: {problem}"
    )


def untransformable(key: bytes, problem: str) -> InternalError:
    return InternalError(
        f'Internal error occurred: unable to transform key "{key.decode(errors="replace")}":'
        f" {problem}"
    )


def not_found(rtype: ResourceType, name: str) -> NotFound:
    return NotFound(f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{name}" not found')


def conflict(rtype: ResourceType, name: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )


@dataclass(frozen=True)
class ListResult:
    items: list[Message]
    revision: int
    """The etcd revision the list was read at."""
    next_key: bytes | None
    """Where the next page starts, when a limit cut the list short."""


class Storage:
    def __init__(
        self, etcd: Etcd, prefix: str = "/registry",
        transformers: Mapping[str, ValueTransformer] | None = None,
        batcher: TxnBatcher | None = None,
    ) -> None:
        self.etcd = etcd
        self.batcher = batcher
        """Batches the writes of concurrent requests into shared etcd transactions (group
        commit); None: one transaction per write."""
        self.prefix = prefix.rstrip("/")
        self.transformers: dict[str, ValueTransformer] = dict(transformers or {})
        """The encryption of each configured resource, by plural; empty: none encrypted."""

    def plaintext(self, rtype: ResourceType, key: bytes, stored: bytes) -> bytes:
        """The value read from ``key`` as plaintext; InternalError naming the key when it
        cannot be decrypted."""
        transformer = self.transformers.get(rtype.plural) if self.transformers else None
        if transformer is None:
            return stored
        try:
            return transformer.from_storage(stored, key)[0]
        except TransformError as e:
            raise untransformable(key, str(e)) from e

    def stored_value(self, rtype: ResourceType, key: bytes, obj: Message) -> bytes:
        """What ``obj`` is written to etcd as (encrypted when its resource is configured)."""
        plain = encode(obj)
        transformer = self.transformers.get(rtype.plural) if self.transformers else None
        return plain if transformer is None else transformer.to_storage(plain, key)

    def key(self, rtype: ResourceType, namespace: str, name: str) -> bytes:
        if rtype.namespaced:
            return f"{self.prefix}/{rtype.plural}/{namespace}/{name}".encode()
        return f"{self.prefix}/{rtype.plural}/{name}".encode()

    def resource_prefix(self, rtype: ResourceType, namespace: str = "") -> bytes:
        if rtype.namespaced and namespace:
            return f"{self.prefix}/{rtype.plural}/{namespace}/".encode()
        return f"{self.prefix}/{rtype.plural}/".encode()

    def decode_value(self, rtype: ResourceType, key: bytes, value: bytes) -> Message:
        """The object stored under ``key`` from its plaintext ``value``; InternalError naming
        the key when it is corrupt."""
        try:
            obj = rtype.decode(value)
        except DecodeError as e:
            raise corrupt_object(key, f"cannot decode it as a {rtype.kind}: {e}") from e
        meta = obj.metadata  # type: ignore[attr-defined]
        if self.key(rtype, meta.namespace, meta.name) != key:
            where = f"{meta.namespace}/{meta.name}" if rtype.namespaced else meta.name
            raise corrupt_object(
                key, f'it holds {rtype.kind} "{where}", not the object its key names'
            )
        return obj

    def decode(self, rtype: ResourceType, kv: KeyValue) -> Message:
        """The object in ``kv`` with its resourceVersion; InternalError when it is corrupt."""
        value = self.plaintext(rtype, kv.key, kv.value) if self.transformers else kv.value
        obj = self.decode_value(rtype, kv.key, value)
        obj.metadata.resource_version = str(kv.mod_revision)  # type: ignore[attr-defined]
        return obj

    async def get(self, rtype: ResourceType, namespace: str, name: str) -> Message:
        return self.decode(rtype, await self._get_kv(rtype, namespace, name))

    async def get_raw(self, rtype: ResourceType, namespace: str, name: str) -> bytes:
        """The serialized object with its resourceVersion (checked, sent as stored)."""
        kv = await self._get_kv(rtype, namespace, name)
        value = self.plaintext(rtype, kv.key, kv.value) if self.transformers else kv.value
        self.decode_value(rtype, kv.key, value)
        return with_resource_version(value, kv.mod_revision)

    async def _get_kv(self, rtype: ResourceType, namespace: str, name: str) -> KeyValue:
        response = await self.etcd.range(self.key(rtype, namespace, name))
        if not response.kvs:
            raise not_found(rtype, name)
        return response.kvs[0]

    async def list(
        self,
        rtype: ResourceType,
        namespace: str = "",
        *,
        revision: int = 0,
        limit: int = 0,
        start_key: bytes | None = None,
    ) -> ListResult:
        prefix = self.resource_prefix(rtype, namespace)
        try:
            response = await self.etcd.range(
                start_key or prefix, prefix_end(prefix), revision=revision, limit=limit
            )
        except CompactedError as e:
            raise Expired(
                "The provided continue parameter is too old to display a consistent list"
                " result. You can start a new list without the continue parameter."
            ) from e
        except FutureRevisionError as e:
            current = await self.etcd.current_revision()
            raise TooLargeResourceVersion.of(revision, current) from e
        items = []
        for kv in response.kvs:
            try:
                items.append(self.decode(rtype, kv))
            except InternalError as e:
                log.error("list skips a corrupt object", resource=rtype.plural, error=str(e))
        next_key = None
        if response.more and response.kvs:
            next_key = response.kvs[-1].key + b"\0"
        # A read at an older revision (a continue page) is still of that revision: etcd's
        # header carries the store's current one.
        return ListResult(items, revision or int(response.header.revision), next_key)

    async def _write(
        self, compare: Sequence[Compare], success: Sequence[RequestOp],
        failure: Sequence[RequestOp] = (),
    ) -> TxnResult:
        """One guarded write of one key, batched with others when there is a batcher."""
        if self.batcher is not None:
            return await self.batcher.txn(compare, success, failure)
        response = await self.etcd.txn(compare, success, failure)
        return TxnResult(response.succeeded, int(response.header.revision), response.responses)

    async def create(self, rtype: ResourceType, obj: Message, lease: int = 0) -> Message:
        """Stores a new object; with ``lease``, etcd deletes it when the lease expires."""
        meta = obj.metadata  # type: ignore[attr-defined]
        key = self.key(rtype, meta.namespace, meta.name)
        response = await self._write(
            [absent(key)], [put_op(key, self.stored_value(rtype, key, obj), lease)]
        )
        if not response.succeeded:
            raise AlreadyExists(
                f'{rtype.plural}{"." + rtype.group if rtype.group else ""} "{meta.name}"'
                " already exists"
            )
        meta.resource_version = str(response.revision)
        return obj

    async def update(self, rtype: ResourceType, obj: Message, expected_revision: int) -> Message:
        """Writes ``obj`` if the stored object is still at ``expected_revision``."""
        meta = obj.metadata  # type: ignore[attr-defined]
        key = self.key(rtype, meta.namespace, meta.name)
        response = await self._write(
            [mod_revision_is(key, expected_revision)],
            [replace_op(key, self.stored_value(rtype, key, obj))],
            [get_op(key)],
        )
        if not response.succeeded:
            if not response.responses[0].response_range.kvs:
                raise not_found(rtype, meta.name)
            raise conflict(rtype, meta.name)
        meta.resource_version = str(response.revision)
        return obj

    async def rewrite_if_stale(self, rtype: ResourceType, current: Message) -> Message:
        """``current`` (as just read) written again if etcd holds it in a form the encryption
        configuration no longer writes (an old key, plaintext): an update that changes nothing
        still re-encrypts, as Kubernetes' does. Returns the object as stored."""
        transformer = self.transformers.get(rtype.plural) if self.transformers else None
        if transformer is None:
            return current
        meta = current.metadata  # type: ignore[attr-defined]
        key = self.key(rtype, meta.namespace, meta.name)
        response = await self.etcd.range(key)
        if not response.kvs or str(response.kvs[0].mod_revision) != meta.resource_version:
            return current  # written meanwhile, by the configuration in force
        try:
            _, stale = transformer.from_storage(response.kvs[0].value, key)
        except TransformError as e:
            raise untransformable(key, str(e)) from e
        if not stale:
            return current
        rewritten = type(current)()
        rewritten.CopyFrom(current)
        try:
            return await self.update(rtype, rewritten, int(meta.resource_version))
        except Conflict:
            return current  # another writer re-encrypted it with its own change

    async def delete(
        self, rtype: ResourceType, namespace: str, name: str, expected_revision: int
    ) -> int:
        """Deletes the object if it is still at ``expected_revision``; returns the revision."""
        key = self.key(rtype, namespace, name)
        response = await self._write(
            [mod_revision_is(key, expected_revision)], [delete_op(key)], [get_op(key)]
        )
        if not response.succeeded:
            if not response.responses[0].response_range.kvs:
                raise not_found(rtype, name)
            raise conflict(rtype, name)
        return response.revision

    async def guaranteed_update(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        mutate: Callable[[Message], Awaitable[Message | None]],
        attempts: int = 20,
        cached: Message | None = None,
    ) -> Message:
        """Read, mutate, write; re-read and retry when another writer got there first.

        ``mutate`` gets a fresh copy of the current object and returns the object to store,
        or None to leave it unchanged. Given ``cached`` (the watch cache's newest copy, which
        may be stale), the first attempt starts from it instead of reading etcd: the write's
        condition on its revision finds out a stale one; an attempt on it that fails or
        would leave the object unchanged is made again on the object read from etcd (as
        Kubernetes' GuaranteedUpdate with a cached object).
        """
        current = cached
        for _ in range(attempts):
            fresh = current is None
            if current is None:
                current = await self.get(rtype, namespace, name)
            revision = int(current.metadata.resource_version)  # type: ignore[attr-defined]
            candidate = type(current)()
            candidate.CopyFrom(current)
            try:
                updated = await mutate(candidate)
            except ApiError:
                if fresh:
                    raise
                current = None  # judged on a copy that may be stale: again on etcd's
                continue
            if updated is None:
                if fresh:
                    return current
                current = None
                continue
            try:
                return await self.update(rtype, updated, revision)
            except Conflict:
                current = None
                continue
        raise conflict(rtype, name)
