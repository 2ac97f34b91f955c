"""The DaemonSet controller's decisions: reconcile(key) on filled informer stores with a fake
client that records writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller_manager.daemonset import DaemonSetController, node_should_run_daemon_pod
from controller_manager.workload import REVISION_HASH_LABEL, template_hash
from kubelite.client.expectations import ControllerExpectations
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, fill_cache, workload_context
from tests.unit.objects import NOW, owned_pod, stored

# ---------------------------------------------------------------- DaemonSet helpers


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[v1.Taint] | None = None) -> v1.Node:
    n = v1.Node(metadata=v1.ObjectMeta(name=name, uid=f"uid-{name}",
                                       labels={"kubernetes.io/hostname": name, **(labels or {})}))
    n.spec.taints.extend(taints or [])
    n.status.conditions.add(type="Ready", status="True")
    return n


def daemon_set(name: str = "agent", *, image: str = "agent:1",
               node_selector: dict[str, str] | None = None,
               max_unavailable: int | str | None = None, on_delete: bool = False) -> v1.DaemonSet:
    ds = v1.DaemonSet()
    ds.spec.selector.match_labels["app"] = name
    ds.spec.template.metadata.labels["app"] = name
    ds.spec.template.spec.containers.add(name="agent", image=image)
    ds.spec.template.spec.node_selector.update(node_selector or {})
    if on_delete:
        ds.spec.update_strategy.type = "OnDelete"
    if isinstance(max_unavailable, int):
        ds.spec.update_strategy.rolling_update.max_unavailable.int_val = max_unavailable
    elif isinstance(max_unavailable, str):
        ds.spec.update_strategy.rolling_update.max_unavailable.str_val = max_unavailable
    return stored(ds, name)


def setup(ds: v1.DaemonSet, nodes: list[v1.Node], pods: list[v1.Pod] = ()  # type: ignore[assignment]
          ) -> tuple[DaemonSetController, FakeClient, FakeRecorder]:
    ctx, client, recorder = workload_context()
    controller = DaemonSetController(ctx)
    controller.clock = lambda: NOW + dt.timedelta(minutes=5)
    fill_cache(ctx, ds, *nodes, *pods)
    return controller, client, recorder


def ds_pod(ds: v1.DaemonSet, name: str, node_name: str, *, current: bool = True,
           **kwargs: Any) -> v1.Pod:
    revision = template_hash(ds.spec.template, ds.status) if current else "old"
    return owned_pod(ds, "DaemonSet", name, node=node_name,
                     labels={"app": ds.metadata.name, REVISION_HASH_LABEL: revision}, **kwargs)


def last_status(client: FakeClient) -> v1.DaemonSetStatus:
    return client.last_status_write(v1.DaemonSet).status


# ---------------------------------------------------------------- tests


async def test_one_bound_pod_per_eligible_node() -> None:
    ds = daemon_set(node_selector={"disk": "ssd"})
    nodes = [
        node("a", {"disk": "ssd"}),
        node("b", {"disk": "ssd"}, [v1.Taint(key="dedicated", value="db", effect="NoSchedule")]),
        node("c", {"disk": "hdd"}),
        # Daemon pods tolerate not-ready and cordoned nodes.
        node("d", {"disk": "ssd"}, [v1.Taint(key="node.kubernetes.io/not-ready",
                                             effect="NoExecute"),
                                    v1.Taint(key="node.kubernetes.io/unschedulable",
                                             effect="NoSchedule")]),
    ]
    controller, client, recorder = setup(ds, nodes)
    await controller.reconcile("default/agent")
    pods = client.created_of(v1.Pod)
    assert sorted(p.spec.node_name for p in pods) == ["a", "d"]
    for pod in pods:
        assert pod.metadata.name.startswith("agent-") and pod.metadata.generate_name == "agent-"
        assert pod.metadata.owner_references[0].kind == "DaemonSet"
        assert pod.metadata.owner_references[0].controller
        assert pod.metadata.labels[REVISION_HASH_LABEL] == template_hash(ds.spec.template,
                                                                          ds.status)
        keys = {(t.key, t.effect) for t in pod.spec.tolerations}
        assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
        assert ("node.kubernetes.io/disk-pressure", "NoSchedule") in keys
    assert recorder.reasons().count("SuccessfulCreate") == 2
    status = last_status(client)
    assert status.desired_number_scheduled == 2
    assert status.current_number_scheduled == 0
    assert status.number_unavailable == 2


async def test_stale_cache_does_not_create_twice() -> None:
    ds = daemon_set()
    controller, client, _ = setup(ds, [node("a"), node("b")])
    await controller.reconcile("default/agent")
    await controller.reconcile("default/agent")  # the cache has not seen the pods yet
    assert len(client.created_of(v1.Pod)) == 2
    for pod in client.created_of(v1.Pod):
        controller._pod_events.added(pod)
    assert controller.expectations.satisfied("default/agent")


async def test_pods_leave_nodes_that_no_longer_fit() -> None:
    ds = daemon_set(node_selector={"role": "edge"})
    nodes = [
        node("keep", {"role": "edge"}),
        node("relabelled", {"role": "core"}),
        node("noexec", {"role": "edge"}, [v1.Taint(key="k", effect="NoExecute")]),
        node("nosched", {"role": "edge"}, [v1.Taint(key="k", effect="NoSchedule")]),
    ]
    pods = [ds_pod(ds, f"agent-{n}", n) for n in
            ("keep", "relabelled", "noexec", "nosched", "gone")]
    controller, client, _ = setup(ds, nodes, pods)
    await controller.reconcile("default/agent")
    assert client.created_of(v1.Pod) == []
    # A NoSchedule taint keeps new daemon pods out but lets the running one stay.
    assert sorted(client.deleted_names()) == ["agent-gone", "agent-noexec", "agent-relabelled"]
    options = {name: opts for _, _, name, opts in client.deletes}
    assert options["agent-gone"]["grace_period_seconds"] == 0  # no kubelet to confirm
    assert options["agent-relabelled"]["grace_period_seconds"] is None
    status = last_status(client)
    assert status.desired_number_scheduled == 1
    assert status.number_misscheduled == 3  # relabelled, noexec, nosched


async def test_failed_pod_is_replaced_and_duplicates_pruned() -> None:
    ds = daemon_set()
    pods = [
        ds_pod(ds, "agent-failed", "a", phase="Failed"),
        ds_pod(ds, "agent-old", "b", created=NOW),
        ds_pod(ds, "agent-young", "b", created=NOW + dt.timedelta(seconds=5)),
    ]
    controller, client, _ = setup(ds, [node("a"), node("b")], pods)
    await controller.reconcile("default/agent")
    assert sorted(client.deleted_names()) == ["agent-failed", "agent-young"]


async def test_rolling_update_respects_max_unavailable() -> None:
    ds = daemon_set(image="agent:2")
    nodes = [node(n) for n in "abcd"]
    pods = [ds_pod(ds, f"agent-{n}", n, current=False) for n in "abcd"]
    controller, client, _ = setup(ds, nodes, pods)
    await controller.reconcile("default/agent")
    assert len(client.deleted_names()) == 1  # default maxUnavailable 1

    # An updated pod that is not ready yet uses up the budget.
    pods = [ds_pod(ds, "agent-a", "a", ready=False),
            *(ds_pod(ds, f"agent-{n}", n, current=False) for n in "bcd")]
    controller, client, _ = setup(ds, nodes, pods)
    await controller.reconcile("default/agent")
    assert client.deleted_names() == []
    assert last_status(client).updated_number_scheduled == 1

    # 50% of 4 desired: two down at a time; an unavailable old pod is one of them.
    ds = daemon_set(image="agent:2", max_unavailable="50%")
    pods = [ds_pod(ds, "agent-a", "a", current=False, ready=False),
            *(ds_pod(ds, f"agent-{n}", n, current=False) for n in "bcd")]
    controller, client, _ = setup(ds, nodes, pods)
    await controller.reconcile("default/agent")
    deleted = client.deleted_names()
    assert "agent-a" in deleted and len(deleted) == 2


async def test_on_delete_leaves_old_pods() -> None:
    ds = daemon_set(image="agent:2", on_delete=True)
    controller, client, _ = setup(ds, [node("a")], [ds_pod(ds, "agent-a", "a", current=False)])
    await controller.reconcile("default/agent")
    assert client.deleted_names() == [] and client.created_of(v1.Pod) == []
    assert last_status(client).updated_number_scheduled == 0


async def test_status_counts() -> None:
    ds = daemon_set()
    ds.spec.min_ready_seconds = 600  # ready 5 minutes ago: ready, not yet available
    pods = [ds_pod(ds, "agent-a", "a"), ds_pod(ds, "agent-b", "b", ready=False)]
    controller, client, _ = setup(ds, [node("a"), node("b")], pods)
    await controller.reconcile("default/agent")
    status = last_status(client)
    assert (status.desired_number_scheduled, status.current_number_scheduled,
            status.number_ready, status.number_available, status.number_unavailable,
            status.updated_number_scheduled, status.observed_generation) == (2, 2, 1, 0, 2, 2, 1)
    assert "default/agent" in controller.queue._delayed  # rechecked when it becomes available
    await controller.stop()


def test_node_affinity_and_tolerations() -> None:
    ds = daemon_set()
    term = ds.spec.template.spec.affinity.node_affinity \
        .required_during_scheduling_ignored_during_execution.node_selector_terms.add()
    term.match_expressions.add(key="zone", operator="In", values=["z1", "z2"])
    assert node_should_run_daemon_pod(node("a", {"zone": "z1"}), ds) == (True, True)
    assert node_should_run_daemon_pod(node("b", {"zone": "z3"}), ds) == (False, False)
    tainted = node("c", {"zone": "z2"}, [v1.Taint(key="gpu", value="yes", effect="NoSchedule")])
    assert node_should_run_daemon_pod(tainted, ds) == (False, True)
    ds.spec.template.spec.tolerations.add(key="gpu", operator="Equal", value="yes")
    assert node_should_run_daemon_pod(tainted, ds) == (True, True)


def test_expectations_expire() -> None:
    expectations = ControllerExpectations(ttl=0.0)
    expectations.expect_creations("k", 2)
    assert expectations.satisfied("k")  # past the ttl: never wait forever
    expectations = ControllerExpectations()
    expectations.expect("k", creations=1, deletions=["u1"])
    expectations.creation_observed("k")
    assert not expectations.satisfied("k")
    expectations.deletion_observed("k", "u1")
    assert expectations.satisfied("k")
