"""Garbage collector, node lifecycle (with taint eviction), namespace controller and pod GC
in a real ControllerManager against a real API server and etcd; hollow nodes stand in for
kubelets (pausing one stops its heartbeats and leaves its pods alone)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.testing.hollow import HollowCluster
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import running_manager

SETTINGS = ControllerManagerSettings(
    controllers=("garbagecollector", "nodelifecycle", "namespace", "podgc"),
    leader_elect=False,
    workers=4,
    node_monitor_period=0.2,
    node_monitor_grace_period=2.0,
)
UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture
async def manager(client: ApiClient) -> AsyncIterator[ControllerManager]:
    async with running_manager(client, SETTINGS) as m:
        yield m


def owned_by(owner: v1.ConfigMap, *, block: bool = True) -> v1.OwnerReference:
    return v1.OwnerReference(api_version="v1", kind="ConfigMap", name=owner.metadata.name,
                             uid=owner.metadata.uid, block_owner_deletion=block)


async def configmap(client: ApiClient, name: str, *owners: v1.OwnerReference,
                    namespace: str = "default") -> v1.ConfigMap:
    cm = v1.ConfigMap(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    cm.metadata.owner_references.extend(owners)
    return await client.create(cm)


async def pod(client: ApiClient, name: str, *owners: v1.OwnerReference, node: str = "",
              namespace: str = "default",
              tolerations: tuple[v1.Toleration, ...] = ()) -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace=namespace))
    p.metadata.owner_references.extend(owners)
    p.spec.containers.add(name="app", image="busybox")
    p.spec.tolerations.extend(tolerations)
    created = await client.create(p)
    if node:
        created = await client.bind(namespace, name, node, created.metadata.uid)
    return created


async def gone(client: ApiClient, kind: type[v1.ConfigMap] | type[v1.Pod] | type[v1.Namespace],
               name: str, namespace: str = "default") -> bool:
    try:
        await client.get(kind, name, namespace)
    except NotFound:
        return True
    return False


async def exists(client: ApiClient, kind: type[v1.ConfigMap] | type[v1.Pod], name: str,
                 namespace: str = "default") -> bool:
    return not await gone(client, kind, name, namespace)


# ---------------------------------------------------------------- garbage collector


async def test_background_deletes_dependents_whose_owners_are_all_gone(
    client: ApiClient, manager: ControllerManager
) -> None:
    owner = await configmap(client, "owner")
    other = await configmap(client, "other")
    await configmap(client, "dep-cm", owned_by(owner))
    await pod(client, "dep-pod", owned_by(owner))
    await configmap(client, "shared", owned_by(owner), owned_by(other))

    await client.delete(v1.ConfigMap, "owner", "default", propagation_policy="Background")

    await eventually(lambda: gone(client, v1.ConfigMap, "dep-cm"), message="dep-cm deleted")
    await eventually(lambda: gone(client, v1.Pod, "dep-pod"), message="dep-pod deleted")

    async def shared_lost_dead_ref() -> bool:
        shared = await client.get(v1.ConfigMap, "shared", "default")
        return [r.uid for r in shared.metadata.owner_references] == [other.metadata.uid]

    # A dependent with another live owner lives on, minus the reference to the dead one.
    await eventually(shared_lost_dead_ref, message="shared keeps only its live owner")


async def test_dependent_of_an_owner_that_never_existed_is_deleted(
    client: ApiClient, manager: ControllerManager
) -> None:
    ghost = v1.OwnerReference(api_version="v1", kind="ConfigMap", name="ghost",
                              uid="00000000-0000-0000-0000-000000000000")
    await configmap(client, "orphaned", ghost)
    # Same name, different uid: still not the owner the reference means.
    await configmap(client, "ghost")
    ghost_by_name = v1.OwnerReference(api_version="v1", kind="ConfigMap", name="ghost",
                                      uid="11111111-1111-1111-1111-111111111111")
    await configmap(client, "impostor-child", ghost_by_name)
    await eventually(lambda: gone(client, v1.ConfigMap, "orphaned"), message="orphan deleted")
    await eventually(lambda: gone(client, v1.ConfigMap, "impostor-child"),
                     message="uid-mismatch dependent deleted")
    assert await exists(client, v1.ConfigMap, "ghost")


async def test_foreground_keeps_owner_until_blocking_dependents_are_gone(
    client: ApiClient, manager: ControllerManager
) -> None:
    hollow = HollowCluster(client, ["fg-node"], heartbeat=0.2)
    await hollow.start()
    try:
        owner = await configmap(client, "fg-owner")
        await configmap(client, "fg-dep", owned_by(owner))
        await pod(client, "fg-pod", owned_by(owner), node="fg-node")
        await eventually(lambda: _running(client, "fg-pod"), message="fg-pod running")
        # Its kubelet is gone: the pod's graceful deletion is never confirmed.
        hollow.paused_nodes.add("fg-node")

        await client.delete(v1.ConfigMap, "fg-owner", "default",
                            propagation_policy="Foreground")
        await eventually(lambda: gone(client, v1.ConfigMap, "fg-dep"), message="fg-dep deleted")

        async def pod_terminating() -> bool:
            return bool((await client.get(v1.Pod, "fg-pod", "default")
                         ).metadata.deletion_timestamp)

        await eventually(pod_terminating, message="fg-pod terminating")
        still = await client.get(v1.ConfigMap, "fg-owner", "default")
        assert still.metadata.deletion_timestamp
        assert "foregroundDeletion" in still.metadata.finalizers

        hollow.paused_nodes.discard("fg-node")
        # The kubelet is back and confirms the pod's deletion (a nudge makes it look again).
        await client.patch(v1.Pod, "fg-pod", {"metadata": {"labels": {"nudge": "1"}}}, "default")
        await eventually(lambda: gone(client, v1.Pod, "fg-pod"), message="fg-pod deleted")
        await eventually(lambda: gone(client, v1.ConfigMap, "fg-owner"),
                         message="owner deleted after its dependents")
    finally:
        await hollow.stop()


async def test_foreground_does_not_wait_for_non_blocking_dependents(
    client: ApiClient, manager: ControllerManager
) -> None:
    owner = await configmap(client, "nb-owner")
    await configmap(client, "nb-dep", owned_by(owner, block=False))
    await client.delete(v1.ConfigMap, "nb-owner", "default", propagation_policy="Foreground")
    await eventually(lambda: gone(client, v1.ConfigMap, "nb-owner"), message="owner deleted")
    await eventually(lambda: gone(client, v1.ConfigMap, "nb-dep"), message="dependent deleted")


async def test_foreground_cascades_down_a_chain(
    client: ApiClient, manager: ControllerManager
) -> None:
    a = await configmap(client, "chain-a")
    b = await configmap(client, "chain-b", owned_by(a))
    await configmap(client, "chain-c", owned_by(b))
    seen: list[str] = []

    async def record_order() -> bool:
        for name in ("chain-c", "chain-b", "chain-a"):
            if name not in seen and await gone(client, v1.ConfigMap, name):
                seen.append(name)
        return len(seen) == 3

    await client.delete(v1.ConfigMap, "chain-a", "default", propagation_policy="Foreground")
    await eventually(record_order, message="the whole chain deleted")
    # Each owner waits for its dependents: the chain goes from the leaf up.
    assert seen == ["chain-c", "chain-b", "chain-a"]


async def test_orphan_removes_owner_references_and_keeps_dependents(
    client: ApiClient, manager: ControllerManager
) -> None:
    owner = await configmap(client, "or-owner")
    other = await configmap(client, "or-other")
    await configmap(client, "or-dep", owned_by(owner))
    await pod(client, "or-pod", owned_by(owner), owned_by(other))

    await client.delete(v1.ConfigMap, "or-owner", "default", propagation_policy="Orphan")
    await eventually(lambda: gone(client, v1.ConfigMap, "or-owner"), message="owner deleted")
    dep = await client.get(v1.ConfigMap, "or-dep", "default")
    assert list(dep.metadata.owner_references) == []
    p = await client.get(v1.Pod, "or-pod", "default")
    assert [r.uid for r in p.metadata.owner_references] == [other.metadata.uid]


async def _running(client: ApiClient, name: str, namespace: str = "default") -> bool:
    return (await client.get(v1.Pod, name, namespace)).status.phase == "Running"


# ---------------------------------------------------------------- node lifecycle


def tolerate_unreachable(seconds: int) -> v1.Toleration:
    return v1.Toleration(key=UNREACHABLE, operator="Exists", effect="NoExecute",
                         toleration_seconds=seconds)


def ready_status(node: v1.Node) -> v1.NodeCondition | None:
    return next((c for c in node.status.conditions if c.type == "Ready"), None)


async def test_silent_node_becomes_unknown_tainted_and_its_pods_are_evicted(
    client: ApiClient, manager: ControllerManager
) -> None:
    hollow = HollowCluster(client, ["alive", "silent"], heartbeat=0.2)
    await hollow.start()
    try:
        await pod(client, "brief", node="silent", tolerations=(tolerate_unreachable(1),))
        await pod(client, "patient", node="silent")  # the default 300 s toleration
        await pod(client, "elsewhere", node="alive", tolerations=(tolerate_unreachable(1),))
        for name in ("brief", "patient", "elsewhere"):
            await eventually(lambda: _running(client, name), message=f"{name} running")

        hollow.paused_nodes.add("silent")

        async def unreachable() -> v1.Node | None:
            node = await client.get(v1.Node, "silent")
            ready = ready_status(node)
            taints = {(t.key, t.effect) for t in node.spec.taints}
            if ready is None or ready.status != "Unknown" or len(taints) < 2:
                return None
            return node

        node = await eventually(unreachable, timeout=10, message="silent node Unknown+tainted")
        ready = ready_status(node)
        assert ready is not None
        assert (ready.reason, ready.message) == (
            "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert {(t.key, t.effect) for t in node.spec.taints} == {
            (UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
        assert all(t.time_added for t in node.spec.taints)

        async def terminating(name: str) -> bool:
            return bool((await client.get(v1.Pod, name, "default")).metadata.deletion_timestamp)

        await eventually(lambda: terminating("brief"), timeout=5, message="brief evicted")
        # Not before its 1 s toleration was up (both times have whole seconds; the deadline
        # above says it came soon after).
        evicted = (await client.get(v1.Pod, "brief", "default")).metadata.deletion_timestamp
        no_execute = next(t for t in node.spec.taints if t.effect == "NoExecute")
        waited = m.parse_time(evicted) - m.parse_time(no_execute.time_added)
        assert waited.total_seconds() >= 1

        async def not_ready(name: str) -> bool:
            p = await client.get(v1.Pod, name, "default")
            cond = podutil.get_condition(p, "Ready")
            return cond is not None and cond.status == "False"

        await eventually(lambda: not_ready("patient"), message="pods on the node not ready")
        assert not await terminating("patient")
        assert not await terminating("elsewhere")
        alive = await client.get(v1.Node, "alive")
        assert not alive.spec.taints
        events = (await client.list(v1.Event, "default")).items
        assert any(e.reason == "TaintManagerEviction"
                   and e.message == "Marking for deletion Pod default/brief"
                   and e.involved_object.name == "brief" for e in events)

        # The kubelet comes back: its lease renews and it posts Ready=True again.
        hollow.paused_nodes.discard("silent")
        node = await client.get(v1.Node, "silent")
        cond = ready_status(node)
        assert cond is not None
        cond.status, cond.reason, cond.message = "True", "KubeletReady", ""
        cond.last_heartbeat_time = cond.last_transition_time = m.now_rfc3339()
        await client.update_status(node)

        async def untainted() -> bool:
            return not (await client.get(v1.Node, "silent")).spec.taints

        await eventually(untainted, timeout=5, message="recovered node loses its taints")
        assert not await terminating("patient")
    finally:
        await hollow.stop()


async def test_not_ready_node_gets_not_ready_taints(
    client: ApiClient, manager: ControllerManager
) -> None:
    # A healthy node too: with no node ready at all, nothing would be evicted.
    hollow = HollowCluster(client, ["sick", "healthy"], heartbeat=0.2)
    await hollow.start()
    try:
        await pod(client, "intolerant", node="sick", tolerations=(
            v1.Toleration(key="node.kubernetes.io/not-ready", operator="Exists",
                          effect="NoExecute", toleration_seconds=0),))
        await eventually(lambda: _running(client, "intolerant"), message="pod running")
        node = await client.get(v1.Node, "sick")
        cond = ready_status(node)
        assert cond is not None
        cond.status, cond.reason = "False", "KubeletNotReady"
        await client.update_status(node)

        async def taints() -> set[tuple[str, str]]:
            return {(t.key, t.effect) for t in (await client.get(v1.Node, "sick")).spec.taints}

        async def not_ready_taints() -> bool:
            return await taints() == {("node.kubernetes.io/not-ready", "NoExecute"),
                                      ("node.kubernetes.io/not-ready", "NoSchedule")}

        await eventually(not_ready_taints, message="not-ready taints")
        # tolerationSeconds 0: evicted at once.
        await eventually(lambda: gone(client, v1.Pod, "intolerant"), message="pod evicted")
    finally:
        await hollow.stop()


# ---------------------------------------------------------------- namespaces


async def test_deleting_a_namespace_empties_it_then_removes_it(
    client: ApiClient, manager: ControllerManager
) -> None:
    hollow = HollowCluster(client, ["ns-node"], heartbeat=0.2)
    await hollow.start()
    try:
        await client.create(v1.Namespace(metadata=v1.ObjectMeta(name="doomed")))
        await configmap(client, "a", namespace="doomed")
        await configmap(client, "b", namespace="doomed")
        await pod(client, "unbound", namespace="doomed")
        await pod(client, "bound", namespace="doomed", node="ns-node")
        await eventually(lambda: _running(client, "bound", "doomed"), message="bound running")
        await configmap(client, "survivor")

        await client.delete(v1.Namespace, "doomed")
        ns = await client.get(v1.Namespace, "doomed")
        assert ns.status.phase == "Terminating"

        await eventually(lambda: gone(client, v1.Namespace, "doomed", ""), timeout=10,
                         message="namespace deleted")
        for kind in (v1.ConfigMap, v1.Pod):
            assert not (await client.list(kind, "doomed")).items
        assert await exists(client, v1.ConfigMap, "survivor")
    finally:
        await hollow.stop()


# ---------------------------------------------------------------- pod GC


async def test_pod_gc_force_deletes_pods_of_missing_nodes_and_old_finished_pods(
    client: ApiClient
) -> None:
    settings = replace(SETTINGS, controllers=("podgc",), terminated_pod_gc_threshold=2,
                       node_monitor_grace_period=0.5)
    hollow = HollowCluster(client, ["doomed-node"], heartbeat=0.2)
    await hollow.start()
    try:
        async with running_manager(client, settings):
            await pod(client, "stranded", node="doomed-node")
            await eventually(lambda: _running(client, "stranded"), message="stranded running")
            hollow.paused_nodes.add("doomed-node")
            await client.delete(v1.Pod, "stranded", "default")  # stays Terminating
            await client.delete(v1.Node, "doomed-node")
            await eventually(lambda: gone(client, v1.Pod, "stranded"),
                             message="pod of a deleted node force-deleted")

            for i in range(4):
                await pod(client, f"done-{i}")
                finished = await client.get(v1.Pod, f"done-{i}", "default")
                finished.status.phase = "Succeeded"
                await client.update_status(finished)

            # Same creation second: the name breaks the tie, so done-0 and done-1 are oldest.
            async def oldest_gone() -> bool:
                names = {p.metadata.name for p in (await client.list(v1.Pod, "default")).items}
                return names == {"done-2", "done-3"}

            await eventually(oldest_gone, message="only the newest 2 finished pods kept")
    finally:
        await hollow.stop()
