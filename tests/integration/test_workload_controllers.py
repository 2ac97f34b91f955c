"""DaemonSet, StatefulSet, Job and CronJob controllers in a real ControllerManager against a
real API server and etcd. Hollow nodes stand in for kubelets (bound pods become Running and
Ready); job pods are finished by the test, which patches their status as a kubelet would.
CronJobs run on a schedule clock 60 times faster than real time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from controller_manager.manager import ControllerManager
from controller_manager.settings import ControllerManagerSettings
from controller_manager.workload import REVISION_HASH_LABEL
from kubelite.api import pods as podutil
from kubelite.api.errors import ApiError, Invalid, NotFound
from kubelite.client.client import ApiClient
from kubelite.testing.hollow import HollowCluster, ready_node
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import finish, running_manager

SETTINGS = ControllerManagerSettings(
    controllers=("daemonset", "statefulset", "job", "cronjob"),
    leader_elect=False,
    workers=4,
    cronjob_check_period=1.0,
    cron_time_scale=60.0,
)


@pytest.fixture
async def manager(client: ApiClient) -> AsyncIterator[ControllerManager]:
    async with running_manager(client, SETTINGS) as manager:
        yield manager


@asynccontextmanager
async def hollow(client: ApiClient, nodes: list[str]) -> AsyncIterator[HollowCluster]:
    cluster = HollowCluster(client, nodes, bind_unscheduled=True)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()


async def pods_of(client: ApiClient, selector: str) -> list[v1.Pod]:
    return (await client.list(v1.Pod, "default", label_selector=selector)).items


def container(image: str = "busybox") -> v1.Container:
    return v1.Container(name="main", image=image)


# ---------------------------------------------------------------- watch history


@dataclass(frozen=True)
class Seen:
    type: str
    name: str
    ready: bool
    deleting: bool


@asynccontextmanager
async def pod_history(client: ApiClient) -> AsyncIterator[list[Seen]]:
    """Every pod event in ``default`` from now on, in order."""
    history: list[Seen] = []
    start = (await client.list(v1.Pod, "default")).resource_version

    async def record() -> None:
        async for event in client.watch(v1.Pod, "default", resource_version=start):
            pod = event.object
            if pod is not None:
                history.append(Seen(event.type, pod.metadata.name, podutil.is_ready(pod),
                                    bool(pod.metadata.deletion_timestamp)))

    task = asyncio.create_task(record(), name="pod-history")
    try:
        yield history
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ApiError):
            await task


def first(history: list[Seen], match: Callable[[Seen], bool]) -> int:
    return next(i for i, seen in enumerate(history) if match(seen))


# ---------------------------------------------------------------- finishing job pods


@asynccontextmanager
async def finishing_pods(client: ApiClient, phase: str) -> AsyncIterator[None]:
    """Finishes every job pod, present or to come (as a fast kubelet would), until the block
    ends."""
    finished: set[str] = set()

    async def run() -> None:
        # No resourceVersion: the pods that exist now first, then every change.
        async for event in client.watch(v1.Pod, "default", label_selector="job-name"):
            pod = event.object
            if (event.type != "DELETED" and pod is not None and not podutil.is_terminal(pod)
                    and pod.metadata.uid not in finished):
                finished.add(pod.metadata.uid)
                with contextlib.suppress(NotFound):
                    await finish(client, pod, phase)

    task = asyncio.create_task(run(), name="pod-finisher")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ApiError):
            await task


def job_condition(job: v1.Job, type_: str) -> v1.JobCondition | None:
    return next((c for c in job.status.conditions if c.type == type_ and c.status == "True"),
                None)


# ---------------------------------------------------------------- DaemonSet


async def test_daemonset_runs_one_pod_per_eligible_node(client: ApiClient,
                                                        manager: ControllerManager) -> None:
    tainted = ready_node("tainted")
    tainted.spec.taints.add(key="dedicated", value="infra", effect="NoSchedule")
    await client.create(tainted)
    async with hollow(client, ["n1", "n2", "n3"]) as cluster:
        ds = v1.DaemonSet(metadata=v1.ObjectMeta(name="agent", namespace="default"))
        ds.spec.selector.match_labels["app"] = "agent"
        ds.spec.template.metadata.labels["app"] = "agent"
        ds.spec.template.spec.containers.append(container("agent:1"))
        await client.create(ds)

        async def nodes_with_pods() -> list[str]:
            return sorted(p.spec.node_name for p in await pods_of(client, "app=agent"))

        async def settled(expected: list[str]) -> bool:
            current = await client.get(v1.DaemonSet, "agent", "default")
            s = current.status
            return await nodes_with_pods() == expected and (
                s.desired_number_scheduled, s.current_number_scheduled, s.number_ready,
                s.number_available, s.updated_number_scheduled) == (len(expected),) * 5

        await eventually(lambda: settled(["n1", "n2", "n3"]), message="a pod per node")
        pods = await pods_of(client, "app=agent")
        assert all(p.metadata.name.startswith("agent-") for p in pods)

        await cluster.add_node("n4")
        await eventually(lambda: settled(["n1", "n2", "n3", "n4"]), message="pod on n4")

        # A rolling update replaces every pod with one of the new template.
        await client.patch(v1.DaemonSet, "agent", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "agent:2"}]}}}}, "default")

        async def rolled() -> bool:
            pods = await pods_of(client, "app=agent")
            return len(pods) == 4 and all(
                p.spec.containers[0].image == "agent:2" and podutil.is_ready(p) for p in pods)

        await eventually(rolled, message="rolling update")
        hashes = {p.metadata.labels[REVISION_HASH_LABEL] for p in
                  await pods_of(client, "app=agent")}
        assert len(hashes) == 1

        # A node that goes away takes its daemon pod with it.
        await client.delete(v1.Node, "n4")
        await eventually(lambda: settled(["n1", "n2", "n3"]), message="n4's pod deleted")
        assert "tainted" not in await nodes_with_pods()


# ---------------------------------------------------------------- StatefulSet


async def test_statefulset_orders_creation_and_deletion(client: ApiClient,
                                                        manager: ControllerManager) -> None:
    async with hollow(client, ["n1", "n2"]), pod_history(client) as history:
        sts = v1.StatefulSet(metadata=v1.ObjectMeta(name="web", namespace="default"))
        sts.spec.replicas = 3
        sts.spec.service_name = "web"
        sts.spec.selector.match_labels["app"] = "web"
        sts.spec.template.metadata.labels["app"] = "web"
        sts.spec.template.spec.containers.append(container("nginx"))
        await client.create(sts)

        async def ready(count: int) -> bool:
            current = await client.get(v1.StatefulSet, "web", "default")
            return (current.status.ready_replicas, current.status.replicas) == (count, count)

        await eventually(lambda: ready(3), message="three ready replicas")
        pods = {p.metadata.name: p for p in await pods_of(client, "app=web")}
        assert sorted(pods) == ["web-0", "web-1", "web-2"]
        assert pods["web-1"].spec.hostname == "web-1"
        assert pods["web-1"].spec.subdomain == "web"
        assert pods["web-1"].metadata.labels["statefulset.kubernetes.io/pod-name"] == "web-1"
        assert pods["web-1"].metadata.labels["apps.kubernetes.io/pod-index"] == "1"
        for lower, higher in (("web-0", "web-1"), ("web-1", "web-2")):
            became_ready = first(history, lambda s: s.name == lower and s.ready)
            created = first(history, lambda s: s.name == higher and s.type == "ADDED")
            assert became_ready < created, f"{higher} was created before {lower} was Ready"

        # A deleted member comes back under the same name (a new pod, the same identity).
        await client.delete(v1.Pod, "web-1", "default")

        async def replaced() -> bool:
            pod = await client.get(v1.Pod, "web-1", "default")
            return pod.metadata.uid != pods["web-1"].metadata.uid and podutil.is_ready(pod)

        await eventually(replaced, message="web-1 recreated")
        await eventually(lambda: ready(3), message="three ready replicas again")

        mark = len(history)
        await client.patch(v1.StatefulSet, "web", {"spec": {"replicas": 0}}, "default")
        await eventually(lambda: ready(0), message="scaled to zero")
        await eventually(lambda: history[-1].type == "DELETED" and history[-1].name == "web-0")
        tail = history[mark:]
        deleted = [s.name for s in tail if s.type == "DELETED"]
        assert deleted == ["web-2", "web-1", "web-0"]
        for higher, lower in (("web-2", "web-1"), ("web-1", "web-0")):
            gone = first(tail, lambda s: s.name == higher and s.type == "DELETED")
            started = first(tail, lambda s: s.name == lower and (
                s.deleting or s.type == "DELETED"))
            assert gone < started, f"{lower} was deleted before {higher} was gone"


# ---------------------------------------------------------------- Job


def new_job(name: str, *, completions: int, parallelism: int, backoff_limit: int = 6) -> v1.Job:
    job = v1.Job(metadata=v1.ObjectMeta(name=name, namespace="default"))
    job.spec.completions = completions
    job.spec.parallelism = parallelism
    job.spec.backoff_limit = backoff_limit
    job.spec.template.spec.restart_policy = "Never"
    job.spec.template.spec.containers.append(container())
    return job


async def test_job_completes_with_bounded_parallelism(client: ApiClient,
                                                      manager: ControllerManager) -> None:
    await client.create(new_job("batch", completions=3, parallelism=2))

    async def running(count: int) -> list[v1.Pod]:
        pods = [p for p in await pods_of(client, "job-name=batch") if podutil.is_active(p)]
        return pods if len(pods) == count else []

    first_two = await eventually(lambda: running(2), message="two pods")
    pods = await pods_of(client, "job-name=batch")
    assert len(pods) == 2  # parallelism 2
    assert all(p.metadata.labels["batch.kubernetes.io/job-name"] == "batch" for p in pods)
    for pod in first_two:
        await finish(client, pod, "Succeeded")
    [last] = await eventually(lambda: running(1), message="the third pod")
    await finish(client, last, "Succeeded")

    async def complete() -> v1.Job | None:
        job = await client.get(v1.Job, "batch", "default")
        return job if job_condition(job, "Complete") else None

    job = await eventually(complete, message="job complete")
    assert (job.status.succeeded, job.status.active, job.status.failed) == (3, 0, 0)
    assert job.status.completion_time and job.status.start_time
    assert len(await pods_of(client, "job-name=batch")) == 3


async def test_job_fails_past_its_backoff_limit(client: ApiClient,
                                                manager: ControllerManager) -> None:
    async with finishing_pods(client, "Failed"):
        await client.create(new_job("flaky", completions=2, parallelism=2, backoff_limit=1))

        async def failed() -> v1.JobCondition | None:
            job = await client.get(v1.Job, "flaky", "default")
            return job_condition(job, "Failed")

        condition = await eventually(failed, message="job failed")
    assert condition.reason == "BackoffLimitExceeded"
    job = await client.get(v1.Job, "flaky", "default")
    assert job.status.failed == 2 and job.status.active == 0


async def test_finished_job_is_deleted_after_its_ttl(client: ApiClient,
                                                    manager: ControllerManager) -> None:
    job = new_job("short-lived", completions=1, parallelism=1)
    job.spec.ttl_seconds_after_finished = 0
    async with finishing_pods(client, "Succeeded"):
        await client.create(job)

        async def deleted() -> bool:
            try:
                await client.get(v1.Job, "short-lived", "default")
            except NotFound:
                return True
            return False

        await eventually(deleted, message="job deleted after its ttl")


# ---------------------------------------------------------------- CronJob


def new_cron_job(name: str, *, policy: str = "Allow") -> v1.CronJob:
    cj = v1.CronJob(metadata=v1.ObjectMeta(name=name, namespace="default"))
    cj.spec.schedule = "*/1 * * * *"
    cj.spec.concurrency_policy = policy
    cj.spec.successful_jobs_history_limit = 2
    template = cj.spec.job_template.spec.template
    template.spec.restart_policy = "Never"
    template.spec.containers.append(container())
    return cj


async def test_cronjob_runs_on_schedule_and_keeps_its_history(
        client: ApiClient, manager: ControllerManager) -> None:
    seen: set[str] = set()
    async with finishing_pods(client, "Succeeded"):
        await client.create(new_cron_job("tick"))

        async def trimmed() -> bool:
            jobs = (await client.list(v1.Job, "default")).items
            seen.update(j.metadata.name for j in jobs)
            done = [j for j in jobs if job_condition(j, "Complete")]
            return len(seen) >= 4 and len(done) <= 2 and len(jobs) <= 3

        await eventually(trimmed, timeout=20, message="four runs, two kept")
    assert all(name.startswith("tick-") for name in seen)
    cj = await client.get(v1.CronJob, "tick", "default")
    assert cj.status.last_schedule_time and cj.status.last_successful_time


async def test_cronjob_forbid_skips_while_a_job_runs(client: ApiClient,
                                                     manager: ControllerManager) -> None:
    await client.create(new_cron_job("solo", policy="Forbid"))

    async def skipped() -> bool:
        events = (await client.list(v1.Event, "default")).items
        return any(e.involved_object.name == "solo" and e.reason == "JobAlreadyActive"
                   for e in events)

    await eventually(skipped, timeout=10, message="a skipped run")
    jobs = (await client.list(v1.Job, "default")).items
    assert len(jobs) == 1
    cj = await client.get(v1.CronJob, "solo", "default")
    assert [ref.name for ref in cj.status.active] == [jobs[0].metadata.name]


async def test_invalid_schedule_is_rejected(client: ApiClient) -> None:
    cj = new_cron_job("bad")
    cj.spec.schedule = "61 * * * *"
    with pytest.raises(Invalid) as info:
        await client.create(cj)
    assert "spec.schedule" in str(info.value) and "above maximum" in str(info.value)
