"""What objects count against ResourceQuotas (kubelite.api.quota), as Kubernetes' evaluators
count them."""

from __future__ import annotations

import datetime as dt

from kubelite.api import meta as m
from kubelite.api import quota
from kubelite.api.quantity import parse_quantity
from kubelite.api.registry import by_kind
from protos.v1 import objects_pb2 as v1

PODS = by_kind("Pod")


def text(usage: quota.Usage) -> dict[str, str]:
    return quota.format_list(usage)


def pod(*containers: dict[str, dict[str, str]]) -> v1.Pod:
    p = v1.Pod(metadata=v1.ObjectMeta(name="p", namespace="ns"))
    for i, resources in enumerate(containers):
        c = p.spec.containers.add(name=f"c{i}", image="busybox")
        c.resources.requests.update(resources.get("requests", {}))
        c.resources.limits.update(resources.get("limits", {}))
    return p


def test_a_pod_uses_its_count_and_its_requests_under_both_names_and_its_limits() -> None:
    p = pod({"requests": {"cpu": "250m", "memory": "64Mi", "example.com/gpu": "1",
                          "hugepages-2Mi": "4Mi"},
             "limits": {"cpu": "500m"}},
            {"requests": {"cpu": "250m"}})
    assert text(quota.usage(PODS, p)) == {
        "count/pods": "1", "pods": "1", "cpu": "500m", "requests.cpu": "500m",
        "limits.cpu": "500m", "memory": "64Mi", "requests.memory": "64Mi",
        "requests.example.com/gpu": "1", "hugepages-2Mi": "4Mi", "requests.hugepages-2Mi": "4Mi",
    }


def test_init_containers_count_when_larger_and_sidecars_always() -> None:
    p = pod({"requests": {"cpu": "100m"}})
    p.spec.init_containers.add(name="setup").resources.requests["cpu"] = "1"
    assert text(quota.usage(PODS, p))["requests.cpu"] == "1"
    sidecar = p.spec.init_containers.add(name="proxy", restart_policy="Always")
    sidecar.resources.requests["cpu"] = "200m"
    # The sidecar runs beside the containers (300m) and started before no regular one.
    assert text(quota.usage(PODS, p))["requests.cpu"] == "1"
    p.spec.init_containers[0].resources.requests["cpu"] = "100m"
    assert text(quota.usage(PODS, p))["requests.cpu"] == "300m"


def test_finished_and_overdue_pods_keep_only_their_object_count() -> None:
    p = pod({"requests": {"cpu": "1"}})
    p.status.phase = "Succeeded"
    assert text(quota.usage(PODS, p)) == {"count/pods": "1"}
    p.status.phase = "Running"
    now = m.now()
    p.metadata.deletion_timestamp = m.format_time(now - dt.timedelta(seconds=60))
    p.metadata.deletion_grace_period_seconds = 30
    assert text(quota.usage(PODS, p, now)) == {"count/pods": "1"}
    p.metadata.deletion_grace_period_seconds = 300
    assert "pods" in quota.usage(PODS, p, now)


def test_services_count_node_ports_and_load_balancers() -> None:
    svc = v1.Service(metadata=v1.ObjectMeta(name="s", namespace="ns"))
    svc.spec.ports.add(port=80)
    svc.spec.ports.add(port=443)
    assert text(quota.service_usage(svc)) == {"services": "1", "count/services": "1"}
    svc.spec.type = "NodePort"
    assert text(quota.service_usage(svc))["services.nodeports"] == "2"
    svc.spec.type = "LoadBalancer"
    svc.spec.allocate_load_balancer_node_ports = False
    svc.spec.ports[0].node_port = 30001
    assert text(quota.service_usage(svc)) == {
        "services": "1", "count/services": "1", "services.loadbalancers": "1",
        "services.nodeports": "1"}


def test_other_kinds_count_as_objects() -> None:
    cm = v1.ConfigMap(metadata=v1.ObjectMeta(name="c", namespace="ns"))
    assert text(quota.usage(by_kind("ConfigMap"), cm)) == {"configmaps": "1",
                                                            "count/configmaps": "1"}
    d = v1.Deployment(metadata=v1.ObjectMeta(name="d", namespace="ns"))
    assert text(quota.usage(by_kind("Deployment"), d)) == {"count/deployments.apps": "1"}
    hard = ["pods", "count/deployments.apps", "configmaps", "requests.cpu", "limits.memory",
            "services.nodeports", "count/jobs.batch"]
    assert quota.matching(by_kind("Deployment"), hard) == ["count/deployments.apps"]
    assert quota.matching(PODS, hard) == ["limits.memory", "pods", "requests.cpu"]
    assert quota.matching(by_kind("Service"), hard) == ["services.nodeports"]


def test_scopes() -> None:
    best_effort = pod({})
    burstable = pod({"requests": {"cpu": "1"}})
    burstable.spec.active_deadline_seconds = 30
    assert quota.matches_scopes(["BestEffort", "NotTerminating"], best_effort)
    assert not quota.matches_scopes(["BestEffort"], burstable)
    assert quota.matches_scopes(["NotBestEffort", "Terminating"], burstable)
    assert not quota.matches_scopes(["Terminating"], v1.ConfigMap())
    assert quota.matches_scopes([], v1.ConfigMap())


def test_limited_compute_must_be_stated_by_every_container() -> None:
    p = pod({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1"}},
            {"requests": {"cpu": "1"}})
    p.spec.init_containers.add(name="init")
    assert quota.pod_constraints(["pods", "count/pods"], p) == ""
    assert quota.pod_constraints(["requests.cpu", "memory", "limits.cpu"], p) == (
        "must specify limits.cpu for: c1,init; memory for: c1,init; requests.cpu for: init")


def test_quota_arithmetic_and_printing() -> None:
    used = quota.parse_list({"pods": "4", "requests.cpu": "1500m"})
    more = quota.add(used, {"pods": parse_quantity("1"), "requests.cpu": parse_quantity("1")})
    hard = quota.parse_list({"pods": "5", "requests.cpu": "2"})
    assert quota.exceeded(more, hard) == ["requests.cpu"]
    assert quota.pretty(more) == "pods=5,requests.cpu=2500m"
    assert quota.same(quota.parse_list({"cpu": "1000m"}), quota.parse_list({"cpu": "1"}))
