"""Kubernetes' defaults (SetDefaults_*) applied per kind."""

from __future__ import annotations

import pytest

from kubelite.api.defaults import apply_defaults, generate_job_selector, image_tag
from protos.v1 import objects_pb2 as v1


def _container(name: str = "app", image: str = "nginx:1.25") -> v1.Container:
    return v1.Container(name=name, image=image)


def _pod(*containers: v1.Container) -> v1.Pod:
    pod = v1.Pod()
    pod.metadata.name = "p"
    pod.metadata.namespace = "default"
    pod.spec.containers.extend(containers or (_container(),))
    return pod


def test_pod_spec_defaults() -> None:
    pod = _pod()
    apply_defaults(pod)
    spec = pod.spec
    assert spec.restart_policy == "Always"
    assert spec.dns_policy == "ClusterFirst"
    assert spec.HasField("termination_grace_period_seconds")
    assert spec.termination_grace_period_seconds == 30
    assert spec.scheduler_name == "default-scheduler"
    assert spec.HasField("enable_service_links") and spec.enable_service_links
    ctr = spec.containers[0]
    assert ctr.termination_message_path == "/dev/termination-log"
    assert ctr.termination_message_policy == "File"
    assert ctr.image_pull_policy == "IfNotPresent"


def test_explicit_values_are_kept() -> None:
    pod = _pod()
    pod.spec.restart_policy = "Never"
    pod.spec.termination_grace_period_seconds = 0
    pod.spec.enable_service_links = False
    pod.spec.scheduler_name = "mine"
    pod.spec.containers[0].image_pull_policy = "Never"
    apply_defaults(pod)
    assert pod.spec.restart_policy == "Never"
    assert pod.spec.termination_grace_period_seconds == 0  # explicit zero is not "unset"
    assert pod.spec.enable_service_links is False
    assert pod.spec.scheduler_name == "mine"
    assert pod.spec.containers[0].image_pull_policy == "Never"


def test_dns_policy_and_dns_config_are_kept_as_given() -> None:
    pod = _pod()
    pod.spec.dns_policy = "None"
    pod.spec.dns_config.nameservers.append("192.0.2.53")
    pod.spec.dns_config.options.add(name="edns0")
    apply_defaults(pod)
    assert pod.spec.dns_policy == "None"
    assert list(pod.spec.dns_config.nameservers) == ["192.0.2.53"]
    assert not pod.spec.dns_config.searches
    # An option without a value stays without one (resolv.conf's "edns0", not "edns0:").
    assert not pod.spec.dns_config.options[0].HasField("value")
    # Without a dnsConfig none is made up.
    plain = _pod()
    apply_defaults(plain)
    assert plain.spec.dns_policy == "ClusterFirst" and not plain.spec.HasField("dns_config")


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("registry:5000/team/nginx", "Always"),
        ("registry:5000/team/nginx:1.2", "IfNotPresent"),
        ("nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = _pod(_container(image=image))
    apply_defaults(pod)
    assert pod.spec.containers[0].image_pull_policy == policy


def test_image_tag() -> None:
    assert image_tag("busybox") == "latest"
    assert image_tag("localhost:5000/busybox") == "latest"
    assert image_tag("busybox:1.36") == "1.36"


def test_ports_probes_and_init_containers() -> None:
    ctr = _container()
    ctr.ports.add(container_port=80)
    ctr.liveness_probe.http_get.port.int_val = 80
    ctr.readiness_probe.tcp_socket.port.int_val = 80
    ctr.readiness_probe.period_seconds = 3
    init = _container("init")
    init.ports.add(container_port=81, protocol="UDP")
    pod = _pod(ctr)
    pod.spec.init_containers.append(init)
    apply_defaults(pod)
    ctr = pod.spec.containers[0]
    assert ctr.ports[0].protocol == "TCP"
    live = ctr.liveness_probe
    assert (
        live.timeout_seconds,
        live.period_seconds,
        live.success_threshold,
        live.failure_threshold,
    ) == (1, 10, 1, 3)
    assert live.http_get.path == "/"
    assert live.http_get.scheme == "HTTP"
    assert ctr.readiness_probe.period_seconds == 3
    assert not ctr.HasField("startup_probe")
    assert pod.spec.init_containers[0].ports[0].protocol == "UDP"
    assert pod.spec.init_containers[0].termination_message_policy == "File"


def test_tolerations_untouched_and_requests_from_limits() -> None:
    pod = _pod()
    pod.spec.tolerations.add(key="k", operator="Exists")
    pod.spec.containers[0].resources.limits["cpu"] = "500m"
    pod.spec.containers[0].resources.limits["memory"] = "1Gi"
    pod.spec.containers[0].resources.requests["memory"] = "512Mi"
    apply_defaults(pod)
    assert list(pod.spec.tolerations) == [v1.Toleration(key="k", operator="Exists")]
    assert dict(pod.spec.containers[0].resources.requests) == {"cpu": "500m", "memory": "512Mi"}


def test_volume_defaults() -> None:
    pod = _pod()
    pod.spec.volumes.add(name="scratch")
    cm = pod.spec.volumes.add(name="cfg")
    cm.config_map.name = "c"
    apply_defaults(pod)
    assert pod.spec.volumes[0].HasField("empty_dir")
    assert pod.spec.volumes[1].config_map.default_mode == 0o644


def test_apply_defaults_is_idempotent() -> None:
    pod = _pod()
    apply_defaults(pod)
    once = v1.Pod()
    once.CopyFrom(pod)
    apply_defaults(pod)
    assert pod == once


def _template(spec_holder: v1.PodTemplateSpec) -> None:
    spec_holder.metadata.labels["app"] = "a"
    spec_holder.spec.containers.append(_container())


def test_replica_set_and_template() -> None:
    rs = v1.ReplicaSet()
    _template(rs.spec.template)
    apply_defaults(rs)
    assert rs.spec.HasField("replicas") and rs.spec.replicas == 1
    assert rs.spec.template.spec.restart_policy == "Always"
    assert rs.spec.template.spec.containers[0].termination_message_path == "/dev/termination-log"
    # apps/v1 does not default the selector from the template.
    assert not rs.spec.HasField("selector")


def test_replicas_zero_is_kept() -> None:
    rs = v1.ReplicaSet()
    rs.spec.replicas = 0
    apply_defaults(rs)
    assert rs.spec.replicas == 0


def test_deployment_defaults() -> None:
    d = v1.Deployment()
    _template(d.spec.template)
    apply_defaults(d)
    assert d.spec.replicas == 1
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rolling_update.max_surge.str_val == "25%"
    assert d.spec.strategy.rolling_update.max_unavailable.str_val == "25%"
    assert d.spec.revision_history_limit == 10
    assert d.spec.progress_deadline_seconds == 600
    assert d.spec.template.spec.dns_policy == "ClusterFirst"
    assert not d.spec.HasField("selector")


def test_deployment_keeps_explicit_zero_and_recreate() -> None:
    d = v1.Deployment()
    d.spec.strategy.rolling_update.max_unavailable.int_val = 0
    apply_defaults(d)
    assert d.spec.strategy.rolling_update.max_unavailable.WhichOneof("value") == "int_val"
    assert d.spec.strategy.rolling_update.max_surge.str_val == "25%"
    r = v1.Deployment()
    r.spec.strategy.type = "Recreate"
    apply_defaults(r)
    assert not r.spec.strategy.HasField("rolling_update")


def test_daemon_set_defaults() -> None:
    ds = v1.DaemonSet()
    _template(ds.spec.template)
    apply_defaults(ds)
    ru = ds.spec.update_strategy.rolling_update
    assert ds.spec.update_strategy.type == "RollingUpdate"
    assert ru.max_unavailable.WhichOneof("value") == "int_val" and ru.max_unavailable.int_val == 1
    assert ru.max_surge.WhichOneof("value") == "int_val" and ru.max_surge.int_val == 0
    assert ds.spec.revision_history_limit == 10


def test_stateful_set_defaults() -> None:
    sts = v1.StatefulSet()
    _template(sts.spec.template)
    apply_defaults(sts)
    assert sts.spec.pod_management_policy == "OrderedReady"
    assert sts.spec.update_strategy.type == "RollingUpdate"
    assert sts.spec.update_strategy.rolling_update.HasField("partition")
    assert sts.spec.update_strategy.rolling_update.partition == 0
    assert sts.spec.replicas == 1
    assert sts.spec.revision_history_limit == 10
    assert sts.spec.service_name == ""


def test_job_defaults_both_unset() -> None:
    job = v1.Job()
    _template(job.spec.template)
    job.spec.template.spec.restart_policy = "Never"
    apply_defaults(job)
    assert job.spec.completions == 1 and job.spec.parallelism == 1
    assert job.spec.backoff_limit == 6
    assert job.spec.completion_mode == "NonIndexed"
    assert job.spec.HasField("suspend") and job.spec.suspend is False
    assert not job.spec.HasField("manual_selector")
    assert job.spec.template.spec.restart_policy == "Never"
    assert dict(job.metadata.labels) == {"app": "a"}  # job labels from the template


def test_job_parallelism_only_defaults_when_completions_set() -> None:
    job = v1.Job()
    job.spec.completions = 5
    apply_defaults(job)
    assert job.spec.parallelism == 1
    assert job.spec.completions == 5
    work_queue = v1.Job()
    work_queue.spec.parallelism = 3
    apply_defaults(work_queue)
    assert not work_queue.spec.HasField("completions")  # a work queue: no completions


def test_cron_job_defaults() -> None:
    cj = v1.CronJob()
    _template(cj.spec.job_template.spec.template)
    apply_defaults(cj)
    assert cj.spec.concurrency_policy == "Allow"
    assert cj.spec.HasField("suspend") and cj.spec.suspend is False
    assert cj.spec.successful_jobs_history_limit == 3
    assert cj.spec.failed_jobs_history_limit == 1
    # Pod defaults reach the template; job defaults do not reach the job template.
    assert cj.spec.job_template.spec.template.spec.dns_policy == "ClusterFirst"
    assert not cj.spec.job_template.spec.HasField("backoff_limit")


def test_service_defaults() -> None:
    svc = v1.Service()
    svc.spec.ports.add(port=80)
    svc.spec.ports.add(port=443, target_port=v1.IntOrString(str_val="https"), protocol="TCP")
    apply_defaults(svc)
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.session_affinity == "None"
    assert not svc.spec.HasField("session_affinity_config")
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port.int_val == 80
    assert svc.spec.ports[1].target_port.str_val == "https"


def test_service_client_ip_affinity_timeout() -> None:
    svc = v1.Service()
    svc.spec.session_affinity = "ClientIP"
    apply_defaults(svc)
    assert svc.spec.session_affinity_config.client_ip.timeout_seconds == 10800


def test_secret_namespace_endpoints_node() -> None:
    secret = v1.Secret()
    secret.string_data["user"] = "admin"
    apply_defaults(secret)
    assert secret.type == "Opaque"
    assert secret.data["user"] == b"admin"
    assert not secret.string_data
    ns = v1.Namespace()
    ns.metadata.name = "team"
    apply_defaults(ns)
    assert ns.status.phase == "Active"
    assert ns.metadata.labels["kubernetes.io/metadata.name"] == "team"
    ep = v1.Endpoints()
    ep.subsets.add().ports.add(port=80)
    apply_defaults(ep)
    assert ep.subsets[0].ports[0].protocol == "TCP"
    node = v1.Node()
    node.status.capacity["cpu"] = "4"
    apply_defaults(node)
    assert dict(node.status.allocatable) == {"cpu": "4"}


def test_generate_job_selector() -> None:
    job = v1.Job()
    job.metadata.name = "pi"
    job.metadata.uid = "uid-1"
    generate_job_selector(job)
    assert dict(job.spec.selector.match_labels) == {"batch.kubernetes.io/controller-uid": "uid-1"}
    assert job.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "pi"
    manual = v1.Job()
    manual.spec.manual_selector = True
    generate_job_selector(manual)
    assert not manual.spec.HasField("selector")
