"""The watch cache's per-watcher rules, on hand-made events."""

from __future__ import annotations

from aetcd.rpc.kv_pb2 import Event, KeyValue

from apiserver.storage import Storage
from apiserver.watch_cache import (
    ADDED,
    DELETED,
    MODIFIED,
    CachedEvent,
    ResourceWatchCache,
    WatchCacheSettings,
    _Watcher,
    classify,
)
from kubelite.api.registry import by_kind
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


def test_selector_transitions_are_added_modified_deleted() -> None:
    def web(obj: object) -> bool:
        return obj.metadata.labels.get("app") == "web"  # type: ignore[attr-defined]

    assert classify(event(1, {"app": "web"}), "", web) == ADDED
    assert classify(event(2, {"app": "web"}, {"app": "web"}), "", web) == MODIFIED
    assert classify(event(3, {"app": "db"}, {"app": "web"}), "", web) == DELETED
    assert classify(event(4, {"app": "web"}, {"app": "db"}), "", web) == ADDED
    assert classify(event(5, {"app": "db"}, {"app": "db"}), "", web) is None
    assert classify(event(6, {"app": "web"}, {"app": "web"}, deleted=True), "", web) == DELETED


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
    web = _Watcher("", lambda o: o.metadata.labels.get("app") == "web", 10, after=0)
    web.offer(deleted)
    assert [i.type for i in web.pending] == [DELETED]


def test_decoded_objects_are_dropped_once_every_watcher_had_the_event() -> None:
    c = cache()
    web = _Watcher("", lambda o: o.metadata.labels.get("app") == "web", 10, after=0)
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
    web = _Watcher("", lambda o: o.metadata.labels.get("app") == "web", 10, after=0)
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
