"""The Job controller's decisions (and its ttlSecondsAfterFinished cleanup): reconcile(key) on
filled informer stores with a fake client that records writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller_manager.job import JobController, JobTimers, format_indexes, parse_indexes
from kubelite.api import defaults
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, fill_cache, workload_context
from tests.unit.objects import NOW, owned_pod, stored

KEY = "default/pi"


def job(*, completions: int | None = 1, parallelism: int | None = None, backoff_limit: int = 6,
        restart_policy: str = "Never", deadline: int | None = None, ttl: int | None = None,
        suspend: bool = False, started: dt.datetime | None = NOW) -> v1.Job:
    j = v1.Job()
    if completions is not None:
        j.spec.completions = completions
    if parallelism is not None:
        j.spec.parallelism = parallelism
    j.spec.backoff_limit = backoff_limit
    j.spec.template.spec.restart_policy = restart_policy
    j.spec.template.spec.containers.add(name="pi", image="perl")
    if deadline is not None:
        j.spec.active_deadline_seconds = deadline
    if ttl is not None:
        j.spec.ttl_seconds_after_finished = ttl
    j.spec.suspend = suspend
    j = stored(j, "pi")
    defaults.generate_job_selector(j)  # as the API server does on create
    if started is not None:
        j.status.start_time = m.format_time(started)
    return j


def job_pod(j: v1.Job, name: str, phase: str = "Running", *, finished: dt.datetime | None = None,
            restarts: int = 0, **kwargs: Any) -> v1.Pod:
    pod = owned_pod(j, "Job", name, phase=phase, labels=dict(j.spec.template.metadata.labels),
                    **kwargs)
    status = pod.status.container_statuses.add(name="pi", restart_count=restarts)
    if finished is not None:
        status.state.terminated.finished_at = m.format_time(finished)
        status.state.terminated.exit_code = 0 if phase == "Succeeded" else 1
    return pod


def setup(j: v1.Job, pods: list[v1.Pod] = (), now: dt.datetime = NOW,  # type: ignore[assignment]
          ) -> tuple[JobController, FakeClient, FakeRecorder]:
    ctx, client, recorder = workload_context()
    controller = JobController(ctx, JobTimers(pod_failure_backoff=10.0,
                                              max_pod_failure_backoff=360.0))
    controller.clock = lambda: now
    fill_cache(ctx, j, *pods)
    return controller, client, recorder


def last_status(client: FakeClient) -> v1.JobStatus:
    return client.last_status_write(v1.Job).status


def condition(status: v1.JobStatus, type_: str) -> v1.JobCondition | None:
    return next((c for c in status.conditions if c.type == type_), None)


async def test_creates_up_to_parallelism_with_the_selector_labels() -> None:
    j = job(completions=3, parallelism=2, started=None)
    controller, client, recorder = setup(j)
    await controller.reconcile(KEY)
    pods = client.created_of(v1.Pod)
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata.generate_name == "pi-"
        labels = pod.metadata.labels
        for label in ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                      "batch.kubernetes.io/job-name"):
            assert label in labels
        assert labels["job-name"] == "pi"
        assert pod.metadata.owner_references[0].kind == "Job"
    status = last_status(client)
    assert status.active == 2 and status.start_time
    assert recorder.reasons().count("SuccessfulCreate") == 2

    # The cache has not seen them yet: no second batch.
    await controller.reconcile(KEY)
    assert len(client.created_of(v1.Pod)) == 2


async def test_never_more_than_the_remaining_completions() -> None:
    j = job(completions=3, parallelism=2)
    pods = [job_pod(j, "pi-a", "Succeeded", finished=NOW), job_pod(j, "pi-b", "Succeeded",
                                                                  finished=NOW),
            job_pod(j, "pi-c")]
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    assert client.created_of(v1.Pod) == []
    status = last_status(client)
    assert (status.active, status.succeeded, status.ready) == (1, 2, 1)


async def test_complete_when_completions_succeeded() -> None:
    j = job(completions=3, parallelism=2)
    pods = [job_pod(j, f"pi-{i}", "Succeeded", finished=NOW) for i in range(3)]
    controller, client, recorder = setup(j, pods)
    await controller.reconcile(KEY)
    status = last_status(client)
    complete = condition(status, "Complete")
    assert complete is not None and complete.status == "True"
    assert complete.reason == "CompletionsReached"
    assert status.succeeded == 3 and status.active == 0 and status.completion_time
    assert "Completed" in recorder.reasons()


async def test_work_queue_job_completes_when_one_succeeds_and_none_run() -> None:
    j = job(completions=None, parallelism=2)
    assert not j.spec.HasField("completions")
    controller, client, _ = setup(j, [job_pod(j, "pi-a", "Succeeded", finished=NOW),
                                      job_pod(j, "pi-b")])
    await controller.reconcile(KEY)
    assert client.created_of(v1.Pod) == [] and condition(last_status(client), "Complete") is None
    controller, client, _ = setup(j, [job_pod(j, "pi-a", "Succeeded", finished=NOW)])
    await controller.reconcile(KEY)
    assert condition(last_status(client), "Complete") is not None


async def test_backoff_limit_exceeded_with_restart_policy_never() -> None:
    j = job(completions=3, parallelism=3, backoff_limit=1)
    pods = [job_pod(j, "pi-a", "Failed", finished=NOW), job_pod(j, "pi-b", "Failed",
                                                                finished=NOW),
            job_pod(j, "pi-c")]
    controller, client, recorder = setup(j, pods)
    await controller.reconcile(KEY)
    status = last_status(client)
    failed = condition(status, "Failed")
    assert failed is not None and failed.reason == "BackoffLimitExceeded"
    assert failed.message == "Job has reached the specified backoff limit"
    assert client.deleted_names() == ["pi-c"]  # the running pod is stopped
    assert status.failed == 3 and status.active == 0
    assert ("Warning", "BackoffLimitExceeded") in [(e.type, e.reason) for e in recorder.events]


async def test_restart_policy_on_failure_counts_container_restarts() -> None:
    j = job(backoff_limit=2, restart_policy="OnFailure")
    controller, client, _ = setup(j, [job_pod(j, "pi-a", restarts=1)])
    await controller.reconcile(KEY)
    assert condition(last_status(client), "Failed") is None
    controller, client, _ = setup(j, [job_pod(j, "pi-a", restarts=2)])
    await controller.reconcile(KEY)
    failed = condition(last_status(client), "Failed")
    assert failed is not None and failed.reason == "BackoffLimitExceeded"


async def test_pod_failure_backoff_delays_replacements() -> None:
    j = job(completions=1)
    pods = [job_pod(j, "pi-a", "Failed", finished=NOW)]
    controller, client, _ = setup(j, pods, now=NOW + dt.timedelta(seconds=3))
    await controller.reconcile(KEY)
    assert client.created_of(v1.Pod) == []
    assert KEY in controller.queue._delayed  # back when the 10 s are over
    await controller.stop()

    controller, client, _ = setup(j, pods, now=NOW + dt.timedelta(seconds=11))
    await controller.reconcile(KEY)
    assert len(client.created_of(v1.Pod)) == 1

    # Two failures in a row: 20 s.
    pods = [job_pod(j, "pi-a", "Failed", finished=NOW - dt.timedelta(seconds=30)),
            job_pod(j, "pi-b", "Failed", finished=NOW)]
    controller, client, _ = setup(j, pods, now=NOW + dt.timedelta(seconds=15))
    await controller.reconcile(KEY)
    assert client.created_of(v1.Pod) == []
    await controller.stop()
    assert JobTimers().backoff(10) == 360.0


async def test_active_deadline_exceeded() -> None:
    j = job(completions=2, parallelism=2, deadline=10)
    pods = [job_pod(j, "pi-a"), job_pod(j, "pi-b")]
    controller, client, _ = setup(j, pods, now=NOW + dt.timedelta(seconds=5))
    await controller.reconcile(KEY)
    assert condition(last_status(client), "Failed") is None
    assert KEY in controller.queue._delayed  # checked again at the deadline
    await controller.stop()

    controller, client, _ = setup(j, pods, now=NOW + dt.timedelta(seconds=11))
    await controller.reconcile(KEY)
    failed = condition(last_status(client), "Failed")
    assert failed is not None and failed.reason == "DeadlineExceeded"
    assert failed.message == "Job was active longer than specified deadline"
    assert sorted(client.deleted_names()) == ["pi-a", "pi-b"]


async def test_suspend_deletes_running_pods_and_resume_restarts_the_clock() -> None:
    j = job(completions=2, parallelism=2, suspend=True)
    controller, client, _ = setup(j, [job_pod(j, "pi-a")])
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["pi-a"] and client.created_of(v1.Pod) == []
    suspended = condition(last_status(client), "Suspended")
    assert suspended is not None and suspended.status == "True"

    resumed = job(completions=2, parallelism=2, suspend=False)
    resumed.status.conditions.add(type="Suspended", status="True", reason="JobSuspended")
    later = NOW + dt.timedelta(minutes=1)
    controller, client, _ = setup(resumed, now=later)
    await controller.reconcile(KEY)
    status = last_status(client)
    assert len(client.created_of(v1.Pod)) == 2
    assert status.start_time == m.format_time(later)
    cond = condition(status, "Suspended")
    assert cond is not None and (cond.status, cond.reason) == ("False", "JobResumed")


async def test_ttl_after_finished_deletes_the_job_in_the_background() -> None:
    j = job(ttl=30)
    j.status.completion_time = m.format_time(NOW)
    j.status.conditions.add(type="Complete", status="True")
    controller, client, _ = setup(j, now=NOW + dt.timedelta(seconds=10))
    await controller.reconcile(KEY)
    assert client.deletes == []
    assert KEY in controller.queue._delayed
    await controller.stop()

    controller, client, _ = setup(j, now=NOW + dt.timedelta(seconds=31))
    await controller.reconcile(KEY)
    [(kind, _, name, options)] = client.deletes
    assert (kind, name, options["propagation_policy"]) == ("Job", "pi", "Background")

    # Failed jobs expire from their Failed condition.
    failed = job(ttl=0)
    failed.status.conditions.add(type="Failed", status="True",
                                 last_transition_time=m.format_time(NOW))
    controller, client, _ = setup(failed, now=NOW)
    await controller.reconcile(KEY)
    assert client.deleted_names("Job") == ["pi"]


# ---------------------------------------------------------------- Indexed completion mode

INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def indexed_job(completions: int = 3, parallelism: int = 3, **kwargs: Any) -> v1.Job:
    j = job(completions=completions, parallelism=parallelism, **kwargs)
    j.spec.completion_mode = "Indexed"
    return j


def index_pod(j: v1.Job, index: int | None, phase: str = "Running", *, suffix: str = "x",
              **kwargs: Any) -> v1.Pod:
    name = f"pi-{index}-{suffix}"
    pod = job_pod(j, name, phase, **kwargs)
    if index is not None:
        pod.metadata.annotations[INDEX_KEY] = str(index)
        pod.metadata.labels[INDEX_KEY] = str(index)
    return pod


def test_completed_indexes_are_compressed_intervals() -> None:
    assert format_indexes({1, 3, 4, 5, 7}) == "1,3-5,7"
    assert format_indexes({0, 1}) == "0,1"  # only three or more are an interval
    assert format_indexes({0, 1, 2}) == "0-2"
    assert format_indexes(set()) == ""
    assert parse_indexes("1,3-5,7", 10) == {1, 3, 4, 5, 7}
    # Out of range, malformed or reversed parts are ignored, as upstream does.
    assert parse_indexes("0-2,5,9-12,x,4-3", 10) == {0, 1, 2, 5, 9}
    assert parse_indexes("", 3) == set()


async def test_indexed_job_creates_the_lowest_pending_indexes() -> None:
    j = indexed_job(completions=5, parallelism=3, started=None)
    j.spec.template.spec.init_containers.add(name="setup", image="busybox")
    own = j.spec.template.spec.containers.add(name="side", image="busybox")
    own.env.add(name="JOB_COMPLETION_INDEX", value="mine")
    pods = [index_pod(j, 0, "Succeeded", finished=NOW), index_pod(j, 2)]
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    created = client.created_of(v1.Pod)
    assert [p.metadata.annotations[INDEX_KEY] for p in created] == ["1", "3"]
    for pod, index in zip(created, (1, 3), strict=True):
        assert pod.metadata.generate_name == f"pi-{index}-"
        assert pod.metadata.labels[INDEX_KEY] == str(index)
        assert pod.metadata.labels["job-name"] == "pi"
        assert pod.spec.hostname == f"pi-{index}"
        assert pod.spec.subdomain == ""  # the template's, as upstream
        for ctr in (*pod.spec.init_containers, *pod.spec.containers):
            found = [e for e in ctr.env if e.name == "JOB_COMPLETION_INDEX"]
            assert len(found) == 1, ctr.name
            if ctr.name != "side":
                assert found[0].value_from.field_ref.field_path == (
                    f"metadata.annotations['{INDEX_KEY}']")
        assert [e.value for e in pod.spec.containers[1].env] == ["mine"]  # the user's wins
    status = last_status(client)
    assert (status.active, status.succeeded, status.completed_indexes) == (3, 1, "0")


async def test_indexed_job_completes_when_every_index_succeeded_once() -> None:
    j = indexed_job(completions=3, parallelism=2)
    pods = [index_pod(j, 0, "Succeeded", finished=NOW),
            index_pod(j, 1, "Succeeded", finished=NOW),
            index_pod(j, 1, "Succeeded", finished=NOW, suffix="y"),  # a duplicate
            index_pod(j, 5, "Succeeded", finished=NOW)]  # not an index of this Job
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    status = last_status(client)
    assert (status.succeeded, status.completed_indexes) == (2, "0,1")
    assert condition(status, "Complete") is None
    assert [p.metadata.annotations[INDEX_KEY] for p in client.created_of(v1.Pod)] == ["2"]

    pods.append(index_pod(j, 2, "Succeeded", finished=NOW))
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    status = last_status(client)
    assert (status.succeeded, status.completed_indexes) == (3, "0-2")
    complete = condition(status, "Complete")
    assert complete is not None and complete.status == "True"
    assert client.created_of(v1.Pod) == []


async def test_indexed_job_removes_duplicate_and_stray_pods() -> None:
    j = indexed_job(completions=3, parallelism=3)
    pods = [index_pod(j, 0, "Succeeded", finished=NOW),
            index_pod(j, 0, suffix="late"),  # its index is done already
            index_pod(j, 1, suffix="a"), index_pod(j, 1, suffix="b", ready=False),
            index_pod(j, None, suffix="none"),  # no index at all
            index_pod(j, 7, suffix="far")]  # out of range
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    assert sorted(client.deleted_names()) == ["pi-0-late", "pi-1-b", "pi-7-far", "pi-None-none"]
    assert client.created_of(v1.Pod) == []  # once they are gone
    assert last_status(client).active == 1
    controller, client, _ = setup(j, [pods[0], pods[2]])
    await controller.reconcile(KEY)
    assert [p.metadata.annotations[INDEX_KEY] for p in client.created_of(v1.Pod)] == ["2"]
    assert last_status(client).active == 2


async def test_completed_indexes_never_shrink_and_failed_indexes_are_retried() -> None:
    # The pods of indexes 0 and 2 are gone (garbage-collected), their success is remembered;
    # index 1 failed long enough ago: it gets a new pod.
    j = indexed_job(completions=3, parallelism=3)
    j.status.completed_indexes = "0,2"
    j.status.succeeded = 2
    failed = index_pod(j, 1, "Failed", finished=NOW - dt.timedelta(minutes=5))
    controller, client, _ = setup(j, [failed])
    await controller.reconcile(KEY)
    assert [p.metadata.annotations[INDEX_KEY] for p in client.created_of(v1.Pod)] == ["1"]
    status = last_status(client)
    assert (status.completed_indexes, status.succeeded, status.failed) == ("0,2", 2, 1)


async def test_indexed_job_scales_down_to_parallelism() -> None:
    j = indexed_job(completions=4, parallelism=1)
    pods = [index_pod(j, 0, ready=True), index_pod(j, 1, ready=False)]
    controller, client, _ = setup(j, pods)
    await controller.reconcile(KEY)
    assert client.deleted_names() == ["pi-1-x"] and client.created_of(v1.Pod) == []
