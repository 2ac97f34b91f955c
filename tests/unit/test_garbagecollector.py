"""The garbage collector's graph and its decisions, driven with filled informer stores and a
fake client that records writes (no server)."""

from __future__ import annotations

from typing import cast

from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from controller_manager.garbagecollector import GarbageCollector, Graph, GraphNode
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, deliver, make_context


def queued(controller: GarbageCollector) -> set[str]:
    return set(controller.queue._queue)


# ---------------------------------------------------------------- objects


def cm(name: str, uid: str, *owners: v1.OwnerReference, deleting: bool = False,
       finalizers: tuple[str, ...] = ()) -> v1.ConfigMap:
    obj = v1.ConfigMap(metadata=v1.ObjectMeta(name=name, namespace="default", uid=uid,
                                              resource_version="1"))
    obj.metadata.owner_references.extend(owners)
    obj.metadata.finalizers.extend(finalizers)
    if deleting:
        obj.metadata.deletion_timestamp = m.now_rfc3339()
    return obj


def ref(name: str, uid: str, *, block: bool = True, kind: str = "ConfigMap") -> v1.OwnerReference:
    return v1.OwnerReference(api_version="v1", kind=kind, name=name, uid=uid,
                             block_owner_deletion=block)


def setup(*objects: Message) -> tuple[FakeClient, ControllerContext, GarbageCollector]:
    client = FakeClient()
    ctx = make_context(client)
    gc = GarbageCollector(ctx)
    for obj in objects:
        client.put(obj)
        deliver(ctx, obj)
    return client, ctx, gc


# ---------------------------------------------------------------- graph


def test_graph_links_owners_and_dependents_and_reports_what_changed() -> None:
    graph = Graph()
    owner = GraphNode.of(cm("owner", "o"))
    dep = GraphNode.of(cm("dep", "d", ref("owner", "o")))
    assert graph.observe(owner) == set()
    assert graph.observe(dep) == {"d"}  # new object with owners: check them
    assert [n.identity.uid for n in graph.dependents("o")] == ["d"]
    # Owner starts foreground deletion: its dependents must be looked at.
    assert graph.observe(GraphNode.of(cm("owner", "o", deleting=True,
                                         finalizers=("foregroundDeletion",)))) == {"o", "d"}
    # The dependent goes: the waiting owner is looked at again.
    assert graph.forget("d") == {"o"}
    assert graph.dependents("o") == []


def test_graph_owner_deletion_touches_dependents_and_keeps_their_links() -> None:
    graph = Graph()
    graph.observe(GraphNode.of(cm("owner", "o")))
    graph.observe(GraphNode.of(cm("a", "a", ref("owner", "o"))))
    graph.observe(GraphNode.of(cm("b", "b", ref("owner", "o", block=False))))
    assert graph.forget("o") == {"a", "b"}
    # Dependents still name the dead owner until they are updated or deleted.
    assert {n.identity.uid for n in graph.dependents("o")} == {"a", "b"}
    graph.observe(GraphNode.of(cm("a", "a")))
    assert [n.identity.uid for n in graph.dependents("o")] == ["b"]


def test_blocking_dependents_are_those_with_block_owner_deletion() -> None:
    graph = Graph()
    graph.observe(GraphNode.of(cm("a", "a", ref("owner", "o"))))
    graph.observe(GraphNode.of(cm("b", "b", ref("owner", "o", block=False))))
    assert [n.identity.uid for n in graph.blocking_dependents("o")] == ["a"]


def test_removing_a_reference_wakes_a_waiting_owner() -> None:
    graph = Graph()
    graph.observe(GraphNode.of(cm("owner", "o", deleting=True,
                                  finalizers=("foregroundDeletion",))))
    graph.observe(GraphNode.of(cm("dep", "d", ref("owner", "o"))))
    assert graph.observe(GraphNode.of(cm("dep", "d"))) == {"d", "o"}


# ---------------------------------------------------------------- decisions


async def test_dependent_of_a_missing_owner_is_deleted_in_background() -> None:
    client, _, gc = setup(cm("dep", "d", ref("owner", "o")))
    await gc.reconcile("d")
    assert client.deletes == [("ConfigMap", "default", "dep",
                               {"propagation_policy": "Background", "uid": "d"})]
    # The owner's absence was confirmed with the API server and is remembered.
    assert client.gets == [("ConfigMap", "owner")]
    assert "o" in gc.absent


async def test_owner_with_same_name_but_another_uid_counts_as_gone() -> None:
    client, _, gc = setup(cm("dep", "d", ref("owner", "old-uid")))
    client.put(cm("owner", "new-uid"))  # not yet in our cache: the GET finds it
    await gc.reconcile("d")
    assert [d[2] for d in client.deletes] == ["dep"]


async def test_dependent_with_a_live_owner_loses_only_the_dead_reference() -> None:
    client, _, gc = setup(cm("alive", "a"), cm("dep", "d", ref("dead", "x"), ref("alive", "a")))
    await gc.reconcile("d")
    assert client.deletes == []
    kept = cast(v1.ConfigMap, await client.get(v1.ConfigMap, "dep", "default"))
    assert [r.uid for r in kept.metadata.owner_references] == ["a"]


async def test_owner_not_yet_cached_but_alive_keeps_the_dependent() -> None:
    client, _, gc = setup(cm("dep", "d", ref("owner", "o")))
    client.put(cm("owner", "o"))
    await gc.reconcile("d")
    assert client.deletes == [] and client.updates == []


async def test_unknown_owner_kind_is_never_a_reason_to_delete() -> None:
    client, _, gc = setup(cm("dep", "d", ref("thing", "t", kind="Widget")))
    await gc.reconcile("d")
    assert client.deletes == []


async def test_cluster_scoped_dependent_of_a_namespaced_owner_is_collected() -> None:
    node = v1.Node(metadata=v1.ObjectMeta(name="n1", uid="n", resource_version="1"))
    node.metadata.owner_references.append(ref("owner", "o"))
    client, _, gc = setup(cm("owner", "o"), node)
    await gc.reconcile("n")
    assert [(d[0], d[2]) for d in client.deletes] == [("Node", "n1")]


async def test_foreground_owner_enqueues_dependents_and_waits_for_blocking_ones() -> None:
    owner = cm("owner", "o", deleting=True, finalizers=("foregroundDeletion",))
    client, ctx, gc = setup(owner, cm("dep", "d", ref("owner", "o")),
                            cm("loose", "l", ref("owner", "o", block=False)))
    assert {"o", "d", "l"} <= queued(gc)
    await gc.reconcile("o")
    assert client.updates == []  # "dep" still blocks
    # The dependents see their owner waiting: deleted (no dependents of their own: background).
    await gc.reconcile("d")
    await gc.reconcile("l")
    assert sorted((d[2], d[3]["propagation_policy"]) for d in client.deletes) == [
        ("dep", "Background"), ("loose", "Background")]
    deliver(ctx, cm("dep", "d", ref("owner", "o")), "DELETED")
    await gc.reconcile("o")
    assert [list(m.meta(u).finalizers) for u in client.updates] == [[]]
    assert ("configmaps", "default", "owner") not in client.objects


async def test_dependent_with_its_own_dependents_is_deleted_in_foreground() -> None:
    a = cm("a", "a", deleting=True, finalizers=("foregroundDeletion",))
    client, _, gc = setup(a, cm("b", "b", ref("a", "a")), cm("c", "c", ref("b", "b")))
    await gc.reconcile("b")
    assert [(d[2], d[3]["propagation_policy"]) for d in client.deletes] == [("b", "Foreground")]


async def test_honours_a_policy_already_on_the_dependent() -> None:
    client, _, gc = setup(cm("dep", "d", ref("owner", "o"), finalizers=("orphan",)))
    await gc.reconcile("d")
    assert [d[3]["propagation_policy"] for d in client.deletes] == ["Orphan"]


async def test_orphan_removes_references_then_the_finalizer() -> None:
    owner = cm("owner", "o", deleting=True, finalizers=("orphan",))
    client, _, gc = setup(owner, cm("d1", "1", ref("owner", "o")),
                          cm("d2", "2", ref("owner", "o"), ref("other", "x")))
    await gc.reconcile("o")
    assert client.deletes == []
    d1 = cast(v1.ConfigMap, await client.get(v1.ConfigMap, "d1", "default"))
    d2 = cast(v1.ConfigMap, await client.get(v1.ConfigMap, "d2", "default"))
    assert list(d1.metadata.owner_references) == []
    assert [r.uid for r in d2.metadata.owner_references] == ["x"]
    # Last write: the owner without its finalizer, which lets the API server delete it.
    assert m.meta(client.updates[-1]).name == "owner"
    assert ("configmaps", "default", "owner") not in client.objects


async def test_objects_being_deleted_or_without_owners_are_left_alone() -> None:
    client, _, gc = setup(cm("free", "f"), cm("going", "g", ref("owner", "o"), deleting=True))
    await gc.reconcile("f")
    await gc.reconcile("g")
    await gc.reconcile("unknown-uid")
    assert client.deletes == [] and client.updates == [] and client.gets == []


async def test_a_replaced_dependent_is_not_deleted() -> None:
    client, _, gc = setup(cm("dep", "d", ref("owner", "o")))
    client.put(cm("dep", "new"))  # someone recreated the name meanwhile
    await gc.reconcile("d")
    assert ("configmaps", "default", "dep") in client.objects  # uid precondition held


def test_events_are_not_watched() -> None:
    # As upstream's DefaultIgnoredResources: every other stored kind is.
    _, ctx, gc = setup()
    watched = {informer.rtype.plural for informer in ctx.informers.informers()}
    assert "events" not in watched and "events" not in gc.informers
    assert {"pods", "replicasets", "configmaps", "leases"} <= watched
