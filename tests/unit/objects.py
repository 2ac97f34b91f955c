"""Objects for unit tests as the API server hands them out, the times they carry, and the
nodes and pods the scheduler's tests build (make_node, make_pod)."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from google.protobuf.message import Message

from kubelite.api import defaults
from kubelite.api import meta as m
from kubelite.api.registry import by_message
from protos.v1 import objects_pb2 as v1

T = TypeVar("T", bound=Message)

NS = "default"
NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
"""A fixed time for tests that give their controller a clock."""


def ago(seconds: float, *, micro: bool = False) -> str:
    """The time ``seconds`` before now, as metav1.Time (or MicroTime)."""
    t = m.now() - dt.timedelta(seconds=seconds)
    return m.format_micro_time(t) if micro else m.format_time(t)


def stored(obj: T, name: str, namespace: str = NS) -> T:
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
    """A pod that ``owner`` (of ``kind``) controls."""
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


def make_node(
    name: str = "node-1",
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[v1.Taint] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
    extra: dict[str, str] | None = None,
) -> v1.Node:
    node = v1.Node(metadata=v1.ObjectMeta(name=name, labels=labels or {}))
    node.spec.unschedulable = unschedulable
    node.spec.taints.extend(taints or [])
    node.status.allocatable.update({"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})})
    if ready:
        node.status.conditions.add(type="Ready", status=ready)
    return node


def make_pod(
    name: str = "web",
    *,
    cpu: str = "",
    memory: str = "",
    extra: dict[str, str] | None = None,
    ports: list[v1.ContainerPort] | None = None,
    tolerations: list[v1.Toleration] | None = None,
    node_selector: dict[str, str] | None = None,
    uid: str = "",
) -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(name=name, namespace="default", uid=uid or f"uid-{name}"))
    container = pod.spec.containers.add(name="c", image="busybox")
    for key, value in (("cpu", cpu), ("memory", memory), *(extra or {}).items()):
        if value:
            container.resources.requests[key] = value
    container.ports.extend(ports or [])
    pod.spec.tolerations.extend(tolerations or [])
    pod.spec.node_selector.update(node_selector or {})
    return pod


def taint(key: str, value: str = "", effect: str = "NoSchedule") -> v1.Taint:
    return v1.Taint(key=key, value=value, effect=effect)


def port(container: int, host: int = 0, protocol: str = "TCP", ip: str = "") -> v1.ContainerPort:
    return v1.ContainerPort(container_port=container, host_port=host, protocol=protocol, host_ip=ip)
