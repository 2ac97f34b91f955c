"""The watch cache's per-watcher rules, on hand-made events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aetcd.rpc.kv_pb2 import Event, KeyValue
from aetcd.rpc.rpc_pb2 import PutResponse, ResponseHeader

from apiserver.etcd import CompactedError
from apiserver.storage import Storage
from apiserver.watch_cache import (
    ADDED,
    BOOKMARK,
    DELETED,
    MODIFIED,
    CachedEvent,
    ResourceWatchCache,
    WatchCacheSettings,
    WatchItem,
    _Watcher,
    classify,
)
from kubelite.api.errors import Expired, TooManyRequests
from kubelite.api.registry import by_kind
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

CONFIGMAPS = by_kind("ConfigMap")


def event(revision: int, labels: dict[str, str], prev: dict[str, str] | None = None,
          *, deleted: bool = False, namespace: str = "default") -> CachedEvent:
    def data(lbls: dict[str, str]) -> bytes:
        return v1.ConfigMap(metadata=v1.ObjectMeta(
            name="x", namespace=namespace, labels=lbls, resource_version=str(revision),
        )).SerializeToString()

    return CachedEvent(CONFIGMAPS, revision, data(labels), namespace, deleted=deleted,
                       created=prev is None and not deleted,
                       prev_value=data(prev) if prev is not None else None)


def test_watcher_never_gets_events_its_client_already_listed() -> None:
    watcher = _Watcher("", None, 100, after=10)
    for revision in (9, 10, 11):
        watcher.offer(event(revision, {}))
    assert [item.revision for item in watcher.pending] == [11]


def is_web(obj: Any) -> bool:
    return bool(obj.metadata.labels.get("app") == "web")


def test_selector_transitions_are_added_modified_deleted() -> None:
    assert classify(event(1, {"app": "web"}), "", is_web) == ADDED
    assert classify(event(2, {"app": "web"}, {"app": "web"}), "", is_web) == MODIFIED
    assert classify(event(3, {"app": "db"}, {"app": "web"}), "", is_web) == DELETED
    assert classify(event(4, {"app": "web"}, {"app": "db"}), "", is_web) == ADDED
    assert classify(event(5, {"app": "db"}, {"app": "db"}), "", is_web) is None
    assert classify(event(6, {"app": "web"}, {"app": "web"}, deleted=True), "", is_web) == DELETED


def test_namespace_filter_uses_the_key_not_a_decode() -> None:
    assert classify(event(1, {}, namespace="other"), "default", None) is None
    assert classify(event(1, {}, namespace="default"), "default", None) == ADDED


def test_slow_watcher_is_closed_not_buffered_forever() -> None:
    watcher = _Watcher("", None, 2, after=0)
    for revision in (1, 2, 3):
        watcher.offer(event(revision, {}))
    assert watcher.closed_reason == "watcher fell too far behind"
    assert len(watcher.pending) == 2


def etcd_event(key: str, value: bytes, revision: int, *, created: int,
               prev: tuple[bytes, int] | None = None, delete: bool = False) -> Event:
    """An etcd watch event as the cache receives it (prev_kv included when there was one)."""
    kv = KeyValue(key=key.encode(), value=b"" if delete else value, mod_revision=revision,
                  create_revision=0 if delete else created)
    ev = Event(type=Event.DELETE if delete else Event.PUT, kv=kv)
    if prev is not None:
        ev.prev_kv.CopyFrom(KeyValue(key=key.encode(), value=prev[0], mod_revision=prev[1],
                                     create_revision=created))
    return ev


def stored(name: str, size: int = 0, labels: dict[str, str] | None = None) -> bytes:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, namespace="default",
                                               labels=labels or {}),
                        data={"d": "x" * size}).SerializeToString()


def cache(**settings: int) -> ResourceWatchCache:
    return ResourceWatchCache(Storage(None, "/registry"),  # type: ignore[arg-type]
                              CONFIGMAPS, WatchCacheSettings(**settings))


def test_window_is_bounded_by_bytes_not_only_by_event_count() -> None:
    c = cache(capacity=10_000, max_bytes=100_000)
    key = "/registry/configmaps/default/big"
    value = stored("big", 10_000)
    c._apply([etcd_event(key, value, 2, created=2)])
    for revision in range(3, 103):
        c._apply([etcd_event(key, value, revision, created=2, prev=(value, revision - 1))])
    assert 0 < c.held_bytes <= 100_000
    # Only the newest events stay; the window is still contiguous up to the last one.
    assert c.revision == 102
    assert c.start_revision > 90
    assert [e.revision for e in c._events] == list(range(c.start_revision + 1, 103))


def test_event_larger_than_the_bound_leaves_an_empty_window_after_it() -> None:
    c = cache(max_bytes=1_000)
    c._apply([etcd_event("/registry/configmaps/default/huge", stored("huge", 5_000), 7,
                         created=7)])
    assert c.held_bytes == 0
    assert c.start_revision == c.revision == 7


def test_previous_state_is_shared_with_the_event_that_wrote_it() -> None:
    c = cache()
    key = "/registry/configmaps/default/a"
    first, second = stored("a", 1_000), stored("a", 2_000)
    c._apply([etcd_event(key, first, 2, created=2)])
    c._apply([etcd_event(key, second, 3, created=2, prev=(first, 2))])
    older, newer = c._events
    assert newer._prev_value is older.data, "the previous state is not a second copy"


def test_delete_keeps_one_copy_of_the_last_state() -> None:
    c = cache()
    key = "/registry/configmaps/default/a"
    value = stored("a", 1_000, {"app": "web"})
    c._apply([etcd_event(key, b"", 5, created=0, prev=(value, 4), delete=True)])
    (deleted,) = c._events
    assert deleted._prev_value is None
    assert c.held_bytes == len(deleted.data)
    # A selector still sees the object leave.
    web = _Watcher("", is_web, 10, after=0)
    web.offer(deleted)
    assert [i.type for i in web.pending] == [DELETED]


def test_decoded_objects_are_dropped_once_every_watcher_had_the_event() -> None:
    c = cache()
    web = _Watcher("", is_web, 10, after=0)
    c._watchers.add(web)
    key = "/registry/configmaps/default/a"
    first, second = stored("a", 10, {"app": "web"}), stored("a", 20, {"app": "db"})
    c._apply([etcd_event(key, first, 2, created=2)])
    c._apply([etcd_event(key, second, 3, created=2, prev=(first, 2))])
    assert [i.type for i in web.pending] == [ADDED, DELETED]
    assert all(e._obj is None and e._prev is None for e in c._events)


def test_slow_watcher_is_closed_when_its_backlog_passes_the_byte_bound() -> None:
    watcher = _Watcher("", None, 100, after=0, max_pending_bytes=5_000)
    for revision in range(1, 10):
        watcher.offer(event(revision, {"pad": "x" * 1_000}))
    assert watcher.closed_reason == "watcher fell too far behind"
    assert watcher.pending_bytes <= 5_000


def test_corrupt_values_are_skipped_and_the_window_goes_on() -> None:
    c = cache()
    web = _Watcher("", is_web, 10, after=0)
    everything = _Watcher("", None, 10, after=0)
    c._watchers.update((web, everything))
    good = stored("a", 10, {"app": "web"})
    c._apply([
        etcd_event("/registry/configmaps/default/bad", b"garbage", 2, created=2),
        etcd_event("/registry/configmaps/default/other", stored("a"), 3, created=3),
        etcd_event("/registry/configmaps/default/a", good, 4, created=4),
        etcd_event("/registry/configmaps/default/bad", b"", 5, created=0,
                   prev=(b"garbage", 2), delete=True),
    ])
    assert c.revision == 5
    assert [e.revision for e in c._events] == [4]
    assert [(i.type, i.revision) for i in web.pending] == [(ADDED, 4)]
    assert [(i.type, i.revision) for i in everything.pending] == [(ADDED, 4)]


def test_delete_without_its_last_state_names_the_object_from_its_key() -> None:
    c = cache()
    watcher = _Watcher("", None, 10, after=0)
    c._watchers.add(watcher)
    c._apply([etcd_event("/registry/configmaps/default/gone", b"", 9, created=0, delete=True)])
    (item,) = watcher.pending
    obj = v1.ConfigMap.FromString(item.data)
    assert (item.type, obj.metadata.namespace, obj.metadata.name) == (DELETED, "default", "gone")
    assert obj.metadata.resource_version == "9"


# ------------------------------------------------------------ replay, then the cache


class FakeEtcdWatch:
    """An etcd watch of FakeEtcd: its history from the start revision in batches, then live."""

    def __init__(self, etcd: FakeEtcd, key: bytes, range_end: bytes, start: int) -> None:
        self.key, self.range_end, self.start = key, range_end, start
        self.batches: asyncio.Queue[list[Event] | BaseException | None] = asyncio.Queue()
        self.cancelled = False
        self.revision = start - 1
        history = [e for e in etcd.history if self.covers(e) and e.kv.mod_revision >= start]
        while history:
            # As etcd: batches end at a revision boundary.
            end = min(len(history), etcd.batch_events)
            while (end < len(history)
                   and history[end].kv.mod_revision == history[end - 1].kv.mod_revision):
                end += 1
            self.batches.put_nowait(history[:end])
            history = history[end:]

    def covers(self, event: Event) -> bool:
        key: bytes = event.kv.key
        return self.key <= key < self.range_end

    def request_progress(self) -> None:
        raise AssertionError("a replay must not rely on progress notifications")

    def cancel(self) -> None:
        self.cancelled = True
        self.batches.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[list[Event]]:
        return self._events()

    async def _events(self) -> AsyncIterator[list[Event]]:
        while True:
            batch = await self.batches.get()
            if batch is None:
                return
            if isinstance(batch, BaseException):
                raise batch
            self.revision = batch[-1].kv.mod_revision
            yield batch


class FakeEtcd:
    """History and watches for the replay path (the cache's own watch is not started: tests
    feed its window with ``_apply``)."""

    def __init__(self, batch_events: int = 1000) -> None:
        self.batch_events = batch_events
        self.history: list[Event] = []
        self.revision = 1
        self.watches: list[FakeEtcdWatch] = []
        self.puts: list[tuple[bytes, int]] = []

    def write(self, *events: Event) -> list[Event]:
        """Events of one new revision each (or all of one txn when they share one)."""
        for e in events:
            self.revision = max(self.revision, e.kv.mod_revision)
            self.history.append(e)
        for w in self.watches:
            mine = [e for e in events if w.covers(e)]
            if mine and not w.cancelled:
                w.batches.put_nowait(mine)
        return list(events)

    def watch(self, key: bytes, range_end: bytes, start_revision: int) -> FakeEtcdWatch:
        w = FakeEtcdWatch(self, key, range_end, start_revision)
        self.watches.append(w)
        return w

    async def put(self, key: bytes, value: bytes) -> PutResponse:
        self.revision += 1
        self.puts.append((key, self.revision))
        self.write(Event(type=Event.PUT, kv=KeyValue(
            key=key, value=value, mod_revision=self.revision, create_revision=self.revision)))
        return PutResponse(header=ResponseHeader(revision=self.revision))

    async def current_revision(self) -> int:
        return self.revision


class Slots:
    """The admission's side: how many private-watch places are taken, and a limit."""

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.taken = 0
        self.released = 0

    def take(self) -> Callable[[], None]:
        if self.taken - self.released >= self.limit:
            raise TooManyRequests("full", retry_after_seconds=1)
        self.taken += 1
        done = False

        def release() -> None:
            nonlocal done
            assert not done, "released twice"
            done = True
            self.released += 1

        return release

    @property
    def held(self) -> int:
        return self.taken - self.released


def cm_key(name: str, namespace: str = "default") -> str:
    return f"/registry/configmaps/{namespace}/{name}"


def put(etcd: FakeEtcd, name: str, revision: int, *, namespace: str = "default",
        labels: dict[str, str] | None = None, prev: tuple[bytes, int] | None = None) -> Event:
    value = v1.ConfigMap(metadata=v1.ObjectMeta(
        name=name, namespace=namespace, labels=labels or {})).SerializeToString()
    return etcd_event(cm_key(name, namespace), value, revision,
                      created=prev[1] if prev else revision, prev=prev)


def restarted_cache(etcd: FakeEtcd, start: int, slots: Slots | None = None,
                    **settings: Any) -> ResourceWatchCache:
    """A cache whose window begins at ``start`` (as after an API server restart there)."""
    c = ResourceWatchCache(Storage(etcd, "/registry"),  # type: ignore[arg-type]
                           CONFIGMAPS, WatchCacheSettings(**settings))
    c.start_revision = c.revision = start
    if slots is not None:
        c.take_private_watch_slot = slots.take
    return c


def into_window(c: ResourceWatchCache, etcd: FakeEtcd, *events: Event) -> None:
    """A write reaches etcd and the cache's own watch."""
    c._apply(etcd.write(*events))


async def items(stream: AsyncIterator[WatchItem], count: int) -> list[tuple[str, int]]:
    got = []
    for _ in range(count):
        item = await asyncio.wait_for(anext(stream), 5)
        got.append((item.type, item.revision))
    return got


async def test_replay_hands_over_where_it_meets_the_window_without_gap_or_duplicate() -> None:
    etcd = FakeEtcd(batch_events=3)
    slots = Slots()
    etcd.write(put(etcd, "a", 2))
    etcd.write(put(etcd, "b", 3))
    c = restarted_cache(etcd, start=3, slots=slots)
    # In the window too: a txn of two keys at 4, then 5.
    into_window(c, etcd, put(etcd, "c", 4), put(etcd, "d", 4))
    into_window(c, etcd, put(etcd, "e", 5))

    stream = c.watch(1, "default", None)
    assert await items(stream, 1) == [(ADDED, 2)]
    assert (slots.held, c.private_watches, c.watcher_count) == (1, 1, 0)
    (replay,) = etcd.watches
    assert (replay.key, replay.range_end) == (c.prefix, c.fence_key + b"\0")

    # The first batch, [2, 3, 4, 4] (etcd never splits a revision), reaches into the window:
    # the cache takes over after it, at 4, so the window's 4s are not sent again; 5 comes
    # from the window.
    assert await items(stream, 4) == [(ADDED, 3), (ADDED, 4), (ADDED, 4), (ADDED, 5)]
    assert replay.cancelled
    assert (slots.held, slots.taken, c.private_watches, c.handovers) == (0, 1, 0, 1)
    assert c.watcher_count == 1
    into_window(c, etcd, put(etcd, "f", 6))
    assert await items(stream, 1) == [(ADDED, 6)]
    assert len(etcd.watches) == 1 and etcd.puts == [], "no other etcd watch, no fence needed"
    await stream.aclose()  # type: ignore[attr-defined]
    assert c.watcher_count == 0


async def test_quiet_resource_replay_catches_up_at_a_fence_written_once_for_all() -> None:
    etcd = FakeEtcd()
    slots = Slots()
    etcd.write(put(etcd, "a", 2))
    etcd.revision = 9  # other resources moved on; nothing of this one since 2
    c = restarted_cache(etcd, start=9, slots=slots)

    first, second = c.watch(1, "default", None), c.watch(0, "", None)
    assert await items(first, 1) == [(ADDED, 2)]
    assert await items(second, 1) == [(ADDED, 2)]
    # The window has no event to meet: one write of the fence key serves both replays, which
    # take over there (it is no event for them).
    waiting = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
    await eventually(lambda: c.handovers == 2, message="both replays handed over")
    assert etcd.puts == [(c.fence_key, 10)]
    assert not c.fence_key.startswith(c.prefix), "lists and the cache's own watch never see it"
    assert (slots.held, c.private_watches, c.watcher_count) == (0, 0, 2)
    assert all(w.cancelled for w in etcd.watches)
    into_window(c, etcd, put(etcd, "b", 11))
    done = [await asyncio.wait_for(w, 5) for w in waiting]
    assert [(i.type, i.revision) for i in done] == [(ADDED, 11)] * 2
    for s in (first, second):
        await s.aclose()  # type: ignore[attr-defined]
    await c.stop()


async def test_replay_filters_like_the_cache() -> None:
    """Namespace and selector rules are the same before and after the handover, and events
    of other namespaces are not even decoded."""
    etcd = FakeEtcd(batch_events=1)
    web = {"app": "web"}
    history = [
        put(etcd, "a", 2, labels=web),
        put(etcd, "a", 3, labels={"app": "db"}, prev=(stored("a", labels=web), 2)),
        etcd_event(cm_key("x", "other"), b"not a configmap", 4, created=4),
        put(etcd, "b", 5, labels={"app": "db"}),
        put(etcd, "b", 6, labels=web, prev=(stored("b", labels={"app": "db"}), 5)),
        etcd_event(cm_key("b"), b"", 7, created=0, prev=(stored("b", labels=web), 6),
                   delete=True),
    ]
    etcd.write(*history[:4])
    c = restarted_cache(etcd, start=5)
    into_window(c, etcd, history[4])
    into_window(c, etcd, history[5])

    expected = _Watcher("default", is_web, 100, after=1)
    for e in history:
        cached = c._cached(e)
        if cached is not None:
            expected.offer(cached)
    want = [(i.type, i.revision) for i in expected.pending]
    assert want == [(ADDED, 2), (DELETED, 3), (ADDED, 6), (DELETED, 7)]

    decoded: list[bytes] = []
    decode = c.storage.decode_value

    def counting(rtype: Any, key: bytes, value: bytes) -> Any:
        decoded.append(key)
        return decode(rtype, key, value)

    c.storage.decode_value = counting  # type: ignore[method-assign]
    stream = c.watch(1, "default", is_web)
    got = await items(stream, 5)
    assert [(t, r) for t, r in got if t != BOOKMARK] == want
    assert (BOOKMARK, 4) in got, "the other namespace's change moved it on"
    assert c.handovers == 1
    assert all(b"/other/" not in key for key in decoded)
    await stream.aclose()  # type: ignore[attr-defined]


async def test_replay_refused_a_slot_opens_no_etcd_watch() -> None:
    etcd = FakeEtcd()
    slots = Slots(limit=1)
    etcd.write(put(etcd, "a", 2))
    c = restarted_cache(etcd, start=5, slots=slots)
    c._events.append(c._cached(put(etcd, "w", 6)))  # type: ignore[arg-type]  # a non-empty window
    held = c.watch(1, "default", None)
    assert await items(held, 1) == [(ADDED, 2)]
    with pytest.raises(TooManyRequests):
        await anext(c.watch(1, "default", None))
    assert (len(etcd.watches), c.private_watches, slots.held) == (1, 1, 1)
    # A client that goes away mid-replay gives its etcd watch and its slot back.
    await held.aclose()  # type: ignore[attr-defined]
    assert etcd.watches[0].cancelled
    assert (c.private_watches, slots.held, c.handovers) == (0, 0, 0)


async def test_replay_from_compacted_history_is_expired_and_gives_its_slot_back() -> None:
    etcd = FakeEtcd()
    slots = Slots()
    c = restarted_cache(etcd, start=5, slots=slots)
    c._events.append(c._cached(put(etcd, "w", 6)))  # type: ignore[arg-type]
    stream = c.watch(1, "default", None)
    pending = asyncio.ensure_future(anext(stream))
    await eventually(lambda: etcd.watches, message="the replay's etcd watch")
    etcd.watches[0].batches.put_nowait(CompactedError(4))
    with pytest.raises(Expired, match="too old resource version: 1"):
        await pending
    assert (c.private_watches, slots.held) == (0, 0)


async def test_progress_wakes_only_idle_watchers_that_are_behind() -> None:
    """Bookmarks come from the cache's one progress timer; watchers keep no timer each."""
    etcd = FakeEtcd()
    c = restarted_cache(etcd, start=5, progress_interval=3600.0)
    streams = [c.watch(5, "", None) for _ in range(3)]
    waiting = [asyncio.ensure_future(anext(s)) for s in streams]
    await eventually(lambda: c.watcher_count == 3, message="3 watchers")
    assert not any(w.done() for w in waiting)
    c._progress(8)
    done = [await asyncio.wait_for(w, 5) for w in waiting]
    assert [(i.type, i.revision) for i in done] == [(BOOKMARK, 8)] * 3
    # Nothing new: a progress at the same revision wakes nobody.
    for watcher in c._watchers:
        watcher.wakeup.clear()
    c._progress(8)
    woken = [w for w in c._watchers if w.wakeup.is_set()]
    assert woken == []
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]
