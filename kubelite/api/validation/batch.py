"""batch/v1: Job and CronJob (pkg/apis/batch/validation)."""

from __future__ import annotations

import re

from kubelite.api import cron
from kubelite.api.field_errors import FieldPath
from kubelite.api.labels import (
    validate_labels,
)
from kubelite.api.validation.apps import validate_selector_and_template
from kubelite.api.validation.core_pod import RESTART_POLICIES, validate_pod_template
from kubelite.api.validation.meta import Errors, immutable, nonnegative, not_supported, plain
from protos.v1 import objects_pb2 as v1

CRONJOB_NAME_MAX_LENGTH = 52


def _validate_job_spec_common(spec: v1.JobSpec, path: FieldPath) -> Errors:
    """validateJobSpec: the rules a Job and a CronJob's jobTemplate share."""
    errs: Errors = []
    for attr, json_name in (
        ("parallelism", "parallelism"),
        ("completions", "completions"),
        ("active_deadline_seconds", "activeDeadlineSeconds"),
        ("backoff_limit", "backoffLimit"),
        ("ttl_seconds_after_finished", "ttlSecondsAfterFinished"),
    ):
        if spec.HasField(attr):
            errs.extend(nonnegative(getattr(spec, attr), path.child(json_name)))
    if spec.HasField("active_deadline_seconds") and spec.active_deadline_seconds == 0:
        errs.append(path.child("activeDeadlineSeconds").invalid(0, "must be greater than 0"))
    if spec.HasField("completion_mode"):
        mode = spec.completion_mode
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(path.child("completionMode").not_supported(mode, ["NonIndexed", "Indexed"]))
        if mode == "Indexed":
            errs.extend(_validate_indexed_job_limits(spec, path))
    return errs


MAX_PARALLELISM_FOR_INDEXED_JOB = 100_000


COMPLETIONS_SOFT_LIMIT = 100_000


PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS = 10_000


def _validate_indexed_job_limits(spec: v1.JobSpec, path: FieldPath) -> Errors:
    """Upstream's limits for completionMode Indexed (its status lists every index)."""
    errs: Errors = []
    if not spec.HasField("completions"):
        errs.append(path.child("completions").required("when completion mode is Indexed"))
    parallelism = spec.parallelism if spec.HasField("parallelism") else 1
    if parallelism > MAX_PARALLELISM_FOR_INDEXED_JOB:
        errs.append(path.child("parallelism").invalid(
            parallelism, f"must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB}"
                         " when completion mode is Indexed"))
    elif (spec.HasField("completions") and spec.completions > COMPLETIONS_SOFT_LIMIT
          and parallelism > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS):
        errs.append(path.child("parallelism").invalid(
            parallelism, f"must be less than or equal to {PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS}"
                         " when completion mode is Indexed and completions is greater than"
                         f" {COMPLETIONS_SOFT_LIMIT}"))
    return errs


def validate_job(job: v1.Job) -> Errors:
    spec = job.spec
    path = FieldPath("spec")
    errs = _validate_job_spec_common(spec, path)
    errs.extend(validate_selector_and_template(spec, path, "job", ["OnFailure", "Never"], None))
    return errs


def _validate_time_zone(spec: v1.CronJobSpec, path: FieldPath) -> Errors:
    if not spec.HasField("time_zone"):
        return []
    tz = spec.time_zone
    if not tz:
        return [path.invalid(tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if (
            part in (".", "..")
            or part.startswith("-")
            or not re.fullmatch(r"[A-Za-z.\-_0-9+]{1,14}", part)
        ):
            return [path.invalid(tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [
            path.invalid(
                tz,
                "timeZone must be an explicit time zone as defined in"
                " https://www.iana.org/time-zones",
            )
        ]
    try:
        cron.load_time_zone(tz)
    except ValueError as e:
        return [path.invalid(tz, str(e))]
    return []


def validate_cron_job(cj: v1.CronJob, old: v1.CronJob | None = None) -> Errors:
    spec = cj.spec
    path = FieldPath("spec")
    errs: Errors = []
    if len(cj.metadata.name) > CRONJOB_NAME_MAX_LENGTH:
        errs.append(
            FieldPath("metadata")
            .child("name")
            .invalid(cj.metadata.name, f"must be no more than {CRONJOB_NAME_MAX_LENGTH} characters")
        )
    sched_path = path.child("schedule")
    if not spec.schedule:
        errs.append(sched_path.required())
    else:
        if spec.schedule.strip().startswith("@every"):
            errs.append(sched_path.invalid(spec.schedule, "@every is not supported"))
        else:
            try:
                cron.parse_schedule(spec.schedule)
            except ValueError as e:
                errs.append(sched_path.invalid(spec.schedule, str(e)))
        allow_tz = old is not None and "TZ" in old.spec.schedule
        if "TZ" in spec.schedule and not allow_tz:
            errs.append(
                sched_path.invalid(
                    spec.schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                )
            )
    if spec.HasField("starting_deadline_seconds"):
        errs.extend(
            nonnegative(spec.starting_deadline_seconds, path.child("startingDeadlineSeconds"))
        )
    if (
        old is None
        or old.spec.HasField("time_zone") != spec.HasField("time_zone")
        or (old.spec.time_zone != spec.time_zone)
    ):
        errs.extend(_validate_time_zone(spec, path.child("timeZone")))
    errs.extend(
        not_supported(
            spec.concurrency_policy, ["Allow", "Forbid", "Replace"], path.child("concurrencyPolicy")
        )
    )
    jp = path.child("jobTemplate")
    jspec = spec.job_template.spec
    errs.extend(
        validate_labels(dict(spec.job_template.metadata.labels), jp.child("metadata", "labels"))
    )
    errs.extend(_validate_job_spec_common(jspec, jp.child("spec")))
    if jspec.HasField("selector"):
        errs.append(
            jp.child("spec", "selector").invalid(
                plain(jspec.selector), "`selector` will be auto-generated"
            )
        )
    if jspec.HasField("manual_selector") and jspec.manual_selector:
        errs.append(jp.child("spec", "manualSelector").not_supported(True, ["nil", "false"]))
    template_path = jp.child("spec", "template")
    errs.extend(validate_pod_template(jspec.template, template_path))
    restart = jspec.template.spec.restart_policy
    if restart in RESTART_POLICIES and restart not in ("OnFailure", "Never"):
        errs.append(
            template_path.child("spec", "restartPolicy").not_supported(
                restart, ["OnFailure", "Never"]
            )
        )
    for attr, json_name in (
        ("successful_jobs_history_limit", "successfulJobsHistoryLimit"),
        ("failed_jobs_history_limit", "failedJobsHistoryLimit"),
    ):
        if spec.HasField(attr):
            errs.extend(nonnegative(getattr(spec, attr), path.child(json_name)))
    return errs


def validate_job_update(new: v1.Job, old: v1.Job) -> Errors:
    path = FieldPath("spec")
    errs = immutable(new.spec.selector, old.spec.selector, path.child("selector"))
    errs.extend(immutable(new.spec.template, old.spec.template, path.child("template")))
    errs.extend(
        immutable(
            new.spec.completions if new.spec.HasField("completions") else None,
            old.spec.completions if old.spec.HasField("completions") else None,
            path.child("completions"),
        )
    )
    errs.extend(
        immutable(new.spec.completion_mode, old.spec.completion_mode, path.child("completionMode"))
    )
    return errs
