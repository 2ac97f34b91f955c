"""The pod worker's restart back-off and the size of the status it writes."""

from __future__ import annotations

import time
from typing import Any, cast

from kubelet.pod_worker import NodeContext, PodWorker
from kubelet.runtime.interface import ContainerState, ContainerStatus, RuntimeError_
from kubelet.settings import KubeletSettings
from kubelet.status import (
    MAX_CONTAINER_MESSAGE_BYTES,
    MAX_POD_MESSAGE_BYTES,
    ContainerView,
    build_status,
)
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder

SETTINGS = KubeletSettings(node_name="node-1", backoff_initial=10.0, backoff_max=300.0,
                           backoff_reset=600.0)


def _worker(restart_policy: str = "Always") -> PodWorker:
    none: Any = None
    ctx = NodeContext(settings=SETTINGS, client=none, runtime=none, recorder=none, env=none,
                      volumes=none)
    pod = v1.Pod(metadata=v1.ObjectMeta(name="p", namespace="default", uid="u-1"))
    pod.spec.restart_policy = restart_policy
    pod.spec.containers.add(name="main", image="busybox", command=["/nonexistent-binary"])
    return PodWorker(ctx, pod)


def _exited(attempt: int, started_at: float, finished_at: float, code: int = 128,
            reason: str = "StartError", message: str = "") -> ContainerStatus:
    return ContainerStatus(id=f"c{attempt}", name="main", pod_uid="u-1", attempt=attempt,
                           state=ContainerState.EXITED, started_at=started_at,
                           finished_at=finished_at, exit_code=code, reason=reason,
                           message=message)


def test_a_container_that_never_started_backs_off_like_a_crash() -> None:
    worker = _worker()
    now = time.time()
    # It never started (started_at 0): that is no run at all, not a 50-year one.
    delays = [worker._restart_delay(_exited(attempt, 0.0, now)) for attempt in range(8)]
    assert delays == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_a_container_that_ran_past_the_reset_starts_again_from_the_first_delay() -> None:
    worker = _worker()
    now = time.time()
    assert worker._restart_delay(_exited(5, now - 601, now, code=1, reason="Error")) == 0.0
    assert worker._restart_delay(_exited(5, now - 30, now, code=1, reason="Error")) == 160.0


def test_a_start_failure_that_will_not_restart_shows_terminated() -> None:
    worker = _worker(restart_policy="Never")
    worker._waiting["main"] = ("RunContainerError", 'exec: "/nonexistent-binary": not found')
    latest = _exited(0, 0.0, time.time(), message='exec: "/nonexistent-binary": not found')
    [view] = worker._views(list(worker.pod.spec.containers), {"main": [latest]}).values()
    assert view.waiting_reason == ""
    status = build_status(worker.pod, {}, {"main": view}, "127.0.0.2", "")
    terminated = status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (128, "StartError")
    assert status.phase == "Failed"


def _pod(containers: int) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name="p", namespace="default", uid="u-1"))
    for i in range(containers):
        pod.spec.containers.add(name=f"c{i}", image="busybox")
    return pod


def test_status_messages_are_bounded_per_container_and_per_pod() -> None:
    huge = "x" * 200_000
    pod = _pod(6)
    now = time.time()
    views = {}
    for i, c in enumerate(pod.spec.containers):
        latest = _exited(1, 0.0, now, message=huge)
        previous = _exited(0, 0.0, now - 1, message=huge)
        waiting = ("CrashLoopBackOff", huge) if i % 2 else ("", "")
        views[c.name] = ContainerView(latest, previous, *waiting)
    status = build_status(pod, {}, views, "127.0.0.2", "")
    messages = []
    for s in status.container_statuses:
        for state in (s.state, s.last_state):
            for which in ("waiting", "terminated"):
                if state.HasField(which):
                    messages.append(getattr(state, which).message.encode())
    assert messages and all(len(msg) <= MAX_CONTAINER_MESSAGE_BYTES for msg in messages)
    assert sum(map(len, messages)) <= MAX_POD_MESSAGE_BYTES
    assert len(status.SerializeToString()) < 2 * MAX_POD_MESSAGE_BYTES


def test_a_short_message_is_kept_whole_and_a_cut_one_says_so() -> None:
    pod = _pod(1)
    latest = _exited(0, 0.0, time.time(), message="é" * 5000)
    status = build_status(pod, {}, {"c0": ContainerView(latest)}, "127.0.0.2", "")
    message = status.container_statuses[0].state.terminated.message
    assert message.endswith("[truncated]")
    assert len(message.encode()) <= MAX_CONTAINER_MESSAGE_BYTES
    short = _exited(0, 0.0, time.time(), message="exec: not found")
    status = build_status(pod, {}, {"c0": ContainerView(short)}, "127.0.0.2", "")
    assert status.container_statuses[0].state.terminated.message == "exec: not found"


class _SandboxFails:
    """A runtime whose sandboxes cannot be made (the pod network is not ready)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def list_containers(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return []

    async def run_pod_sandbox(self, config: Any) -> Any:
        self.attempts += 1
        raise RuntimeError_("CreatePodSandboxError",
                            f"RunPodSandbox: cni plugin not initialized (attempt {self.attempts})")


async def test_a_sandbox_that_cannot_be_made_backs_off_with_one_event_per_attempt() -> None:
    client = FakeClient()
    recorder = FakeRecorder()
    runtime = _SandboxFails()
    none: Any = None
    ctx = NodeContext(settings=SETTINGS, client=cast(Any, client), runtime=cast(Any, runtime),
                      recorder=recorder, env=none, volumes=none)
    pod = client.put(_pod(1))
    worker = PodWorker(ctx, pod)
    for _ in range(5):  # pod updates wake the worker far more often than the back-off
        await worker.sync()
    assert runtime.attempts == 1
    assert recorder.reasons() == ["FailedCreatePodSandBox"]
    assert worker._waiting["c0"][0] == "ContainerCreating"
    worker._sandbox_not_before = 0.0  # the back-off has passed
    await worker.sync()
    assert runtime.attempts == 2
    # The next wait doubles.
    assert worker._sandbox_not_before - time.time() > SETTINGS.backoff_initial * 1.5
