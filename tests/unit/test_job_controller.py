"""The Job controller's decisions (and its ttlSecondsAfterFinished cleanup): reconcile(key) on
filled informer stores with a fake client that records writes."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from controller_manager.job import JobController, JobTimers
from kubelite.api import defaults
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1
from tests.unit.test_daemonset_controller import (
    NOW,
    FakeClient,
    FakeRecorder,
    make_context,
    owned_pod,
    stored,
)

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
    ctx, client, recorder = make_context()
    controller = JobController(ctx, JobTimers(pod_failure_backoff=10.0,
                                              max_pod_failure_backoff=360.0))
    controller.clock = lambda: now
    controller.jobs.store.put(j)
    for pod in pods:
        controller.pods.store.put(pod)
    return controller, client, recorder


def last_status(client: FakeClient) -> v1.JobStatus:
    assert client.statuses, "no status written"
    return cast(v1.Job, client.statuses[-1]).status


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
    assert ("Warning", "BackoffLimitExceeded") in [(t, r) for t, r, _ in recorder.events]


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
    assert client.deleted == []
    assert KEY in controller.queue._delayed
    await controller.stop()

    controller, client, _ = setup(j, now=NOW + dt.timedelta(seconds=31))
    await controller.reconcile(KEY)
    [(kind, name, options)] = client.deleted
    assert (kind, name, options["propagation_policy"]) == ("Job", "pi", "Background")

    # Failed jobs expire from their Failed condition.
    failed = job(ttl=0)
    failed.status.conditions.add(type="Failed", status="True",
                                 last_transition_time=m.format_time(NOW))
    controller, client, _ = setup(failed, now=NOW)
    await controller.reconcile(KEY)
    assert client.deleted_names("Job") == ["pi"]
