"""The CronJob controller: a Job per due schedule time (upstream's
pkg/controller/cronjob/cronjob_controllerv2.go and utils.go).

Each sync: reconcile status.active with the Jobs that exist; delete finished Jobs beyond the
history limits, oldest first; then, unless suspended, find the most recent schedule time since
lastScheduleTime (or creation) that has not run. A time older than startingDeadlineSeconds is
missed; Forbid skips it while a Job runs (it stays due, as upstream); Replace deletes the
running Jobs first. The Job is named ``<cronjob>-<scheduled time in minutes since the epoch>``,
so a time can never run twice. The CronJob is requeued for its next schedule time, and all
CronJobs are re-checked every ``cronjob_check_period`` seconds.

Time comes from a ``ScheduleClock``: with ``cron_time_scale`` s > 1 schedule time runs s times
faster than real time from the moment the controller started (tests), and real timestamps
(creationTimestamp, a Job's completionTime) are mapped onto it; at 1 both are the wall clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from controller_manager.context import ControllerContext
from controller_manager.job import finished_condition
from controller_manager.workload import OWNER_INDEX, write_status
from kubelite.api import cron
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, ApiError, NotFound
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING
from kubelite.client.informer import index_by_owner_uid
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100
"""More missed times than this get a warning (upstream's arbitrary 100)."""
NEXT_SCHEDULE_DELTA = 0.1
"""Real seconds added to the wait for the next time, so the clock has surely passed it."""


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Schedule time now (aware, UTC)."""

    def from_real(self, t: dt.datetime) -> dt.datetime:
        """A real timestamp mapped onto schedule time."""

    def real_seconds(self, schedule_seconds: float) -> float:
        """Real seconds that pass while ``schedule_seconds`` of schedule time do."""


@dataclass(frozen=True)
class ScheduleClock:
    scale: float = 1.0
    anchor: dt.datetime = field(default_factory=m.now)
    anchor_monotonic: float = field(default_factory=time.monotonic)

    def now(self) -> dt.datetime:
        elapsed = (time.monotonic() - self.anchor_monotonic) * self.scale
        return self.anchor + dt.timedelta(seconds=elapsed)

    def from_real(self, t: dt.datetime) -> dt.datetime:
        return self.anchor + (t - self.anchor) * self.scale

    def real_seconds(self, schedule_seconds: float) -> float:
        return schedule_seconds / self.scale


def job_name(cj: v1.CronJob, scheduled: dt.datetime) -> str:
    return f"{cj.metadata.name}-{int(scheduled.timestamp()) // 60}"


def _rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339 in the time's own zone ("Z" for UTC)."""
    offset = t.utcoffset()
    if offset is None or offset == dt.timedelta(0):
        return m.format_time(t)
    return t.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Due:
    earliest: dt.datetime
    scheduled: dt.datetime | None
    """The most recent unmet schedule time, None when nothing is due."""
    too_many_missed: bool = False


def most_recent_schedule_time(cj: v1.CronJob, schedule: cron.CronSchedule, now: dt.datetime,
                              created: dt.datetime) -> Due:
    """Upstream's mostRecentScheduleTime: the latest activation in (earliest, now]."""
    earliest = (m.parse_time(cj.status.last_schedule_time) if cj.status.last_schedule_time
                else created)
    if cj.spec.HasField("starting_deadline_seconds"):
        # Nothing older than the deadline will ever run, so do not look there.
        deadline = now - dt.timedelta(seconds=cj.spec.starting_deadline_seconds)
        earliest = max(earliest, deadline)
    t1 = schedule.next_after(earliest)
    if now < t1:
        return Due(earliest, None)
    t2 = schedule.next_after(t1)
    if now < t2:
        return Due(earliest, t1)
    interval = max(1, round((t2 - t1).total_seconds()))
    missed = int((now - t1).total_seconds()) // interval + 1
    # Jump close to now by the interval, then walk: exact for regular schedules, and the walk
    # corrects irregular ones (e.g. "30 6-16/4 * * 1-5").
    t = schedule.next_after(t1 + dt.timedelta(seconds=max(0, missed - 2) * interval))
    if t > now:
        t = t1
    most_recent = t1
    while t <= now:
        most_recent = t
        t = schedule.next_after(t)
    return Due(earliest, most_recent, missed > TOO_MANY_MISSED)


def _load_schedule(cj: v1.CronJob) -> cron.CronSchedule:
    zone = cj.spec.time_zone if cj.spec.HasField("time_zone") else None
    return cron.parse_schedule(cj.spec.schedule, zone)


def _reference(job: v1.Job) -> v1.ObjectReference:
    return v1.ObjectReference(kind="Job", api_version="batch/v1", namespace=job.metadata.namespace,
                              name=job.metadata.name, uid=job.metadata.uid,
                              resource_version=job.metadata.resource_version)


def _start_order(job: v1.Job) -> tuple[int, str, str]:
    # Oldest start first; jobs that never started last (upstream's byJobStartTime).
    return (0 if job.status.start_time else 1, job.status.start_time, job.metadata.name)


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: ControllerContext, clock: Clock | None = None) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.clock: Clock = clock or ScheduleClock(ctx.settings.cron_time_scale)
        self.check_period = ctx.settings.cronjob_check_period
        self.cronjobs = ctx.informers.informer(v1.CronJob)
        self.jobs = ctx.informers.informer(v1.Job)
        self.jobs.store.add_indexer(OWNER_INDEX, index_by_owner_uid)
        self.cronjobs.add_handlers(on_add=self.enqueue,
                                   on_update=lambda _o, new: self.enqueue(new),
                                   on_delete=self.enqueue)
        self.jobs.add_handlers(on_add=self._job_changed,
                               on_update=lambda _o, new: self._job_changed(new),
                               on_delete=self._job_changed)
        self._ticker: asyncio.Task[None] | None = None

    def _job_changed(self, job: v1.Job) -> None:
        key = m.controller_key(job, "CronJob")
        if key is not None:
            self.queue.add(key)

    def run(self) -> None:
        super().run()
        if self.check_period > 0:
            self._ticker = asyncio.create_task(self._tick(), name="cronjob-check")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        await super().stop()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.check_period)
            for key in self.cronjobs.store.keys():
                self.queue.add(key)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        cj = self.cronjobs.store.get(key)
        if cj is None:
            return
        jobs = [j for j in self.jobs.store.by_index(OWNER_INDEX, cj.metadata.uid)
                if m.is_controlled_by(j, cj)]
        status = v1.CronJobStatus()
        status.CopyFrom(cj.status)
        await self._sync_active(cj, jobs, status)
        await self._cleanup_history(cj, jobs, status)
        next_time = None
        if not cj.metadata.deletion_timestamp:
            next_time = await self._schedule(cj, status)
        if await write_status(self.client, cj, status) is None:
            return
        if next_time is not None:
            wait = (next_time - self.clock.now()).total_seconds()
            self.queue.add_after(key, self.clock.real_seconds(max(wait, 0.0))
                                 + NEXT_SCHEDULE_DELTA)

    async def _sync_active(self, cj: v1.CronJob, jobs: list[v1.Job],
                           status: v1.CronJobStatus) -> None:
        active = {ref.uid for ref in status.active}
        for job in jobs:
            condition = finished_condition(job)
            if condition is None:
                if job.metadata.uid not in active and not job.metadata.deletion_timestamp:
                    # Ours but unlisted: we crashed, or our status is older than the cache.
                    status.active.append(_reference(job))
                continue
            if job.metadata.uid in active:
                self._drop_active(status, job.metadata.uid)
                self.recorder.record(cj, NORMAL, "SawCompletedJob",
                                     f"Saw completed job: {job.metadata.name}, condition:"
                                     f" {condition.type}")
            if condition.type == "Complete" and job.status.completion_time:
                done = self.clock.from_real(m.parse_time(job.status.completion_time))
                last = status.last_successful_time
                if not last or m.parse_time(last) < done:
                    status.last_successful_time = m.format_time(done)
        present = {j.metadata.uid for j in jobs}
        for ref in list(status.active):
            if ref.uid in present:
                continue
            try:
                found = await self.client.get(v1.Job, ref.name, ref.namespace or
                                              cj.metadata.namespace)
            except NotFound:
                found = None
            if found is None or found.metadata.uid != ref.uid:
                self._drop_active(status, ref.uid)
                self.recorder.record(cj, NORMAL, "MissingJob",
                                     f"Active job went missing: {ref.name}")

    @staticmethod
    def _drop_active(status: v1.CronJobStatus, uid: str) -> None:
        kept = [ref for ref in status.active if ref.uid != uid]
        del status.active[:]
        status.active.extend(kept)

    async def _cleanup_history(self, cj: v1.CronJob, jobs: list[v1.Job],
                               status: v1.CronJobStatus) -> None:
        succeeded: list[v1.Job] = []
        failed: list[v1.Job] = []
        for job in jobs:
            condition = finished_condition(job)
            if condition is None or job.metadata.deletion_timestamp:
                continue
            (succeeded if condition.type == "Complete" else failed).append(job)
        for finished, limit_field in ((succeeded, "successful_jobs_history_limit"),
                                      (failed, "failed_jobs_history_limit")):
            if not cj.spec.HasField(limit_field):
                continue
            excess = len(finished) - getattr(cj.spec, limit_field)
            if excess <= 0:
                continue
            finished.sort(key=_start_order)
            for job in finished[:excess]:
                await self._delete_job(cj, job.metadata.name, job.metadata.uid, status)

    async def _delete_job(self, cj: v1.CronJob, name: str, uid: str,
                          status: v1.CronJobStatus) -> None:
        try:
            await self.client.delete(v1.Job, name, cj.metadata.namespace,
                                     propagation_policy="Background", uid=uid)
        except NotFound:
            pass
        except ApiError as e:
            self.recorder.record(cj, WARNING, "FailedDelete", f"Deleted job: {e}")
            raise
        else:
            self.recorder.record(cj, NORMAL, "SuccessfulDelete", f"Deleted job {name}")
        self._drop_active(status, uid)

    async def _schedule(self, cj: v1.CronJob, status: v1.CronJobStatus) -> dt.datetime | None:
        """Start the Job that is due, if any; returns the next schedule time to wake up at."""
        try:
            schedule = _load_schedule(cj)
        except ValueError as e:
            # Validation rejects these; an object stored before a rule tightened may remain.
            self.recorder.record(cj, WARNING, "UnparseableSchedule",
                                 f"unparseable schedule: {cj.spec.schedule!r} : {e}")
            return None
        if cj.spec.suspend:
            return None
        now = self.clock.now()
        created = self.clock.from_real(m.parse_time(cj.metadata.creation_timestamp))
        probe = v1.CronJob()
        probe.CopyFrom(cj)
        probe.status.CopyFrom(status)
        try:
            due = most_recent_schedule_time(probe, schedule, now, created)
            next_time = schedule.next_after(now)
        except cron.NoNextTime as e:
            self.recorder.record(cj, WARNING, "InvalidSchedule",
                                 f"invalid schedule: {cj.spec.schedule}: {e}")
            return None
        if due.too_many_missed:
            self.recorder.record(cj, WARNING, "TooManyMissedTimes",
                                 "too many missed start times. Set or decrease"
                                 " .spec.startingDeadlineSeconds or check clock skew")
        scheduled = due.scheduled
        if scheduled is None:
            return next_time
        if cj.spec.HasField("starting_deadline_seconds") and (
                scheduled + dt.timedelta(seconds=cj.spec.starting_deadline_seconds) < now):
            self.recorder.record(cj, WARNING, "MissSchedule",
                                 "Missed scheduled time to start a job: "
                                 f"{_rfc3339(scheduled)}")
            return next_time
        name = job_name(cj, scheduled)
        if any(ref.name == name for ref in status.active):
            status.last_schedule_time = m.format_time(scheduled)
            return next_time
        if cj.spec.concurrency_policy == "Forbid" and status.active:
            self.recorder.record(cj, NORMAL, "JobAlreadyActive",
                                 "Not starting job because prior execution is running and"
                                 " concurrency policy is Forbid")
            return next_time
        if cj.spec.concurrency_policy == "Replace":
            for ref in list(status.active):
                await self._delete_job(cj, ref.name, ref.uid, status)
        job = self._new_job(cj, scheduled, schedule)
        try:
            created_job = await self.client.create(job)
        except AlreadyExists:
            # Made earlier by us (our status write was lost or the cache lags), or by someone.
            try:
                existing = await self.client.get(v1.Job, name, cj.metadata.namespace)
            except NotFound:
                raise RuntimeError(f"job {name} exists and vanished; retrying") from None
            if not m.is_controlled_by(existing, cj):
                self.recorder.record(cj, WARNING, "FailedCreate",
                                     f"Error creating job: job {name} exists and is not ours")
                return next_time
            if finished_condition(existing) is None and not any(
                    ref.uid == existing.metadata.uid for ref in status.active):
                status.active.append(_reference(existing))
            status.last_schedule_time = m.format_time(scheduled)
            return next_time
        except ApiError as e:
            self.recorder.record(cj, WARNING, "FailedCreate", f"Error creating job: {e}")
            raise
        self.recorder.record(cj, NORMAL, "SuccessfulCreate", f"Created job {name}")
        status.active.append(_reference(created_job))
        status.last_schedule_time = m.format_time(scheduled)
        return next_time

    def _new_job(self, cj: v1.CronJob, scheduled: dt.datetime,
                 schedule: cron.CronSchedule) -> v1.Job:
        template = cj.spec.job_template
        zone = schedule.time_zone or dt.UTC
        job = v1.Job(metadata=v1.ObjectMeta(
            name=job_name(cj, scheduled), namespace=cj.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations={**template.metadata.annotations,
                         SCHEDULED_TIMESTAMP_ANNOTATION: _rfc3339(scheduled.astimezone(zone))},
            owner_references=[m.controller_reference(cj)],
        ))
        job.spec.CopyFrom(template.spec)
        return job
