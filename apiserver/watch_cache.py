"""One etcd watch per resource, fanned out to every client watch of that resource.

The cache keeps a window of recent events (the last ``capacity`` of them and at most
``max_bytes`` of serialized objects, contiguous in revision). A client watch from a
resourceVersion inside the window is served from it and then live. One from before the window
(every informer's after an API server restart: the window starts empty there) replays the
history since that version from a private etcd watch (etcd says if it was compacted, which
becomes Expired) only until it reaches the window, then the cache serves it like any other:
its etcd watch and its admission slot are given back at that moment, so resuming from any
version costs one etcd watch per resource again once the replay is done. The window holds
bytes only: objects decoded for selectors are dropped once every
watcher had the event, a change's previous state shares the bytes of the event that wrote it,
and a delete keeps one copy of the last state. Selectors are applied here, per watcher, with
Kubernetes' rule for objects that move in or out of a selector: entering is ADDED, leaving is
DELETED.

Where the replay meets the window is known from events alone, in etcd's order (a progress
notification on a watch that is still replaying may name a revision whose events have not been
sent yet, as etcd before 3.4.24 and 3.5.8 does). A replay of a resource that has had no change
since the window began would wait forever for one, so the cache then writes a marker key just
past the resource's range, which replays watch too (one write for all of them).

Bookmarks: one timer per resource asks etcd how far its stream has come; the answer wakes only
the idle watchers it moves past their last revision, each of which then sends one BOOKMARK.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import DecodeError, Message

from apiserver.etcd import CompactedError, Etcd, EtcdWatch, Event, KeyValue, prefix_end
from apiserver.storage import Storage, with_resource_version
from kubelite.api.errors import (
    ApiError,
    Expired,
    InternalError,
    TooLargeResourceVersion,
    Unavailable,
)
from kubelite.api.registry import ResourceType

log = structlog.get_logger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"

Predicate = Callable[[Message], bool]
TakeSlot = Callable[[], Callable[[], None]]
"""Takes a place for one private etcd watch and returns the function that gives it back;
raises TooManyRequests when none is free."""


class CachedEvent:
    """A change to one object, shared by every watcher; decoded only if a selector needs it."""

    __slots__ = (
        "_obj",
        "_prev",
        "_prev_value",
        "_rtype",
        "created",
        "data",
        "deleted",
        "key",
        "namespace",
        "revision",
    )

    def __init__(
        self, rtype: ResourceType, revision: int, data: bytes, namespace: str, *,
        deleted: bool, created: bool, prev_value: bytes | None, key: bytes = b"",
    ) -> None:
        self.revision = revision
        self.data = data
        """The object after the change (for a delete: its last state) with resourceVersion."""
        self.namespace = namespace
        self.deleted = deleted
        self.created = created
        self.key = key
        self._rtype = rtype
        self._obj: Message | None = None
        # A delete's previous state is its data (at another resourceVersion): no second copy.
        self._prev_value = None if deleted else prev_value
        self._prev: Message | None = None

    @property
    def size(self) -> int:
        """Bytes this event holds (a previous state shared with another event counts too)."""
        return len(self.data) + len(self._prev_value or b"")

    @property
    def obj(self) -> Message:
        if self._obj is None:
            self._obj = self._rtype.decode(self.data)
        return self._obj

    @property
    def prev(self) -> Message | None:
        if self.deleted:
            return self.obj
        if self._prev is None and self._prev_value is not None:
            try:
                self._prev = self._rtype.decode(self._prev_value)
            except DecodeError:
                # It replaced a corrupt value, which no watcher ever got: there was no before.
                return None
        return self._prev

    def keep_decoded(self, obj: Message) -> None:
        """The object as already decoded, for the selectors of the watchers it goes to."""
        self._obj = obj

    def release(self) -> None:
        """Drops the decoded objects; they are made again if a later watcher needs them."""
        self._obj = self._prev = None


WATCH_BATCH = 100
"""Most events a watcher is given in one batch (one message of a gRPC watch)."""


class NotCached:
    """The answer of a cache that cannot serve a read (see ``ResourceWatchCache.read``)."""


NOT_CACHED = NotCached()


@dataclass(frozen=True, slots=True)
class WatchItem:
    type: str
    revision: int
    data: bytes
    """The serialized object (empty for BOOKMARK)."""
    partial: bool = False
    """More events of the same revision follow for this watcher (objects written in one
    batch share a revision): a client that resumed from this revision would miss them, so
    the place to resume from is the revision before (``resume_revision``)."""

    @property
    def resume_revision(self) -> int:
        """The revision a client that has had this item resumes from without missing any
        event (and maybe seeing again some of this revision)."""
        return self.revision - 1 if self.partial else self.revision


WatchBatch = list[WatchItem]
"""Watch items ready at once, in order."""


def _mark_partial(items: list[WatchItem]) -> list[WatchItem]:
    """``items`` in order, each marked partial when the next one has the same revision."""
    return [
        WatchItem(item.type, item.revision, item.data, partial=True)
        if i + 1 < len(items) and items[i + 1].revision == item.revision else item
        for i, item in enumerate(items)
    ]


def classify(event: CachedEvent, namespace: str, matches: Predicate | None) -> str | None:
    """The event type this watcher sees, or None when the change is not for it."""
    if namespace and event.namespace != namespace:
        return None
    if matches is None:
        if event.deleted:
            return DELETED
        return ADDED if event.created else MODIFIED
    now = not event.deleted and matches(event.obj)
    before = event.prev is not None and matches(event.prev)
    if now and before:
        return MODIFIED
    if now:
        return ADDED
    if before:
        return DELETED
    return None


@dataclass(eq=False)
class _Watcher:
    namespace: str
    matches: Predicate | None
    max_pending: int
    after: int
    """Events up to this revision are not for this watcher: its client already has them (a
    List read etcd at a revision the cache may not have caught up with yet)."""
    max_pending_bytes: int = 2**63
    sent: int = field(init=False)
    """The revision of the last item its client was given (``after`` until then)."""
    pending: deque[WatchItem] = field(default_factory=deque)
    pending_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closed_reason: str | None = None

    def __post_init__(self) -> None:
        self.sent = self.after

    def offer(self, event: CachedEvent) -> None:
        if event.revision <= self.after or self.closed_reason is not None:
            return
        kind = classify(event, self.namespace, self.matches)
        if kind is None:
            return
        if len(self.pending) >= self.max_pending or (
            self.pending and self.pending_bytes + len(event.data) > self.max_pending_bytes
        ):
            # Its backlog would keep alive what the window has let go: the client resumes.
            self.close("watcher fell too far behind")
            return
        self.pending.append(WatchItem(kind, event.revision, event.data))
        self.pending_bytes += len(event.data)
        self.wakeup.set()

    def take(self) -> WatchItem:
        item = self.pending.popleft()
        self.pending_bytes -= len(item.data)
        return item

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self.wakeup.set()


@dataclass(eq=False)
class _Replay:
    after: int
    """The revision the client watches from."""
    position: int = field(init=False)
    """Every event up to this revision has been through the replay."""

    def __post_init__(self) -> None:
        self.position = self.after


@dataclass(frozen=True)
class WatchCacheSettings:
    capacity: int = 10_000
    """Events kept per resource for watchers that resume from a recent resourceVersion."""
    max_bytes: int = 32 * 1024 * 1024
    """Bytes of serialized objects kept per resource in that window (the older events go
    first, so a few huge objects cannot hold hundreds of megabytes). A watcher whose unsent
    backlog passes this many bytes is closed like one too many events behind."""
    max_pending_per_watcher: int = 10_000
    """A watcher this many events behind is closed; its client resumes from its last version."""
    progress_interval: float = 1.0
    """How often to ask etcd how far the stream has come when it is quiet, seconds; an idle
    watcher gets a BOOKMARK when the answer moves it on."""
    too_large_resource_version_wait: float = 3.0
    """How long a watch from a resourceVersion the cache has not reached waits for it, seconds;
    then it fails with "Too large resource version" (a Timeout; retry after 1 s), as
    Kubernetes' watch cache does after 3 s."""
    retry_max: float = 5.0
    """Cap on the backoff between attempts to re-open a broken etcd watch, seconds."""
    consistent_read_wait: float = 0.5
    """How long a consistent read waits for the cache to reach etcd's current revision before
    it reads from etcd instead, seconds (only where etcd's progress notifications can be
    trusted; elsewhere a cache that has not seen that revision is not waited for)."""
    consistent_read_linger: float = 0.005
    """How long the request for etcd's revision behind consistent reads may wait to serve as
    many readers as the last one did, seconds (one request then serves them all; after a
    request for one reader, none waits)."""
    load_page: int = 1000
    """Objects per etcd range while the cache loads a resource's current state."""


class ResourceWatchCache:
    def __init__(self, storage: Storage, rtype: ResourceType, settings: WatchCacheSettings) -> None:
        self.storage = storage
        self.rtype = rtype
        self.settings = settings
        self.prefix = storage.resource_prefix(rtype)
        self._events: deque[CachedEvent] = deque()
        self._latest: dict[bytes, CachedEvent] = {}
        """The newest event of each key in the window (a next change shares its bytes)."""
        self._bytes = 0
        self._watchers: set[_Watcher] = set()
        self.start_revision = 0
        """Every event after this revision is in the window (until it is trimmed)."""
        self.revision = 0
        """Every event up to this revision has reached the window."""
        self._progressed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._etcd_watch_started = asyncio.Event()
        self._watch: EtcdWatch | None = None
        self.etcd_watches_opened = 0
        self.healthy = False
        self.take_private_watch_slot: TakeSlot | None = None
        """Bounds the private etcd watches of replays (the API server's admission sets it to
        its ``--max-uncached-watches`` slots); None: no bound."""
        self.private_watches = 0
        """Replays open now, each with an etcd watch of its own."""
        self.handovers = 0
        """Replays that caught up with the window and went on from the cache."""
        self.fence_key = self.prefix.rstrip(b"/") + b":progress"
        """The marker a replay that finds no event to meet the window with waits for: just
        past the resource's range, so no list and not the cache's own watch ever see it."""
        self._fence = 0
        """The revision the fence key was last written at by this cache."""
        self._fence_task: asyncio.Task[None] | None = None
        self._objects: dict[bytes, bytes | None] = {}
        """Every object of the resource by key, serialized with its resourceVersion (None:
        etcd holds a value that does not decode, which only etcd reads report)."""
        self.complete_revision = 0
        """Every change up to this revision is in ``_objects``: known from the load, from
        events, and from revisions this server wrote elsewhere (``Etcd.own_revisions``),
        never from progress notifications alone."""
        self.trust_progress = False
        """Whether etcd's progress notifications may tell that the cache has caught up (see
        apiserver/consistent_read.py); set once etcd's version is known."""
        self.cached_reads = 0
        """Consistent reads served from the cache."""
        self.etcd_reads = 0
        """Consistent reads that went to etcd: the cache could not show it had caught up."""

    @property
    def etcd(self) -> Etcd:
        return self.storage.etcd

    async def start(self) -> None:
        self.start_revision = self.revision = await self._load()
        self._task = asyncio.create_task(self._run(), name=f"watch-cache-{self.rtype.plural}")

    async def _load(self) -> int:
        """Reads the resource's current state into the cache; returns the revision read at."""
        objects: dict[bytes, bytes | None] = {}
        start, end = self.prefix, prefix_end(self.prefix)
        revision = 0
        while True:
            response = await self.etcd.range(
                start, end, revision=revision, limit=self.settings.load_page)
            revision = revision or int(response.header.revision)
            for kv in response.kvs:
                try:
                    value = self._plaintext(kv.key, kv.value)
                    self.storage.decode_value(self.rtype, kv.key, value)
                except InternalError:
                    objects[kv.key] = None  # etcd's reads say what is wrong with it
                    continue
                objects[kv.key] = with_resource_version(value, kv.mod_revision)
            if not response.more or not response.kvs:
                break
            start = response.kvs[-1].key + b"\0"
        self._objects = objects
        self.complete_revision = revision
        return revision

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.close("API server shutting down")
        tasks = [t for t in (self._task, self._fence_task) if t is not None]
        for task in tasks:
            task.cancel()
        # Both log their own failures; what is left here is their cancellation.
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ the etcd side

    async def _run(self) -> None:
        delay = 0.1
        while True:
            watch = self.etcd.watch(self.prefix, prefix_end(self.prefix), self.revision + 1)
            self._watch = watch
            self.etcd_watches_opened += 1
            progress = asyncio.create_task(self._ask_progress(watch))
            try:
                async for events in watch:
                    self.healthy = True
                    delay = 0.1
                    if events:
                        self._apply(events)
                    else:
                        self._progress(watch.revision)
                    async with self._progressed:
                        self._progressed.notify_all()
            except CompactedError as e:
                # Events between our revision and the compaction are gone: start over so
                # watchers re-watch and get Expired (then relist) rather than miss changes.
                log.warning("watch cache lost history", resource=self.rtype.plural, error=str(e))
                await self._reset()
            except Unavailable as e:
                self.healthy = False
                log.warning(
                    "etcd watch broke; resuming",
                    resource=self.rtype.plural,
                    revision=self.revision,
                    error=str(e),
                )
            finally:
                progress.cancel()
                watch.cancel()
            await asyncio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, self.settings.retry_max)

    async def _ask_progress(self, watch: object) -> None:
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            watch.request_progress()  # type: ignore[attr-defined]

    def _progress(self, revision: int) -> None:
        """etcd's stream is complete up to ``revision``: idle watchers it moves on wake up
        to send a BOOKMARK (the others are busy, or would have nothing new to say)."""
        self.revision = max(self.revision, revision)
        for watcher in self._watchers:
            if not watcher.pending and watcher.sent < self.revision:
                watcher.wakeup.set()

    async def _reset(self) -> None:
        for watcher in list(self._watchers):
            watcher.close("watch cache reset after etcd compaction")
        self._watchers.clear()
        self._events.clear()
        self._latest.clear()
        self._bytes = 0
        self.start_revision = self.revision = await self._load()
        self._fence_if_needed()  # replays under way now meet an empty window

    @property
    def held_bytes(self) -> int:
        """Bytes of serialized objects the window holds now (at most ``max_bytes``)."""
        return self._bytes

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            cached = self._cached(event)
            if cached is None:
                if event.type != Event.DELETE:
                    self._objects[event.kv.key] = None
                else:
                    self._objects.pop(event.kv.key, None)
                continue
            if cached.deleted:
                self._objects.pop(cached.key, None)
            else:
                self._objects[cached.key] = cached.data
            self._events.append(cached)
            self._latest[cached.key] = cached
            self._bytes += cached.size
            for watcher in self._watchers:
                watcher.offer(cached)
            cached.release()
        self.revision = self.complete_revision = events[-1].kv.mod_revision
        while self._events and (
            len(self._events) > self.settings.capacity or self._bytes > self.settings.max_bytes
        ):
            oldest = self._events.popleft()
            self._bytes -= oldest.size
            if self._latest.get(oldest.key) is oldest:
                del self._latest[oldest.key]
            self.start_revision = oldest.revision

    def _cached(self, event: Event) -> CachedEvent | None:
        """The event as watchers get it; None (logged) when its object is corrupt."""
        kv = event.kv
        namespace = ""
        if self.rtype.namespaced:
            namespace = kv.key[len(self.prefix):].split(b"/", 1)[0].decode()
        try:
            if event.type == Event.DELETE:
                # The last state, at the delete's revision (etcd sent it as prev_kv; without
                # it, the object's identity from its key).
                if event.HasField("prev_kv"):
                    last = self._plaintext(kv.key, event.prev_kv.value)
                    obj = self.storage.decode_value(self.rtype, kv.key, last)
                else:
                    obj = self._tombstone(kv.key)
                    last = obj.SerializeToString()
                obj.metadata.resource_version = str(kv.mod_revision)  # type: ignore[attr-defined]
                cached = CachedEvent(
                    self.rtype, kv.mod_revision, with_resource_version(last, kv.mod_revision),
                    namespace, deleted=True, created=False, prev_value=None, key=kv.key,
                )
                cached.keep_decoded(obj)
                return cached
            value = self._plaintext(kv.key, kv.value) if self.storage.transformers else kv.value
            obj = self.storage.decode_value(self.rtype, kv.key, value)
        except InternalError as e:
            # Watchers never saw it in a list either: skipping keeps them consistent.
            log.error("watch skips a corrupt object", resource=self.rtype.plural,
                      revision=kv.mod_revision, error=str(e))
            return None
        obj.metadata.resource_version = str(kv.mod_revision)  # type: ignore[attr-defined]
        prev_value = None
        if event.HasField("prev_kv"):
            before = self._latest.get(kv.key)
            if (before is not None and not before.deleted
                    and before.revision == event.prev_kv.mod_revision):
                prev_value = before.data  # the same bytes: shared, not copied
            else:
                prev_value = self._previous(kv.key, event.prev_kv)
        cached = CachedEvent(
            self.rtype, kv.mod_revision, with_resource_version(value, kv.mod_revision),
            namespace, deleted=False, created=kv.create_revision == kv.mod_revision,
            prev_value=prev_value, key=kv.key,
        )
        cached.keep_decoded(obj)
        return cached

    def _plaintext(self, key: bytes, stored: bytes) -> bytes:
        """The value as plaintext (decrypted when the resource is encrypted at rest)."""
        if not self.storage.transformers:
            return stored
        return self.storage.plaintext(self.rtype, key, stored)

    def _previous(self, key: bytes, prev: KeyValue) -> bytes | None:
        """A change's previous state with its resourceVersion; None when it cannot be
        decrypted (as for a corrupt one: no watcher ever got it, so there was no before)."""
        try:
            value = self._plaintext(key, prev.value)
        except InternalError:
            return None
        return with_resource_version(value, prev.mod_revision)

    def _tombstone(self, key: bytes) -> Message:
        """An object with only the name and namespace its key gives."""
        obj = self.rtype.new()
        namespace, _, name = key[len(self.prefix):].decode().rpartition("/")
        obj.metadata.name = name  # type: ignore[attr-defined]
        obj.metadata.namespace = namespace  # type: ignore[attr-defined]
        return obj

    def latest(self, key: bytes) -> bytes | NotCached:
        """The newest state of the object at ``key`` this cache has seen (serialized, with its
        resourceVersion), without asking whether etcd has a newer one; NOT_CACHED when it
        holds none. For writes, whose condition on the resourceVersion finds out a stale
        one (Kubernetes' GuaranteedUpdate starts from the cached object the same way)."""
        data = self._objects.get(key)
        return NOT_CACHED if data is None else data

    async def read(self, key: bytes, revision: int) -> bytes | NotCached | None:
        """The object at ``key`` as of ``revision`` or later (serialized, with its
        resourceVersion), None when there is none, or NOT_CACHED when the cache cannot show it
        has every change up to ``revision`` (or holds a value there that does not decode):
        the caller reads from etcd."""
        if not await self._caught_up(revision):
            self.etcd_reads += 1
            return NOT_CACHED
        if key in self._objects:
            data = self._objects[key]
            if data is None:
                self.etcd_reads += 1
                return NOT_CACHED
            self.cached_reads += 1
            return data
        self.cached_reads += 1
        return None

    async def _caught_up(self, revision: int) -> bool:
        # Revisions of this server's own writes to other keys hold no change of ours.
        own = self.etcd.own_revisions
        while (self.complete_revision < revision
               and own.elsewhere(self.complete_revision + 1, self.prefix)):
            self.complete_revision += 1
        if self.complete_revision >= revision:
            return True
        if not self.trust_progress or self._task is None:
            return False
        # A change may be on its way, or the resource has none since: etcd's answer to a
        # progress request tells which.
        try:
            await self.wait_for_revision(revision, self.settings.consistent_read_wait)
        except TooLargeResourceVersion:
            return False
        return True

    async def wait_for_revision(self, revision: int, timeout: float | None = None) -> None:
        """Returns once every event up to ``revision`` is in the window; raises
        TooLargeResourceVersion when that takes longer than ``timeout`` (by default
        ``too_large_resource_version_wait``) seconds."""
        if self.revision >= revision:
            return
        if self._watch is not None:
            self._watch.request_progress()  # a quiet resource need not wait for the next tick

        async def reached() -> None:
            async with self._progressed:
                await self._progressed.wait_for(lambda: self.revision >= revision)

        if timeout is None:
            timeout = self.settings.too_large_resource_version_wait
        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise TooLargeResourceVersion.of(revision, self.revision) from None

    # ------------------------------------------------------------ the client side

    async def watch(
        self, after: int, namespace: str, matches: Predicate | None
    ) -> AsyncIterator[WatchItem]:
        """``watch_batches``, one item at a time."""
        async with contextlib.aclosing(self.watch_batches(after, namespace, matches)) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def watch_batches(
        self, after: int, namespace: str, matches: Predicate | None,
        max_items: int = WATCH_BATCH,
    ) -> AsyncGenerator[WatchBatch, None]:
        """Events after revision ``after``, in order, then live ones until cancelled, in lists
        of those ready at once (at most ``max_items``): a busy watcher gets many per message.

        Yields BOOKMARK items (revision only) whenever the stream is idle and has progressed,
        so clients can resume from a recent version. From before the window, the history comes
        from a private etcd watch until it meets the window (taking a place from
        ``take_private_watch_slot`` for that long), then from the cache. Raises Expired when
        ``after`` has been compacted away, TooManyRequests when no private etcd watch may be
        opened now, TooLargeResourceVersion when the cache does not reach ``after`` within
        ``too_large_resource_version_wait``, Unavailable when the stream must be
        re-established.
        """
        await self.wait_for_revision(after)
        if after < self.start_revision:
            replay = _Replay(after)
            # Closed with this stream, whenever its client goes: the etcd watch and the slot
            # are given back at once.
            async with contextlib.aclosing(self._replay(replay, namespace, matches)) as items:
                async for item in items:
                    yield [item]
            # Caught up: the window has every event after this revision. Nothing suspends
            # from the replay's last check until the watcher is registered (closing a
            # finished generator does not), so no event slips in between.
            after = replay.position
            self.handovers += 1
        watcher = _Watcher(
            namespace, matches, self.settings.max_pending_per_watcher, after,
            max_pending_bytes=self.settings.max_bytes,
        )
        for event in self._events:
            watcher.offer(event)
            event.release()
        self._watchers.add(watcher)
        try:
            while True:
                if not watcher.pending and watcher.closed_reason is None:
                    # Woken by an event for it, a progress that moves it on, or its closing.
                    watcher.wakeup.clear()
                    await watcher.wakeup.wait()
                while watcher.pending:
                    batch: WatchBatch = []
                    while watcher.pending and len(batch) < max_items:
                        item = watcher.take()
                        watcher.sent = item.revision
                        if watcher.pending and watcher.pending[0].revision == item.revision:
                            # A revision's events are offered together: the rest are here.
                            item = WatchItem(item.type, item.revision, item.data, partial=True)
                        batch.append(item)
                    yield batch
                if watcher.closed_reason is not None:
                    raise Unavailable(watcher.closed_reason)
                if self.revision > watcher.sent:
                    watcher.sent = self.revision
                    yield [WatchItem(BOOKMARK, watcher.sent, b"")]
        finally:
            self._watchers.discard(watcher)

    async def _replay(
        self, replay: _Replay, namespace: str, matches: Predicate | None
    ) -> AsyncGenerator[WatchItem, None]:
        """The history after ``replay.position`` from an etcd watch of this client's own,
        until that position is inside the window; then it returns (the caller goes on from
        the cache) with the etcd watch closed and its slot given back.

        The etcd watch covers the whole resource and the fence key, whatever the namespace, so
        that every event of the window (or the fence) can end it; events of other namespaces
        only move the position on, without being decoded.
        """
        release = self.take_private_watch_slot() if self.take_private_watch_slot else None
        self.private_watches += 1
        watch: EtcdWatch | None = None
        try:
            watch = self.etcd.watch(self.prefix, self.fence_key + b"\0", replay.position + 1)
            self.etcd_watches_opened += 1
            self._fence_if_needed()
            mine = self.storage.resource_prefix(self.rtype, namespace)
            sent = replay.position
            # Only events say how far the replay has come: a progress notification may run
            # ahead of events still to be sent while etcd replays history.
            async for events in watch:
                items = []
                for event in events:
                    if not event.kv.key.startswith(mine):
                        continue  # another namespace, or the fence
                    cached = self._cached(event)
                    if cached is None:
                        continue
                    kind = classify(cached, namespace, matches)
                    if kind is not None:
                        items.append(WatchItem(kind, cached.revision, cached.data))
                for item in _mark_partial(items):
                    sent = item.revision
                    yield item
                if not events:
                    continue
                # A batch ends at a revision boundary: every event up to here has been seen.
                replay.position = max(replay.position, events[-1].kv.mod_revision)
                if replay.position >= self.start_revision:
                    return
                if replay.position > sent:
                    sent = replay.position
                    yield WatchItem(BOOKMARK, sent, b"")
        except CompactedError as e:
            raise Expired(
                f"too old resource version: {replay.after} ({e.compact_revision})"
            ) from e
        finally:
            if watch is not None:
                watch.cancel()
            self.private_watches -= 1
            if release is not None:
                release()

    def _fence_if_needed(self) -> None:
        """Writes the fence key, unless a replay is sure to see an event of the window (there
        is one) or a fence inside it (one is there, or being written)."""
        if not self.private_watches or self._events or self._fence >= self.start_revision:
            return
        if self._fence_task is None or self._fence_task.done():
            self._fence_task = asyncio.create_task(
                self._write_fence(), name=f"watch-cache-fence-{self.rtype.plural}"
            )

    async def _write_fence(self) -> None:
        while True:
            window = self.start_revision
            try:
                response = await self.etcd.put(self.fence_key, b"")
            except ApiError as e:
                # Replays wait for the next event of the resource (or re-watch, if etcd is
                # gone: their own watches break too, and the next replay writes again).
                log.warning("cannot write the watch cache's fence", resource=self.rtype.plural,
                            error=str(e))
                return
            except Exception:
                log.exception("writing the watch cache's fence failed",
                              resource=self.rtype.plural)
                return
            self._fence = max(self._fence, int(response.header.revision))
            # Again only if the window was reset past it meanwhile (replays wait on it).
            if self.start_revision == window or self._fence >= self.start_revision:
                return
            if self._events or not self.private_watches:
                return

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)


