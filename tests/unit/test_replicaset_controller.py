"""ReplicaSetController.reconcile on filled stores with a fake client that records writes.

The stores are the fake API server's state, updated by its writes only when ``write_through``
is set: otherwise they are the lagging cache the expectations exist for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

import pytest
from google.protobuf.message import Message

from controller_manager.replicaset import (
    ReplicaSetController,
    deletion_order,
    slow_start_batch,
)
from kubelite.api.errors import Forbidden
from kubelite.client.expectations import ControllerExpectations
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, make_context
from tests.unit.objects import NS, ago

# ---------------------------------------------------------------- object builders


def replica_set(name: str = "web", replicas: int = 3, labels: dict[str, str] | None = None,
                min_ready: int = 0) -> v1.ReplicaSet:
    labels = labels or {"app": "web"}
    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name=name, namespace=NS, uid=f"uid-{name}",
                                              generation=1, resource_version="1",
                                              creation_timestamp=ago(100)))
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = min_ready
    rs.spec.selector.match_labels.update(labels)
    rs.spec.template.metadata.labels.update(labels)
    rs.spec.template.spec.containers.add(name="main", image="nginx")
    return rs


def owner_ref(rs: v1.ReplicaSet) -> v1.OwnerReference:
    return v1.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name=rs.metadata.name,
                             uid=rs.metadata.uid, controller=True, block_owner_deletion=True)


def pod(name: str, owner: v1.ReplicaSet | None = None, *, labels: dict[str, str] | None = None,
        node: str = "node-1", phase: str = "Running", ready: bool = True,
        ready_for: float = 100.0, age: float = 200.0, restarts: int = 0,
        deleting: bool = False) -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=NS, uid=f"uid-{name}",
                                      resource_version="5", creation_timestamp=ago(age)))
    p.metadata.labels.update(labels if labels is not None else {"app": "web"})
    if owner is not None:
        p.metadata.owner_references.append(owner_ref(owner))
    if deleting:
        p.metadata.deletion_timestamp = ago(0)
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="nginx")
    p.status.phase = phase
    p.status.conditions.add(type="Ready", status="True" if ready else "False",
                            last_transition_time=ago(ready_for))
    p.status.container_statuses.add(name="main", restart_count=restarts, ready=ready)
    return p


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def env() -> AsyncIterator[tuple[ReplicaSetController, FakeClient]]:
    client = FakeClient(from_cache=True)
    controller = ReplicaSetController(make_context(client))
    yield controller, client
    await controller.queue.shut_down()


def events(controller: ReplicaSetController) -> list[tuple[str, str, str, str]]:
    recorder = cast(FakeRecorder, controller.recorder)
    return [(e.name, e.type, e.reason, e.message) for e in recorder.events]


def add(controller: ReplicaSetController, *objs: Message) -> None:
    for obj in objs:
        if isinstance(obj, v1.Pod):
            controller.pod_store.put(obj)
        elif isinstance(obj, v1.ReplicaSet):
            controller.rs_store.put(obj)


def creates(client: FakeClient) -> list[v1.Pod]:
    return [p for p in client.created if isinstance(p, v1.Pod)]


# ---------------------------------------------------------------- creation


async def test_creates_missing_pods_with_owner_and_labels(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=3)
    add(controller, rs)
    await controller.reconcile("default/web")
    pods = creates(client)
    assert len(pods) == 3
    for p in pods:
        assert p.metadata.generate_name == "web-"
        assert dict(p.metadata.labels) == {"app": "web"}
        [ref] = p.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == (
            "ReplicaSet", "web", "uid-web", True, True)
        assert p.spec.containers[0].image == "nginx"
    assert [e[2] for e in events(controller)] == ["SuccessfulCreate"] * 3
    assert events(controller)[0][3] == f"Created pod: {pods[0].metadata.name}"


async def test_expectations_stop_a_lagging_cache_from_creating_twice(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    add(controller, replica_set(replicas=3))
    await controller.reconcile("default/web")
    assert len(creates(client)) == 3
    # The pod cache has not seen the pods yet: another sync must not create more.
    await controller.reconcile("default/web")
    assert len(creates(client)) == 3
    assert controller.expectations.pending("default/web") == (3, 0)
    # The informer delivers them: expectations are met, and 3 pods is right.
    for p in creates(client):
        controller.pod_store.put(p)
        controller._on_pod_add(p)
    assert controller.expectations.satisfied("default/web")
    await controller.reconcile("default/web")
    assert len(creates(client)) == 3
    assert client.deletes == []


async def test_expectations_stop_a_lagging_cache_from_deleting_twice(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=1)
    add(controller, rs, *(pod(f"web-{i}", rs, age=100 + i) for i in range(3)))
    await controller.reconcile("default/web")
    assert len(client.deleted_names()) == 2
    await controller.reconcile("default/web")
    assert len(client.deleted_names()) == 2
    # Seeing one deletion twice (marked, then gone) counts once.
    gone = controller.pod_store.get(f"default/{client.deleted_names()[0]}")
    assert gone is not None
    controller._on_pod_delete(gone)
    controller._on_pod_delete(gone)
    assert controller.expectations.pending("default/web") == (0, 1)
    assert not controller.expectations.satisfied("default/web")


def test_expectations_expire() -> None:
    now = [0.0]
    exp = ControllerExpectations(ttl=10, clock=lambda: now[0])
    exp.expect_creations("a", 2)
    assert not exp.satisfied("a")
    now[0] = 11
    assert exp.satisfied("a")
    assert exp.satisfied("never-set")


async def test_slow_start_batches_stop_at_the_first_failing_batch() -> None:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(len(calls))
        if len(calls) == 5:
            raise RuntimeError("boom")

    successes, error = await slow_start_batch(20, 1, fn)
    # Batches of 1, 2, 4: the call that fails is in the third batch, which still runs out.
    assert len(calls) == 7
    assert successes == 6
    assert isinstance(error, RuntimeError)

    calls.clear()
    successes, error = await slow_start_batch(10, 1, lambda: _noop(calls))
    assert (successes, error, len(calls)) == (10, None, 10)


async def _noop(calls: list[int]) -> None:
    calls.append(0)


async def test_failed_creates_lower_expectations_and_report(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    client.fail_creates_from = 1
    add(controller, replica_set(replicas=10))
    with pytest.raises(Forbidden):
        await controller.reconcile("default/web")
    # Batch of 1 succeeded; the batch of 2 failed; the rest never ran.
    assert len([c for c in client.calls if c[0] == "create"]) == 3
    assert len(creates(client)) == 1
    assert controller.expectations.pending("default/web") == (1, 0)
    status = cast(v1.ReplicaSet, client.status_updates[-1]).status
    [failure] = [c for c in status.conditions if c.type == "ReplicaFailure"]
    assert failure.reason == "FailedCreate"
    assert ("web", "Warning", "FailedCreate") in [e[:3] for e in events(controller)]


# ---------------------------------------------------------------- deletion order


def test_deletion_order_follows_kubernetes() -> None:
    rs = replica_set()
    pods = [
        pod("ready-old", rs, ready_for=500, age=600),
        pod("ready-new", rs, ready_for=10, age=20),
        pod("restarted", rs, ready_for=500, age=600, restarts=5),
        pod("not-ready", rs, ready=False),
        pod("pending", rs, phase="Pending", ready=False),
        pod("unscheduled", rs, node="", phase="Pending", ready=False),
    ]
    order = [p.metadata.name for p in deletion_order(pods)]
    assert order == ["unscheduled", "pending", "not-ready", "ready-new", "restarted",
                     "ready-old"]


def test_deletion_order_prefers_crowded_nodes_then_newest() -> None:
    rs = replica_set()
    pods = [
        pod("alone", rs, node="n1", ready_for=100, age=100),
        pod("crowded-a", rs, node="n2", ready_for=100, age=300),
        pod("crowded-b", rs, node="n2", ready_for=100, age=200),
    ]
    order = [p.metadata.name for p in deletion_order(pods)]
    assert order == ["crowded-b", "crowded-a", "alone"]


async def test_scale_down_deletes_least_valuable_pods(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=2)
    add(controller, rs, pod("good-1", rs), pod("good-2", rs, node="node-2"),
        pod("pending", rs, phase="Pending", ready=False),
        pod("unscheduled", rs, node="", phase="Pending", ready=False))
    await controller.reconcile("default/web")
    assert sorted(client.deleted_names()) == ["pending", "unscheduled"]
    assert sorted(e[3] for e in events(controller)) == ["Deleted pod: pending",
                                                         "Deleted pod: unscheduled"]


# ---------------------------------------------------------------- adoption and release


async def test_adopts_matching_orphans_and_releases_mismatched_pods(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=2)
    other = replica_set("other", labels={"app": "other"})
    add(controller, rs, other,
        pod("orphan", None),
        pod("relabelled", rs, labels={"app": "moved"}),
        pod("owned", rs),
        pod("foreign", other, labels={"app": "web"}))
    await controller.reconcile("default/web")
    patched = dict(client.patches)
    refs = patched["orphan"]["metadata"]["ownerReferences"]
    assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in refs] == [
        ("ReplicaSet", "web", "uid-web", True)]
    assert patched["relabelled"]["metadata"]["ownerReferences"] == []
    assert "foreign" not in patched and "owned" not in patched
    # orphan + owned make 2: nothing to create or delete.
    assert creates(client) == [] and client.deletes == []


async def test_does_not_adopt_while_being_deleted(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=2)
    rs.metadata.deletion_timestamp = ago(0)
    add(controller, rs, pod("orphan", None), pod("relabelled", rs, labels={"app": "x"}))
    await controller.reconcile("default/web")
    assert client.patches == []
    assert creates(client) == []


# ---------------------------------------------------------------- status


async def test_status_counts_and_is_written_only_on_change(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    client.write_through = True
    rs = replica_set(replicas=4, min_ready=30)
    rs.metadata.generation = 3
    add(controller, rs,
        pod("available", rs, ready_for=100),
        pod("just-ready", rs, ready_for=5),
        pod("not-ready", rs, ready=False),
        pod("partial-labels", rs, labels={"app": "web", "extra": "1"}, ready=False),
        pod("terminating", rs, deleting=True))
    rs.spec.template.metadata.labels["extra"] = "1"
    rs.spec.selector.match_labels.pop("extra", None)
    controller.rs_store.put(rs)
    await controller.reconcile("default/web")
    status = cast(v1.ReplicaSet, client.status_updates[-1]).status
    assert (status.replicas, status.fully_labeled_replicas, status.ready_replicas,
            status.available_replicas, status.observed_generation) == (4, 1, 2, 1, 3)
    # just-ready becomes available 30 s after its Ready transition: a requeue is pending.
    assert "default/web" in controller.queue._delayed
    writes = len(client.status_updates)
    await controller.reconcile("default/web")
    assert len(client.status_updates) == writes


async def test_status_follows_a_pod_replaced_in_the_cache(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    client.write_through = True
    rs = replica_set(replicas=2)
    add(controller, rs, pod("a", rs), pod("b", rs, ready=False))
    await controller.reconcile("default/web")
    status = cast(v1.ReplicaSet, client.status_updates[-1]).status
    assert (status.replicas, status.ready_replicas) == (2, 1)
    # The informer replaces b with its newer version (ready), and a leaves.
    ready_b = pod("b", rs)
    ready_b.metadata.resource_version = "6"
    add(controller, ready_b)
    controller.pod_store.remove("default/a")
    await controller.reconcile("default/web")
    status = cast(v1.ReplicaSet, client.status_updates[-1]).status
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (1, 1, 1)
    assert len(controller.pod_facts) == 1


async def test_sync_ignores_pods_other_controllers_own(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    client.write_through = True
    rs, other = replica_set(replicas=1), replica_set("other", replicas=1)
    add(controller, rs, other, pod("mine", rs), pod("theirs", other))
    await controller.reconcile("default/web")
    # Neither created, nor claimed (no adoption or release patch), nor read past the cache.
    assert (creates(client), client.patches, client.gets) == ([], [], [])
    status = cast(v1.ReplicaSet, client.status_updates[-1]).status
    assert status.replicas == 1


async def test_pod_updates_queue_the_replica_set_only_when_a_sync_would_see_them(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, _ = env
    rs = replica_set()
    add(controller, rs)
    old = pod("a", rs, node="", phase="Pending", ready=False)

    def updated(change: str) -> v1.Pod:
        new = v1.Pod()
        new.CopyFrom(old)
        new.metadata.resource_version = "6"
        if change == "bound":
            new.spec.node_name = "node-1"
            new.status.conditions.add(type="PodScheduled", status="True")
        elif change == "ready":
            new.status.phase = "Running"
            new.status.conditions[0].status = "True"
        elif change == "labels":
            new.metadata.labels["extra"] = "1"
        elif change == "failed":
            new.status.phase = "Failed"
        elif change == "released":
            del new.metadata.owner_references[:]
        return new

    def queued_after(change: str) -> bool:
        controller.queue._queue.clear()
        controller.queue._dirty.clear()
        controller._on_pod_update(old, updated(change))
        return "default/web" in controller.queue._dirty

    # A binding changes nothing a sync counts; each of the others does.
    assert not queued_after("bound")
    assert all(queued_after(c) for c in ("ready", "labels", "failed", "released"))
