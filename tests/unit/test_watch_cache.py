"""The watch cache's per-watcher rules, on hand-made events."""

from __future__ import annotations

from apiserver.watch_cache import ADDED, DELETED, MODIFIED, CachedEvent, _Watcher, classify
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
