"""The scheduler in-process against a real API server and etcd, with nodes made by the test."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial

import pytest

from apiserver.server import ApiServer
from kubelite.api.pods import get_condition
from kubelite.client.client import ApiClient
from kubelite.client.informer import InformerSettings
from kubelite.client.leaderelection import LeaderElectionSettings
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from scheduler.queue import QueueSettings
from scheduler.scheduler import Scheduler, SchedulerSettings


def fast_settings(**overrides: object) -> SchedulerSettings:
    base: dict[str, object] = {
        "queue": QueueSettings(pod_initial_backoff=0.05, pod_max_backoff=0.2,
                               unschedulable_flush_interval=5.0),
        "informer": InformerSettings(backoff_initial=0.05, backoff_max=0.5),
        "cache_cleanup_interval": 0.2,
    }
    base.update(overrides)
    return SchedulerSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def scheduler(client: ApiClient) -> AsyncIterator[Scheduler]:
    s = Scheduler(fast_settings(), client)
    await s.start()
    yield s
    await s.stop()


async def create_node(
    client: ApiClient,
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    labels: dict[str, str] | None = None,
    taints: list[v1.Taint] | None = None,
) -> v1.Node:
    node = v1.Node(metadata=v1.ObjectMeta(
        name=name, labels={"kubernetes.io/hostname": name, **(labels or {})}))
    node.spec.taints.extend(taints or [])
    for field in (node.status.allocatable, node.status.capacity):
        field.update({"cpu": cpu, "memory": memory, "pods": "110"})
    node.status.conditions.add(type="Ready", status="True", reason="KubeletReady")
    return await client.create(node)


async def create_pod(
    client: ApiClient,
    name: str,
    *,
    cpu: str = "100m",
    node_selector: dict[str, str] | None = None,
    tolerations: list[v1.Toleration] | None = None,
) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default"))
    container = pod.spec.containers.add(name="app", image="busybox")
    container.resources.requests.update({"cpu": cpu, "memory": "64Mi"})
    pod.spec.node_selector.update(node_selector or {})
    pod.spec.tolerations.extend(tolerations or [])
    return await client.create(pod)


async def bound_node(client: ApiClient, name: str) -> str:
    return (await client.get(v1.Pod, name, "default")).spec.node_name


async def unschedulable_message(client: ApiClient, name: str) -> str | None:
    pod = await client.get(v1.Pod, name, "default")
    condition = get_condition(pod, "PodScheduled")
    if condition is None or condition.status != "False" or condition.reason != "Unschedulable":
        return None
    return condition.message


async def events_for(client: ApiClient, name: str, reason: str) -> list[v1.Event]:
    events = await client.list(v1.Event, "default")
    return [e for e in events.items if e.involved_object.name == name and e.reason == reason]


CONTROL_PLANE_TAINT = v1.Taint(key="node-role.kubernetes.io/control-plane", effect="NoSchedule")


async def test_pod_lands_on_the_only_node_that_fits(
    client: ApiClient, scheduler: Scheduler
) -> None:
    await create_node(client, "small", cpu="1")
    await create_node(client, "medium", cpu="2")
    await create_node(client, "large", cpu="4")
    await create_pod(client, "web", cpu="3")
    assert await eventually(lambda: bound_node(client, "web")) == "large"
    pod = await client.get(v1.Pod, "web", "default")
    condition = get_condition(pod, "PodScheduled")
    assert condition is not None and condition.status == "True"
    events = await eventually(lambda: events_for(client, "web", "Scheduled"))
    assert events[0].type == "Normal"
    assert events[0].message == "Successfully assigned default/web to large"
    assert events[0].source.component == "default-scheduler"


async def test_unschedulable_pod_reports_why_and_is_placed_when_a_node_appears(
    client: ApiClient, scheduler: Scheduler
) -> None:
    await create_node(client, "control-plane", taints=[CONTROL_PLANE_TAINT])
    await create_node(client, "node-1", cpu="1")
    await create_node(client, "node-2", cpu="1")
    await eventually(lambda: len(scheduler.cache.node_infos()) == 3)
    await create_pod(client, "web", cpu="2")
    message = await eventually(lambda: unschedulable_message(client, "web"))
    assert message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint"
        " {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
    )
    events = await eventually(lambda: events_for(client, "web", "FailedScheduling"))
    assert events[0].type == "Warning" and events[0].message == message
    assert await bound_node(client, "web") == ""

    await create_node(client, "node-3", cpu="4")
    assert await eventually(lambda: bound_node(client, "web")) == "node-3"
    pod = await client.get(v1.Pod, "web", "default")
    condition = get_condition(pod, "PodScheduled")
    assert condition is not None and condition.status == "True"


async def test_node_selector(client: ApiClient, scheduler: Scheduler) -> None:
    await create_node(client, "hdd-1", labels={"disk": "hdd"})
    await create_node(client, "ssd-1", labels={"disk": "ssd"})
    await create_node(client, "hdd-2", labels={"disk": "hdd"})
    for i in range(4):
        await create_pod(client, f"db-{i}", node_selector={"disk": "ssd"})
    for i in range(4):
        assert await eventually(partial(bound_node, client, f"db-{i}")) == "ssd-1"
    await create_pod(client, "nowhere", node_selector={"disk": "nvme"})
    assert await eventually(lambda: unschedulable_message(client, "nowhere")) == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    )


async def test_tainted_node_is_avoided_unless_tolerated(
    client: ApiClient, scheduler: Scheduler
) -> None:
    gpu_taint = v1.Taint(key="dedicated", value="gpu", effect="NoSchedule")
    await create_node(client, "gpu", taints=[gpu_taint])
    await create_node(client, "plain")
    for i in range(5):
        await create_pod(client, f"web-{i}")
    for i in range(5):
        assert await eventually(partial(bound_node, client, f"web-{i}")) == "plain"

    await create_pod(client, "pinned", node_selector={"kubernetes.io/hostname": "gpu"})
    assert await eventually(lambda: unschedulable_message(client, "pinned")) == (
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector,"
        " 1 node(s) had untolerated taint {dedicated: gpu}."
    )
    toleration = v1.Toleration(key="dedicated", operator="Equal", value="gpu",
                               effect="NoSchedule")
    await create_pod(client, "trainer", node_selector={"kubernetes.io/hostname": "gpu"},
                     tolerations=[toleration])
    assert await eventually(lambda: bound_node(client, "trainer")) == "gpu"


async def test_assumed_pods_prevent_overcommit(client: ApiClient, scheduler: Scheduler) -> None:
    """20 pods that each take half a node's cpu on 3 nodes: 6 fit, never 3 on one node."""
    for i in range(3):
        await create_node(client, f"node-{i}", cpu="2")
    await eventually(lambda: len(scheduler.cache.node_infos()) == 3)
    await asyncio.gather(*(create_pod(client, f"half-{i}", cpu="1") for i in range(20)))

    async def settled() -> list[v1.Pod] | None:
        pods = (await client.list(v1.Pod, "default")).items
        bound = [p for p in pods if p.spec.node_name]
        waiting = [p for p in pods if not p.spec.node_name and
                   (c := get_condition(p, "PodScheduled")) is not None and c.status == "False"]
        return bound if len(bound) + len(waiting) == 20 else None

    bound = await eventually(settled, timeout=20)
    assert len(bound) == 6
    assert Counter(p.spec.node_name for p in bound) == {f"node-{i}": 2 for i in range(3)}
    # The other 14 stay parked until a node changes; their retries never squeeze in a 7th.
    assert scheduler.stats.unschedulable == 14
    node = await client.get(v1.Node, "node-0")
    node.metadata.labels["touched"] = "yes"
    await client.update(node)
    await eventually(lambda: scheduler.stats.unschedulable >= 28, timeout=20)
    pods = (await client.list(v1.Pod, "default")).items
    assert sum(1 for p in pods if p.spec.node_name) == 6
    assert scheduler.stats.scheduled == 6
    message = await unschedulable_message(client, "half-19") or await unschedulable_message(
        client, next(p.metadata.name for p in pods if not p.spec.node_name))
    assert message == "0/3 nodes are available: 3 Insufficient cpu."

    # Deleting a bound pod frees its slot for exactly one waiting pod.
    # (No kubelet here to confirm a graceful stop: delete at once.)
    await client.delete(v1.Pod, bound[0].metadata.name, "default", grace_period_seconds=0)
    await eventually(lambda: scheduler.stats.scheduled == 7)
    pods = (await client.list(v1.Pod, "default")).items
    assert Counter(p.spec.node_name for p in pods if p.spec.node_name) == {
        f"node-{i}": 2 for i in range(3)}


def elected(identity: str) -> SchedulerSettings:
    return fast_settings(leader_election=LeaderElectionSettings(
        name="kube-scheduler", identity=identity, lease_duration=1.0, renew_deadline=0.8,
        retry_period=0.1,
    ))


async def test_leader_election_one_active_scheduler_and_failover(api_server: ApiServer) -> None:
    async with ApiClient(api_server.address) as a, ApiClient(api_server.address) as b:
        first, second = Scheduler(elected("sched-a"), a), Scheduler(elected("sched-b"), b)
        await first.start()
        await eventually(lambda: first.is_leading, message="sched-a leads")
        await second.start()
        try:
            await create_node(a, "node-1")
            for i in range(5):
                await create_pod(a, f"early-{i}")
            for i in range(5):
                await eventually(partial(bound_node, a, f"early-{i}"))
            # A bind is visible before the scheduler that made it has counted it.
            await eventually(lambda: first.stats.scheduled == 5, message="sched-a counted 5")
            assert not second.is_leading and second.stats.scheduled == 0

            await first.stop()  # releases the Lease: the standby takes over at once
            await eventually(lambda: second.is_leading, timeout=5, message="sched-b leads")
            await create_pod(a, "late")
            assert await eventually(lambda: bound_node(a, "late")) == "node-1"
            await eventually(lambda: second.stats.scheduled == 1, message="sched-b counted 1")
            assert first.stats.scheduled == 5
            lease = await a.get(v1.Lease, "kube-scheduler", "kube-system")
            assert lease.spec.holder_identity == "sched-b"
        finally:
            with contextlib.suppress(Exception):
                await first.stop()
            await second.stop()
