"""The Job controller: run pods until enough succeed, within a failure budget and a deadline
(upstream's pkg/controller/job), and delete finished Jobs whose ttlSecondsAfterFinished has
passed (upstream's pkg/controller/ttlafterfinished, folded in here).

- At most ``parallelism`` pods run at once, and never more than the completions still missing;
  without ``completions`` the Job is done when one pod succeeded and none runs any more.
- restartPolicy Never: every Failed pod counts toward ``backoffLimit``; the Job fails when more
  pods failed than it allows. OnFailure: the kubelet restarts containers in place, so the
  failures are the containers' restartCounts over the running pods (upstream's
  pastBackoffLimitOnFailure). After a failure, new pods wait 10 s, doubling per consecutive
  failure up to 6 min.
- activeDeadlineSeconds counts from status.startTime; past it the Job fails (DeadlineExceeded).
- A finished or suspended Job has its running pods deleted.
- completionMode Indexed (upstream's indexed_job_utils.go): each pod gets a completion index
  in 0..completions-1, as the annotation and label ``batch.kubernetes.io/job-completion-index``,
  the env var ``JOB_COMPLETION_INDEX`` (downward API from that annotation) in every container,
  the hostname ``<job>-<index>`` and a name ``<job>-<index>-<random>``. New pods take the
  lowest indexes neither succeeded nor running; each index needs one success; a second pod of
  an index, a pod of a succeeded index and a pod without a valid index are deleted.
  status.completedIndexes lists the succeeded indexes as intervals (``1,3-5,7``) and
  status.succeeded counts them; the Job is complete when every index succeeded.

Counts: upstream tracks terminated pods with a finalizer and status.uncountedTerminatedPods;
kubelite counts terminated pods it can see and never lets succeeded/failed go down, so a
terminated pod that is garbage-collected keeps counting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controller_manager.context import ControllerContext
from controller_manager.workload import OWNER_INDEX, ExpectedPodEvents, delete_pod, write_status
from kubelite.api import meta as m
from kubelite.api import pods as podutil
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.labels import selector_from_label_selector
from kubelite.client.controller import Controller
from kubelite.client.events import NORMAL, WARNING
from kubelite.client.expectations import ControllerExpectations
from kubelite.client.informer import index_by_owner_uid
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

DEFAULT_POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 360.0
MAX_POD_CREATE_DELETE_PER_SYNC = 500

REASON_BACKOFF_LIMIT = "BackoffLimitExceeded"
REASON_DEADLINE = "DeadlineExceeded"
REASON_COMPLETIONS = "CompletionsReached"

INDEXED = "Indexed"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
"""Annotation (and label) holding an Indexed Job pod's completion index."""
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
MAX_GENERATED_NAME_LENGTH = 58
"""Longest generateName prefix that leaves room for the random suffix (63 - 5)."""


def is_indexed(job: v1.Job) -> bool:
    return job.spec.completion_mode == INDEXED


def completion_index(pod: v1.Pod) -> int | None:
    """The pod's completion index from its annotation (else label); None when missing or not a
    non-negative integer."""
    text = pod.metadata.annotations.get(COMPLETION_INDEX_ANNOTATION)
    if text is None:
        text = pod.metadata.labels.get(COMPLETION_INDEX_ANNOTATION)
    if text is None or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def format_indexes(indexes: set[int]) -> str:
    """Indexes as upstream writes status.completedIndexes: in order, three or more consecutive
    ones as ``first-last`` (``1,3-5,7``; two stay ``0,1``)."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(n) for n in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


def parse_indexes(text: str, completions: int) -> set[int]:
    """The indexes below ``completions`` in a completedIndexes string; malformed parts are
    ignored (upstream's parseIndexesFromString)."""
    result: set[int] = set()
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            continue
        lo, hi = int(first), int(last) if sep else int(first)
        result.update(range(lo, min(hi, completions - 1) + 1))
    return result


def _pod_generate_name(job_name: str, index: int) -> str:
    """``<job>-<index>-``, the job name cut so the whole fits a generated name."""
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME_LENGTH:
        prefix = job_name[: MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix
    return prefix


def succeeded_indexes(job: v1.Job, pods: list[v1.Pod]) -> set[int]:
    """The indexes that succeeded: those status.completedIndexes remembers (their pods may be
    gone) and those of succeeded pods now."""
    completions = job.spec.completions
    done = parse_indexes(job.status.completed_indexes, completions)
    for pod in pods:
        index = completion_index(pod)
        if pod.status.phase == "Succeeded" and index is not None and index < completions:
            done.add(index)
    return done


def surplus_indexed_pods(job: v1.Job, active: list[v1.Pod], done: set[int]) -> list[v1.Pod]:
    """Active pods an Indexed Job must delete: without a valid index, of an index that
    succeeded, or a second pod of one index (the one kept is the furthest along: running,
    ready, oldest)."""
    surplus: list[v1.Pod] = []
    by_index: dict[int, list[v1.Pod]] = {}
    for pod in active:
        index = completion_index(pod)
        if index is None or index >= job.spec.completions or index in done:
            surplus.append(pod)
        else:
            by_index.setdefault(index, []).append(pod)
    for same in by_index.values():
        same.sort(key=lambda p: p.metadata.creation_timestamp)
        same.sort(key=lambda p: (p.status.phase == "Running", podutil.is_ready(p)), reverse=True)
        surplus.extend(same[1:])
    return surplus


def set_completion_index(pod: v1.Pod, job_name: str, index: int) -> None:
    """What upstream adds to an Indexed Job's pod: name, annotation, label, env, hostname."""
    pod.metadata.generate_name = _pod_generate_name(job_name, index)
    pod.metadata.annotations[COMPLETION_INDEX_ANNOTATION] = str(index)
    pod.metadata.labels[COMPLETION_INDEX_ANNOTATION] = str(index)
    for container in (*pod.spec.init_containers, *pod.spec.containers):
        _add_completion_index_env(container)
    if not pod.spec.hostname:
        pod.spec.hostname = f"{job_name}-{index}"


def _add_completion_index_env(container: v1.Container) -> None:
    if any(e.name == COMPLETION_INDEX_ENV for e in container.env):
        return
    env = container.env.add(name=COMPLETION_INDEX_ENV)
    env.value_from.field_ref.field_path = (
        f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']")


def finished_condition(job: v1.Job) -> v1.JobCondition | None:
    """The Complete or Failed condition that is True, if the Job has finished."""
    for condition in job.status.conditions:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition
    return None


def is_finished(job: v1.Job) -> bool:
    return finished_condition(job) is not None


def _set_condition(status: v1.JobStatus, type_: str, cond_status: str, reason: str,
                   message: str, now: str) -> bool:
    for condition in status.conditions:
        if condition.type == type_:
            if (condition.status, condition.reason, condition.message) == (
                    cond_status, reason, message):
                return False
            if condition.status != cond_status:
                condition.last_transition_time = now
            condition.status, condition.reason, condition.message = cond_status, reason, message
            condition.last_probe_time = now
            return True
    status.conditions.add(type=type_, status=cond_status, reason=reason, message=message,
                          last_probe_time=now, last_transition_time=now)
    return True


def finish_time(pod: v1.Pod, fallback: dt.datetime) -> dt.datetime:
    """When a terminated pod ended: its containers' last finishedAt, else when it stopped
    being Ready (upstream's getFinishedTime)."""
    times = [m.parse_time(s.state.terminated.finished_at)
             for s in pod.status.container_statuses if s.state.terminated.finished_at]
    if times:
        return max(times)
    ready = podutil.get_condition(pod, "Ready")
    if ready is not None and ready.status == "False" and ready.last_transition_time:
        return m.parse_time(ready.last_transition_time)
    return fallback


def restart_count(pods: list[v1.Pod]) -> int:
    return sum(s.restart_count for p in pods if p.status.phase in ("Running", "Pending")
               for s in (*p.status.init_container_statuses, *p.status.container_statuses))


@dataclass(frozen=True)
class JobTimers:
    pod_failure_backoff: float = DEFAULT_POD_FAILURE_BACKOFF
    """Delay before replacing a failed pod, seconds; doubles per consecutive failure."""
    max_pod_failure_backoff: float = MAX_POD_FAILURE_BACKOFF
    """Cap on that delay, seconds."""

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.pod_failure_backoff * 2 ** min(failures - 1, 30),
                         self.max_pod_failure_backoff))


class JobController(Controller):
    name = "job"

    def __init__(self, ctx: ControllerContext, timers: JobTimers | None = None) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client = ctx.client
        self.recorder = ctx.recorder
        self.timers = timers or JobTimers(
            ctx.settings.job_pod_failure_backoff, ctx.settings.job_pod_failure_backoff_max
        )
        self.clock: Callable[[], dt.datetime] = m.now
        self.expectations = ControllerExpectations()
        self.jobs = ctx.informers.informer(v1.Job)
        self.pods = ctx.informers.informer(v1.Pod)
        self.pods.store.add_indexer(OWNER_INDEX, index_by_owner_uid)
        self.jobs.add_handlers(on_add=self.enqueue, on_update=lambda _o, new: self.enqueue(new),
                               on_delete=self.enqueue)
        self._pod_events = ExpectedPodEvents("Job", self.expectations, self.queue)
        self.pods.add_handlers(on_add=self._pod_events.added,
                               on_update=self._pod_events.updated,
                               on_delete=self._pod_events.deleted)

    # ------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> None:
        job = self.jobs.store.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        if job.metadata.deletion_timestamp:
            return
        if is_finished(job):
            await self._expire(key, job)
            return
        now = self.clock()
        now_text = m.format_time(now)
        pods = self._pods(job)
        active = [p for p in pods if podutil.is_active(p)]
        done: set[int] | None = None
        if is_indexed(job):
            done = succeeded_indexes(job, pods)
            succeeded = len(done)
        else:
            succeeded = max(job.status.succeeded,
                            sum(1 for p in pods if p.status.phase == "Succeeded"))
        failed = max(job.status.failed, sum(1 for p in pods if p.status.phase == "Failed"))
        status = v1.JobStatus()
        status.CopyFrom(job.status)
        requeue: list[float] = []
        suspended = job.spec.suspend

        if suspended:
            _set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended",
                           now_text)
        elif any(c.type == "Suspended" and c.status == "True" for c in status.conditions):
            _set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now_text)
            status.start_time = now_text  # the deadline counts from the resume
        if not suspended and not status.start_time:
            status.start_time = now_text

        failure: tuple[str, str] | None = None
        restart_policy = job.spec.template.spec.restart_policy
        limit = job.spec.backoff_limit
        if restart_policy == "OnFailure":
            restarts = restart_count(active)
            if (restarts > 0 if limit == 0 else restarts >= limit) or failed > limit:
                failure = (REASON_BACKOFF_LIMIT, "Job has reached the specified backoff limit")
        elif failed > limit:
            failure = (REASON_BACKOFF_LIMIT, "Job has reached the specified backoff limit")
        if failure is None and not suspended and job.spec.HasField("active_deadline_seconds"):
            started = m.parse_time(status.start_time)
            remaining = (started + dt.timedelta(seconds=job.spec.active_deadline_seconds)
                         - now).total_seconds()
            if remaining <= 0:
                failure = (REASON_DEADLINE, "Job was active longer than specified deadline")
            else:
                requeue.append(remaining)

        complete = False
        created = 0
        finished_event: tuple[str, str, str] | None = None
        if failure is not None:
            await self._delete_pods(key, job, active)
            failed += len(active)  # upstream counts the pods it kills as failed
            active = []
            _set_condition(status, "Failed", "True", failure[0], failure[1], now_text)
            finished_event = (WARNING, failure[0], failure[1])
        else:
            if self.expectations.satisfied(key):
                created, wait = await self._manage(key, job, pods, active, succeeded, now, done)
                if wait is not None:
                    requeue.append(wait)
            if job.spec.HasField("completions"):
                complete = succeeded >= job.spec.completions and not active
            else:
                complete = succeeded > 0 and not active
            if complete:
                status.completion_time = now_text
                _set_condition(status, "Complete", "True", REASON_COMPLETIONS,
                               "Reached expected number of succeeded pods", now_text)
                finished_event = (NORMAL, "Completed", "Job completed")

        status.active = len(active) + created
        status.ready = sum(1 for p in active if podutil.is_ready(p))
        status.succeeded, status.failed = succeeded, failed
        if done is not None:
            status.completed_indexes = format_indexes(done)
        written = await write_status(self.client, job, status)
        if written is None:
            return
        job = written
        if finished_event is not None:
            self.recorder.record(job, *finished_event)
        if is_finished(job):
            await self._expire(key, job)
            return
        if requeue:
            self.queue.add_after(key, min(requeue) + 0.05)

    def _pods(self, job: v1.Job) -> list[v1.Pod]:
        try:
            selector = selector_from_label_selector(job.spec.selector)
        except ValueError:
            return []
        return [p for p in self.pods.store.by_index(OWNER_INDEX, job.metadata.uid)
                if m.is_controlled_by(p, job) and selector.matches(p.metadata.labels)]

    async def _manage(self, key: str, job: v1.Job, pods: list[v1.Pod], active: list[v1.Pod],
                      succeeded: int, now: dt.datetime,
                      done: set[int] | None) -> tuple[int, float | None]:
        """Create or delete pods toward the wanted number running (``active`` loses the pods
        deleted); returns the pods created and, when pod-failure backoff holds creations, the
        delay to come back after. ``done``: an Indexed Job's succeeded indexes."""
        if job.spec.suspend:
            await self._delete_pods(key, job, active)
            active.clear()
            return 0, None
        if done is not None:
            extra = surplus_indexed_pods(job, active, done)
            if extra:
                await self._delete_pods(key, job, extra)
                for pod in extra:
                    active.remove(pod)
                return 0, None
        parallelism = job.spec.parallelism
        if job.spec.HasField("completions"):
            want = max(0, min(job.spec.completions - succeeded, parallelism))
        else:
            want = len(active) if succeeded > 0 else parallelism
        if len(active) > want:
            # The cheapest pods to lose first: not running, not ready, youngest.
            victims = sorted(active, key=lambda p: p.metadata.creation_timestamp, reverse=True)
            victims.sort(key=lambda p: (p.status.phase == "Running", podutil.is_ready(p)))
            victims = victims[: len(active) - want]
            await self._delete_pods(key, job, victims)
            for pod in victims:
                active.remove(pod)
            return 0, None
        if len(active) == want:
            return 0, None
        remaining = self._backoff_remaining(pods, now)
        if remaining > 0:
            return 0, remaining
        missing = min(want - len(active), MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int | None] = [None] * missing
        if done is not None:
            running = {completion_index(p) for p in active}
            pending = (i for i in range(job.spec.completions) if i not in done and i not in running)
            indexes = [i for i, _ in zip(pending, range(missing), strict=False)]
            missing = len(indexes)
        self.expectations.expect_creations(key, missing)
        results = await asyncio.gather(*(self._create_pod(key, job, i) for i in indexes),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return missing, None

    def _backoff_remaining(self, pods: list[v1.Pod], now: dt.datetime) -> float:
        """Seconds new pods must still wait after the latest run of failures."""
        finished = sorted(
            ((finish_time(p, now), p.status.phase) for p in pods if podutil.is_terminal(p)),
            key=lambda item: item[0],
        )
        failures = 0
        last_failure: dt.datetime | None = None
        for when, phase in finished:
            if phase == "Succeeded":
                failures, last_failure = 0, None
            else:
                failures += 1
                last_failure = when
        if last_failure is None:
            return 0.0
        ready_at = last_failure + dt.timedelta(seconds=self.timers.backoff(failures))
        return max(0.0, (ready_at - now).total_seconds())

    async def _create_pod(self, key: str, job: v1.Job, index: int | None = None) -> None:
        template = job.spec.template
        pod = v1.Pod(metadata=v1.ObjectMeta(
            generate_name=f"{job.metadata.name}-", namespace=job.metadata.namespace,
            labels=dict(template.metadata.labels),
            annotations=dict(template.metadata.annotations),
            owner_references=[m.controller_reference(job)],
        ))
        pod.spec.CopyFrom(template.spec)
        if index is not None:
            set_completion_index(pod, job.metadata.name, index)
        try:
            created = await self.client.create(pod)
        except ApiError as e:
            self.expectations.creation_observed(key)
            self.recorder.record(job, WARNING, "FailedCreate", f"Error creating: {e}")
            raise
        self.recorder.record(job, NORMAL, "SuccessfulCreate",
                             f"Created pod: {created.metadata.name}")

    async def _delete_pods(self, key: str, job: v1.Job, pods: list[v1.Pod]) -> None:
        pods = [p for p in pods if not p.metadata.deletion_timestamp]
        if not pods:
            return
        self.expectations.expect_deletions(key, [p.metadata.uid for p in pods])

        results = await asyncio.gather(
            *(delete_pod(self.client, self.recorder, self.expectations, key, job, p)
              for p in pods),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    # ------------------------------------------------------------ ttl after finished

    async def _expire(self, key: str, job: v1.Job) -> None:
        """Delete a finished Job once ttlSecondsAfterFinished has passed since it finished."""
        if not job.spec.HasField("ttl_seconds_after_finished"):
            return
        condition = finished_condition(job)
        finished_at = job.status.completion_time or (
            condition.last_transition_time if condition is not None else "")
        if not finished_at:
            return
        expires = m.parse_time(finished_at) + dt.timedelta(
            seconds=job.spec.ttl_seconds_after_finished)
        remaining = (expires - self.clock()).total_seconds()
        if remaining > 0:
            self.queue.add_after(key, remaining + 0.05)
            return
        try:
            await self.client.delete(v1.Job, job.metadata.name, job.metadata.namespace,
                                     propagation_policy="Background", uid=job.metadata.uid)
        except NotFound:
            return
        log.info("deleted finished job after its ttl", job=key)
