"""Fakes shared by the unit tests: an API server in memory that records every call
(FakeClient), an event recorder that keeps what it is given (FakeRecorder), a controller
context around them, a clock that moves only when told, and the serviceaccounts/token
subresource (FakeRequester). Objects to fill them with: tests/unit/objects.py."""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple, TypeVar, cast

from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from controller_manager.settings import ControllerManagerSettings
from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, Conflict, Forbidden, NotFound
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient, ObjectList, WatchEvent
from kubelite.client.events import EventRecorder
from kubelite.client.informer import InformerFactory, Store
from protos.v1 import objects_pb2 as v1
from tests.unit.objects import NOW

T = TypeVar("T", bound=Message)



# ---------------------------------------------------------------- the API server


class Deleted(NamedTuple):
    """One delete call, as the controller made it."""

    kind: str
    namespace: str
    name: str
    options: dict[str, Any]


class FakeClient:
    """An API server in memory: answers the calls controllers and informers make and records
    each one.

    The server's state is ``objects`` (``put`` adds to it) unless the client is made with
    ``from_cache``: then the informer stores of the context it serves (see ``make_context``)
    are the state, read as a fresh GET would read it, and writes reach them only with
    ``write_through``; without it the stores lag behind every write, which is what
    expectations exist for. Versions are checked (Conflict) only where the state follows the
    writes. ``watch`` streams what the test puts in ``watch_events`` (an exception ends the
    stream by raising).
    """

    def __init__(self, *, from_cache: bool = False, write_through: bool = False,
                 fail_creates_from: int | None = None,
                 clock: Callable[[], dt.datetime] = m.now) -> None:
        self.objects: dict[tuple[str, str, str], Message] = {}
        """The server's state by (resource, namespace, name), unless ``from_cache``."""
        self.from_cache = from_cache
        self.cache: InformerFactory | None = None
        """With ``from_cache``: the informers whose stores are the server's state."""
        self.write_through = write_through
        """With ``from_cache``: writes reach the stores at once."""
        self.fail_creates_from = fail_creates_from
        """Creates fail (Forbidden) from this (0-based) create call on."""
        self.clock = clock
        """The creationTimestamp of created objects."""
        self.watch_events: asyncio.Queue[WatchEvent[Any] | Exception] = asyncio.Queue()

        self.calls: list[tuple[str, str, str]] = []
        """(verb, kind, name) of every write, in order."""
        self.created: list[Message] = []
        self.updates: list[Message] = []
        self.status_updates: list[Message] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.deletes: list[Deleted] = []
        self.gets: list[tuple[str, str]] = []
        self.lists = 0
        self.watches = 0
        self._creates = 0
        self._ids = itertools.count(1)
        self._revision = 1000

    # ------------------------------------------------------------ what tests look at

    def created_of(self, kind: type[T]) -> list[T]:
        return [o for o in self.created if isinstance(o, kind)]

    def deleted_names(self, kind: str = "Pod") -> list[str]:
        return [d.name for d in self.deletes if d.kind == kind]

    def last_status_write(self, kind: type[T]) -> T:
        """The last ``kind`` written with update_status; fails the test if there was none."""
        written = [o for o in self.status_updates if isinstance(o, kind)]
        assert written, f"no {kind.__name__} status written"
        return written[-1]

    def put(self, obj: T) -> T:
        """Makes ``obj`` part of the server's state with a new resourceVersion (set on
        ``obj`` too, so the same object can be delivered to an informer)."""
        m.meta(obj).resource_version = self._next_revision()
        self._store(m.copy(obj), always=True)
        return obj

    # ------------------------------------------------------------ the API

    async def get(self, kind: type[T], name: str, namespace: str = "") -> T:
        self.gets.append((kind.__name__, name))
        return m.copy(self._current(kind, namespace, name))

    async def list(self, kind: type[T], namespace: str = "", **_: Any) -> ObjectList[T]:
        self.lists += 1
        items = [m.copy(o) for o in self._all(kind)
                 if not namespace or m.meta(o).namespace == namespace]
        return ObjectList(items, str(self._revision))

    async def watch(self, kind: type[T], namespace: str = "", **_: Any
                    ) -> AsyncIterator[WatchEvent[T]]:
        self.watches += 1
        while True:
            item = await self.watch_events.get()
            if isinstance(item, Exception):
                raise item
            yield item

    async def create(self, obj: T, namespace: str = "") -> T:
        kind = by_message(type(obj)).kind
        index = self._creates
        self._creates += 1
        self.calls.append(("create", kind, m.meta(obj).name or m.meta(obj).generate_name))
        if self.fail_creates_from is not None and index >= self.fail_creates_from:
            raise Forbidden("exceeded quota")
        created = m.copy(obj)
        meta = m.meta(created)
        n = next(self._ids)
        if not meta.name:
            meta.name = f"{meta.generate_name}{n:05d}"
        if self._lookup(type(obj), meta.namespace, meta.name) is not None:
            raise AlreadyExists(f'{kind} "{meta.name}" already exists')
        meta.uid = f"uid-{meta.name}-{n}"
        meta.creation_timestamp = m.format_time(self.clock())
        meta.resource_version = self._next_revision()
        meta.generation = 1
        self.created.append(created)
        self._store(created)
        return m.copy(created)

    async def update(self, obj: T) -> T:
        meta = m.meta(obj)
        current = self._begin_write("update", obj)
        updated = m.copy(obj)
        if m.meta(current).generation and (
            getattr(current, "spec", None) != getattr(updated, "spec", None)
        ):
            m.meta(updated).generation = m.meta(current).generation + 1
        self.updates.append(m.copy(updated))
        if meta.deletion_timestamp and not meta.finalizers:  # the last finalizer went
            self._remove(updated)
            return updated
        m.meta(updated).resource_version = self._next_revision()
        self._store(updated)
        return m.copy(updated)

    async def update_status(self, obj: T) -> T:
        self._begin_write("update_status", obj)
        updated = m.copy(obj)
        m.meta(updated).resource_version = self._next_revision()
        self.status_updates.append(m.copy(updated))
        self._store(updated)
        return m.copy(updated)

    async def patch(self, kind: type[T], name: str, patch: dict[str, Any],
                    namespace: str = "", *, subresource: str = "",
                    patch_type: str = "merge") -> T:
        """A JSON merge patch; a resourceVersion in it is a precondition."""
        if patch_type != "merge":
            raise ValueError(f"the fake client applies merge patches only, not {patch_type}")
        rtype = by_message(kind)
        self.calls.append(("patch", rtype.kind, name))
        self.patches.append((name, patch))
        current = self._current(kind, namespace, name)
        self._check_version(current, patch.get("metadata", {}).get("resourceVersion", ""))
        merged = convert.merge_patch(convert.to_dict(rtype, current), patch)
        _, obj = convert.from_dict(merged)
        m.meta(obj).resource_version = self._next_revision()
        self._store(obj)
        return cast(T, m.copy(obj))

    async def delete(self, kind: type[T], name: str, namespace: str = "",
                     **options: Any) -> T:
        """Honours the uid precondition; Foreground and Orphan leave the object with their
        finalizer and a deletionTimestamp, as the API server does."""
        rtype = by_message(kind)
        self.calls.append(("delete", rtype.kind, name))
        self.deletes.append(Deleted(rtype.kind, namespace, name, options))
        current = m.copy(self._current(kind, namespace, name))
        if options.get("uid") and options["uid"] != m.meta(current).uid:
            raise Conflict(f'{rtype.kind} "{name}": uid precondition failed')
        finalizer = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(
            options.get("propagation_policy") or "")
        if finalizer:
            m.meta(current).finalizers.append(finalizer)
            m.meta(current).deletion_timestamp = m.now_rfc3339()
            self._store(current)
            return current
        self._remove(current)
        return current

    # ------------------------------------------------------------ the state

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _cache_store(self, kind: type[T]) -> Store[T] | None:
        if not self.from_cache:
            return None
        if self.cache is None:
            raise RuntimeError("a FakeClient made from_cache serves a context: make_context")
        return self.cache.informer(kind).store

    @staticmethod
    def _key(kind: type[Message], namespace: str, name: str) -> tuple[str, str, str]:
        rtype = by_message(kind)
        return rtype.plural, namespace if rtype.namespaced else "", name

    def _lookup(self, kind: type[T], namespace: str, name: str) -> T | None:
        store = self._cache_store(kind)
        if store is not None:
            return store.get_by_name(namespace, name)
        return cast(T | None, self.objects.get(self._key(kind, namespace, name)))

    def _current(self, kind: type[T], namespace: str, name: str) -> T:
        obj = self._lookup(kind, namespace, name)
        if obj is None:
            raise NotFound(f'{by_message(kind).kind} "{name}" not found')
        return obj

    def _all(self, kind: type[T]) -> builtins.list[T]:
        store = self._cache_store(kind)
        if store is not None:
            return store.items()
        plural = by_message(kind).plural
        return [cast(T, o) for (p, _, _), o in self.objects.items() if p == plural]

    def _follows_writes(self) -> bool:
        return not self.from_cache or self.write_through

    def _begin_write(self, verb: str, obj: Message) -> Message:
        """Records the call; the object as the server has it (NotFound, Conflict)."""
        meta = m.meta(obj)
        self.calls.append((verb, by_message(type(obj)).kind, meta.name))
        current = self._current(type(obj), meta.namespace, meta.name)
        self._check_version(current, meta.resource_version)
        return current

    def _check_version(self, current: Message, resource_version: str) -> None:
        if (self._follows_writes() and resource_version
                and resource_version != m.meta(current).resource_version):
            raise Conflict(f'{by_message(type(current)).kind} "{m.meta(current).name}": '
                           "the object has been modified")

    def _store(self, obj: Message, *, always: bool = False) -> None:
        meta = m.meta(obj)
        store = self._cache_store(type(obj))
        if store is None:
            self.objects[self._key(type(obj), meta.namespace, meta.name)] = obj
        elif self.write_through or always:
            store.put(obj)

    def _remove(self, obj: Message) -> None:
        meta = m.meta(obj)
        store = self._cache_store(type(obj))
        if store is None:
            self.objects.pop(self._key(type(obj), meta.namespace, meta.name), None)
        elif self.write_through:
            store.remove(m.key_of(obj))


# ---------------------------------------------------------------- events, context, clock


class RecordedEvent(NamedTuple):
    key: str
    """The involved object's ``namespace/name`` (``name`` when cluster-scoped)."""
    type: str
    reason: str
    message: str

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]


class FakeRecorder(EventRecorder):
    """Keeps every event it is given; writes nothing."""

    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None), "test")
        self.events: list[RecordedEvent] = []

    def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        self.events.append(RecordedEvent(m.key_of(obj), type_, reason, message))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]


def make_context(client: FakeClient, **settings: Any) -> ControllerContext:
    """A controller context on ``client``, a FakeRecorder and informers that are never
    started (tests fill their stores or ``deliver`` to them); ``settings`` override
    ControllerManagerSettings (one worker, no leader election)."""
    api = cast(ApiClient, client)
    informers = InformerFactory(api)
    if client.from_cache:
        client.cache = informers
    return ControllerContext(
        client=api, informers=informers, recorder=FakeRecorder(),
        settings=ControllerManagerSettings(**{"leader_elect": False, "workers": 1, **settings}),
    )


def workload_context(**settings: Any) -> tuple[ControllerContext, FakeClient, FakeRecorder]:
    """A context whose informer stores are the server's state (``from_cache``, lagging),
    with objects created at NOW."""
    client = FakeClient(from_cache=True, clock=lambda: NOW)
    ctx = make_context(client, **settings)
    return ctx, client, cast(FakeRecorder, ctx.recorder)


def fill_cache(ctx: ControllerContext, *objs: Message) -> None:
    """Puts each object straight into its kind's informer store (no handler runs)."""
    for obj in objs:
        ctx.informers.informer(type(obj)).store.put(obj)


def deliver(ctx: ControllerContext, obj: Message, kind: str = "ADDED") -> None:
    """As if the informer of the object's kind received this watch event."""
    ctx.informers.informer(type(obj))._apply(kind, obj, m.meta(obj).resource_version or "1")


class ManualClock:
    """Seconds that move only when the test sets ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRequester:
    """The serviceaccounts/token subresource: a new token per request, valid for what was
    asked (or ``grant`` seconds when set), from the clock's now."""

    def __init__(self, clock: ManualClock, grant: int | None = None) -> None:
        self.clock = clock
        self.grant = grant
        self.requests: list[tuple[str, str, v1.TokenRequest]] = []
        self.fail: Exception | None = None

    async def request_token(
        self, namespace: str, service_account: str, request: v1.TokenRequest
    ) -> v1.TokenRequest:
        if self.fail is not None:
            raise self.fail
        self.requests.append((namespace, service_account, request))
        lifetime = self.grant or request.spec.expiration_seconds
        expires = dt.datetime.fromtimestamp(self.clock() + lifetime, dt.UTC)
        answer = v1.TokenRequest()
        answer.CopyFrom(request)
        answer.spec.expiration_seconds = lifetime
        answer.status.token = f"token-{len(self.requests)}"
        answer.status.expiration_timestamp = m.format_time(expires)
        return answer
