"""Watches from before a new API server's watch cache window (as every informer's after a
restart) replay from etcd only until they reach the window, then the cache serves them: no
gap, no duplicate, the same filtering, and no etcd watch or admission slot of their own left."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator

from apiserver.inflight import InflightSettings
from apiserver.server import ApiServer, ApiServerSettings
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Collector

ETCD_WATCHERS = "etcd_debugging_mvcc_watcher_total"


def configmap(name: str, namespace: str, app: str, **data: str) -> v1.ConfigMap:
    return v1.ConfigMap(
        metadata=v1.ObjectMeta(name=name, namespace=namespace, labels={"app": app}), data=data
    )


@dataclasses.dataclass
class Change:
    type: str
    namespace: str
    name: str
    app: str
    before: str | None
    """The app label before the change (None: there was no object)."""
    revision: int | None
    """Its resourceVersion (None for a delete, whose revision the API does not return)."""


class Writer:
    """Creates, relabels and deletes ConfigMaps in two namespaces and keeps what it wrote."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.changes: list[Change] = []
        self._live: dict[tuple[str, str], v1.ConfigMap] = {}
        self._names = itertools.count()

    async def step(self) -> None:
        i = next(self._names)
        namespace = ("default", "other")[i % 2]
        app = ("web", "db")[i % 3 % 2]
        created = await self.client.create(configmap(f"cm-{i}", namespace, app, v="0"))
        self._record("ADDED", created, None)
        self._live[(namespace, created.metadata.name)] = created
        if i % 3 == 1:
            # Moves it across the app=web selector: in or out.
            old = self._live[(namespace, created.metadata.name)]
            changed = v1.ConfigMap()
            changed.CopyFrom(old)
            changed.metadata.labels["app"] = "web" if old.metadata.labels["app"] == "db" else "db"
            updated = await self.client.update(changed)
            self._record("MODIFIED", updated, old.metadata.labels["app"])
            self._live[(namespace, created.metadata.name)] = updated
        if i % 4 == 3:
            victim = self._live.pop((namespace, created.metadata.name))
            await self.client.delete(v1.ConfigMap, victim.metadata.name, namespace)
            self.changes.append(Change(
                "DELETED", namespace, victim.metadata.name, victim.metadata.labels["app"],
                victim.metadata.labels["app"], None,
            ))

    def _record(self, kind: str, obj: v1.ConfigMap, before: str | None) -> None:
        self.changes.append(Change(
            kind, obj.metadata.namespace, obj.metadata.name, obj.metadata.labels["app"], before,
            int(obj.metadata.resource_version),
        ))

    def seen_by(
        self, namespace: str, app: str | None
    ) -> list[tuple[str, str, int | None]]:
        """What a watch from before every change in ``namespace`` ("" all) with selector
        app=``app`` (None: no selector) must deliver, with Kubernetes' selector transitions."""
        out: list[tuple[str, str, int | None]] = []
        for c in self.changes:
            if namespace and c.namespace != namespace:
                continue
            kind: str | None = c.type
            if app is not None:
                now = c.type != "DELETED" and c.app == app
                before = c.before == app
                kind = "MODIFIED" if now and before else "ADDED" if now else (
                    "DELETED" if before else None)
            if kind is not None:
                out.append((kind, c.name, c.revision))
        return out


def delivered(watch: Collector) -> list[tuple[str, str, int | None]]:
    """The changes a watch delivered, checked to be in strictly increasing revision order (no
    duplicate), with deletes' revisions left out as in Writer.changes."""
    versions = [int(e.resource_version) for e in watch.changes]
    assert versions == sorted(set(versions)), "out of order or duplicated"
    out: list[tuple[str, str, int | None]] = []
    for e in watch.changes:
        assert e.object is not None
        revision = None if e.type == "DELETED" else int(e.resource_version)
        out.append((e.type, e.object.metadata.name, revision))
    return out


def restarted_settings(etcd: EtcdProcess, **limits: int) -> ApiServerSettings:
    settings = server_settings(etcd.endpoint, prefix=f"/test-handover-{uuid.uuid4().hex[:8]}")
    return dataclasses.replace(settings, inflight=InflightSettings(**limits))


@contextlib.asynccontextmanager
async def restarted(
    settings: ApiServerSettings, before_restart: int = 0
) -> AsyncIterator[tuple[ApiServer, ApiClient, Writer, int]]:
    """A server whose watch cache window starts after ``old`` (a version from a previous
    server on the same storage), a client on it and a writer that wrote ``before_restart``
    steps through the previous server after ``old``."""
    first = await start_api_server(settings)
    try:
        async with ApiClient(first.address) as c:
            await c.create(v1.Namespace(metadata=v1.ObjectMeta(name="other")))
            old = int((await c.list(v1.ConfigMap)).resource_version)
            writer = Writer(c)
            for _ in range(before_restart):
                await writer.step()
    finally:
        await first.stop()
    server = await start_api_server(settings)
    try:
        assert old < server.api.caches["configmaps"].start_revision
        async with ApiClient(server.address, timeout=20) as client:
            writer.client = client
            yield server, client, writer, old
    finally:
        await server.stop()


async def test_watches_from_before_the_window_hand_over_to_the_cache_without_gap_or_duplicate(
    etcd: EtcdProcess,
) -> None:
    async with restarted(restarted_settings(etcd), before_restart=20) as (
        server, client, writer, old
    ):
        cache = server.api.caches["configmaps"]
        baseline = etcd.metrics()[ETCD_WATCHERS]
        stop = asyncio.Event()

        async def write_until_stopped() -> None:
            while not stop.is_set():
                await writer.step()

        writing = asyncio.create_task(write_until_stopped(), name="writer")
        watches = {
            ("default", None): Collector(
                client.watch(v1.ConfigMap, "default", resource_version=str(old))),
            ("", None): Collector(client.watch(v1.ConfigMap, resource_version=str(old))),
            ("default", "web"): Collector(client.watch(
                v1.ConfigMap, "default", label_selector="app=web", resource_version=str(old))),
            ("", "web"): Collector(client.watch(
                v1.ConfigMap, label_selector="app=web", resource_version=str(old))),
        }
        try:
            # Writes go on while the watches replay and then switch to the cache.
            await eventually(lambda: server.admission.in_flight["uncached-watch"] == 0
                             and server.admission.in_flight["long-running"] == 4, timeout=20,
                             message="all 4 watches served by the cache")
            await eventually(lambda: len(writer.changes) > 60 + 20 * 3, timeout=20,
                             message="writes after the handover")
        finally:
            stop.set()
            await writing
        for (namespace, app), watch in watches.items():
            expected = writer.seen_by(namespace, app)
            await eventually(
                lambda w=watch, x=expected: len(w.changes) >= len(x),  # type: ignore[misc]
                message=f"watch {namespace or '*'}/{app} reached the last write",
            )
        for (namespace, app), watch in watches.items():
            await watch.close()
            assert watch.error is None
            assert delivered(watch) == writer.seen_by(namespace, app), (namespace, app)
            versions = [int(e.resource_version) for e in watch.events]
            assert versions == sorted(versions), "bookmarks in order with the events"

        # Caught up, the watches held no etcd watch and no uncached slot of their own.
        assert (cache.handovers, cache.private_watches) == (4, 0)
        assert etcd.metrics()[ETCD_WATCHERS] <= baseline


async def test_quiet_resource_watch_from_before_the_window_hands_over(etcd: EtcdProcess) -> None:
    """Nothing written since the restart: no event to meet the window with, yet it switches."""
    async with restarted(restarted_settings(etcd), before_restart=6) as (
        server, client, writer, old
    ):
        cache = server.api.caches["configmaps"]
        baseline = etcd.metrics()[ETCD_WATCHERS]
        watch = Collector(client.watch(v1.ConfigMap, "default", resource_version=str(old)))
        await eventually(lambda: len(watch.changes) == len(writer.seen_by("default", None)),
                         message="the replay")
        await eventually(lambda: server.admission.in_flight["uncached-watch"] == 0,
                         message="the watch switched to the cache")
        assert (cache.handovers, cache.private_watches, cache.watcher_count) == (1, 0, 1)
        await eventually(lambda: etcd.metrics()[ETCD_WATCHERS] <= baseline,
                         message="its etcd watch closed")
        await writer.step()
        await eventually(lambda: delivered(watch) == writer.seen_by("default", None),
                         message="a live event from the cache")
        await watch.close()
        assert watch.error is None


async def test_more_old_watches_than_uncached_slots_are_all_established(
    etcd: EtcdProcess,
) -> None:
    async with restarted(restarted_settings(etcd, max_uncached_watches=2), before_restart=4) as (
        server, client, writer, old
    ):
        cache = server.api.caches["configmaps"]
        watches = [
            Collector(client.watch(v1.ConfigMap, "default", resource_version=str(old)))
            for _ in range(10)
        ]
        try:
            expected = writer.seen_by("default", None)
            await eventually(lambda: all(delivered(w) == expected for w in watches), timeout=30,
                             message="all 10 replayed")
            await eventually(lambda: cache.watcher_count == 10, timeout=30,
                             message="all 10 served by the cache")
            await writer.step()
            await writer.step()
            expected = writer.seen_by("default", None)
            await eventually(lambda: all(delivered(w) == expected for w in watches), timeout=30,
                             message="all 10 get new events")
            assert server.admission.rejected["uncached-watch"] > 0, "the limit did refuse some"
            assert server.admission.in_flight["uncached-watch"] == 0
            assert cache.private_watches == 0
            assert all(w.error is None for w in watches)
        finally:
            for w in watches:
                await w.close()
