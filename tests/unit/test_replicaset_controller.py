"""ReplicaSetController.reconcile on filled stores with a fake client that records writes.

The stores are not updated by the fake client unless ``write_through`` is set: that is the
lagging cache the expectations exist for.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from controller_manager.replicaset import (
    ReplicaSetController,
    deletion_order,
    slow_start_batch,
)
from controller_manager.settings import ControllerManagerSettings
from kubelite.api import convert
from kubelite.api import meta as m
from kubelite.api.errors import Forbidden, NotFound
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient
from kubelite.client.events import EventRecorder
from kubelite.client.expectations import ControllerExpectations
from kubelite.client.informer import InformerFactory, Store
from protos.v1 import objects_pb2 as v1

NS = "default"


class FakeClient:
    """Records every write; reads come from the stores given (as a fresh GET would)."""

    def __init__(self) -> None:
        self.stores: dict[type[Message], Store[Any]] = {}
        self.write_through = False
        self.calls: list[tuple[str, str, str]] = []
        self.created: list[Message] = []
        self.deleted: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.updates: list[Message] = []
        self.status_updates: list[Message] = []
        self.fail_creates_from: int | None = None
        """Creates fail from this (0-based) create call on."""
        self._creates = 0
        self._ids = itertools.count(1)
        self._rv = itertools.count(1000)

    def _store(self, kind: type[Message]) -> Store[Any] | None:
        return self.stores.get(kind)

    def _put(self, obj: Message) -> None:
        store = self._store(type(obj))
        if self.write_through and store is not None:
            store.put(obj)

    async def create(self, obj: Message, namespace: str = "") -> Message:
        kind = by_message(type(obj)).kind
        index = self._creates
        self._creates += 1
        self.calls.append(("create", kind, m.meta(obj).name or m.meta(obj).generate_name))
        if self.fail_creates_from is not None and index >= self.fail_creates_from:
            raise Forbidden("exceeded quota")
        created = m.copy(obj)
        meta = m.meta(created)
        n = next(self._ids)
        if not meta.name:
            meta.name = f"{meta.generate_name}{n:05d}"
        meta.uid = f"uid-{meta.name}-{n}"
        meta.creation_timestamp = meta.creation_timestamp or m.now_rfc3339()
        meta.resource_version = str(next(self._rv))
        meta.generation = 1
        self.created.append(created)
        self._put(created)
        return created

    async def get(self, kind: type[Message], name: str, namespace: str = "") -> Message:
        store = self._store(kind)
        obj = store.get_by_name(namespace or NS, name) if store is not None else None
        if obj is None:
            raise NotFound(f'{kind.__name__} "{name}" not found')
        return cast(Message, obj)

    async def update(self, obj: Message) -> Message:
        updated = m.copy(obj)
        meta = m.meta(updated)
        self.calls.append(("update", by_message(type(obj)).kind, meta.name))
        store = self._store(type(obj))
        current = store.get(m.key_of(obj)) if store is not None else None
        if current is not None and m.meta(current).generation and (
            getattr(current, "spec", None) != getattr(updated, "spec", None)
        ):
            meta.generation = m.meta(current).generation + 1
        meta.resource_version = str(next(self._rv))
        self.updates.append(updated)
        self._put(updated)
        return updated

    async def update_status(self, obj: Message) -> Message:
        updated = m.copy(obj)
        m.meta(updated).resource_version = str(next(self._rv))
        self.calls.append(("update_status", by_message(type(obj)).kind, m.meta(obj).name))
        self.status_updates.append(updated)
        self._put(updated)
        return updated

    async def patch(self, kind: type[Message], name: str, patch: dict[str, Any],
                    namespace: str = "", *, subresource: str = "") -> Message:
        current = await self.get(kind, name, namespace)
        rtype = by_message(kind)
        merged = convert.merge_patch(convert.to_dict(rtype, current), patch)
        _, obj = convert.from_dict(merged)
        m.meta(obj).resource_version = str(next(self._rv))
        self.calls.append(("patch", rtype.kind, name))
        self.patches.append((name, patch))
        self._put(obj)
        return obj

    async def delete(self, kind: type[Message], name: str, namespace: str = "", *,
                     uid: str = "", **_: Any) -> Message:
        self.calls.append(("delete", by_message(kind).kind, name))
        self.deleted.append(name)
        current = await self.get(kind, name, namespace)
        store = self._store(kind)
        if self.write_through and store is not None:
            store.remove(m.key_of(current))
        return current


class FakeRecorder(EventRecorder):
    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None), "test")
        self.events: list[tuple[str, str, str, str]] = []

    def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        self.events.append((m.meta(obj).name, type_, reason, message))


def make_context(client: FakeClient) -> ControllerContext:
    api = cast(ApiClient, client)
    settings = ControllerManagerSettings(leader_elect=False, workers=1)
    return ControllerContext(api, InformerFactory(api), FakeRecorder(), settings)


# ---------------------------------------------------------------- object builders


def stamp(seconds_ago: float) -> str:
    return m.format_time(m.now() - dt.timedelta(seconds=seconds_ago))


def replica_set(name: str = "web", replicas: int = 3, labels: dict[str, str] | None = None,
                min_ready: int = 0) -> v1.ReplicaSet:
    labels = labels or {"app": "web"}
    rs = v1.ReplicaSet(metadata=v1.ObjectMeta(name=name, namespace=NS, uid=f"uid-{name}",
                                              generation=1, resource_version="1",
                                              creation_timestamp=stamp(100)))
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
                                      resource_version="5", creation_timestamp=stamp(age)))
    p.metadata.labels.update(labels if labels is not None else {"app": "web"})
    if owner is not None:
        p.metadata.owner_references.append(owner_ref(owner))
    if deleting:
        p.metadata.deletion_timestamp = stamp(0)
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="nginx")
    p.status.phase = phase
    p.status.conditions.add(type="Ready", status="True" if ready else "False",
                            last_transition_time=stamp(ready_for))
    p.status.container_statuses.add(name="main", restart_count=restarts, ready=ready)
    return p


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def env() -> AsyncIterator[tuple[ReplicaSetController, FakeClient]]:
    client = FakeClient()
    controller = ReplicaSetController(make_context(client))
    client.stores = {v1.ReplicaSet: controller.rs_store, v1.Pod: controller.pod_store}
    yield controller, client
    await controller.queue.shut_down()


def events(controller: ReplicaSetController) -> list[tuple[str, str, str, str]]:
    return cast(FakeRecorder, controller.recorder).events


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
    assert client.deleted == []


async def test_expectations_stop_a_lagging_cache_from_deleting_twice(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=1)
    add(controller, rs, *(pod(f"web-{i}", rs, age=100 + i) for i in range(3)))
    await controller.reconcile("default/web")
    assert len(client.deleted) == 2
    await controller.reconcile("default/web")
    assert len(client.deleted) == 2
    # Seeing one deletion twice (marked, then gone) counts once.
    gone = controller.pod_store.get(f"default/{client.deleted[0]}")
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
    assert sorted(client.deleted) == ["pending", "unscheduled"]
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
    assert creates(client) == [] and client.deleted == []


async def test_does_not_adopt_while_being_deleted(
        env: tuple[ReplicaSetController, FakeClient]) -> None:
    controller, client = env
    rs = replica_set(replicas=2)
    rs.metadata.deletion_timestamp = stamp(0)
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
