"""Per-kind strategies: what the base does for every kind, and where kinds differ."""

from __future__ import annotations

import pytest

from kubelite.api import meta as m
from kubelite.api.registry import EMBEDDED, RESOURCES, ResourceType, by_kind, strategy_for
from kubelite.api.strategies.base import MAX_GRACE_PERIOD_SECONDS, Strategy
from protos.v1 import objects_pb2 as v1


def _deployment() -> v1.Deployment:
    d = v1.Deployment()
    d.metadata.name, d.metadata.namespace, d.metadata.generation = "web", "default", 1
    d.spec.replicas = 1
    d.status.replicas = 3
    return d


@pytest.mark.parametrize("rtype", [*RESOURCES, *EMBEDDED], ids=lambda r: r.kind)
def test_every_kind_has_its_own_strategy(rtype: ResourceType) -> None:
    assert type(rtype.strategy) is not Strategy, f"{rtype.kind} has the bare base strategy"
    assert strategy_for(rtype.message) is rtype.strategy
    rtype.strategy.fields(rtype.new())  # an empty object names the kind's field labels


def test_message_that_is_no_kind_has_no_strategy() -> None:
    assert strategy_for(v1.PodSpec) is None


def test_create_starts_with_an_empty_status() -> None:
    d = _deployment()
    by_kind("Deployment").strategy.prepare_for_create(d)
    assert not d.HasField("status")


def test_node_registers_with_its_status() -> None:
    node = v1.Node()
    node.status.capacity["cpu"] = "2"
    by_kind("Node").strategy.prepare_for_create(node)
    assert node.status.capacity["cpu"] == "2"


@pytest.mark.parametrize(("kind", "message", "phase"), [
    ("Pod", v1.Pod, "Pending"),
    ("Namespace", v1.Namespace, "Active"),
])
def test_create_sets_the_first_phase(kind: str, message: type[v1.Pod | v1.Namespace],
                                     phase: str) -> None:
    obj = message()
    obj.status.phase = "Running" if kind == "Pod" else "Terminating"
    by_kind(kind).strategy.prepare_for_create(obj)
    assert obj.status.phase == phase


def test_update_keeps_the_stored_status_and_bumps_generation_on_spec_changes() -> None:
    strategy = by_kind("Deployment").strategy
    old = _deployment()
    new = m.copy(old)
    new.status.replicas = 0
    new.metadata.labels["x"] = "y"
    strategy.prepare_for_update(new, old)
    strategy.bump_generation(new, old)
    assert new.status.replicas == 3
    assert new.metadata.generation == 1  # labels are metadata
    new.spec.replicas = 2
    strategy.bump_generation(new, old)
    assert new.metadata.generation == 2


def test_update_may_not_unbind_a_pod() -> None:
    old = v1.Pod()
    old.spec.node_name = "node-1"
    new = m.copy(old)
    new.spec.node_name = ""
    by_kind("Pod").strategy.prepare_for_update(new, old)
    assert new.spec.node_name == "node-1"


def test_namespace_is_finalized_only_without_spec_finalizers() -> None:
    strategy = by_kind("Namespace").strategy
    ns = v1.Namespace()
    strategy.prepare_for_create(ns)
    assert ns.spec.finalizers == ["kubernetes"]
    assert not strategy.finalized(ns)
    strategy.prepare_for_delete(ns)
    assert ns.status.phase == "Terminating"
    ns.spec.ClearField("finalizers")
    assert strategy.finalized(ns)


@pytest.mark.parametrize(("node", "phase", "requested", "spec_grace", "grace"), [
    pytest.param("", "Running", 30, 30, 0, id="unbound"),
    pytest.param("n1", "Succeeded", 30, 30, 0, id="finished"),
    pytest.param("n1", "Running", 5, 30, 5, id="requested"),
    pytest.param("n1", "Running", None, 2**40, MAX_GRACE_PERIOD_SECONDS, id="spec-clamped"),
    pytest.param("n1", "Running", None, None, 17, id="default"),
])
def test_pod_grace_period(node: str, phase: str, requested: int | None,
                          spec_grace: int | None, grace: int) -> None:
    pod = v1.Pod()
    pod.spec.node_name = node
    pod.status.phase = phase
    if spec_grace is not None:
        pod.spec.termination_grace_period_seconds = spec_grace
    assert by_kind("Pod").strategy.grace_period(pod, requested, 17) == grace


def test_kinds_without_graceful_deletion() -> None:
    assert by_kind("ConfigMap").strategy.grace_period(v1.ConfigMap(), 30, 30) is None
