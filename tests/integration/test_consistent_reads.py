"""Consistent reads from the watch cache against a real etcd: a read after a write sees it,
whichever API server took the write, and the cache is only used when it can show it has
caught up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from apiserver.etcd import Etcd
from apiserver.server import ApiServer
from apiserver.watch_cache import NOT_CACHED
from kubelite.api import errors
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import configmap


@pytest.fixture
async def two_servers(etcd: EtcdProcess) -> AsyncIterator[tuple[ApiServer, ApiServer]]:
    prefix = f"/test-{uuid.uuid4().hex[:12]}"
    a = await start_api_server(server_settings(etcd.endpoint, prefix=prefix))
    b = await start_api_server(server_settings(etcd.endpoint, prefix=prefix))
    yield a, b
    await asyncio.gather(a.stop(), b.stop())


async def test_a_read_on_one_server_sees_a_write_just_made_through_another(
    two_servers: tuple[ApiServer, ApiServer],
) -> None:
    a, b = two_servers
    async with ApiClient(a.address) as writer, ApiClient(b.address) as reader:
        for i in range(30):
            written = await writer.create(configmap(f"ryw-{i}", v="0"))
            read = await reader.get(v1.ConfigMap, f"ryw-{i}")
            assert read.metadata.resource_version == written.metadata.resource_version
            written.data["v"] = "1"
            updated = await writer.update(written)
            read = await reader.get(v1.ConfigMap, f"ryw-{i}")
            assert read.data["v"] == "1"
            assert read.metadata.resource_version == updated.metadata.resource_version
            await writer.delete(v1.ConfigMap, f"ryw-{i}")
            with pytest.raises(errors.NotFound, match=f'configmaps "ryw-{i}" not found'):
                await reader.get(v1.ConfigMap, f"ryw-{i}")


async def test_reads_are_served_from_the_cache_once_it_has_caught_up(
    api_server: ApiServer, client: ApiClient,
) -> None:
    cache = api_server.api.caches["configmaps"]
    await asyncio.gather(*(client.create(configmap(f"cached-{i}")) for i in range(20)))
    before = cache.cached_reads
    got = await asyncio.gather(*(client.get(v1.ConfigMap, f"cached-{i}") for i in range(20)))
    assert [g.metadata.name for g in got] == [f"cached-{i}" for i in range(20)]
    assert cache.cached_reads - before == 20
    # Reads that arrive together share the requests for etcd's revision. Over gRPC a loaded
    # server may take them up one at a time, so they are issued here in the same loop pass.
    requests = api_server.api.current_revision.requests
    await asyncio.gather(*(api_server.api.get_serialized(cache.rtype, "default", f"cached-{i}")
                           for i in range(20)))
    assert api_server.api.current_revision.requests - requests < 20


async def test_without_proof_of_catching_up_the_read_goes_to_etcd(
    api_server: ApiServer, client: ApiClient,
) -> None:
    """Someone else wrote last (another API server; here a plain etcd client): the
    configmaps' cache has no event at etcd's current revision. Where progress notifications
    cannot be trusted, it is not waited for."""
    cache = api_server.api.caches["configmaps"]
    await client.create(configmap("quiet"))
    other = Etcd(api_server.settings.etcd)
    try:
        await other.put(b"/elsewhere/written-by-another-client", b"x")
    finally:
        await other.close()
    cache.trust_progress = False
    before = cache.etcd_reads
    assert (await client.get(v1.ConfigMap, "quiet")).metadata.name == "quiet"
    assert cache.etcd_reads == before + 1
    cache.trust_progress = True  # a progress notification then shows it has caught up
    before = cache.cached_reads
    assert (await client.get(v1.ConfigMap, "quiet")).metadata.name == "quiet"
    assert cache.cached_reads == before + 1


async def test_the_servers_own_write_elsewhere_shows_the_cache_has_caught_up(
    api_server: ApiServer, client: ApiClient,
) -> None:
    """This server wrote another resource last: it knows that revision changed no ConfigMap,
    so the read is served from the cache with no progress notification to trust."""
    cache = api_server.api.caches["configmaps"]
    await client.create(configmap("quiet"))
    await client.create(v1.Secret(metadata=v1.ObjectMeta(name="later", namespace="default")))
    cache.trust_progress = False
    etcd_reads, cached_reads = cache.etcd_reads, cache.cached_reads
    assert (await client.get(v1.ConfigMap, "quiet")).metadata.name == "quiet"
    assert (cache.etcd_reads, cache.cached_reads) == (etcd_reads, cached_reads + 1)
    # Its own write of a ConfigMap proves nothing beyond itself: the read waits for its event.
    written = await client.create(configmap("fresh"))
    read = await client.get(v1.ConfigMap, "fresh")
    assert read.metadata.resource_version == written.metadata.resource_version


async def test_a_restarted_server_loads_every_object_into_its_cache(
    etcd: EtcdProcess,
) -> None:
    settings = server_settings(etcd.endpoint, prefix=f"/test-{uuid.uuid4().hex[:12]}")
    first = await start_api_server(settings)
    try:
        async with ApiClient(first.address) as client:
            for i in range(5):
                await client.create(configmap(f"kept-{i}"))
    finally:
        await first.stop()
    second = await start_api_server(settings)
    try:
        cache = second.api.caches["configmaps"]
        for i in range(5):
            key = second.storage.key(cache.rtype, "default", f"kept-{i}")
            data = await cache.read(key, cache.complete_revision)
            assert isinstance(data, bytes)
            assert v1.ConfigMap.FromString(data).metadata.name == f"kept-{i}"
        assert await cache.read(second.storage.key(cache.rtype, "default", "never"),
                                cache.complete_revision) is None
    finally:
        await second.stop()


def simple_pod(name: str) -> v1.Pod:
    return v1.Pod(metadata=v1.ObjectMeta(name=name),
                  spec=v1.PodSpec(containers=[v1.Container(name="c", image="busybox")]))


def changed(cm: v1.ConfigMap, v: str) -> v1.ConfigMap:
    copy = v1.ConfigMap()
    copy.CopyFrom(cm)
    copy.data["v"] = v
    return copy


async def freeze_cache(server: ApiServer, plural: str, name: str) -> None:
    """Stops ``server``'s watch cache of ``plural`` once it holds ``name``: its copies then
    stay behind every later write, as behind a lagging watch."""
    cache = server.api.caches[plural]
    key = server.storage.key(cache.rtype, "default", name)
    await eventually(lambda: cache.latest(key) is not NOT_CACHED,
                     message=f"the {plural} cache to hold {name}")
    await cache.stop()


async def test_updates_start_from_the_cache_and_a_stale_copy_is_found_out(
    two_servers: tuple[ApiServer, ApiServer],
) -> None:
    """Updates and binds start from the watch cache's copy (as Kubernetes' GuaranteedUpdate),
    which the write's condition checks. Server a's caches are stopped here, so its copies stay
    behind the writes made through b: every answer is still what it would be from etcd."""
    a, b = two_servers
    async with ApiClient(a.address) as via_a, ApiClient(b.address) as via_b:
        first = await via_a.create(configmap("shared", v="0"))
        await via_a.create(simple_pod("bound-later"))
        await freeze_cache(a, "configmaps", "shared")
        await freeze_cache(a, "pods", "bound-later")

        second = await via_b.update(changed(first, "1"))
        retries = a.api.stale_update_retries
        # a's copy is still "first": the update naming b's version is made again on etcd's.
        third = await via_a.update(changed(second, "2"))
        assert third.data == {"v": "2"}
        assert a.api.stale_update_retries == retries + 1
        # Naming an old version still conflicts, as against etcd.
        with pytest.raises(errors.Conflict):
            await via_a.update(changed(second, "3"))
        # An update that changes nothing answers the current object, not a's old copy.
        same = await via_a.update(third)
        assert same.metadata.resource_version == third.metadata.resource_version
        # A patch of a's old copy is made again on etcd's object: b's change stays.
        fourth = await via_b.update(changed(third, "4"))
        patched = await via_a.patch(v1.ConfigMap, "shared", {"data": {"w": "x"}})
        assert patched.data == {"v": "4", "w": "x"}
        # A delete whose precondition names the current version, which a's copy is not at.
        assert fourth.metadata.resource_version != patched.metadata.resource_version
        await via_a.delete(v1.ConfigMap, "shared",
                           resource_version=patched.metadata.resource_version)
        with pytest.raises(errors.NotFound):
            await via_b.get(v1.ConfigMap, "shared")

        labelled = await via_b.get(v1.Pod, "bound-later")
        labelled.metadata.labels["app"] = "web"
        await via_b.update(labelled)
        bound = await via_a.bind("default", "bound-later", "node-1")
        assert bound.spec.node_name == "node-1"
        assert bound.metadata.labels["app"] == "web", "b's label survives a's old copy"
        with pytest.raises(errors.Conflict, match="already assigned"):
            await via_a.bind("default", "bound-later", "node-2")
