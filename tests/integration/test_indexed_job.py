"""An Indexed Job in a real ControllerManager against a real API server and etcd: each index
runs once, a failed index runs again, completedIndexes lists them, and every pod's environment
(resolved by the kubelet's env builder) carries its JOB_COMPLETION_INDEX and hostname. Hollow
nodes stand in for kubelets; the test finishes pods as a kubelet would."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import yaml

from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from kubelet.env import EnvResolver
from kubelite.api import convert
from kubelite.api import pods as podutil
from kubelite.client.client import ApiClient
from kubelite.testing.hollow import HollowCluster
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.helpers import INDEXED_JOB
from tests.integration.helpers import finish, running_manager

SETTINGS = ControllerManagerSettings(
    controllers=("job",), leader_elect=False, workers=4, job_pod_failure_backoff=0.2,
    job_pod_failure_backoff_max=1.0,
)
INDEX_KEY = "batch.kubernetes.io/job-completion-index"



@pytest.fixture
async def manager(client: ApiClient) -> AsyncIterator[ControllerManager]:
    async with running_manager(client, SETTINGS) as manager:
        yield manager


async def active_by_index(client: ApiClient, count: int) -> dict[int, v1.Pod] | None:
    """The Job's active pods by index, once there are ``count`` and all run (the hollow node
    has reported them, so finishing one is not overwritten)."""
    pods = (await client.list(v1.Pod, "default", label_selector="job-name=indexed")).items
    active = {int(p.metadata.annotations[INDEX_KEY]): p for p in pods if podutil.is_active(p)}
    running = all(p.status.phase == "Running" for p in active.values())
    return active if len(active) == count and running else None


async def test_indexed_job_runs_each_index_once(client: ApiClient,
                                                manager: ControllerManager) -> None:
    _, job = convert.from_dict(yaml.safe_load(INDEXED_JOB))
    await client.create(job)
    resolver = EnvResolver(client, {})
    seen: dict[int, str] = {}
    cluster = HollowCluster(client, ["n1"], bind_unscheduled=True)
    await cluster.start()
    try:
        first = await eventually(lambda: active_by_index(client, 2), message="two pods")
        assert sorted(first) == [0, 1]  # parallelism 2, the lowest indexes first
        for index, pod in first.items():
            assert pod.metadata.name.startswith(f"indexed-{index}-")
            assert pod.metadata.labels[INDEX_KEY] == str(index)
            env = await resolver.resolve(pod, pod.spec.containers[0])
            assert (env["JOB_COMPLETION_INDEX"], env["HOSTNAME"]) == (
                str(index), f"indexed-{index}")
            seen[index] = env["JOB_COMPLETION_INDEX"]
        await finish(client, first[0], "Succeeded")
        await finish(client, first[1], "Failed")  # index 1 must run again

        async def rerun() -> dict[int, v1.Pod] | None:
            pods = await active_by_index(client, 2)
            if pods is None or sorted(pods) != [1, 2]:
                return None
            return pods if pods[1].metadata.uid != first[1].metadata.uid else None

        second = await eventually(rerun, message="index 1 again and index 2")
        for index, pod in second.items():
            env = await resolver.resolve(pod, pod.spec.containers[0])
            seen[index] = env["JOB_COMPLETION_INDEX"]
            await finish(client, pod, "Succeeded")

        async def complete() -> v1.Job | None:
            current = await client.get(v1.Job, "indexed", "default")
            done = any(c.type == "Complete" and c.status == "True"
                       for c in current.status.conditions)
            return current if done else None

        finished = await eventually(complete, message="job complete")
    finally:
        await cluster.stop()
    assert finished.status.completed_indexes == "0-2"
    assert (finished.status.succeeded, finished.status.failed) == (3, 1)
    assert seen == {0: "0", 1: "1", 2: "2"}

