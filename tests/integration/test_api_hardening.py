"""The API server under hostile or oversized input: bounded memory, corrupt values in etcd,
crafted continue tokens, oversized requests and out-of-range numbers. Real etcd throughout."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest

from apiserver.server import ApiServer, ApiServerSettings
from kubelite.api import errors
from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import Collector, configmap, name_of


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
        await eventually(lambda: [name_of(e) for e in plain.changes] == ["web"],
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
        assert [name_of(e) for e in replay.changes] == ["web"]
        assert replay.error is None
    finally:
        await plain.close()
        await namespaces.stop()
        await labelled.stop()


# ------------------------------------------------------------ continue tokens


async def list_page(
    client: ApiClient, resource: str, namespace: str = "", *, limit: int = 0, token: str = ""
) -> pb.ListResponse:
    stub = pb_grpc.ApiServerStub(client.channel)  # type: ignore[no-untyped-call]
    request = pb.ListRequest(resource=resource, namespace=namespace, limit=limit,
                             continue_token=token)
    try:
        response: pb.ListResponse = await stub.List(request, timeout=10)
        return response
    except grpc.aio.AioRpcError as e:
        raise errors.from_rpc_error(e) from e


def crafted(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


async def test_continue_tokens_are_bound_to_their_list(
    api_server: ApiServer, client: ApiClient
) -> None:
    prefix = api_server.settings.api.storage_prefix
    await client.create(v1.Secret(metadata=v1.ObjectMeta(name="token", namespace="kube-system")))
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="zzz")))
    await client.create(v1.Lease(metadata=v1.ObjectMeta(name="holder", namespace="default")))
    revision = int((await client.list(v1.Secret)).resource_version)

    def absolute(key: str) -> str:
        return base64.b64encode(f"{prefix}/{key}".encode()).decode()

    # Tokens that point somewhere else than the list they come with.
    for resource, namespace, token in (
        ("secrets", "zzz", crafted({"rv": revision, "start": absolute("secrets/kube-system/")})),
        ("namespaces", "", crafted({"rv": revision, "start": absolute("leases/")})),
        ("secrets", "zzz", crafted({"v": "meta.k8s.io/v1", "rv": revision,
                                    "start": "../kube-system/", "resource": "secrets",
                                    "namespace": "zzz"})),
        ("secrets", "zzz", "not base64 at all!"),
        ("secrets", "zzz", crafted({"v": "meta.k8s.io/v1", "rv": 2**70, "start": "a",
                                    "resource": "secrets", "namespace": "zzz"})),
    ):
        with pytest.raises(errors.BadRequest, match="continue"):
            await list_page(client, resource, namespace, limit=10, token=token)

    # A real token works for its own list only.
    for i in range(3):
        await client.create(v1.Secret(metadata=v1.ObjectMeta(name=f"s{i}", namespace="zzz")))
    first = await list_page(client, "secrets", "zzz", limit=2)
    assert first.continue_token
    for resource, namespace in (("secrets", "kube-system"), ("secrets", ""),
                                ("configmaps", "zzz"), ("leases", "zzz")):
        with pytest.raises(errors.BadRequest, match="continue"):
            await list_page(client, resource, namespace, limit=2, token=first.continue_token)
    rest = await list_page(client, "secrets", "zzz", limit=2, token=first.continue_token)
    names = [v1.Secret.FromString(b).metadata.name for b in [*first.items, *rest.items]]
    assert names == ["s0", "s1", "s2"] and not rest.continue_token
    assert rest.resource_version == first.resource_version

    # Across namespaces, the token resumes at the right namespace and name.
    everywhere = await list_page(client, "secrets", limit=1)
    seen = [v1.Secret.FromString(everywhere.items[0]).metadata.name]
    while everywhere.continue_token:
        everywhere = await list_page(client, "secrets", limit=1,
                                     token=everywhere.continue_token)
        seen += [v1.Secret.FromString(b).metadata.name for b in everywhere.items]
    assert seen == ["token", "s0", "s1", "s2"]


async def test_continue_token_from_a_compacted_revision_is_expired(
    api_server: ApiServer, client: ApiClient
) -> None:
    for i in range(3):
        await client.create(configmap(f"c{i}"))
    first = await list_page(client, "configmaps", "default", limit=1)
    await client.create(configmap("later"))
    await api_server.etcd.compact(await api_server.etcd.current_revision())
    with pytest.raises(errors.Expired, match="continue"):
        await list_page(client, "configmaps", "default", limit=1, token=first.continue_token)


# ------------------------------------------------------------ sizes and bad numbers


def big_pod(name: str, arg_bytes: int) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name))
    pod.spec.containers.add(name="c", image="busybox", args=["x" * arg_bytes])
    return pod


async def test_object_over_etcds_request_limit_is_request_entity_too_large(
    api_server: ApiServer, client: ApiClient
) -> None:
    # Under the API's 3 MiB request limit, over etcd's 1.5 MiB: etcd refuses the write (with
    # its own error, or a little further up with its gRPC message limit).
    for name, size, says in (("huge", 1700 * 1024, "request is too large"),
                             ("huger", 2 * 1024 * 1024, "larger than max")):
        with pytest.raises(errors.RequestEntityTooLarge) as refused:
            await client.create(big_pod(name, size))
        assert not isinstance(refused.value, (errors.Unavailable, errors.TooManyRequests))
        assert "Request entity too large" in str(refused.value)
        assert says in str(refused.value)
        with pytest.raises(errors.NotFound):
            await client.get(v1.Pod, name)
    # An update that grows an object past the limit is refused the same way.
    pod = await client.create(big_pod("grows", 1024 * 1024))
    pod.spec.containers[0].image = "busybox:" + "y" * (600 * 1024)  # a field that may change
    with pytest.raises(errors.RequestEntityTooLarge):
        await client.update(pod)
    assert (await client.get(v1.Pod, "grows")).spec.containers[0].image == "busybox"


async def test_requests_over_the_max_request_size_are_refused(etcd: EtcdProcess) -> None:
    async with serving(server_settings(etcd.endpoint)) as (server, client):
        assert server.settings.api.max_request_bytes == 3 * 1024 * 1024
        with pytest.raises(errors.RequestEntityTooLarge, match="limit is 3145728"):
            await client.create(big_pod("over-3mib", 3 * 1024 * 1024 + 1))
    settings = server_settings(etcd.endpoint)
    settings = replace(settings, api=replace(settings.api, max_request_bytes=64 * 1024))
    async with serving(settings) as (_, client):
        await client.create(configmap("small", v="x" * 60_000))
        with pytest.raises(errors.RequestEntityTooLarge, match="limit is 65536"):
            await client.create(configmap("large", v="x" * 70_000))
        with pytest.raises(errors.RequestEntityTooLarge, match="limit is 65536"):
            await client.patch(v1.ConfigMap, "small", {"data": {"w": "x" * 70_000}})
        with pytest.raises(errors.NotFound):
            await client.get(v1.ConfigMap, "large")


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


async def test_unknown_protobuf_fields_are_refused_with_their_place(client: ApiClient) -> None:
    stub = pb_grpc.ApiServerStub(client.channel)  # type: ignore[no-untyped-call]
    hidden = b"\xa2\x06" + varint(1_400_000) + b"h" * 1_400_000  # field 100: 1.4 MB of bytes
    top = configmap("smuggler", v="1").SerializeToString() + hidden
    meta = v1.ObjectMeta(name="nested").SerializeToString() + b"\xf8\x07\x01"  # field 127
    nested = b"\x0a" + bytes([len(meta)]) + meta
    for data, place in ((top, "ConfigMap"), (nested, "metadata")):
        request = pb.CreateRequest(resource="configmaps", namespace="default", object=data)
        with pytest.raises(errors.BadRequest, match=place) as refused:
            try:
                await stub.Create(request, timeout=10)
            except grpc.aio.AioRpcError as e:
                raise errors.from_rpc_error(e) from e
        assert "unknown field" in str(refused.value)
    with pytest.raises(errors.NotFound):
        await client.get(v1.ConfigMap, "smuggler")
    # Updates are held to the same rule.
    cm = await client.create(configmap("plain", v="1"))
    update = pb.UpdateRequest(resource="configmaps", namespace="default",
                              object=cm.SerializeToString() + b"\xa0\x06\x01")
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.Update(update, timeout=10)
    assert isinstance(errors.from_rpc_error(raw.value), errors.BadRequest)


async def test_grace_period_out_of_range_is_invalid(client: ApiClient) -> None:
    pod = big_pod("graceful", 1)
    pod.spec.node_name = "node-a"
    await client.create(pod)
    with pytest.raises(errors.Invalid, match="gracePeriodSeconds") as refused:
        await client.delete(v1.Pod, "graceful", grace_period_seconds=2**62)
    assert refused.value.causes[0]["field"] == "gracePeriodSeconds"
    assert not (await client.get(v1.Pod, "graceful")).metadata.deletion_timestamp
    await client.create(configmap("cm"))
    with pytest.raises(errors.Invalid, match="gracePeriodSeconds"):
        await client.delete(v1.ConfigMap, "cm", grace_period_seconds=2**62)
    await client.get(v1.ConfigMap, "cm")
    # A pod's own terminationGracePeriodSeconds, however large, does not break its deletion.
    pod = big_pod("patient", 1)
    pod.spec.node_name = "node-a"
    pod.spec.termination_grace_period_seconds = 2**62
    await client.create(pod)
    deleted = await client.delete(v1.Pod, "patient")
    assert deleted.metadata.deletion_timestamp


async def test_watch_from_a_future_resource_version_is_too_large_after_a_bounded_wait(
    etcd: EtcdProcess,
) -> None:
    # Kubernetes' 3 s wait: long enough that the creates below land within it on a loaded
    # machine, so the second watch is an ordinary one.
    settings = server_settings(etcd.endpoint)
    assert settings.api.watch_cache.too_large_resource_version_wait == 3.0
    async with serving(settings) as (_, client):
        current = int((await client.list(v1.ConfigMap, "default")).resource_version)
        future = current + 1000
        far = Collector(client.watch(v1.ConfigMap, "default", resource_version=str(future)))
        await eventually(lambda: far.error is not None, timeout=15, message="an answer")
        await far.close()
        assert isinstance(far.error, errors.TooLargeResourceVersion)
        assert isinstance(far.error, errors.Timeout)
        assert far.error.retry_after_seconds == 1
        assert f"Too large resource version: {future}, current: " in str(far.error)

        # A version the server reaches within the wait is an ordinary watch.
        soon = Collector(client.watch(v1.ConfigMap, "default",
                                      resource_version=str(current + 1)))
        await client.create(configmap("first"))
        await client.create(configmap("second"))
        await eventually(lambda: soon.changes, message="the change after the version")
        await soon.close()
        assert soon.error is None
        assert [name_of(e) for e in soon.changes] == ["second"]

        # So is a continue token from a revision etcd has not reached.
        token = crafted({"v": "meta.k8s.io/v1", "rv": future, "start": "a",
                         "resource": "configmaps", "namespace": "default"})
        with pytest.raises(errors.TooLargeResourceVersion):
            await list_page(client, "configmaps", "default", limit=1, token=token)
