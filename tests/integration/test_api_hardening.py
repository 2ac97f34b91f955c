"""The API server under hostile or oversized input: bounded memory, corrupt values in etcd,
crafted continue tokens, oversized requests and out-of-range numbers. Real etcd throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from apiserver.server import ApiServer, ApiServerSettings
from kubelite.api import errors
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.test_watch import Collector, configmap


@contextlib.asynccontextmanager
async def serving(settings: ApiServerSettings) -> AsyncIterator[tuple[ApiServer, ApiClient]]:
    server = await start_api_server(settings)
    try:
        async with ApiClient(server.address, timeout=10) as client:
            yield server, client
    finally:
        await server.stop()


# ------------------------------------------------------------ the watch cache's byte bound


async def test_watch_cache_holds_at_most_its_byte_bound_and_watches_still_resume(
    etcd: EtcdProcess,
) -> None:
    settings = server_settings(etcd.endpoint)
    bound = 512 * 1024
    settings = replace(settings, api=replace(
        settings.api, watch_cache=replace(settings.api.watch_cache, max_bytes=bound)))
    async with serving(settings) as (server, client):
        cache = server.api.caches["configmaps"]
        cm = await client.create(configmap("big", v="start"))
        versions = [cm.metadata.resource_version]
        for i in range(40):
            cm.data["v"] = str(i % 10) * 50_000
            cm = await client.update(cm)
            versions.append(cm.metadata.resource_version)
        await cache.wait_for_revision(int(versions[-1]))

        assert 0 < cache.held_bytes <= bound
        assert cache.start_revision > int(versions[0]), "early updates left the window"

        # From inside the window: served by the cache, no etcd watch of its own.
        opened = cache.etcd_watches_opened
        recent = Collector(client.watch(v1.ConfigMap, "default", resource_version=versions[-3]))
        await eventually(lambda: len(recent.changes) == 2, message="the last 2 updates")
        await recent.close()
        assert [e.resource_version for e in recent.changes] == versions[-2:]
        assert cache.etcd_watches_opened == opened

        # From before the window: etcd still has the history, every update arrives in order.
        old = Collector(client.watch(v1.ConfigMap, "default", resource_version=versions[0]))
        await eventually(lambda: len(old.changes) == 40, message="all 40 updates from etcd")
        await old.close()
        assert [e.resource_version for e in old.changes] == versions[1:]
        assert {e.type for e in old.changes} == {"MODIFIED"}
        assert cache.etcd_watches_opened == opened + 1

        # Once etcd compacted that history away, the same watch is Expired.
        await server.etcd.compact(int(versions[-1]))
        gone = Collector(client.watch(v1.ConfigMap, "default", resource_version=versions[0]))
        await eventually(lambda: gone.error is not None, message="Expired")
        await gone.close()
        assert isinstance(gone.error, errors.Expired)


# ------------------------------------------------------------ corrupt values in etcd


async def test_corrupt_values_in_etcd_are_skipped_named_and_stop_nothing(
    api_server: ApiServer, client: ApiClient
) -> None:
    prefix = api_server.settings.api.storage_prefix
    cache = api_server.api.caches["configmaps"]
    fast = InformerSettings(backoff_initial=0.05, backoff_max=0.2)
    namespaces = Informer(client, v1.Namespace, settings=fast)
    labelled = Informer(client, v1.ConfigMap, "default", label_selector="app=web", settings=fast)
    # Known to the server (and its namespace tracker) before anything goes bad.
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="doomed")))
    start = await client.list(v1.ConfigMap, "default")
    plain = Collector(client.watch(v1.ConfigMap, "default",
                                   resource_version=start.resource_version))
    try:
        namespaces.start()
        labelled.start()
        await namespaces.wait_for_sync(5)
        await labelled.wait_for_sync(5)

        await api_server.etcd.put(f"{prefix}/namespaces/evil".encode(), b"garbage")
        await api_server.etcd.put(f"{prefix}/configmaps/default/evil".encode(), b"garbage")
        # A value that decodes, but to another object than its key names.
        impostor = configmap("someone-else").SerializeToString()
        await api_server.etcd.put(f"{prefix}/configmaps/default/impostor".encode(), impostor)

        # Everything after the bad values still flows, to plain and to selector watchers.
        await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="later")))
        web = configmap("web")
        web.metadata.labels["app"] = "web"
        await client.create(web)
        await eventually(lambda: [e.object.metadata.name for e in plain.changes] == ["web"],
                         message="the plain watch past the bad values")
        await eventually(lambda: namespaces.store.get("later") and labelled.store.get(
            "default/web"), message="informers past the bad values")
        assert namespaces.healthy and labelled.healthy
        assert namespaces.store.get("evil") is None

        # Lists skip them; a Get names the key and what is wrong with it.
        names = {n.metadata.name for n in (await client.list(v1.Namespace)).items}
        assert {"doomed", "later"} <= names and "evil" not in names
        listed = await client.list(v1.ConfigMap, "default", page_size=1)
        assert [c.metadata.name for c in listed.items] == ["web"]
        with pytest.raises(errors.InternalError, match=f"{prefix}/namespaces/evil"):
            await client.get(v1.Namespace, "evil")
        with pytest.raises(errors.InternalError, match="someone-else"):
            await client.get(v1.ConfigMap, "impostor")

        # The server's own namespace tracking survived: a terminating namespace takes nothing.
        await client.delete(v1.Namespace, "doomed")
        with pytest.raises(errors.Forbidden, match="being terminated"):
            await client.create(configmap("late"), "doomed")

        # A watch from before the bad values, served by a private etcd watch, skips them too.
        cache.start_revision = 10**12
        replay = Collector(client.watch(v1.ConfigMap, "default",
                                        resource_version=start.resource_version))
        await eventually(lambda: replay.changes, message="the replay")
        await replay.close()
        assert [e.object.metadata.name for e in replay.changes] == ["web"]
        assert replay.error is None
    finally:
        await plain.close()
        await namespaces.stop()
        await labelled.stop()
