"""One etcd watch per resource, fanned out to every client watch of that resource.

The cache keeps a window of recent events (the last ``capacity`` of them and at most
``max_bytes`` of serialized objects, contiguous in revision). A client watch from a
resourceVersion inside the window is served from it and then live; one from before the window
gets a private etcd watch from that revision (etcd says if it was compacted, which becomes
Expired). The window holds bytes only: objects decoded for selectors are dropped once every
watcher had the event, a change's previous state shares the bytes of the event that wrote it,
and a delete keeps one copy of the last state. Selectors are applied here, per watcher, with
Kubernetes' rule for objects that move in or out of a selector: entering is ADDED, leaving is
DELETED.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import DecodeError, Message

from apiserver.etcd import CompactedError, Etcd, EtcdWatch, Event, prefix_end
from apiserver.storage import Storage, with_resource_version
from kubelite.api.errors import Expired, InternalError, TooLargeResourceVersion, Unavailable
from kubelite.api.registry import ResourceType

log = structlog.get_logger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"

Predicate = Callable[[Message], bool]


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


@dataclass(frozen=True, slots=True)
class WatchItem:
    type: str
    revision: int
    data: bytes
    """The serialized object (empty for BOOKMARK)."""


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
    pending: deque[WatchItem] = field(default_factory=deque)
    pending_bytes: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closed_reason: str | None = None

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
    """How often to ask etcd how far the stream has come when it is quiet, seconds."""
    too_large_resource_version_wait: float = 3.0
    """How long a watch from a resourceVersion the cache has not reached waits for it, seconds;
    then it fails with "Too large resource version" (a Timeout; retry after 1 s), as
    Kubernetes' watch cache does after 3 s."""
    retry_max: float = 5.0
    """Cap on the backoff between attempts to re-open a broken etcd watch, seconds."""


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

    @property
    def etcd(self) -> Etcd:
        return self.storage.etcd

    async def start(self) -> None:
        current = await self.etcd.current_revision()
        self.start_revision = self.revision = current
        self._task = asyncio.create_task(self._run(), name=f"watch-cache-{self.rtype.plural}")

    async def stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.close("API server shutting down")
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

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
                        self.revision = max(self.revision, watch.revision)
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

    async def _reset(self) -> None:
        for watcher in list(self._watchers):
            watcher.close("watch cache reset after etcd compaction")
        self._watchers.clear()
        self._events.clear()
        self._latest.clear()
        self._bytes = 0
        self.start_revision = self.revision = await self.etcd.current_revision()

    @property
    def held_bytes(self) -> int:
        """Bytes of serialized objects the window holds now (at most ``max_bytes``)."""
        return self._bytes

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            cached = self._cached(event)
            if cached is None:
                continue
            self._events.append(cached)
            self._latest[cached.key] = cached
            self._bytes += cached.size
            for watcher in self._watchers:
                watcher.offer(cached)
            cached.release()
        self.revision = events[-1].kv.mod_revision
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
                    last = event.prev_kv.value
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
            obj = self.storage.decode_value(self.rtype, kv.key, kv.value)
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
                prev_value = with_resource_version(
                    event.prev_kv.value, event.prev_kv.mod_revision
                )
        cached = CachedEvent(
            self.rtype, kv.mod_revision, with_resource_version(kv.value, kv.mod_revision),
            namespace, deleted=False, created=kv.create_revision == kv.mod_revision,
            prev_value=prev_value, key=kv.key,
        )
        cached.keep_decoded(obj)
        return cached

    def _tombstone(self, key: bytes) -> Message:
        """An object with only the name and namespace its key gives."""
        obj = self.rtype.new()
        namespace, _, name = key[len(self.prefix):].decode().rpartition("/")
        obj.metadata.name = name  # type: ignore[attr-defined]
        obj.metadata.namespace = namespace  # type: ignore[attr-defined]
        return obj

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
        """Events after revision ``after``, in order, then live ones until cancelled.

        Yields BOOKMARK items (revision only) whenever the stream is idle and has progressed,
        so clients can resume from a recent version. Raises Expired when ``after`` has been
        compacted away, TooLargeResourceVersion when the cache does not reach ``after`` within
        ``too_large_resource_version_wait``, Unavailable when the stream must be re-established.
        """
        await self.wait_for_revision(after)
        if after < self.start_revision:
            async for item in self._direct(after, namespace, matches):
                yield item
            return
        watcher = _Watcher(
            namespace, matches, self.settings.max_pending_per_watcher, after,
            max_pending_bytes=self.settings.max_bytes,
        )
        for event in self._events:
            watcher.offer(event)
            event.release()
        self._watchers.add(watcher)
        try:
            last = after
            while True:
                if not watcher.pending and watcher.closed_reason is None:
                    watcher.wakeup.clear()
                    try:
                        await asyncio.wait_for(
                            watcher.wakeup.wait(), self.settings.progress_interval
                        )
                    except TimeoutError:
                        pass
                while watcher.pending:
                    item = watcher.take()
                    last = item.revision
                    yield item
                if watcher.closed_reason is not None:
                    raise Unavailable(watcher.closed_reason)
                if self.revision > last:
                    last = self.revision
                    yield WatchItem(BOOKMARK, last, b"")
        finally:
            self._watchers.discard(watcher)

    async def _direct(
        self, after: int, namespace: str, matches: Predicate | None
    ) -> AsyncIterator[WatchItem]:
        """A private etcd watch for a client resuming from before the window."""
        prefix = self.storage.resource_prefix(self.rtype, namespace)
        watch = self.etcd.watch(prefix, prefix_end(prefix), after + 1)
        self.etcd_watches_opened += 1
        progress = asyncio.create_task(self._ask_progress(watch))
        try:
            async for events in watch:
                if not events:
                    yield WatchItem(BOOKMARK, watch.revision, b"")
                    continue
                for event in events:
                    cached = self._cached(event)
                    if cached is None:
                        continue
                    kind = classify(cached, namespace, matches)
                    if kind is not None:
                        yield WatchItem(kind, cached.revision, cached.data)
        except CompactedError as e:
            raise Expired(
                f"too old resource version: {after} ({e.compact_revision})"
            ) from e
        finally:
            progress.cancel()
            watch.cancel()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)


