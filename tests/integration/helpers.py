"""Helpers shared by the integration tests: watching, finishing pods as a kubelet would,
running klctl in the test's process, and a Deployment with its controllers and nodes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import textwrap
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiserver.server import ApiServer
from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelite.api import errors
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.client.client import ApiClient, WatchEvent
from kubelite.testing.hollow import HollowCluster
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

NS = "default"

# ---------------------------------------------------------------- watches


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name, labels=labels or {}), data=data)


class Collector:
    """Runs a watch in a task and keeps what it delivered."""

    def __init__(self, stream: AsyncIterator[WatchEvent[v1.ConfigMap]]) -> None:
        self.events: list[WatchEvent[v1.ConfigMap]] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[WatchEvent[v1.ConfigMap]]) -> None:
        try:
            async for event in stream:
                self.events.append(event)
        except errors.ApiError as e:
            self.error = e

    @property
    def changes(self) -> list[WatchEvent[v1.ConfigMap]]:
        return [e for e in self.events if e.type != "BOOKMARK"]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def name_of(event: WatchEvent[v1.ConfigMap]) -> str:
    """The name of the object a change carries (every event but a BOOKMARK has one)."""
    assert event.object is not None, f"{event.type} without an object"
    return event.object.metadata.name


# ---------------------------------------------------------------- pods


async def finish(client: ApiClient, pod: v1.Pod, phase: str) -> None:
    """What a kubelet reports when the pod's only container exits."""
    now = m.now_rfc3339()
    code = 0 if phase == "Succeeded" else 1
    status = {
        "phase": phase,
        "containerStatuses": [{
            "name": pod.spec.containers[0].name, "image": pod.spec.containers[0].image,
            "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now,
                                     "reason": "Completed" if code == 0 else "Error"}},
        }],
    }
    await client.patch(v1.Pod, pod.metadata.name, {"status": status}, pod.metadata.namespace,
                       subresource="status")


# ---------------------------------------------------------------- klctl

_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """klctl's output lines (controllers running in the test's process log there too)."""
        return [line for line in self.out.splitlines() if not _LOG_LINE.match(line)]


Klctl = Callable[..., Coroutine[Any, Any, Result]]
"""The ``klctl`` fixture (tests/integration/conftest.py): runs klctl with these arguments."""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


# ---------------------------------------------------------------- controllers


@contextlib.asynccontextmanager
async def running_manager(client: ApiClient, settings: ControllerManagerSettings
                          ) -> AsyncIterator[ControllerManager]:
    """A ControllerManager on ``client``, leading, until the block ends."""
    manager = ControllerManager(settings, client)
    await manager.start()
    try:
        await asyncio.wait_for(manager.leading.wait(), 10)
        yield manager
    finally:
        await manager.stop()


@contextlib.asynccontextmanager
async def running_cluster(api_server: ApiServer, client: ApiClient) -> AsyncIterator[ApiClient]:
    """The replicaset and deployment controllers plus two hollow nodes."""
    hollow = HollowCluster(client, ["node-1", "node-2"], bind_unscheduled=True)
    await hollow.start()
    settings = ControllerManagerSettings(
        server=api_server.address, controllers=("replicaset", "deployment"),
        leader_elect=False, workers=2, progress_check_period=0.2,
    )
    try:
        async with running_manager(client, settings):
            yield client
    finally:
        await hollow.stop()


def new_deployment(name: str = "web", replicas: int = 3, image: str = "nginx:1", *,
                   strategy: str = "RollingUpdate", surge: int | str | None = None,
                   unavailable: int | str | None = None) -> v1.Deployment:
    d = v1.Deployment(metadata=v1.ObjectMeta(name=name, namespace=NS))
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image=image)
    d.spec.strategy.type = strategy
    for value, target in ((surge, d.spec.strategy.rolling_update.max_surge),
                          (unavailable, d.spec.strategy.rolling_update.max_unavailable)):
        if isinstance(value, int):
            target.int_val = value
        elif isinstance(value, str):
            target.str_val = value
    return d


def is_live(pod: v1.Pod) -> bool:
    return podutil.is_active(pod)


async def live_pods(client: ApiClient, app: str) -> list[v1.Pod]:
    pods = await client.list(v1.Pod, NS, label_selector=f"app={app}")
    return [p for p in pods.items if is_live(p)]


async def wait_rolled_out(client: ApiClient, name: str, replicas: int,
                          image: str | None = None, timeout: float = 20) -> v1.Deployment:
    """The Deployment reports a finished rollout and exactly ``replicas`` ready pods run."""

    async def done() -> v1.Deployment | None:
        d = await client.get(v1.Deployment, name, NS)
        s = d.status
        if (s.observed_generation < d.metadata.generation or s.replicas != replicas
                or s.updated_replicas != replicas or s.available_replicas != replicas):
            return None
        pods = await client.list(v1.Pod, NS, label_selector=f"app={name}")
        live = [p for p in pods.items if is_live(p)]
        if len(pods.items) != replicas or len(live) != replicas:
            return None
        if not all(podutil.is_ready(p) for p in live):
            return None
        if image and any(p.spec.containers[0].image != image for p in live):
            return None
        return d

    result: v1.Deployment = await eventually(done, timeout=timeout,
                                             message=f"deployment {name} rolled out")
    return result
