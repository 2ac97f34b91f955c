"""The scheduler's cycles on a fake API: how many nodes a cycle filters and from where
(percentageOfNodesToScore), PreFilter/PreScore Skip, and the asynchronous binding cycle
(the pod is assumed at once; a failed bind forgets it and requeues the pod)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import pytest

from kubelite.api.errors import InternalError, NotFound
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from scheduler.__main__ import parse_args
from scheduler.cache import SchedulerCache
from scheduler.framework import (
    SKIP,
    SUCCESS,
    ClusterEvent,
    Framework,
    NodeInfo,
    PodInfo,
    Profile,
    Status,
)
from scheduler.plugins import IN_TREE, NodeAffinity, NodePorts
from scheduler.queue import BACKOFF, QueueSettings
from scheduler.scheduler import Scheduler, SchedulerSettings
from tests.unit.fakes import FakeRecorder
from tests.unit.objects import make_node, make_pod, port, taint


class FakeBinder:
    """The two calls the scheduler makes: bind, and the PodScheduled status patch. A bind
    waits for ``release`` when one is given, then fails with ``error`` when one is set."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}
        self.release: asyncio.Event | None = None
        self.error: Exception | None = None
        self.status_patches: list[tuple[str, dict[str, Any]]] = []

    async def bind(self, namespace: str, name: str, node_name: str, uid: str = "") -> v1.Pod:
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        self.bound[name] = node_name
        return v1.Pod()

    async def patch(self, kind: type[v1.Pod], name: str, patch: dict[str, Any],
                    namespace: str = "", *, subresource: str = "") -> v1.Pod:
        assert subresource == "status"
        self.status_patches.append((name, patch))
        return v1.Pod()


def scheduler(binder: FakeBinder, *, nodes: int = 0, registry: Any = IN_TREE,
              profile: Profile = Profile(), **settings: Any) -> Scheduler:
    s = Scheduler(SchedulerSettings(profile=profile, queue=QueueSettings(pod_initial_backoff=60),
                                    **settings),
                  cast(ApiClient, binder), registry=registry)
    s.recorder = FakeRecorder()
    for i in range(nodes):
        s._on_node_add(make_node(f"n{i:03}", cpu="100", pods="1000"))
    return s


def pending(name: str, **kwargs: Any) -> v1.Pod:
    pod = make_pod(name, **kwargs)
    pod.spec.scheduler_name = "default-scheduler"
    pod.metadata.resource_version = "1"
    return pod


async def settle(s: Scheduler) -> None:
    await asyncio.gather(*s._binds)
    await asyncio.gather(*s._status_writes.values())


# ------------------------------------------------------------------ percentageOfNodesToScore


@pytest.mark.parametrize(("nodes", "percentage", "wanted"), [
    (50, 0, 50),  # fewer than minFeasibleNodesToFind: all of them
    (100, 0, 100),  # 50% of 100 is below 100 nodes: 100
    (500, 0, 230),  # adaptive: 50 - 500/125 = 46%
    (1000, 0, 420),  # 42%
    (5000, 0, 500),  # 10%
    (6000, 0, 300),  # 50 - 48 = 2%, raised to the 5% floor
    (500, 10, 100),  # 10% is 50 nodes, raised to 100
    (500, 50, 250),
    (500, 100, 500),
])
def test_number_of_feasible_nodes_to_find(nodes: int, percentage: int, wanted: int) -> None:
    s = scheduler(FakeBinder(), percentage_of_nodes_to_score=percentage)
    assert s._num_feasible_nodes_to_find(nodes) == wanted


def test_percentage_of_nodes_to_score_is_validated() -> None:
    with pytest.raises(ValueError, match=r"percentageOfNodesToScore: Invalid value: 101"):
        SchedulerSettings(percentage_of_nodes_to_score=101)
    with pytest.raises(ValueError, match=r"not in valid range \[0-100\]"):
        SchedulerSettings(percentage_of_nodes_to_score=-1)
    assert parse_args(["--percentage-of-nodes-to-score", "30"])[1] \
        .percentage_of_nodes_to_score == 30
    assert parse_args([])[1].percentage_of_nodes_to_score == 0  # adaptive by default
    with pytest.raises(SystemExit):
        parse_args(["--percentage-of-nodes-to-score", "101"])


class Recorder:
    """A filter plugin that notes each node it is asked about; rejects names in ``rejected``."""

    name: ClassVar[str] = "Recorder"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset({ClusterEvent.NODE_ADD})
    seen: ClassVar[list[str]] = []
    rejected: ClassVar[set[str]] = set()

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        self.seen.append(node_info.name)
        if node_info.name in self.rejected:
            return Status.unschedulable("rejected by the recorder")
        return SUCCESS


async def test_each_cycle_filters_enough_nodes_from_where_the_last_one_stopped() -> None:
    Recorder.seen, Recorder.rejected = [], {"n101", "n102"}
    binder = FakeBinder()
    s = scheduler(binder, nodes=300, registry={**IN_TREE, "Recorder": Recorder},
                  profile=Profile(filters=("Recorder",)), percentage_of_nodes_to_score=10)
    for i in range(4):
        s._on_pod_add(pending(f"p{i}"))
    # 10% of 300 is 30, raised to minFeasibleNodesToFind: 100 feasible nodes per cycle.
    await s.schedule_one()
    assert Recorder.seen == [f"n{i:03}" for i in range(100)]
    Recorder.seen.clear()
    # Rejected nodes count as processed: the second cycle needs 102 nodes for 100 feasible.
    await s.schedule_one()
    assert Recorder.seen == [f"n{i:03}" for i in range(100, 202)]
    Recorder.seen.clear()
    # The third wraps around the end of the node list.
    await s.schedule_one()
    assert Recorder.seen == [f"n{i:03}" for i in (*range(202, 300), 0, 1)]
    await settle(s)
    assert len(binder.bound) == 3


async def test_without_filters_left_the_nodes_are_still_taken_in_turn() -> None:
    binder = FakeBinder()
    s = scheduler(binder, nodes=300, profile=Profile(filters=("NodeName",), scores=()),
                  percentage_of_nodes_to_score=10)
    feasible, statuses = s._find_nodes_that_fit(PodInfo.of(pending("a")), s.cache.node_infos(), [])
    assert [n.name for n in feasible] == [f"n{i:03}" for i in range(100)] and not statuses
    feasible, _ = s._find_nodes_that_fit(PodInfo.of(pending("b")), s.cache.node_infos(), [])
    assert feasible[0].name == "n100"


# ------------------------------------------------------------------ PreFilter / PreScore


class Counting:
    """Filter, score, PreFilter and PreScore that count their calls; PreFilter and PreScore
    answer ``pre``."""

    name: ClassVar[str] = "Counting"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset({ClusterEvent.NODE_ADD})
    pre: ClassVar[Status] = SUCCESS
    calls: ClassVar[dict[str, int]] = {}

    def _count(self, what: str) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1

    def pre_filter(self, pod: PodInfo) -> Status:
        self._count("pre_filter")
        return self.pre

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        self._count("filter")
        return SUCCESS

    def pre_score(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        self._count("pre_score")
        return self.pre

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        self._count("score")
        return 7


def counting_framework() -> Framework:
    return Framework(Profile(filters=("NodeReady", "Counting"), scores=(("Counting", 2),)),
                     {**IN_TREE, "Counting": Counting})


def test_skip_leaves_out_a_plugins_filter_and_score() -> None:
    fw = counting_framework()
    pod = PodInfo.of(make_pod())
    nodes = [NodeInfo(make_node(f"n{i}")) for i in range(3)]
    Counting.calls, Counting.pre = {}, SUCCESS
    filters, status = fw.run_pre_filters(pod)
    assert status.is_success() and [p.name for p in filters] == ["NodeReady", "Counting"]
    assert all(fw.run_filters(pod, n, filters).is_success() for n in nodes)
    assert fw.run_scores(pod, nodes) == [14, 14, 14]
    assert Counting.calls == {"pre_filter": 1, "filter": 3, "pre_score": 1, "score": 3}

    Counting.calls, Counting.pre = {}, SKIP
    filters, status = fw.run_pre_filters(pod)
    assert status.is_success() and [p.name for p in filters] == ["NodeReady"]
    assert all(fw.run_filters(pod, n, filters).is_success() for n in nodes)
    assert fw.run_scores(pod, nodes) == [0, 0, 0]
    assert Counting.calls == {"pre_filter": 1, "pre_score": 1}


async def test_a_pre_filter_rejection_fails_the_pod_on_every_node() -> None:
    binder = FakeBinder()
    s = scheduler(binder, nodes=3, registry={**IN_TREE, "Counting": Counting},
                  profile=Profile(filters=("Counting",), scores=()))
    Counting.calls, Counting.pre = {}, Status.unresolvable("pod is not welcome")
    s._on_pod_add(pending("p"))
    await s.schedule_one()
    await settle(s)
    assert Counting.calls == {"pre_filter": 1}
    assert binder.bound == {}
    recorder = cast(FakeRecorder, s.recorder)
    assert recorder.events[-1].message == "0/3 nodes are available: 3 pod is not welcome."
    assert s.queue.where("uid-p") is not None  # parked, waiting for a cluster change


def test_in_tree_pre_filters_skip_pods_they_have_nothing_to_check_for() -> None:
    plain = PodInfo.of(make_pod("plain"))
    assert NodeAffinity().pre_filter(plain).is_skip()
    assert NodeAffinity().pre_score(plain, []).is_skip()
    assert NodePorts().pre_filter(plain).is_skip()
    selective = PodInfo.of(make_pod("s", node_selector={"disk": "ssd"}))
    assert NodeAffinity().pre_filter(selective).is_success()
    assert NodePorts().pre_filter(PodInfo.of(make_pod("p", ports=[port(80)]))).is_success()
    fw = Framework(Profile(), IN_TREE)
    filters, _ = fw.run_pre_filters(plain)
    assert [p.name for p in filters] == [
        "NodeUnschedulable", "NodeReady", "TaintToleration", "NodeResourcesFit"]


# ------------------------------------------------------------------ binding cycle


async def test_binding_runs_beside_the_next_scheduling_cycle() -> None:
    binder = FakeBinder()
    binder.release = asyncio.Event()
    s = scheduler(binder)
    s._on_node_add(make_node("only", cpu="1"))
    s._on_pod_add(pending("a", cpu="600m"))
    s._on_pod_add(pending("b", cpu="600m"))
    await s.schedule_one()
    # a's bind has not returned, yet a holds its room: b does not fit beside it.
    assert s.cache.is_assumed("uid-a") and len(s._binds) == 1
    await s.schedule_one()
    assert s.stats.unschedulable == 1
    binder.release.set()
    await settle(s)
    assert binder.bound == {"a": "only"}
    assert cast(FakeRecorder, s.recorder).reasons() == ["FailedScheduling", "Scheduled"]


async def test_a_failed_bind_forgets_the_assumed_pod_and_requeues_it() -> None:
    binder = FakeBinder()
    binder.release = asyncio.Event()
    binder.error = InternalError("etcd is down")
    s = scheduler(binder)
    s._on_node_add(make_node("only", cpu="1"))
    s._on_pod_add(pending("a", cpu="600m"))
    await s.schedule_one()
    node = s.cache.nodes["only"]
    assert s.cache.is_assumed("uid-a") and node.requested.milli_cpu == 600
    binder.release.set()
    await settle(s)
    # The room is free again and the pod waits out its backoff for another attempt.
    assert not s.cache.is_assumed("uid-a") and s.cache.pod_count() == 0
    assert node.requested.milli_cpu == 0 and not node.pods
    assert s.queue.where("uid-a") == BACKOFF
    assert s.stats.errors == 1 and s.stats.scheduled == 0
    recorder = cast(FakeRecorder, s.recorder)
    assert recorder.events[-1].reason == "FailedScheduling"
    assert 'running Bind plugin "DefaultBinder"' in recorder.events[-1].message
    name, patch = binder.status_patches[-1]
    condition = patch["status"]["conditions"][0]
    assert (name, condition["type"], condition["status"], condition["reason"]) == (
        "a", "PodScheduled", "False", "SchedulerError")
    # Once the backoff has passed it is placed.
    binder.error = None
    s.queue.flush_backoff_completed()  # not yet: a minute's backoff
    assert s.queue.where("uid-a") == BACKOFF
    s.queue._clock = lambda: 10**9
    s.queue.flush_backoff_completed()
    await s.schedule_one()
    await settle(s)
    assert binder.bound == {"a": "only"}


async def test_a_pod_gone_before_its_bind_is_forgotten_and_not_requeued() -> None:
    binder = FakeBinder()
    binder.error = NotFound("pods \"a\" not found")
    s = scheduler(binder)
    s._on_node_add(make_node("only"))
    s._on_pod_add(pending("a", cpu="100m"))
    await s.schedule_one()
    await settle(s)
    assert s.cache.pod_count() == 0 and s.queue.where("uid-a") is None
    assert s.stats.errors == 0 and binder.status_patches == []


# ------------------------------------------------------------------ cache bookkeeping


def bound(pod: v1.Pod, node: str, rv: str) -> v1.Pod:
    copy = v1.Pod()
    copy.CopyFrom(pod)
    copy.spec.node_name = node
    copy.metadata.resource_version = rv
    return copy


def test_status_updates_of_a_placed_pod_keep_its_computed_requests() -> None:
    made: list[str] = []

    def make(pod: v1.Pod) -> PodInfo:
        made.append(pod.metadata.name)
        return PodInfo.of(pod)

    cache = SchedulerCache(make_pod_info=make)
    cache.add_node(make_node("n", cpu="2"))
    pod = make_pod("a", cpu="1")
    assumed = cache.assume_pod(PodInfo.of(pod), "n")
    confirmed = bound(pod, "n", "2")
    cache.add_pod(confirmed)  # the informer reports the bind
    running = bound(confirmed, "n", "3")
    running.status.phase = "Running"
    cache.update_pod(running)
    assert made == [] and not cache.is_assumed("uid-a")
    info = cache.nodes["n"].pods["uid-a"]
    assert info.pod is running and info.requests is assumed.requests
    assert cache.nodes["n"].requested.milli_cpu == 1000
    # A changed spec (a resize) is computed again.
    resized = bound(running, "n", "4")
    resized.spec.containers[0].resources.requests["cpu"] = "1500m"
    cache.update_pod(resized)
    assert made == ["a"] and cache.nodes["n"].requested.milli_cpu == 1500


def test_node_facts_follow_node_updates() -> None:
    info = NodeInfo(make_node("n", cpu="2"))
    assert info.ready and not info.unschedulable and info.labels == {}
    parsed = info.allocatable
    heartbeat = make_node("n", cpu="2", labels={"zone": "a"})
    info.set_node(heartbeat)
    assert info.allocatable is parsed and info.labels == {"zone": "a"}  # not parsed again
    changed = make_node("n", cpu="4", ready="False", unschedulable=True,
                        taints=[taint("a"), taint("b", effect="PreferNoSchedule")])
    info.set_node(changed)
    assert info.allocatable.milli_cpu == 4000 and not info.ready and info.unschedulable
    assert [t.key for t in info.no_schedule_taints] == ["a"]
    assert [t.key for t in info.prefer_no_schedule_taints] == ["b"]


def test_a_deleted_node_with_pods_left_is_kept_for_accounting_only() -> None:
    cache = SchedulerCache()
    cache.add_node(make_node("n"))
    cache.add_pod(bound(make_pod("a", cpu="1"), "n", "2"))
    cache.remove_node("n")
    info = cache.nodes["n"]
    assert cache.node_infos() == [] and info.node is None and not info.ready
    assert info.requested.milli_cpu == 1000


def test_expired_assumed_pods_are_found_among_assumed_pods_only() -> None:
    now = [0.0]
    cache = SchedulerCache(assumed_pod_ttl=5, clock=lambda: now[0])
    cache.add_node(make_node("n"))
    for i in range(3):
        cache.add_pod(bound(make_pod(f"placed-{i}"), "n", "2"))
    cache.assume_pod(PodInfo.of(make_pod("a")), "n")
    cache.finish_binding("uid-a")
    assert cache.assumed_count() == 1
    now[0] = 6
    assert cache.cleanup_expired_assumed_pods() == ["uid-a"]
    assert cache.assumed_count() == 0 and cache.pod_count() == 3


def test_requests_remembered_per_workload_still_tell_pods_apart() -> None:
    def with_init(name: str, sidecar: bool) -> v1.Pod:
        pod = make_pod(name, cpu="1")
        init = pod.spec.init_containers.add(name="init", image="busybox")
        init.resources.requests["cpu"] = "2"
        if sidecar:
            init.restart_policy = "Always"
        return pod

    first = PodInfo.of(with_init("a", sidecar=False))
    again = PodInfo.of(with_init("b", sidecar=False))
    sidecar = PodInfo.of(with_init("c", sidecar=True))
    # A regular init container runs alone: the larger of 1 and 2; a sidecar runs beside: 3.
    assert first.requests.milli_cpu == again.requests.milli_cpu == 2000
    assert sidecar.requests.milli_cpu == 3000
    # No container asks for memory: scoring counts the 200Mi default for the regular one.
    assert first.non_zero_memory == 200 * 1024 * 1024 and first.requests.memory == 0
    limited = make_pod("d", cpu="1")
    limited.spec.containers[0].resources.limits["memory"] = "1Gi"
    assert PodInfo.of(limited).requests.memory == 1024**3  # a limit counts as the request
    # Each pod gets amounts of its own to keep.
    assert first.requests is not again.requests
    first.requests.milli_cpu = 0
    assert PodInfo.of(with_init("e", sidecar=False)).requests.milli_cpu == 2000
