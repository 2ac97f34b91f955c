"""What the validation tests share: valid objects to break one rule at a time, and ``Expect``,
what a table row asserts of the errors ``validate`` returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.convert import from_dict
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType, FieldError
from kubelite.api.manifests import load_documents
from protos.v1 import objects_pb2 as v1

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or"
    " '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used"
    " for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
MANIFESTS = Path(__file__).parents[1] / "manifests"


@dataclass(frozen=True)
class At:
    """What the first error at ``field`` must be (each part left None is not checked)."""

    field: str
    type: ErrorType | None = None
    detail: str | None = None
    detail_start: str | None = None
    detail_has: str | None = None
    value: object = None
    text: str | None = None
    """The whole message, ``str(error)``."""

    def check(self, errs: list[FieldError]) -> None:
        err = find(errs, self.field)
        if self.type is not None:
            assert err.type is self.type, str(err)
        if self.detail is not None:
            assert err.detail == self.detail
        if self.detail_start is not None:
            assert err.detail.startswith(self.detail_start), err.detail
        if self.detail_has is not None:
            assert self.detail_has in err.detail, err.detail
        if self.value is not None:
            assert err.value == self.value
        if self.text is not None:
            assert str(err) == self.text


@dataclass(frozen=True)
class Expect:
    """What a table row asserts of the errors: exactly ``fields`` (when given), ``has`` among
    them, each ``At`` and ``count`` errors in all (when given)."""

    fields: frozenset[tuple[ErrorType, str]] | None = None
    has: tuple[tuple[ErrorType, str], ...] = ()
    at: tuple[At, ...] = ()
    count: int | None = None

    def check(self, errs: list[FieldError]) -> None:
        if self.fields is not None:
            assert fields_of(errs) == self.fields, [str(e) for e in errs]
        for pair in self.has:
            assert pair in fields_of(errs), [str(e) for e in errs]
        for at in self.at:
            at.check(errs)
        if self.count is not None:
            assert len(errs) == self.count, [str(e) for e in errs]


VALID = Expect(fields=frozenset())
"""No errors at all."""


def exactly(*pairs: tuple[ErrorType, str], at: tuple[At, ...] = ()) -> Expect:
    """Errors at exactly these (type, field) pairs, and what ``at`` says of some of them."""
    return Expect(fields=frozenset(pairs), at=at)


def only_at(*at: At, count: int | None = None) -> Expect:
    """What ``at`` says of some errors; other errors are not checked."""
    return Expect(at=at, count=count)


def fields_of(errs: list[FieldError]) -> set[tuple[ErrorType, str]]:
    return {(e.type, e.field) for e in errs}


def find(errs: list[FieldError], field: str) -> FieldError:
    matches = [e for e in errs if e.field == field]
    assert matches, f"no error at {field}: {[str(e) for e in errs]}"
    return matches[0]


def defaulted(obj: Message) -> Message:
    apply_defaults(obj)
    return obj


def make_pod(mutate: Callable[[v1.Pod], object] | None = None) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = "web"
    pod.metadata.namespace = "default"
    ctr = pod.spec.containers.add(name="app", image="nginx:1.25")
    ctr.ports.add(name="http", container_port=8080)
    ctr.liveness_probe.http_get.port.str_val = "http"
    ctr.readiness_probe.tcp_socket.port.int_val = 8080
    ctr.resources.requests["cpu"] = "100m"
    ctr.resources.limits["cpu"] = "500m"
    ctr.resources.limits["memory"] = "128Mi"
    if mutate is not None:
        mutate(pod)
    apply_defaults(pod)
    return pod


def template(t: v1.PodTemplateSpec, restart: str = "") -> None:
    t.metadata.labels["app"] = "web"
    t.spec.containers.add(name="app", image="nginx:1.25")
    if restart:
        t.spec.restart_policy = restart


def make_deployment() -> v1.Deployment:
    d = v1.Deployment()
    d.metadata.name = "web"
    d.metadata.namespace = "default"
    d.spec.selector.match_labels["app"] = "web"
    template(d.spec.template)
    apply_defaults(d)
    return d


def make_job() -> v1.Job:
    job = v1.Job()
    job.metadata.name, job.metadata.namespace = "pi", "default"
    job.spec.selector.match_labels["app"] = "web"
    template(job.spec.template, "Never")
    apply_defaults(job)
    return job


def make_cron_job(schedule: str = "*/5 * * * *") -> v1.CronJob:
    cj = v1.CronJob()
    cj.metadata.name, cj.metadata.namespace = "tick", "default"
    cj.spec.schedule = schedule
    template(cj.spec.job_template.spec.template, "OnFailure")
    apply_defaults(cj)
    return cj


def make_service(mutate: Callable[[v1.Service], object] | None = None) -> v1.Service:
    svc = v1.Service()
    svc.metadata.name, svc.metadata.namespace = "web", "default"
    svc.spec.selector["app"] = "web"
    svc.spec.ports.add(name="http", port=80, target_port=v1.IntOrString(str_val="http"))
    if mutate is not None:
        mutate(svc)
    apply_defaults(svc)
    return svc


def manifest(name: str) -> Message:
    """A manifest of tests/unit/manifests, in its namespace (default) and defaulted."""
    path = MANIFESTS / name
    (doc,) = load_documents(path.read_text(), str(path))
    _, obj = from_dict(doc)
    m.meta(obj).namespace = m.meta(obj).namespace or "default"
    return defaulted(obj)


def pvc_volume(spec: v1.PodSpec) -> None:
    """A persistentVolumeClaim volume "data", mounted by the first container."""
    spec.volumes.add(name="data").persistent_volume_claim.claim_name = "data"
    spec.containers[0].volume_mounts.add(name="data", mount_path="/data")
