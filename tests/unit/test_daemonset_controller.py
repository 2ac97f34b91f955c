"""The DaemonSet controller's decisions: reconcile(key) on filled informer stores with a fake
client that records writes. The fakes at the top are shared by the workload controller unit
tests (statefulset, job, cronjob)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from controller_manager.daemonset import DaemonSetController, node_should_run_daemon_pod
from controller_manager.settings import ControllerManagerSettings
from controller_manager.workload import REVISION_HASH_LABEL, template_hash
from kubelite.api import defaults
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, NotFound
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient
from kubelite.client.events import EventRecorder
from kubelite.client.expectations import ControllerExpectations
from kubelite.client.informer import InformerFactory
from protos.v1 import objects_pb2 as v1

# ---------------------------------------------------------------- fakes for the unit tests

T = TypeVar("T", bound=Message)
NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


@dataclass
class FakeClient:
    """Creates get names and uids; every write is recorded; get reads ``objects``."""

    objects: dict[tuple[str, str, str], Message] = field(default_factory=dict)
    created: list[Message] = field(default_factory=list)
    deleted: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[Message] = field(default_factory=list)

    def _key(self, kind: type[Message], name: str, namespace: str) -> tuple[str, str, str]:
        rtype = by_message(kind)
        return rtype.plural, namespace if rtype.namespaced else "", name

    async def create(self, obj: T, namespace: str = "") -> T:
        obj = m.copy(obj)
        meta = m.meta(obj)
        if not meta.name:
            meta.name = m.generated_name(meta.generate_name)
        key = self._key(type(obj), meta.name, meta.namespace)
        if key in self.objects:
            raise AlreadyExists(f"{meta.name} already exists")
        meta.uid = m.new_uid()
        meta.creation_timestamp = m.format_time(NOW)
        self.objects[key] = obj
        self.created.append(obj)
        return obj

    async def get(self, kind: type[T], name: str, namespace: str = "") -> T:
        obj = self.objects.get(self._key(kind, name, namespace))
        if obj is None:
            raise NotFound(f"{name} not found")
        return cast(T, m.copy(obj))

    async def delete(self, kind: type[T], name: str, namespace: str = "", **options: Any) -> T:
        self.deleted.append((by_message(kind).kind, name, options))
        obj = self.objects.pop(self._key(kind, name, namespace), None)
        return cast(T, obj if obj is not None else kind())

    async def update_status(self, obj: T) -> T:
        self.statuses.append(m.copy(obj))
        return obj

    def created_of(self, kind: type[T]) -> list[T]:
        return [o for o in self.created if isinstance(o, kind)]

    def deleted_names(self, kind: str = "Pod") -> list[str]:
        return [name for k, name, _ in self.deleted if k == kind]


class FakeRecorder(EventRecorder):
    def __init__(self) -> None:
        super().__init__(cast(ApiClient, None), "test")
        self.events: list[tuple[str, str, str]] = []

    def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def make_context(**settings: Any) -> tuple[ControllerContext, FakeClient, FakeRecorder]:
    client = FakeClient()
    recorder = FakeRecorder()
    ctx = ControllerContext(
        client=cast(ApiClient, client),
        informers=InformerFactory(cast(ApiClient, client)),
        recorder=recorder,
        settings=ControllerManagerSettings(leader_elect=False, **settings),
    )
    return ctx, client, recorder


def stored(obj: T, name: str, namespace: str = "default") -> T:
    """``obj`` as the API server would hand it out: defaulted, with uid and timestamps."""
    meta = m.meta(obj)
    meta.name = name
    if by_message(type(obj)).namespaced:
        meta.namespace = namespace
    meta.uid = meta.uid or f"uid-{name}"
    meta.generation = meta.generation or 1
    meta.resource_version = meta.resource_version or "1"
    meta.creation_timestamp = meta.creation_timestamp or m.format_time(NOW)
    defaults.apply_defaults(obj)
    return obj


def owned_pod(owner: Message, kind: str, name: str, *, node: str = "", phase: str = "Running",
              ready: bool = True, labels: dict[str, str] | None = None,
              created: dt.datetime = NOW, ready_since: dt.datetime = NOW) -> v1.Pod:
    meta = m.meta(owner)
    pod = v1.Pod(metadata=v1.ObjectMeta(
        name=name, namespace=meta.namespace, uid=f"uid-{name}", labels=labels or {},
        creation_timestamp=m.format_time(created),
        owner_references=[v1.OwnerReference(kind=kind, name=meta.name, uid=meta.uid,
                                            controller=True)],
    ))
    pod.spec.containers.add(name="app", image="busybox")
    pod.spec.node_name = node
    pod.status.phase = phase
    if phase == "Running":
        pod.status.conditions.add(type="Ready", status="True" if ready else "False",
                                  last_transition_time=m.format_time(ready_since))
    return pod


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
    ctx, client, recorder = make_context()
    controller = DaemonSetController(ctx)
    controller.clock = lambda: NOW + dt.timedelta(minutes=5)
    controller.daemonsets.store.put(ds)
    for n in nodes:
        controller.nodes.store.put(n)
    for p in pods:
        controller.pods.store.put(p)
    return controller, client, recorder


def ds_pod(ds: v1.DaemonSet, name: str, node_name: str, *, current: bool = True,
           **kwargs: Any) -> v1.Pod:
    revision = template_hash(ds.spec.template, ds.status) if current else "old"
    return owned_pod(ds, "DaemonSet", name, node=node_name,
                     labels={"app": ds.metadata.name, REVISION_HASH_LABEL: revision}, **kwargs)


def last_status(client: FakeClient) -> v1.DaemonSetStatus:
    assert client.statuses, "no status written"
    return cast(v1.DaemonSet, client.statuses[-1]).status


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
    options = {name: opts for _, name, opts in client.deleted}
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
