"""The API server under hostile or oversized input: bounded memory, corrupt values in etcd,
crafted continue tokens, oversized requests and out-of-range numbers. Real etcd throughout."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from apiserver.server import ApiServer, ApiServerSettings
from kubelite.api import errors
from kubelite.client.client import ApiClient
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
