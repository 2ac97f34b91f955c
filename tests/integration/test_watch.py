"""Watches and informers against a real etcd: order, resume, expiry, fan-out, restarts."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from apiserver.etcd import CompactedError
from apiserver.server import ApiServer
from kubelite.api import errors
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.ports import free_port
from kubelite.testing.wait import eventually
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Collector, configmap, name_of


async def test_watch_delivers_every_change_in_order_and_resumes_without_gap(
    client: ApiClient,
) -> None:
    start = await client.list(v1.ConfigMap, "default")
    first = Collector(
        client.watch(v1.ConfigMap, "default", resource_version=start.resource_version)
    )
    written: list[str] = []
    for i in range(10):
        written.append((await client.create(configmap(f"w{i}", v="0"))).metadata.resource_version)
    await eventually(lambda: len(first.changes) == 10, message="first 10 events")
    await first.close()
    resume_from = first.changes[-1].resource_version

    # Changes while nobody watches: updates and deletes as well as creates.
    for i in range(5):
        cm = await client.get(v1.ConfigMap, f"w{i}")
        cm.data["v"] = "1"
        written.append((await client.update(cm)).metadata.resource_version)
    for i in range(5, 8):
        await client.delete(v1.ConfigMap, f"w{i}")
    second = Collector(client.watch(v1.ConfigMap, "default", resource_version=resume_from))
    await eventually(lambda: len(second.changes) == 8, message="the 8 missed events")
    await second.close()

    delivered = first.changes + second.changes
    types = [e.type for e in delivered]
    assert types == ["ADDED"] * 10 + ["MODIFIED"] * 5 + ["DELETED"] * 3
    versions = [int(e.resource_version) for e in delivered]
    assert versions == sorted(set(versions)), "out of order or duplicated"
    assert [int(v) for v in written] == versions[:15]
    assert [name_of(e) for e in second.changes[5:]] == ["w5", "w6", "w7"]


async def test_watch_without_version_starts_with_current_state(client: ApiClient) -> None:
    await client.create(configmap("existing"))
    watch = Collector(client.watch(v1.ConfigMap, "default"))
    await eventually(lambda: watch.changes, message="initial state")
    await client.create(configmap("new"))
    await eventually(lambda: len(watch.changes) == 2, message="the new object")
    await watch.close()
    assert [(e.type, name_of(e)) for e in watch.changes] == [
        ("ADDED", "existing"), ("ADDED", "new")
    ]


async def test_quiet_watch_gets_bookmarks_that_move_forward(client: ApiClient) -> None:
    start = await client.list(v1.ConfigMap, "default")
    watch = Collector(
        client.watch(v1.ConfigMap, "default", resource_version=start.resource_version)
    )
    # Writes to another kind move the global revision; the quiet watch learns of it.
    node = await client.create(v1.Node(metadata=v1.ObjectMeta(name="bm")))
    await eventually(
        lambda: any(
            e.type == "BOOKMARK"
            and int(e.resource_version) >= int(node.metadata.resource_version)
            for e in watch.events
        ),
        message="a bookmark past the node's version",
    )
    await watch.close()
    assert watch.changes == []


async def test_selectors_filter_server_side_in_lists_and_watches(client: ApiClient) -> None:
    start = await client.list(v1.ConfigMap, "default")
    watch = Collector(
        client.watch(v1.ConfigMap, "default", label_selector="app in (web,api),tier!=db",
                     resource_version=start.resource_version)
    )
    await client.create(configmap("web", {"app": "web"}))
    await client.create(configmap("api-db", {"app": "api", "tier": "db"}))
    await client.create(configmap("other", {"app": "batch"}))
    listed = await client.list(v1.ConfigMap, "default", label_selector="app in (web,api),tier!=db")
    assert [c.metadata.name for c in listed.items] == ["web"]
    by_name = await client.list(v1.ConfigMap, field_selector="metadata.name=other")
    assert [c.metadata.name for c in by_name.items] == ["other"]
    # Leaving the selector is a DELETED for this watcher; entering it is an ADDED.
    web = await client.get(v1.ConfigMap, "web")
    web.metadata.labels["app"] = "moved"
    await client.update(web)
    other = await client.get(v1.ConfigMap, "other")
    other.metadata.labels["app"] = "api"
    await client.update(other)
    await eventually(lambda: len(watch.changes) == 3, message="3 filtered events")
    await watch.close()
    assert [(e.type, name_of(e)) for e in watch.changes] == [
        ("ADDED", "web"), ("DELETED", "web"), ("ADDED", "other")
    ]


async def test_bad_selector_is_rejected(client: ApiClient) -> None:
    with pytest.raises(errors.BadRequest):
        await client.list(v1.ConfigMap, label_selector="app in (web")
    with pytest.raises(errors.BadRequest, match="spec.foo"):
        await client.list(v1.Pod, field_selector="spec.foo=bar")


async def test_pods_by_node_name_field_selector(client: ApiClient) -> None:
    for name, node in (("a", "n1"), ("b", "n2"), ("c", "")):
        p = v1.Pod(metadata=v1.ObjectMeta(name=name))
        p.spec.containers.add(name="c", image="busybox")
        p.spec.node_name = node
        await client.create(p)
    on_n1 = await client.list(v1.Pod, field_selector="spec.nodeName=n1")
    assert [p.metadata.name for p in on_n1.items] == ["a"]
    unscheduled = await client.list(v1.Pod, field_selector="spec.nodeName=")
    assert [p.metadata.name for p in unscheduled.items] == ["c"]


async def test_two_hundred_watchers_share_one_etcd_watch(
    api_server: ApiServer, client: ApiClient, etcd: EtcdProcess
) -> None:
    metric = "etcd_debugging_mvcc_watcher_total"
    before = etcd.metrics()[metric]
    start = await client.list(v1.ConfigMap, "default")
    watchers = [
        Collector(client.watch(v1.ConfigMap, "default", resource_version=start.resource_version))
        for _ in range(200)
    ]
    cache = api_server.api.caches["configmaps"]
    await eventually(lambda: cache.watcher_count == 200, message="200 registered watchers")
    await client.create(configmap("fanout"))
    await eventually(
        lambda: all(len(w.changes) == 1 for w in watchers), message="all 200 got the event"
    )
    during = etcd.metrics()[metric]
    for w in watchers:
        await w.close()
    assert during - before == 0, "client watches must not open etcd watches"
    assert cache.etcd_watches_opened == 1


async def test_watch_from_compacted_version_is_expired(etcd: EtcdProcess) -> None:
    server = await start_api_server(server_settings(etcd.endpoint, compaction_interval=0.2))
    try:
        async with ApiClient(server.address) as client:
            old = await client.create(configmap("old"))
            # Everything in the window is kept; a version from before the window goes to etcd.
            for i in range(3):
                await client.create(configmap(f"after-{i}"))

            async def expired() -> bool:
                watch = Collector(
                    client.watch(v1.ConfigMap, "default",
                                 resource_version=str(int(old.metadata.resource_version) - 1))
                )
                await eventually(lambda: watch.error or watch.changes, timeout=5)
                await watch.close()
                return isinstance(watch.error, errors.Expired)

            server.api.caches["configmaps"].start_revision = 10**12  # force the etcd path
            await eventually(expired, timeout=10, interval=0.2, message="Expired after compaction")
    finally:
        await server.stop()


async def test_informer_resumes_across_api_server_restart_without_relisting(
    etcd: EtcdProcess,
) -> None:
    settings = server_settings(etcd.endpoint, listen=f"127.0.0.1:{free_port()}")
    server = await start_api_server(settings)
    client = ApiClient(server.address)
    informer = Informer(client, v1.ConfigMap, "default",
                        settings=InformerSettings(backoff_initial=0.05, backoff_max=0.2))
    try:
        informer.start()
        await informer.wait_for_sync(5)
        await client.create(configmap("before"))
        await eventually(lambda: informer.store.get("default/before"), message="before")
        await server.stop()
        server = await start_api_server(settings)
        await client.create(configmap("after"))
        for i in range(3):
            await client.create(configmap(f"more-{i}"))
        await client.delete(v1.ConfigMap, "before")
        truth = {c.metadata.name for c in (await client.list(v1.ConfigMap, "default")).items}
        await eventually(
            lambda: {k.split("/")[1] for k in informer.store.keys()} == truth,
            message="informer matches the list",
        )
        assert informer.stats.lists == 1, "resumed from its version, no relist"
        assert informer.stats.watches >= 2
    finally:
        await informer.stop()
        await client.close()
        await server.stop()


async def test_informer_relists_when_its_version_was_compacted(etcd: EtcdProcess) -> None:
    """Down long enough for a compaction: Expired, relist, and the store converges."""
    port = free_port()
    settings = server_settings(etcd.endpoint, listen=f"127.0.0.1:{port}")
    server = await start_api_server(settings)
    client = ApiClient(server.address)
    informer = Informer(client, v1.ConfigMap, "default",
                        settings=InformerSettings(backoff_initial=0.05, backoff_max=0.2))
    try:
        informer.start()
        await informer.wait_for_sync(5)
        await client.create(configmap("kept"))
        await client.create(configmap("gone"))
        await eventually(lambda: len(informer.store) == 2, message="2 objects cached")
        await server.stop()

        # Meanwhile, through another server on the same storage: changes, then a compaction.
        other = await start_api_server(
            replace(settings, listen="127.0.0.1:0", compaction_interval=0.1)
        )
        async with ApiClient(other.address) as writer:
            await writer.delete(v1.ConfigMap, "gone")
            await writer.create(configmap("new"))
            target = int((await writer.list(v1.ConfigMap, "default")).resource_version)

            async def compacted() -> bool:
                try:
                    await other.etcd.range(b"x", revision=target - 1)
                except CompactedError:
                    return True
                return False

            await eventually(compacted, timeout=10, interval=0.1, message="compaction")
        await other.stop()

        server = await start_api_server(settings)
        await eventually(
            lambda: sorted(k.split("/")[1] for k in informer.store.keys()) == ["kept", "new"],
            message="store converged after relist",
        )
        assert informer.stats.lists == 2
    finally:
        await informer.stop()
        await client.close()
        await server.stop()


async def test_events_ready_together_come_in_one_message(api_server: ApiServer) -> None:
    """A watch that starts behind (or falls behind) gets what is ready in few messages, each
    event still with its own version, in order."""
    async with ApiClient(api_server.address) as client:
        start = await client.list(v1.ConfigMap, "default")
        for i in range(30):
            await client.create(configmap(f"batched-{i}"))
        channel = grpc.aio.insecure_channel(api_server.address)
        try:
            stub = pb_grpc.ApiServerStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Watch(pb.WatchRequest(
                resource="configmaps", namespace="default",
                resource_version=start.resource_version))
            messages: list[pb.WatchEvents] = []
            async for message in call:
                messages.append(message)
                if sum(len(m.events) for m in messages) >= 30:
                    break
            call.cancel()
        finally:
            await channel.close(None)
    events = [e for m in messages for e in m.events]
    assert len(messages) < 30 and len(messages[0].events) > 1
    assert [v1.ConfigMap.FromString(e.object).metadata.name for e in events] == [
        f"batched-{i}" for i in range(30)]
    versions = [int(e.resource_version) for e in events]
    assert versions == sorted(set(versions))
