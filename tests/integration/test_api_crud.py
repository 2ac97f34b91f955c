"""The API's semantics against a real etcd: CRUD, conflicts, names, deletion, bind."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from apiserver.server import ApiServer
from kubelite.api import errors
from kubelite.client.client import ApiClient
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1


def pod(name: str, labels: dict[str, str] | None = None, node: str = "") -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, labels=labels or {}))
    p.spec.containers.add(name="main", image="busybox", command=["sleep", "3600"])
    if node:
        p.spec.node_name = node
    return p


def configmap(name: str, **data: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name), data=data)


async def test_create_sets_system_fields_and_defaults(client: ApiClient) -> None:
    created = await client.create(pod("web"))
    meta = created.metadata
    assert meta.namespace == "default"
    assert meta.uid and meta.creation_timestamp.endswith("Z")
    assert int(meta.resource_version) > 0
    assert meta.generation == 1
    assert created.spec.restart_policy == "Always"
    assert created.spec.termination_grace_period_seconds == 30
    assert created.status.phase == "Pending"
    fetched = await client.get(v1.Pod, "web")
    assert fetched == created


async def test_resource_version_is_the_etcd_revision_and_moves_on_every_write(
    client: ApiClient,
) -> None:
    first = await client.create(configmap("a", k="1"))
    second = await client.create(configmap("b", k="1"))
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    listed = await client.list(v1.ConfigMap, "default")
    assert int(listed.resource_version) >= int(second.metadata.resource_version)


async def test_create_existing_name_is_already_exists(client: ApiClient) -> None:
    await client.create(configmap("dup"))
    with pytest.raises(errors.AlreadyExists, match='"dup" already exists'):
        await client.create(configmap("dup"))


async def test_generate_name_gives_distinct_names(client: ApiClient) -> None:
    cm = v1.ConfigMap(metadata=v1.ObjectMeta(generate_name="job-"))
    names = {(await client.create(cm)).metadata.name for _ in range(20)}
    assert len(names) == 20
    assert all(n.startswith("job-") and len(n) == 9 for n in names)


async def test_concurrent_updates_from_one_version_exactly_one_wins(
    api_server: ApiServer,
) -> None:
    async with ApiClient(api_server.address) as a, ApiClient(api_server.address) as b:
        base = await a.create(configmap("race", value="0"))
        mine, theirs = v1.ConfigMap(), v1.ConfigMap()
        mine.CopyFrom(base)
        theirs.CopyFrom(base)
        mine.data["value"] = "a"
        theirs.data["value"] = "b"
        results = await asyncio.gather(a.update(mine), b.update(theirs), return_exceptions=True)
        winners = [r for r in results if isinstance(r, v1.ConfigMap)]
        losers = [r for r in results if isinstance(r, errors.Conflict)]
        assert len(winners) == 1 and len(losers) == 1, results
        stored = await a.get(v1.ConfigMap, "race")
        assert stored.data["value"] == winners[0].data["value"]
        assert "the object has been modified" in str(losers[0])


async def test_many_racing_writers_lose_no_update(client: ApiClient) -> None:
    """20 writers each add 1 with read-modify-write and retry on Conflict: the count is 20."""
    await client.create(configmap("counter", n="0"))

    async def increment() -> None:
        while True:
            cm = await client.get(v1.ConfigMap, "counter")
            cm.data["n"] = str(int(cm.data["n"]) + 1)
            try:
                await client.update(cm)
                return
            except errors.Conflict:
                continue

    await asyncio.gather(*(increment() for _ in range(20)))
    assert (await client.get(v1.ConfigMap, "counter")).data["n"] == "20"


async def test_stale_update_is_conflict_and_changes_nothing(client: ApiClient) -> None:
    old = await client.create(configmap("cfg", v="1"))
    newer = v1.ConfigMap()
    newer.CopyFrom(old)
    newer.data["v"] = "2"
    await client.update(newer)
    old.data["v"] = "3"
    with pytest.raises(errors.Conflict):
        await client.update(old)
    assert (await client.get(v1.ConfigMap, "cfg")).data["v"] == "2"


async def test_generation_moves_on_spec_changes_only(client: ApiClient) -> None:
    created = await client.create(pod("gen"))
    created.metadata.labels["x"] = "y"
    relabelled = await client.update(created)
    assert relabelled.metadata.generation == 1
    relabelled.spec.containers[0].image = "busybox:1.36"
    changed = await client.update(relabelled)
    assert changed.metadata.generation == 2
    changed.status.phase = "Running"
    status_updated = await client.update_status(changed)
    assert status_updated.metadata.generation == 2
    assert status_updated.status.phase == "Running"


async def test_update_cannot_write_status_and_update_status_cannot_write_spec(
    client: ApiClient,
) -> None:
    created = await client.create(pod("split"))
    created.status.phase = "Running"
    after_update = await client.update(created)
    assert after_update.status.phase == "Pending"
    after_update.status.phase = "Running"
    after_update.spec.containers[0].image = "other"
    after_status = await client.update_status(after_update)
    assert after_status.status.phase == "Running"
    assert after_status.spec.containers[0].image == "busybox"


async def test_noop_update_does_not_write(client: ApiClient) -> None:
    created = await client.create(configmap("same", a="1"))
    again = await client.update(created)
    assert again.metadata.resource_version == created.metadata.resource_version


async def test_merge_patch(client: ApiClient) -> None:
    await client.create(configmap("patched", a="1", b="2"))
    patched = await client.patch(
        v1.ConfigMap, "patched", {"data": {"b": None, "c": "3"}, "metadata": {"labels": {"l": "v"}}}
    )
    assert dict(patched.data) == {"a": "1", "c": "3"}
    assert dict(patched.metadata.labels) == {"l": "v"}


async def test_patch_with_stale_resource_version_is_conflict(client: ApiClient) -> None:
    created = await client.create(configmap("pv", a="1"))
    await client.patch(v1.ConfigMap, "pv", {"data": {"a": "2"}})
    with pytest.raises(errors.Conflict):
        await client.patch(
            v1.ConfigMap, "pv",
            {"metadata": {"resourceVersion": created.metadata.resource_version},
             "data": {"a": "3"}},
        )


async def test_patch_with_unknown_field_is_invalid_and_changes_nothing(client: ApiClient) -> None:
    created = await client.create(configmap("strict", a="1"))
    with pytest.raises(errors.Invalid, match="dataa"):
        await client.patch(v1.ConfigMap, "strict", {"dataa": {"a": "2"}})
    assert await client.get(v1.ConfigMap, "strict") == created


async def test_namespaces_system_ones_exist_and_missing_one_is_rejected(
    client: ApiClient,
) -> None:
    names = {n.metadata.name for n in (await client.list(v1.Namespace)).items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names
    with pytest.raises(errors.NotFound, match='namespaces "nowhere" not found'):
        await client.create(configmap("c"), "nowhere")
    assert (await client.list(v1.ConfigMap, "nowhere")).items == []


async def test_cluster_scoped_kinds_ignore_namespace(client: ApiClient) -> None:
    node = v1.Node(metadata=v1.ObjectMeta(name="n1", namespace="ignored"))
    created = await client.create(node)
    assert created.metadata.namespace == ""
    assert (await client.get(v1.Node, "n1")).metadata.name == "n1"


async def test_delete_with_finalizer_waits_for_it(client: ApiClient) -> None:
    cm = configmap("fin")
    cm.metadata.finalizers.append("example.com/hold")
    await client.create(cm)
    marked = await client.delete(v1.ConfigMap, "fin")
    assert marked.metadata.deletion_timestamp
    still = await client.get(v1.ConfigMap, "fin")
    assert still.metadata.deletion_timestamp
    del still.metadata.finalizers[:]
    await client.update(still)
    with pytest.raises(errors.NotFound):
        await client.get(v1.ConfigMap, "fin")


@pytest.mark.parametrize(
    ("policy", "finalizer"), [("Foreground", "foregroundDeletion"), ("Orphan", "orphan")]
)
async def test_propagation_policy_is_recorded_as_finalizer(
    client: ApiClient, policy: str, finalizer: str
) -> None:
    await client.create(configmap("owner"))
    marked = await client.delete(v1.ConfigMap, "owner", propagation_policy=policy)
    assert list(marked.metadata.finalizers) == [finalizer]
    assert marked.metadata.deletion_timestamp


async def test_bad_propagation_policy_is_rejected(client: ApiClient) -> None:
    await client.create(configmap("pp"))
    with pytest.raises(errors.BadRequest, match="propagationPolicy"):
        await client.delete(v1.ConfigMap, "pp", propagation_policy="Sideways")
    await client.get(v1.ConfigMap, "pp")


async def test_unbound_pod_is_deleted_at_once(client: ApiClient) -> None:
    await client.create(pod("unbound"))
    await client.delete(v1.Pod, "unbound")
    with pytest.raises(errors.NotFound):
        await client.get(v1.Pod, "unbound")


async def test_bound_pod_is_deleted_gracefully_then_confirmed(client: ApiClient) -> None:
    await client.create(pod("bound", node="node-1"))
    marked = await client.delete(v1.Pod, "bound")
    assert marked.metadata.deletion_timestamp
    assert marked.metadata.deletion_grace_period_seconds == 30
    shorter = await client.delete(v1.Pod, "bound", grace_period_seconds=5)
    assert shorter.metadata.deletion_grace_period_seconds == 5
    await client.delete(v1.Pod, "bound", grace_period_seconds=0)
    with pytest.raises(errors.NotFound):
        await client.get(v1.Pod, "bound")


async def test_delete_preconditions(client: ApiClient) -> None:
    created = await client.create(configmap("pre"))
    with pytest.raises(errors.Conflict, match="Precondition failed"):
        await client.delete(v1.ConfigMap, "pre", uid="not-the-uid")
    await client.delete(v1.ConfigMap, "pre", uid=created.metadata.uid)


async def test_system_namespace_cannot_be_deleted(client: ApiClient) -> None:
    with pytest.raises(errors.Forbidden, match="may not be deleted"):
        await client.delete(v1.Namespace, "default")


async def test_deleting_namespace_terminates_it_and_blocks_new_content(client: ApiClient) -> None:
    await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="team")))
    terminating = await client.delete(v1.Namespace, "team")
    assert terminating.status.phase == "Terminating"
    with pytest.raises(errors.Forbidden, match="being terminated"):
        await client.create(configmap("late"), "team")
    # The namespace controller's last step: clear spec.finalizers, and it is gone.
    del terminating.spec.finalizers[:]
    await client.update(terminating)
    with pytest.raises(errors.NotFound):
        await client.get(v1.Namespace, "team")


async def test_bind_sets_node_and_condition_once(client: ApiClient) -> None:
    created = await client.create(pod("to-bind"))
    bound = await client.bind("default", "to-bind", "node-a", created.metadata.uid)
    assert bound.spec.node_name == "node-a"
    conditions = {c.type: c.status for c in bound.status.conditions}
    assert conditions == {"PodScheduled": "True"}
    with pytest.raises(errors.Conflict, match="already assigned"):
        await client.bind("default", "to-bind", "node-b")


async def test_list_pages_are_consistent(client: ApiClient) -> None:
    """Pages hold at most ``limit`` items, carry a continue token while more remain, and
    together are exactly the list at the first page's resourceVersion, although objects are
    created, updated and deleted between the pages."""
    for i in range(25):
        await client.create(configmap(f"page-{i:02d}", v="0"))
    full = await client.list(v1.ConfigMap, "default", page_size=0)
    assert len(full.items) == 25
    stub = pb_grpc.ApiServerStub(client.channel)  # type: ignore[no-untyped-call]

    async def change(step: int, update: str, delete: str) -> None:
        current = await client.get(v1.ConfigMap, update)
        current.data["v"] = str(step)
        await client.update(current)
        await client.delete(v1.ConfigMap, delete)
        await client.create(configmap(f"page-{step}-new"))  # sorts into a later page
        await client.create(configmap(f"page-00-{step}"))  # sorts into the first page

    # Between the pages, change objects of the pages still to come.
    writes = {1: ("page-15", "page-22"), 2: ("page-21", "page-24")}
    pages: list[pb.ListResponse] = []
    token = ""
    while True:
        page = await stub.List(pb.ListRequest(resource="configmaps", namespace="default",
                                              limit=10, continue_token=token))
        pages.append(page)
        assert len(page.items) <= 10, f"page {len(pages)} has {len(page.items)} items"
        token = page.continue_token
        if not token:
            break
        assert len(pages) < 10, "the continue tokens never end"
        if len(pages) in writes:
            await change(len(pages), *writes[len(pages)])
    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert [bool(p.continue_token) for p in pages] == [True, True, False]
    # No write came between the full list and the first page: same revision.
    assert pages[0].resource_version == full.resource_version
    assert {p.resource_version for p in pages} == {full.resource_version}

    def view(items: list[v1.ConfigMap]) -> list[tuple[str, str, dict[str, str]]]:
        return [(c.metadata.name, c.metadata.resource_version, dict(c.data)) for c in items]

    paged = [v1.ConfigMap.FromString(b) for p in pages for b in p.items]
    assert view(paged) == view(full.items)
    # ... while the current list shows the writes.
    now = {c.metadata.name: c for c in (await client.list(v1.ConfigMap, "default")).items}
    assert "page-22" not in now and "page-2-new" in now and now["page-21"].data["v"] == "2"


async def test_health_service_reports_serving(api_server: ApiServer) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with ApiClient(api_server.address) as c:
        stub = health_pb2_grpc.HealthStub(c.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service="kubelite.v1.ApiServer"))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_same_spec_with_maps_in_another_order_is_no_change(client: ApiClient) -> None:
    labels = {f"k{i}": str(i) for i in range(12)}
    d = v1.Deployment(metadata=v1.ObjectMeta(name="maps"))
    d.spec.selector.match_labels.update(labels)
    d.spec.template.metadata.labels.update(labels)
    d.spec.template.spec.containers.add(name="c", image="busybox")
    created = await client.create(d)
    again = v1.Deployment()
    again.CopyFrom(created)
    again.spec.template.metadata.labels.clear()
    again.spec.template.metadata.labels.update(dict(reversed(list(labels.items()))))
    after = await client.update(again)
    assert after.metadata.generation == 1
    assert after.metadata.resource_version == created.metadata.resource_version


async def test_events_expire_after_the_event_ttl(etcd: EtcdProcess) -> None:
    settings = server_settings(etcd.endpoint)
    settings = replace(settings, api=replace(settings.api, event_ttl=1))
    server = await start_api_server(settings)
    try:
        async with ApiClient(server.address) as c:
            event = v1.Event(metadata=v1.ObjectMeta(name="short-lived"), reason="Test",
                             message="gone soon", type="Normal")
            created = await c.create(event)
            created.count = 2
            await c.update(created)  # an update keeps the lease
            await c.create(configmap("kept"))

            async def gone() -> bool:
                try:
                    await c.get(v1.Event, "short-lived")
                except errors.NotFound:
                    return True
                return False

            await eventually(gone, timeout=15, interval=0.2, message="the event to expire")
            await c.get(v1.ConfigMap, "kept")  # other kinds have no time to live
    finally:
        await server.stop()
