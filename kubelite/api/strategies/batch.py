"""batch/v1 (pkg/registry/batch): Jobs, which select their pods by their own uid, and CronJobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubelite.api import defaults
from kubelite.api.field_errors import FieldPath
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors


class JobStrategy(Strategy[v1.Job]):
    def default(self, obj: v1.Job) -> None:
        defaults.default_job(obj)

    def prepare_for_create(self, obj: v1.Job) -> None:
        super().prepare_for_create(obj)
        defaults.generate_job_selector(obj)

    def validate(self, obj: v1.Job) -> Errors:
        from kubelite.api.validation.batch import validate_job
        return validate_job(obj)

    def validate_update(self, new: v1.Job, old: v1.Job) -> Errors:
        from kubelite.api.validation.batch import validate_job_update
        return self.validate(new) + validate_job_update(new, old)

    def pod_spec(self, obj: v1.Job) -> tuple[v1.PodSpec, FieldPath]:
        return obj.spec.template.spec, FieldPath("spec").child("template", "spec")

    def fields(self, obj: v1.Job) -> dict[str, str]:
        return {"status.successful": str(obj.status.succeeded)}


class CronJobStrategy(Strategy[v1.CronJob]):
    def default(self, obj: v1.CronJob) -> None:
        defaults.default_cron_job(obj)

    def validate(self, obj: v1.CronJob) -> Errors:
        from kubelite.api.validation.batch import validate_cron_job
        return validate_cron_job(obj)

    def validate_update(self, new: v1.CronJob, old: v1.CronJob) -> Errors:
        from kubelite.api.validation.batch import validate_cron_job
        return validate_cron_job(new, old)

    def pod_spec(self, obj: v1.CronJob) -> tuple[v1.PodSpec, FieldPath]:
        return (obj.spec.job_template.spec.template.spec,
                FieldPath("spec").child("jobTemplate", "spec", "template", "spec"))
