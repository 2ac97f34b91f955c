"""batch/v1: Job and CronJob."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubelite.api import meta as m
from kubelite.api.field_errors import ErrorType
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import (
    VALID,
    At,
    Expect,
    defaulted,
    exactly,
    make_cron_job,
    make_job,
    only_at,
    template,
)

INVALID, REQUIRED, NOT_SUPPORTED = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.NOT_SUPPORTED


def test_valid_job() -> None:
    job = v1.Job()
    job.metadata.name, job.metadata.namespace = "pi", "default"
    job.spec.selector.match_labels["app"] = "web"
    template(job.spec.template, "Never")
    assert validate(defaulted(job)) == []


def test_job_rules() -> None:
    job = make_job()
    job.spec.template.spec.restart_policy = "Always"
    job.spec.parallelism = -1
    job.spec.backoff_limit = -2
    exactly(
        (NOT_SUPPORTED, "spec.template.spec.restartPolicy"),
        (INVALID, "spec.parallelism"),
        (INVALID, "spec.backoffLimit"),
        at=(At("spec.template.spec.restartPolicy",
               detail='supported values: "OnFailure", "Never"'),),
    ).check(validate(job))


def _indexed(completions: int | None, parallelism: int | None) -> Callable[[v1.JobSpec], None]:
    def mutate(spec: v1.JobSpec) -> None:
        spec.completion_mode = "Indexed"
        if completions is None:
            spec.ClearField("completions")
        else:
            spec.completions = completions
        if parallelism is not None:
            spec.parallelism = parallelism
    return mutate


@pytest.mark.parametrize(("mutate", "expect"), [
    pytest.param(_indexed(3, 3), VALID, id="valid"),
    pytest.param(_indexed(None, None), only_at(At(
        "spec.completions", detail="when completion mode is Indexed",
    )), id="completions-required"),
    pytest.param(_indexed(10, 100_001), only_at(At(
        "spec.parallelism",
        detail="must be less than or equal to 100000 when completion mode is Indexed",
    )), id="parallelism-limit"),
    pytest.param(_indexed(100_001, 10_001), only_at(At(
        "spec.parallelism",
        detail="must be less than or equal to 10000 when completion mode is Indexed and"
               " completions is greater than 100000",
    )), id="parallelism-limit-for-high-completions"),
    pytest.param(_indexed(100_001, 10_000), VALID, id="high-completions-within-limit"),
])
def test_indexed_job_rules(mutate: Callable[[v1.JobSpec], None], expect: Expect) -> None:
    job = make_job()
    mutate(job.spec)
    expect.check(validate(job))


def test_job_selector_required() -> None:
    job = make_job()
    job.spec.ClearField("selector")
    exactly((REQUIRED, "spec.selector")).check(validate(job))


def _more_parallel(job: v1.Job) -> None:
    job.spec.parallelism = 4


def _more_parallel_other_image(job: v1.Job) -> None:
    job.spec.parallelism = 4
    job.spec.template.spec.containers[0].image = "other"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_more_parallel, VALID, id="parallelism-may-change"),
    pytest.param(_more_parallel_other_image, exactly((INVALID, "spec.template")),
                 id="template-immutable"),
])
def test_job_update(change: Callable[[v1.Job], None], expect: Expect) -> None:
    old = make_job()
    new = m.copy(old)
    change(new)
    expect.check(validate(new, old))


# ---------------------------------------------------------------- CronJob


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "@daily"])
def test_cron_job_valid_schedules(schedule: str) -> None:
    assert validate(make_cron_job(schedule)) == []


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "@every 1h", "@fortnightly"])
def test_cron_job_invalid_schedules(schedule: str) -> None:
    exactly((INVALID, "spec.schedule")).check(validate(make_cron_job(schedule)))


def test_cron_job_schedule_required() -> None:
    only_at(At("spec.schedule", type=REQUIRED)).check(validate(make_cron_job("")))


def test_cron_job_no_time_zone_in_schedule() -> None:
    errs = validate(make_cron_job("CRON_TZ=UTC 0 * * * *"))
    assert any(
        e.detail == "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        for e in errs
    )


def _time_zone(zone: str) -> Callable[[v1.CronJob], None]:
    def mutate(cj: v1.CronJob) -> None:
        cj.spec.time_zone = zone
    return mutate


def _concurrency_sometimes(cj: v1.CronJob) -> None:
    cj.spec.concurrency_policy = "Sometimes"


def _long_name(cj: v1.CronJob) -> None:
    cj.metadata.name = "a" * 53


def _restart_always(cj: v1.CronJob) -> None:
    cj.spec.job_template.spec.template.spec.restart_policy = "Always"


@pytest.mark.parametrize(("mutate", "expect"), [
    pytest.param(_time_zone("Europe/Paris"), VALID, id="time-zone"),
    pytest.param(_time_zone("Mars/Olympus"), only_at(At(
        "spec.timeZone", detail="unknown time zone Mars/Olympus",
    )), id="unknown-time-zone"),
    pytest.param(_concurrency_sometimes, exactly((NOT_SUPPORTED, "spec.concurrencyPolicy")),
                 id="concurrency-policy"),
    pytest.param(_long_name, only_at(At(
        "metadata.name", detail="must be no more than 52 characters",
    )), id="name-length"),
    pytest.param(_restart_always, exactly(
        (NOT_SUPPORTED, "spec.jobTemplate.spec.template.spec.restartPolicy"),
    ), id="template-restart-policy"),
])
def test_cron_job_rules(mutate: Callable[[v1.CronJob], None], expect: Expect) -> None:
    cj = make_cron_job()
    mutate(cj)
    expect.check(validate(cj))
