"""The CronJob controller's decisions: reconcile(key) on filled informer stores with a fake
client and a fake clock."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from controller_manager.cronjob import (
    SCHEDULED_TIMESTAMP_ANNOTATION,
    CronJobController,
    ScheduleClock,
    job_name,
    most_recent_schedule_time,
)
from kubelite.api import cron
from kubelite.api import meta as m
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, FakeRecorder, fill_cache, workload_context
from tests.unit.objects import NOW, stored

KEY = "default/tick"
T = NOW  # 12:00:00 UTC


@dataclass
class FakeClock:
    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at

    def from_real(self, t: dt.datetime) -> dt.datetime:
        return t

    def real_seconds(self, schedule_seconds: float) -> float:
        return schedule_seconds


def cron_job(schedule: str = "*/1 * * * *", *, policy: str = "Allow",
             created: dt.datetime = T - dt.timedelta(seconds=30), last: dt.datetime | None = None,
             deadline: int | None = None, time_zone: str | None = None,
             suspend: bool = False) -> v1.CronJob:
    cj = v1.CronJob()
    cj.metadata.creation_timestamp = m.format_time(created)
    cj.spec.schedule = schedule
    cj.spec.concurrency_policy = policy
    cj.spec.suspend = suspend
    if deadline is not None:
        cj.spec.starting_deadline_seconds = deadline
    if time_zone is not None:
        cj.spec.time_zone = time_zone
    cj.spec.job_template.metadata.labels["team"] = "a"
    template = cj.spec.job_template.spec.template
    template.spec.restart_policy = "OnFailure"
    template.spec.containers.add(name="c", image="busybox")
    if last is not None:
        cj.status.last_schedule_time = m.format_time(last)
    return stored(cj, "tick")


def child(cj: v1.CronJob, scheduled: dt.datetime, *, finished: str = "",
          started: dt.datetime | None = None) -> v1.Job:
    j = v1.Job(metadata=v1.ObjectMeta(
        name=job_name(cj, scheduled), namespace="default", uid=f"uid-{scheduled:%H%M}",
        owner_references=[v1.OwnerReference(kind="CronJob", name="tick", uid=cj.metadata.uid,
                                            controller=True)]))
    j.status.start_time = m.format_time(started or scheduled)
    if finished:
        j.status.conditions.add(type=finished, status="True")
        if finished == "Complete":
            j.status.completion_time = m.format_time(scheduled + dt.timedelta(seconds=5))
    return j


def active_ref(j: v1.Job) -> v1.ObjectReference:
    return v1.ObjectReference(kind="Job", namespace="default", name=j.metadata.name,
                              uid=j.metadata.uid)


def setup(cj: v1.CronJob, jobs: list[v1.Job] = (), now: dt.datetime = T,  # type: ignore[assignment]
          ) -> tuple[CronJobController, FakeClient, FakeRecorder]:
    ctx, client, recorder = workload_context()
    controller = CronJobController(ctx, FakeClock(now))
    fill_cache(ctx, cj, *jobs)
    return controller, client, recorder


def last_status(client: FakeClient) -> v1.CronJobStatus:
    return client.last_status_write(v1.CronJob).status


async def test_creates_the_due_job() -> None:
    cj = cron_job()
    controller, client, recorder = setup(cj, now=T + dt.timedelta(seconds=10))
    await controller.reconcile(KEY)
    [j] = client.created_of(v1.Job)
    assert j.metadata.name == f"tick-{int(T.timestamp()) // 60}"
    assert j.metadata.labels["team"] == "a"
    assert j.metadata.annotations[SCHEDULED_TIMESTAMP_ANNOTATION] == "2024-05-01T12:00:00Z"
    assert j.metadata.owner_references[0].kind == "CronJob"
    assert j.spec.template.spec.containers[0].image == "busybox"
    status = last_status(client)
    assert [ref.name for ref in status.active] == [j.metadata.name]
    assert status.last_schedule_time == "2024-05-01T12:00:00Z"
    assert "SuccessfulCreate" in recorder.reasons()
    # Requeued for 12:01, 50 s away.
    when, _ = controller.queue._delayed[KEY]
    assert 49 < when - _loop_time() < 51
    await controller.stop()


def _loop_time() -> float:
    import asyncio

    return asyncio.get_running_loop().time()


async def test_nothing_due_yet_waits_for_the_next_time() -> None:
    cj = cron_job(last=T)
    controller, client, _ = setup(cj, now=T + dt.timedelta(seconds=20))
    await controller.reconcile(KEY)
    assert client.created == []
    assert KEY in controller.queue._delayed
    await controller.stop()


async def test_forbid_skips_while_a_job_runs() -> None:
    cj = cron_job(policy="Forbid", last=T - dt.timedelta(minutes=1))
    running = child(cj, T - dt.timedelta(minutes=1))
    cj.status.active.append(active_ref(running))
    controller, client, recorder = setup(cj, [running], now=T + dt.timedelta(seconds=5))
    await controller.reconcile(KEY)
    assert client.created == []
    assert "JobAlreadyActive" in recorder.reasons()
    assert client.status_updates == []  # lastScheduleTime stays: the time is still due
    await controller.stop()


async def test_replace_deletes_the_running_job_first() -> None:
    cj = cron_job(policy="Replace", last=T - dt.timedelta(minutes=1))
    running = child(cj, T - dt.timedelta(minutes=1))
    cj.status.active.append(active_ref(running))
    controller, client, _ = setup(cj, [running], now=T + dt.timedelta(seconds=5))
    await controller.reconcile(KEY)
    [(kind, _, name, options)] = client.deletes
    assert (kind, name, options["propagation_policy"]) == ("Job", running.metadata.name,
                                                           "Background")
    [new] = client.created_of(v1.Job)
    assert [ref.name for ref in last_status(client).active] == [new.metadata.name]
    await controller.stop()


async def test_allow_runs_concurrently() -> None:
    cj = cron_job(last=T - dt.timedelta(minutes=1))
    running = child(cj, T - dt.timedelta(minutes=1))
    cj.status.active.append(active_ref(running))
    controller, client, _ = setup(cj, [running], now=T + dt.timedelta(seconds=5))
    await controller.reconcile(KEY)
    assert len(client.created_of(v1.Job)) == 1 and client.deletes == []
    assert len(last_status(client).active) == 2
    await controller.stop()


async def test_starting_deadline_skips_late_times() -> None:
    cj = cron_job(last=T - dt.timedelta(minutes=10), deadline=30)
    controller, client, _ = setup(cj, now=T + dt.timedelta(seconds=40))
    await controller.reconcile(KEY)
    assert client.created == []  # 12:00 is 40 s late, more than the 30 s allowed
    controller, client, _ = setup(cj, now=T + dt.timedelta(seconds=20))
    await controller.reconcile(KEY)
    assert len(client.created_of(v1.Job)) == 1
    await controller.stop()


async def test_too_many_missed_times_warn_and_run_the_latest() -> None:
    cj = cron_job(last=T - dt.timedelta(hours=5))
    controller, client, recorder = setup(cj, now=T + dt.timedelta(seconds=5))
    await controller.reconcile(KEY)
    assert "TooManyMissedTimes" in recorder.reasons()
    [j] = client.created_of(v1.Job)
    assert j.metadata.name == job_name(cj, T)
    await controller.stop()


async def test_finished_jobs_leave_active_and_history_is_trimmed() -> None:
    cj = cron_job(last=T)
    cj.spec.successful_jobs_history_limit = 2
    cj.spec.failed_jobs_history_limit = 1
    done = [child(cj, T - dt.timedelta(minutes=i), finished="Complete") for i in range(4)]
    failed = [child(cj, T - dt.timedelta(minutes=10 + i), finished="Failed") for i in range(2)]
    cj.status.active.append(active_ref(done[0]))
    gone = v1.ObjectReference(kind="Job", namespace="default", name="tick-1", uid="uid-gone")
    cj.status.active.append(gone)
    controller, client, recorder = setup(cj, [*done, *failed], now=T + dt.timedelta(seconds=10))
    await controller.reconcile(KEY)
    # The two oldest successes and the oldest failure go.
    assert sorted(client.deleted_names("Job")) == sorted(
        [done[3].metadata.name, done[2].metadata.name, failed[1].metadata.name])
    status = last_status(client)
    assert list(status.active) == []
    assert status.last_successful_time == m.format_time(T + dt.timedelta(seconds=5))
    assert {"SawCompletedJob", "MissingJob"} <= set(recorder.reasons())
    await controller.stop()


async def test_suspended_cronjob_starts_nothing() -> None:
    cj = cron_job(suspend=True)
    controller, client, _ = setup(cj, now=T + dt.timedelta(minutes=3))
    await controller.reconcile(KEY)
    assert client.created == [] and KEY not in controller.queue._delayed


async def test_time_zone() -> None:
    cj = cron_job("0 21 * * *", time_zone="Asia/Tokyo", created=T - dt.timedelta(days=1))
    controller, client, _ = setup(cj, now=T + dt.timedelta(seconds=5))  # 21:00 in Tokyo
    await controller.reconcile(KEY)
    [j] = client.created_of(v1.Job)
    assert j.metadata.annotations[SCHEDULED_TIMESTAMP_ANNOTATION] == "2024-05-01T21:00:00+09:00"
    assert j.metadata.name == job_name(cj, T)
    await controller.stop()


def test_most_recent_schedule_time() -> None:
    schedule = cron.parse_schedule("*/1 * * * *")
    cj = cron_job()
    due = most_recent_schedule_time(cj, schedule, T + dt.timedelta(minutes=3, seconds=10),
                                    created=T - dt.timedelta(seconds=30))
    assert due.scheduled == T + dt.timedelta(minutes=3) and not due.too_many_missed
    due = most_recent_schedule_time(cj, schedule, T - dt.timedelta(seconds=10),
                                    created=T - dt.timedelta(seconds=30))
    assert due.scheduled is None
    irregular = cron.parse_schedule("30 6-16/4 * * 1-5")  # 2024-05-01 is a Wednesday
    due = most_recent_schedule_time(cj, irregular, T + dt.timedelta(days=6),
                                    created=T - dt.timedelta(days=80))
    assert due.scheduled == dt.datetime(2024, 5, 7, 10, 30, tzinfo=dt.UTC)
    assert due.too_many_missed


def test_scaled_clock() -> None:
    clock = ScheduleClock(60.0)
    assert clock.real_seconds(60) == 1.0
    assert clock.from_real(clock.anchor + dt.timedelta(seconds=2)) == \
        clock.anchor + dt.timedelta(minutes=2)
    # One real second after the anchor is a schedule minute after it.
    started = ScheduleClock(60.0, anchor=T, anchor_monotonic=time.monotonic() - 1.0)
    assert dt.timedelta(seconds=60) <= started.now() - T < dt.timedelta(seconds=70)
