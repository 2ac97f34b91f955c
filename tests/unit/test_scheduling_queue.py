"""The scheduling queue: ordering, per-pod backoff, parking and moving on events, no double pop."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from scheduler.framework import ClusterEvent
from scheduler.queue import (
    ACTIVE,
    BACKOFF,
    IN_FLIGHT,
    UNSCHEDULABLE,
    QueueClosed,
    QueueSettings,
    SchedulingQueue,
)
from tests.unit.fakes import ManualClock


def make_pod(name: str, priority: int | None = None, rv: str = "1") -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default", uid=f"uid-{name}",
                                        resource_version=rv))
    pod.spec.containers.add(name="c", image="busybox")
    if priority is not None:
        pod.spec.priority = priority
    return pod


def queue(clock: ManualClock, **events: frozenset[str]) -> SchedulingQueue:
    return SchedulingQueue(
        QueueSettings(pod_initial_backoff=1.0, pod_max_backoff=10.0, max_in_unschedulable=300.0),
        clock=clock,
        event_plugins={ClusterEvent(k): v for k, v in events.items()} if events else None,
    )


async def test_priority_then_fifo() -> None:
    clock = ManualClock()
    q = queue(clock)
    for name, prio in (("a", None), ("b", 10), ("c", None), ("d", 10)):
        q.add(make_pod(name, prio))
        clock.now += 1
    order = [(await q.pop()).pod.metadata.name for _ in range(4)]
    assert order == ["b", "d", "a", "c"]


async def test_backoff_doubles_and_is_capped() -> None:
    clock = ManualClock()
    q = queue(clock)
    q.add(make_pod("a"))
    durations = []
    for _ in range(7):
        info = await q.pop()
        durations.append(q.backoff_duration(info))
        q.add_unschedulable_if_not_present(info, error=True)
        q.done(info.uid)
        assert q.where(info.uid) == BACKOFF
        # Not a moment before the backoff ends.
        clock.now += durations[-1] - 0.01
        assert q.flush_backoff_completed() == 0
        clock.now += 0.02
        assert q.flush_backoff_completed() == 1
        assert q.where(info.uid) == ACTIVE
    assert durations == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


async def test_unschedulable_pod_parks_until_a_relevant_event() -> None:
    clock = ManualClock()
    q = queue(
        clock,
        NodeAdd=frozenset({"NodeResourcesFit", "TaintToleration"}),
        AssignedPodDelete=frozenset({"NodeResourcesFit"}),
        NodeUpdate=frozenset({"TaintToleration"}),
    )
    q.add(make_pod("a"))
    info = await q.pop()
    info.unschedulable_plugins = frozenset({"TaintToleration"})
    q.add_unschedulable_if_not_present(info)
    q.done(info.uid)
    assert q.where(info.uid) == UNSCHEDULABLE
    # Backoff ending alone does not free an unschedulable pod.
    clock.now += 60
    assert q.flush_backoff_completed() == 0
    # A pod deletion cannot untaint a node: stays parked.
    assert q.move_all_to_active_or_backoff(ClusterEvent.ASSIGNED_POD_DELETE) == 0
    assert q.where(info.uid) == UNSCHEDULABLE
    # A node update can: its backoff (1 s) has passed, so straight to activeQ.
    assert q.move_all_to_active_or_backoff(ClusterEvent.NODE_UPDATE) == 1
    assert q.where(info.uid) == ACTIVE


async def test_moved_pod_still_backing_off_goes_to_backoff_queue() -> None:
    clock = ManualClock()
    q = queue(clock)
    q.add(make_pod("a"))
    info = await q.pop()
    q.add_unschedulable_if_not_present(info)
    q.done(info.uid)
    clock.now += 0.5  # within its 1 s backoff
    q.move_all_to_active_or_backoff(ClusterEvent.NODE_ADD)
    assert q.where(info.uid) == BACKOFF
    clock.now += 0.6
    q.flush_backoff_completed()
    assert q.where(info.uid) == ACTIVE


async def test_event_during_attempt_sends_pod_to_backoff_not_parking() -> None:
    """A node added while the pod was being tried must not be missed."""
    clock = ManualClock()
    q = queue(clock)
    q.add(make_pod("a"))
    info = await q.pop()
    q.move_all_to_active_or_backoff(ClusterEvent.NODE_ADD)  # nothing parked yet
    q.add_unschedulable_if_not_present(info)
    assert q.where(info.uid) == BACKOFF


async def test_unschedulable_leftover_flush() -> None:
    clock = ManualClock()
    q = queue(clock)
    q.add(make_pod("a"))
    info = await q.pop()
    q.add_unschedulable_if_not_present(info)
    q.done(info.uid)
    clock.now += 299
    assert q.flush_unschedulable_leftover() == 0
    clock.now += 2
    assert q.flush_unschedulable_leftover() == 1
    assert q.where(info.uid) == ACTIVE


async def test_no_double_pop_while_in_flight() -> None:
    clock = ManualClock()
    q = queue(clock)
    pod = make_pod("a")
    q.add(pod)
    info = await q.pop()
    assert q.where(info.uid) == IN_FLIGHT
    # Adds and updates of an in-flight pod refresh it but do not queue it again.
    q.add(pod)
    newer = make_pod("a", rv="2")
    newer.metadata.labels["x"] = "y"
    q.update(pod, newer)
    assert q.counts()[ACTIVE] == 0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.pop(), 0.05)
    # The attempt failed while the pod changed: retried after backoff, with the new object.
    q.add_unschedulable_if_not_present(info)
    q.done(info.uid)
    assert q.where(info.uid) == BACKOFF
    assert info.pod.metadata.labels["x"] == "y"


async def test_status_only_update_keeps_pod_parked_but_spec_change_moves_it() -> None:
    clock = ManualClock()
    q = queue(clock)
    old = make_pod("a")
    q.add(old)
    info = await q.pop()
    q.add_unschedulable_if_not_present(info)
    q.done(info.uid)
    clock.now += 5
    status_only = make_pod("a", rv="2")
    status_only.status.conditions.add(type="PodScheduled", status="False", reason="Unschedulable")
    q.update(old, status_only)
    assert q.where(info.uid) == UNSCHEDULABLE
    relabelled = make_pod("a", rv="3")
    relabelled.metadata.labels["tier"] = "web"
    q.update(status_only, relabelled)
    assert q.where(info.uid) == ACTIVE


async def test_deleted_pods_leave_and_are_not_requeued() -> None:
    clock = ManualClock()
    q = queue(clock)
    a, b = make_pod("a"), make_pod("b")
    q.add(a)
    q.add(b)
    q.delete(b)
    info = await q.pop()
    assert info.pod.metadata.name == "a"
    q.delete(a)  # deleted while in flight
    q.add_unschedulable_if_not_present(info, error=True)
    q.done(info.uid)
    assert q.where(info.uid) is None
    assert len(q) == 0


async def test_pop_waits_and_run_moves_backoff_in_real_time() -> None:
    q = SchedulingQueue(QueueSettings(pod_initial_backoff=0.05, pod_max_backoff=0.1))
    runner = asyncio.create_task(q.run(), name="queue-run")
    try:
        popper = asyncio.create_task(q.pop(), name="queue-pop")
        q.add(make_pod("a"))
        info = await asyncio.wait_for(popper, 2)
        q.add_unschedulable_if_not_present(info, error=True)
        q.done(info.uid)
        again = await asyncio.wait_for(q.pop(), 2)  # after ~50 ms of backoff
        assert again.uid == info.uid and again.attempts == 2
        await eventually(lambda: q.where(info.uid) == IN_FLIGHT)
    finally:
        q.close()
        await asyncio.wait_for(runner, 2)
    with pytest.raises(QueueClosed):
        await q.pop()
