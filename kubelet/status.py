"""A pod's status as the kubelet reports it, computed from what the runtime says.

Container states, restart counts and last states come from the runtime's records (so they
survive a kubelet restart); the phase follows Kubernetes' getPhase, and the conditions
Initialized / ContainersReady / Ready follow its status manager.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubelet.runtime.interface import ContainerState, ContainerStatus
from kubelite.api import meta as m
from kubelite.api import pods
from protos.v1 import objects_pb2 as v1

MAX_CONTAINER_MESSAGE_BYTES = 4 * 1024
"""Longest message kept per container state (Kubernetes' MaxContainerTerminationMessageLength)."""
MAX_POD_MESSAGE_BYTES = 12 * 1024
"""Longest total of a pod's container messages (Kubernetes' MaxPodTerminationMessageLogLength)."""
MAX_EVENT_MESSAGE_BYTES = 1024
"""Longest Event message the kubelet writes (events.k8s.io's limit on a note)."""
_TRUNCATED = "... [truncated]"


def truncate_message(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, saying so when it was cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    keep = max(0, limit - len(_TRUNCATED))
    return data[:keep].decode(errors="ignore") + _TRUNCATED


def _bound_messages(statuses: Sequence[v1.ContainerStatus]) -> None:
    """Cuts the states' messages so each fits MAX_CONTAINER_MESSAGE_BYTES and all of them
    together MAX_POD_MESSAGE_BYTES (a crash-looping pod must not write megabytes a restart)."""
    holders = [
        getattr(state, which)
        for s in statuses
        for state in (s.state, s.last_state)
        for which in ("waiting", "terminated")
        if state.HasField(which) and getattr(state, which).message
    ]
    if not holders:
        return
    limit = min(MAX_CONTAINER_MESSAGE_BYTES, MAX_POD_MESSAGE_BYTES // len(holders))
    for holder in holders:
        holder.message = truncate_message(holder.message, limit)


def _time(t: float) -> str:
    return m.format_time(dt.datetime.fromtimestamp(t, dt.UTC)) if t else ""


@dataclass(frozen=True)
class ContainerView:
    """What the kubelet knows of one container of the spec."""

    latest: ContainerStatus | None = None
    previous: ContainerStatus | None = None
    waiting_reason: str = ""
    """Why it is not running now (ContainerCreating, CrashLoopBackOff, ErrImagePull...)."""
    waiting_message: str = ""
    ready: bool = False
    started: bool = False


def terminated_state(status: ContainerStatus) -> v1.ContainerStateTerminated:
    reason = status.reason or ("Completed" if status.exit_code == 0 else "Error")
    return v1.ContainerStateTerminated(
        exit_code=status.exit_code,
        signal=status.signal,
        reason=reason,
        message=status.message,
        started_at=_time(status.started_at),
        finished_at=_time(status.finished_at),
        container_id=f"{status.runtime}://{status.id}",
    )


def container_status(spec: v1.Container, view: ContainerView) -> v1.ContainerStatus:
    """The container's status; its containerID is ``<runtime>://<id>`` and its imageID the
    image the runtime runs it from, as Kubernetes'."""
    out = v1.ContainerStatus(name=spec.name, image=spec.image)
    latest = view.latest
    if latest is not None:
        out.restart_count = latest.attempt
        out.container_id = f"{latest.runtime}://{latest.id}"
        out.image_id = latest.image_ref or spec.image
    if latest is not None and latest.state == ContainerState.RUNNING:
        out.state.running.started_at = _time(latest.started_at)
        out.ready = view.ready
        out.started = view.started
        if view.previous is not None and view.previous.state == ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(terminated_state(view.previous))
    elif latest is not None and latest.state == ContainerState.EXITED and not view.waiting_reason:
        out.state.terminated.CopyFrom(terminated_state(latest))
        out.started = False
        if view.previous is not None and view.previous.state == ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(terminated_state(view.previous))
    else:
        out.state.waiting.reason = view.waiting_reason or "ContainerCreating"
        out.state.waiting.message = view.waiting_message
        out.started = False
        if latest is not None and latest.state == ContainerState.EXITED:
            out.last_state.terminated.CopyFrom(terminated_state(latest))
    return out


def phase(
    pod: v1.Pod, init: Sequence[v1.ContainerStatus], regular: Sequence[v1.ContainerStatus]
) -> str:
    """Kubernetes' getPhase."""
    policy = pod.spec.restart_policy or "Always"
    for s in init:
        if (
            s.state.HasField("terminated")
            and s.state.terminated.exit_code != 0
            and policy == "Never"
        ):
            return "Failed"
    initialized = all(
        s.state.HasField("terminated") and s.state.terminated.exit_code == 0 for s in init
    ) and len(init) == len(pod.spec.init_containers)
    if not initialized:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in regular:
        if s.state.HasField("running"):
            running += 1
        elif s.state.HasField("terminated"):
            stopped += 1
            if s.state.terminated.exit_code == 0:
                succeeded += 1
        elif s.state.HasField("waiting"):
            if s.last_state.HasField("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def build_status(
    pod: v1.Pod,
    init_views: Mapping[str, ContainerView],
    views: Mapping[str, ContainerView],
    node_ip: str,
    start_time: str,
    pod_ip: str | None = None,
) -> v1.PodStatus:
    """The pod's status; its IP is ``pod_ip`` (its own; "" while it has none yet), or the
    node's when None (pods sharing the node's network)."""
    status = v1.PodStatus()
    status.CopyFrom(pod.status)
    init = [
        container_status(c, init_views.get(c.name, ContainerView()))
        for c in pod.spec.init_containers
    ]
    regular = [container_status(c, views.get(c.name, ContainerView())) for c in pod.spec.containers]
    _bound_messages([*init, *regular])
    del status.init_container_statuses[:]
    status.init_container_statuses.extend(init)
    del status.container_statuses[:]
    status.container_statuses.extend(regular)
    status.phase = phase(pod, init, regular)
    status.host_ip = node_ip
    status.pod_ip = node_ip if pod_ip is None else pod_ip
    del status.pod_ips[:]
    if status.pod_ip:
        status.pod_ips.add(ip=status.pod_ip)
    status.start_time = status.start_time or start_time
    if not status.qos_class:
        status.qos_class = pods.qos_class(pod)
    holder = v1.Pod(status=status)
    incomplete = [
        s.name
        for s in init
        if not (s.state.HasField("terminated") and s.state.terminated.exit_code == 0)
    ]
    terminal = status.phase in pods.TERMINAL_PHASES
    if not incomplete:
        pods.set_condition(
            holder, "Initialized", "True", "PodCompleted" if terminal and init else ""
        )
    else:
        pods.set_condition(
            holder,
            "Initialized",
            "False",
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(incomplete)}]",
        )
    unready = [s.name for s in regular if not s.ready]
    if terminal:
        pods.set_condition(holder, "ContainersReady", "False", "PodCompleted")
        pods.set_condition(holder, "Ready", "False", "PodCompleted")
    elif unready:
        message = f"containers with unready status: [{' '.join(unready)}]"
        pods.set_condition(holder, "ContainersReady", "False", "ContainersNotReady", message)
        pods.set_condition(holder, "Ready", "False", "ContainersNotReady", message)
    else:
        pods.set_condition(holder, "ContainersReady", "True")
        pods.set_condition(holder, "Ready", "True")
    # Kubernetes orders them PodReadyToStartContainers?, Initialized, Ready, ContainersReady,
    # PodScheduled; keep a stable order so unchanged status compares equal.
    order = {"Initialized": 0, "Ready": 1, "ContainersReady": 2, "PodScheduled": 3}
    conditions = sorted(holder.status.conditions, key=lambda c: order.get(c.type, 9))
    del status.conditions[:]
    status.conditions.extend(conditions)
    return status


def same_status(a: v1.PodStatus, b: v1.PodStatus) -> bool:
    """Equal except for condition probe/transition times that do not matter alone."""
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
