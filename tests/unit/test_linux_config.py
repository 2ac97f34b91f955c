"""Requests and limits become cgroup settings, and securityContexts merge, as Kubernetes does."""

from __future__ import annotations

import pytest

from kubelet.linux_config import resources_for, security_for, verify_run_as_non_root
from kubelet.runtime.interface import Resources, SecurityConfig
from protos.v1 import objects_pb2 as v1


def container(limits: dict[str, str] | None = None, requests: dict[str, str] | None = None,
              **security: object) -> v1.Container:
    c = v1.Container(name="c", image="busybox")
    c.resources.limits.update(limits or {})
    c.resources.requests.update(requests or {})
    for key, value in security.items():
        setattr(c.security_context, key, value)
    return c


def test_limits_give_quota_and_memory_requests_give_shares() -> None:
    r = resources_for(container({"cpu": "500m", "memory": "64Mi"}, {"cpu": "250m"}))
    assert r == Resources(cpu_period=100_000, cpu_quota=50_000, cpu_shares=256,
                          memory_limit_bytes=64 * 1024 * 1024)


def test_without_resources_the_smallest_shares_and_no_limits() -> None:
    assert resources_for(container()) == Resources(cpu_shares=2)


def test_a_cpu_limit_alone_is_also_the_request_and_tiny_quotas_are_raised() -> None:
    r = resources_for(container({"cpu": "1m"}))
    assert (r.cpu_shares, r.cpu_quota) == (2, 1_000)
    assert resources_for(container({"cpu": "2"})).cpu_shares == 2048


def test_container_security_context_overrides_the_pods() -> None:
    pod = v1.Pod()
    pod.spec.security_context.run_as_user = 1000
    pod.spec.security_context.run_as_group = 3000
    pod.spec.security_context.run_as_non_root = True
    pod.spec.security_context.supplemental_groups.append(4000)
    c = container(run_as_user=2000, read_only_root_filesystem=True,
                  allow_privilege_escalation=False)
    c.security_context.capabilities.add.append("NET_ADMIN")
    c.security_context.capabilities.drop.append("ALL")
    assert security_for(pod, c) == SecurityConfig(
        run_as_user=2000, run_as_group=3000, run_as_non_root=True, supplemental_groups=(4000,),
        read_only_root_filesystem=True, no_new_privileges=True,
        capabilities_add=("NET_ADMIN",), capabilities_drop=("ALL",),
    )


def test_privileged_containers_keep_privilege_escalation() -> None:
    sc = security_for(v1.Pod(), container(privileged=True, allow_privilege_escalation=False))
    assert (sc.privileged, sc.no_new_privileges) == (True, False)


@pytest.mark.parametrize(
    ("security", "image_uid", "image_user", "refused"),
    [
        (SecurityConfig(), 0, "", None),
        (SecurityConfig(run_as_non_root=True), 0, "", "image will run as root"),
        (SecurityConfig(run_as_non_root=True), None, "", "image will run as root"),
        (SecurityConfig(run_as_non_root=True), 1000, "1000", None),
        (SecurityConfig(run_as_non_root=True), None, "nginx", "non-numeric user (nginx)"),
        (SecurityConfig(run_as_non_root=True, run_as_user=0), 1000, "1000", "breaks non-root"),
        (SecurityConfig(run_as_non_root=True, run_as_user=1000), 0, "", None),
    ],
)
def test_run_as_non_root(security: SecurityConfig, image_uid: int | None, image_user: str,
                         refused: str | None) -> None:
    message = verify_run_as_non_root(security, image_uid, image_user)
    if refused is None:
        assert message is None
    else:
        assert message is not None and refused in message
