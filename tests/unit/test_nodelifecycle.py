"""Node health, lifecycle taints, taint eviction and pod GC decisions, driven with filled
informer stores and a fake client (no server)."""

from __future__ import annotations

import datetime as dt
from typing import cast

from controller_manager.nodelifecycle import (
    MESSAGE_UNKNOWN,
    REASON_UNKNOWN,
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    NodeLifecycleController,
    desired_taints,
    last_heard,
    mark_unknown,
)
from controller_manager.podgc import PodGCController, terminated_to_delete
from controller_manager.taint_eviction import TaintEvictionController, eviction_time
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.scheduling import tolerates
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, deliver, make_context
from tests.unit.objects import ago

NOW = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def node(name: str, ready: str = "True", heartbeat: str = "",
         taints: tuple[v1.Taint, ...] = ()) -> v1.Node:
    n = v1.Node(metadata=v1.ObjectMeta(name=name, uid=f"uid-{name}", resource_version="1",
                                       creation_timestamp=ago(3600)))
    n.status.conditions.add(type="Ready", status=ready, reason="KubeletReady",
                            last_heartbeat_time=heartbeat or ago(0))
    n.spec.taints.extend(taints)
    return n


def lease(name: str, renewed: str) -> v1.Lease:
    obj = v1.Lease(metadata=v1.ObjectMeta(name=name, namespace="kube-node-lease",
                                          resource_version="1"))
    obj.spec.renew_time = renewed
    return obj


def pod(name: str, node_name: str = "n1", *tolerations: v1.Toleration,
        phase: str = "Running", created: str = "") -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default", uid=f"uid-{name}",
                                      resource_version="1",
                                      creation_timestamp=created or ago(60)))
    p.spec.node_name = node_name
    p.spec.tolerations.extend(tolerations)
    p.status.phase = phase
    podutil.set_condition(p, "Ready", "True")
    return p


def toleration(key: str, seconds: int | None = None, effect: str = "NoExecute"
               ) -> v1.Toleration:
    t = v1.Toleration(key=key, operator="Exists", effect=effect)
    if seconds is not None:
        t.toleration_seconds = seconds
    return t


# ---------------------------------------------------------------- pure rules


def test_last_heard_is_the_newer_of_lease_and_ready_heartbeat() -> None:
    n = node("n1", heartbeat="2030-01-01T11:00:00Z")
    assert last_heard(n, None) == dt.datetime(2030, 1, 1, 11, tzinfo=dt.UTC)
    fresh = lease("n1", "2030-01-01T11:59:30.500000Z")
    assert last_heard(n, fresh) == dt.datetime(2030, 1, 1, 11, 59, 30, 500000, tzinfo=dt.UTC)
    silent = v1.Node(metadata=v1.ObjectMeta(name="x", creation_timestamp="2030-01-01T10:00:00Z"))
    assert last_heard(silent, None) == dt.datetime(2030, 1, 1, 10, tzinfo=dt.UTC)


def test_mark_unknown_keeps_heartbeat_and_sets_kubernetes_reason() -> None:
    n = node("n1", heartbeat="2030-01-01T11:00:00Z")
    n.status.conditions.add(type="MemoryPressure", status="False")
    n.status.conditions.add(type="NetworkUnavailable", status="False")  # not the kubelet's
    assert mark_unknown(n, NOW)
    by_type = {c.type: c for c in n.status.conditions}
    ready = by_type["Ready"]
    assert (ready.status, ready.reason, ready.message) == ("Unknown", REASON_UNKNOWN,
                                                           MESSAGE_UNKNOWN)
    assert ready.last_heartbeat_time == "2030-01-01T11:00:00Z"
    assert ready.last_transition_time == "2030-01-01T12:00:00Z"
    assert by_type["MemoryPressure"].status == "Unknown"
    assert by_type["NetworkUnavailable"].status == "False"
    assert not mark_unknown(n, NOW)  # idempotent


def test_mark_unknown_adds_a_missing_ready_condition() -> None:
    n = v1.Node(metadata=v1.ObjectMeta(name="n1"))
    assert mark_unknown(n, NOW)
    (ready,) = n.status.conditions
    assert (ready.type, ready.status, ready.reason) == ("Ready", "Unknown",
                                                        "NodeStatusNeverUpdated")


def keys(taints: list[v1.Taint]) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in taints}


def test_taints_follow_the_ready_condition() -> None:
    user = v1.Taint(key="dedicated", value="db", effect="NoSchedule")
    unknown = desired_taints(node("n", "Unknown", taints=(user,)), NOW)
    assert keys(unknown) == {("dedicated", "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute"),
                             (TAINT_UNREACHABLE, "NoSchedule")}
    assert all(t.time_added == "2030-01-01T12:00:00Z" for t in unknown if t.key != "dedicated")
    # Unknown -> False: unreachable swapped for not-ready.
    flipped = node("n", "False", taints=tuple(unknown))
    assert keys(desired_taints(flipped, NOW)) == {
        ("dedicated", "NoSchedule"), (TAINT_NOT_READY, "NoExecute"),
        (TAINT_NOT_READY, "NoSchedule")}
    # Recovered: only the user's taint stays.
    assert keys(desired_taints(node("n", "True", taints=tuple(unknown)), NOW)) == {
        ("dedicated", "NoSchedule")}


def test_existing_lifecycle_taints_keep_their_time_added() -> None:
    old = v1.Taint(key=TAINT_UNREACHABLE, effect="NoExecute", time_added="2029-12-31T00:00:00Z")
    result = desired_taints(node("n", "Unknown", taints=(old,)), NOW)
    assert [t.time_added for t in result if t.effect == "NoExecute"] == ["2029-12-31T00:00:00Z"]


def test_tolerates_follows_kubernetes_matching() -> None:
    taint = v1.Taint(key="k", value="v", effect="NoExecute")
    assert tolerates(v1.Toleration(operator="Exists"), taint)
    assert tolerates(v1.Toleration(key="k", operator="Exists"), taint)
    assert tolerates(v1.Toleration(key="k", value="v"), taint)  # "" means Equal
    assert not tolerates(v1.Toleration(key="k", value="w"), taint)
    assert not tolerates(v1.Toleration(key="k", operator="Exists", effect="NoSchedule"), taint)
    assert not tolerates(v1.Toleration(key="other", operator="Exists"), taint)


def test_eviction_time() -> None:
    taint = v1.Taint(key=TAINT_UNREACHABLE, effect="NoExecute", time_added="2030-01-01T11:59:58Z")
    # Not tolerated: at once.
    assert eviction_time(pod("p"), [taint], {}, NOW) == NOW
    # Tolerated for 5 s from timeAdded.
    due = eviction_time(pod("p", "n1", toleration(TAINT_UNREACHABLE, 5)), [taint], {}, NOW)
    assert due == dt.datetime(2030, 1, 1, 12, 0, 3, tzinfo=dt.UTC)
    # The shortest of several matching tolerations wins; 0 or less: at once.
    both = pod("p", "n1", toleration(TAINT_UNREACHABLE, 30), toleration("", 10))
    assert eviction_time(both, [taint], {}, NOW) == dt.datetime(2030, 1, 1, 12, 0, 8,
                                                                tzinfo=dt.UTC)
    assert eviction_time(pod("p", "n1", toleration(TAINT_UNREACHABLE, 0)), [taint], {},
                         NOW) == NOW
    # Tolerated without tolerationSeconds: never.
    assert eviction_time(pod("p", "n1", toleration(TAINT_UNREACHABLE)), [taint], {}, NOW) is None
    # Without timeAdded the time we first saw the taint counts.
    bare = v1.Taint(key=TAINT_UNREACHABLE, effect="NoExecute")
    seen = {(TAINT_UNREACHABLE, "NoExecute"): NOW - dt.timedelta(seconds=1)}
    assert eviction_time(pod("p", "n1", toleration(TAINT_UNREACHABLE, 5)), [bare], seen,
                         NOW) == NOW + dt.timedelta(seconds=4)


def test_terminated_pods_over_the_threshold_oldest_first() -> None:
    pods = [pod(f"p{i}", phase="Succeeded", created=f"2030-01-01T00:00:0{i}Z") for i in range(5)]
    pods.append(pod("running"))
    assert [p.metadata.name for p in terminated_to_delete(pods, 3)] == ["p0", "p1"]
    assert terminated_to_delete(pods, 5) == []
    assert terminated_to_delete(pods, 0) == []  # disabled


# ---------------------------------------------------------------- reconcile


async def test_silent_node_is_marked_unknown_tainted_and_its_pods_not_ready() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=40.0)
    controller = NodeLifecycleController(ctx)
    controller.watching_since = m.now() - dt.timedelta(hours=1)
    stale = node("n1", heartbeat=ago(100))
    for obj in (stale, lease("n1", ago(50, micro=True)), pod("p1"), node("n2"),
                pod("other", "n2")):
        client.put(obj)
        deliver(ctx, obj)
    await controller.reconcile("n1")
    (status,) = [u for u in client.status_updates if isinstance(u, v1.Node)]
    ready = next(c for c in status.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("Unknown", REASON_UNKNOWN)
    (spec,) = client.updates
    assert isinstance(spec, v1.Node)
    assert keys(list(spec.spec.taints)) == {(TAINT_UNREACHABLE, "NoExecute"),
                                            (TAINT_UNREACHABLE, "NoSchedule")}
    (pod_update,) = [u for u in client.status_updates if isinstance(u, v1.Pod)]
    assert pod_update.metadata.name == "p1"
    cond = podutil.get_condition(pod_update, "Ready")
    assert cond is not None and cond.status == "False"
    recorder = cast(FakeRecorder, ctx.recorder)
    assert ("n1", "Normal", "NodeNotReady", "Node n1 status is now: NodeNotReady") \
        in recorder.events


async def test_no_eviction_taints_when_no_node_is_ready() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=40.0)
    controller = NodeLifecycleController(ctx)
    controller.watching_since = m.now() - dt.timedelta(hours=1)
    for obj in (node("n1", heartbeat=ago(100)), node("n2", "False")):
        client.put(obj)
        deliver(ctx, obj)
    await controller.reconcile("n1")
    deliver(ctx, await client.get(v1.Node, "n1"), "MODIFIED")
    await controller.reconcile("n2")
    assert {(u.metadata.name, t.key, t.effect) for u in client.updates
            if isinstance(u, v1.Node) for t in u.spec.taints} == {
        ("n1", TAINT_UNREACHABLE, "NoSchedule"), ("n2", TAINT_NOT_READY, "NoSchedule")}


async def test_a_controller_that_just_started_gives_nodes_a_grace_period() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=40.0)
    controller = NodeLifecycleController(ctx)
    stale = node("n1", heartbeat=ago(100))
    client.put(stale)
    deliver(ctx, stale)
    await controller.reconcile("n1")
    assert client.status_updates == [] and client.updates == []


async def test_fresh_lease_keeps_a_node_as_it_is() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=40.0)
    controller = NodeLifecycleController(ctx)
    # The Ready heartbeat is old, but the lease was renewed: the kubelet is alive.
    for obj in (node("n1", heartbeat=ago(300)), lease("n1", ago(1, micro=True))):
        client.put(obj)
        deliver(ctx, obj)
    await controller.reconcile("n1")
    assert client.status_updates == [] and client.updates == []


async def test_taint_eviction_deletes_at_once_or_requeues_for_the_deadline() -> None:
    client = FakeClient()
    ctx = make_context(client)
    controller = TaintEvictionController(ctx)
    taint = v1.Taint(key=TAINT_UNREACHABLE, effect="NoExecute", time_added=ago(0))
    objects = (node("n1", "Unknown", taints=(taint,)), pod("intolerant"),
               pod("patient", "n1", toleration(TAINT_UNREACHABLE, 60)),
               pod("forever", "n1", toleration(TAINT_UNREACHABLE)))
    for obj in objects:
        client.put(obj)
        deliver(ctx, obj)
    for name in ("intolerant", "patient", "forever"):
        await controller.reconcile(f"default/{name}")
    assert [(d[2], d[3]) for d in client.deletes] == [("intolerant", {"uid": "uid-intolerant"})]
    assert "default/patient" in controller.queue._delayed
    assert "default/forever" not in controller.queue._delayed
    recorder = cast(FakeRecorder, ctx.recorder)
    assert recorder.events == [("default/intolerant", "Normal", "TaintManagerEviction",
                                "Marking for deletion Pod default/intolerant")]


async def test_pod_gc_force_deletes_pods_of_missing_nodes_after_quarantine() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=0.0)
    controller = PodGCController(ctx)
    unscheduled = pod("unscheduled", "")
    unscheduled.metadata.deletion_timestamp = m.now_rfc3339()
    for obj in (node("n1"), pod("kept"), pod("stranded", "gone-node"), unscheduled):
        client.put(obj)
        deliver(ctx, obj)
    for name in ("kept", "stranded", "unscheduled"):
        await controller.reconcile(f"default/{name}")
    assert sorted((d[2], d[3]["grace_period_seconds"]) for d in client.deletes) == [
        ("stranded", 0), ("unscheduled", 0)]
    assert ("Node", "gone-node") in client.gets  # absence confirmed with the API server


async def test_pod_gc_waits_out_the_quarantine_for_a_node_not_yet_seen() -> None:
    client = FakeClient()
    ctx = make_context(client, node_monitor_grace_period=40.0)
    controller = PodGCController(ctx)
    stranded = pod("stranded", "new-node")
    client.put(stranded)
    deliver(ctx, stranded)
    await controller.reconcile("default/stranded")
    assert client.deletes == []
    assert "default/stranded" in controller.queue._delayed
