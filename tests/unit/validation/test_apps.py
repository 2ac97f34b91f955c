"""apps/v1: selectors and templates, Deployment strategies, DaemonSet and StatefulSet rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.defaults import apply_defaults
from kubelite.api.field_errors import ErrorType
from kubelite.api.validation import validate
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import (
    VALID,
    At,
    Expect,
    defaulted,
    exactly,
    fields_of,
    find,
    make_deployment,
    manifest,
    only_at,
    template,
)

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN
NOT_SUPPORTED, NOT_FOUND = ErrorType.NOT_SUPPORTED, ErrorType.NOT_FOUND
ROLLING_UPDATE = "spec.strategy.rollingUpdate"


def _replica_set() -> Message:
    rs = v1.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace = "rs", "default"
    rs.spec.selector.match_labels["app"] = "web"
    template(rs.spec.template)
    return defaulted(rs)


def _daemon_set() -> Message:
    ds = v1.DaemonSet()
    ds.metadata.name, ds.metadata.namespace = "ds", "default"
    ds.spec.selector.match_labels["app"] = "web"
    template(ds.spec.template)
    return defaulted(ds)


def _stateful_set_by_expression() -> Message:
    sts = v1.StatefulSet()
    sts.metadata.name, sts.metadata.namespace = "db", "default"
    sts.spec.selector.match_expressions.add(key="app", operator="In", values=["web"])
    template(sts.spec.template)
    assert sts.spec.service_name == ""  # allowed empty, as Kubernetes does
    return defaulted(sts)


@pytest.mark.parametrize("build", [
    pytest.param(make_deployment, id="deployment"),
    pytest.param(_replica_set, id="replicaset"),
    pytest.param(_daemon_set, id="daemonset"),
    pytest.param(_stateful_set_by_expression, id="statefulset"),
])
def test_valid_workloads(build: Callable[[], Message]) -> None:
    assert validate(build()) == []


# ---------------------------------------------------------------- selector and template


def _no_selector(d: v1.Deployment) -> None:
    d.spec.ClearField("selector")


def _empty_selector(d: v1.Deployment) -> None:
    d.spec.selector.Clear()
    d.spec.selector.SetInParent()


def _selector_not_matching(d: v1.Deployment) -> None:
    d.spec.template.metadata.labels["app"] = "other"


def _negative_replicas_restart_on_failure(d: v1.Deployment) -> None:
    d.spec.replicas = -1
    d.spec.template.spec.restart_policy = "OnFailure"


def _bad_template_cpu_limit(d: v1.Deployment) -> None:
    d.spec.template.spec.containers[0].resources.limits["cpu"] = "lots"


def _no_surge_no_unavailable(d: v1.Deployment) -> None:
    ru = d.spec.strategy.rolling_update
    ru.max_surge.int_val = 0
    ru.max_unavailable.str_val = "0%"


def _unavailable_over_100_negative_surge(d: v1.Deployment) -> None:
    d.spec.strategy.rolling_update.max_unavailable.str_val = "120%"
    d.spec.strategy.rolling_update.max_surge.int_val = -1


def _surge_not_a_percent(d: v1.Deployment) -> None:
    d.spec.strategy.rolling_update.max_surge.str_val = "half"


def _recreate_with_rolling_update(d: v1.Deployment) -> None:
    d.spec.strategy.type = "Recreate"


def _recreate(d: v1.Deployment) -> None:
    d.spec.strategy.type = "Recreate"
    d.spec.strategy.ClearField("rolling_update")


def _blue_green(d: v1.Deployment) -> None:
    d.spec.strategy.type = "BlueGreen"
    d.spec.strategy.ClearField("rolling_update")


def _min_ready_past_progress_deadline(d: v1.Deployment) -> None:
    d.spec.min_ready_seconds = 700


DEPLOYMENT_CASES = [
    pytest.param(_no_selector, exactly((REQUIRED, "spec.selector")), id="selector-required"),
    pytest.param(_empty_selector, only_at(At(
        "spec.selector", detail="empty selector is invalid for deployment",
    )), id="empty-selector-invalid"),
    pytest.param(_selector_not_matching, exactly((INVALID, "spec.template.metadata.labels"), at=(
        At("spec.template.metadata.labels", detail="`selector` does not match template `labels`"),
    )), id="selector-must-match-template-labels"),
    pytest.param(_negative_replicas_restart_on_failure, exactly(
        (INVALID, "spec.replicas"), (NOT_SUPPORTED, "spec.template.spec.restartPolicy"),
        at=(At("spec.replicas", detail="must be greater than or equal to 0"),),
    ), id="replicas-and-template-restart-policy"),
    pytest.param(_bad_template_cpu_limit, exactly(
        (INVALID, "spec.template.spec.containers[0].resources.limits[cpu]"),
    ), id="template-pod-spec-errors-are-nested"),
    pytest.param(_no_surge_no_unavailable, only_at(At(
        f"{ROLLING_UPDATE}.maxUnavailable", detail="may not be 0 when `maxSurge` is 0",
    )), id="rolling-update-surge-and-unavailable-zero"),
    pytest.param(_unavailable_over_100_negative_surge, only_at(
        At(f"{ROLLING_UPDATE}.maxUnavailable", detail="must not be greater than 100%"),
        At(f"{ROLLING_UPDATE}.maxSurge", detail="must be greater than or equal to 0"),
    ), id="rolling-update-bounds"),
    pytest.param(_surge_not_a_percent, only_at(At(
        f"{ROLLING_UPDATE}.maxSurge", detail_has="a valid percent string",
    )), id="rolling-update-surge-not-a-percent"),
    pytest.param(_recreate_with_rolling_update, exactly((FORBIDDEN, ROLLING_UPDATE)),
                 id="recreate-forbids-rolling-update"),
    pytest.param(_recreate, VALID, id="recreate"),
    pytest.param(_blue_green, exactly((NOT_SUPPORTED, "spec.strategy.type")),
                 id="strategy-type-not-supported"),
    pytest.param(_min_ready_past_progress_deadline, only_at(At(
        "spec.progressDeadlineSeconds", detail="must be greater than minReadySeconds",
    )), id="progress-deadline"),
]


@pytest.mark.parametrize(("mutate", "expect"), DEPLOYMENT_CASES)
def test_deployment_rules(mutate: Callable[[v1.Deployment], None], expect: Expect) -> None:
    d = make_deployment()
    mutate(d)
    expect.check(validate(d))


def _scale(d: v1.Deployment) -> None:
    d.spec.replicas = 5


def _select_more(d: v1.Deployment) -> None:
    d.spec.selector.match_labels["tier"] = "fe"
    d.spec.template.metadata.labels["tier"] = "fe"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_scale, VALID, id="replicas-may-change"),
    pytest.param(_select_more, exactly((INVALID, "spec.selector")), id="selector-immutable"),
])
def test_deployment_update(change: Callable[[v1.Deployment], None], expect: Expect) -> None:
    old = make_deployment()
    new = m.copy(old)
    change(new)
    expect.check(validate(new, old))


def test_daemon_set_update_strategy() -> None:
    ds = v1.DaemonSet()
    ds.metadata.name, ds.metadata.namespace = "ds", "default"
    ds.spec.selector.match_labels["app"] = "web"
    template(ds.spec.template)
    ds.spec.update_strategy.rolling_update.max_unavailable.int_val = 0
    apply_defaults(ds)
    only_at(At("spec.updateStrategy.rollingUpdate.maxUnavailable", type=REQUIRED)).check(
        validate(ds))


# ---------------------------------------------------------------- StatefulSet


def _stateful_set(policy: str) -> v1.StatefulSet:
    sts = v1.StatefulSet()
    sts.metadata.name, sts.metadata.namespace = "db", "default"
    sts.spec.selector.match_labels["app"] = "web"
    template(sts.spec.template)
    sts.spec.pod_management_policy = policy
    apply_defaults(sts)
    return sts


@pytest.mark.parametrize(("policy", "expect"), [
    pytest.param("Random", only_at(At(
        "spec.podManagementPolicy", detail="must be 'OrderedReady' or 'Parallel'",
    )), id="random"),
    pytest.param("Parallel", VALID, id="parallel"),
])
def test_stateful_set_pod_management_policy(policy: str, expect: Expect) -> None:
    expect.check(validate(_stateful_set(policy)))


def _scale_and_new_image(sts: v1.StatefulSet) -> None:
    sts.spec.replicas = 3
    sts.spec.template.spec.containers[0].image = "nginx:2"


def _new_service_name(sts: v1.StatefulSet) -> None:
    _scale_and_new_image(sts)
    sts.spec.service_name = "changed"


@pytest.mark.parametrize(("change", "expect"), [
    pytest.param(_scale_and_new_image, VALID, id="replicas-and-template-may-change"),
    pytest.param(_new_service_name, exactly((FORBIDDEN, "spec")), id="other-fields-forbidden"),
])
def test_stateful_set_update(change: Callable[[v1.StatefulSet], None], expect: Expect) -> None:
    old = _stateful_set("Parallel")
    new = m.copy(old)
    change(new)
    expect.check(validate(new, old))


def _canonical_stateful_set() -> v1.StatefulSet:
    # The Kubernetes docs' StatefulSet "web": volumeMounts name "www", a volumeClaimTemplate.
    sts = manifest("statefulset.yaml")
    assert isinstance(sts, v1.StatefulSet)
    return sts


def test_canonical_stateful_set_mounts_its_claim_template() -> None:
    assert validate(_canonical_stateful_set()) == []


def test_mount_of_neither_volume_nor_claim_template() -> None:
    sts = _canonical_stateful_set()
    sts.spec.template.spec.containers[0].volume_mounts[0].name = "wwww"
    err = find(validate(sts), "spec.template.spec.containers[0].volumeMounts[0].name")
    assert err.type is NOT_FOUND


def test_claim_template_counts_only_in_a_stateful_set() -> None:
    # Its pod template alone is refused.
    sts = _canonical_stateful_set()
    d = make_deployment()
    d.spec.template.CopyFrom(sts.spec.template)
    d.spec.selector.CopyFrom(sts.spec.selector)
    assert fields_of(validate(d)) == {
        (NOT_FOUND, "spec.template.spec.containers[0].volumeMounts[0].name")}
