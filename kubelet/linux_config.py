"""A container's cgroup limits and effective securityContext, as the kubelet gives them to the
runtime (Kubernetes' kuberuntime_container_linux.go and securitycontext helpers)."""

from __future__ import annotations

from kubelet.runtime.interface import Resources, SecurityConfig
from kubelite.api.quantity import parse_quantity
from protos.v1 import objects_pb2 as v1

CPU_PERIOD_US = 100_000
"""CFS period the kubelet uses for every container with a CPU limit."""
MIN_SHARES = 2
"""The kernel's smallest cpu.shares; a container without a CPU request gets it."""
SHARES_PER_CPU = 1024
MIN_QUOTA_US = 1_000
"""The kernel's smallest CFS quota (1 ms)."""


def resources_for(container: v1.Container) -> Resources:
    """cpu.shares from the CPU request (the limit when only a limit is given, as API
    defaulting does), CFS quota from the CPU limit, memory limit in bytes."""
    limits = container.resources.limits
    requests = container.resources.requests
    cpu_request = requests.get("cpu") or limits.get("cpu")
    shares = MIN_SHARES
    if cpu_request:
        shares = max(MIN_SHARES, parse_quantity(cpu_request).milli_value() * SHARES_PER_CPU // 1000)
    quota = period = 0
    if limits.get("cpu"):
        period = CPU_PERIOD_US
        quota = max(MIN_QUOTA_US, parse_quantity(limits["cpu"]).milli_value() * period // 1000)
    memory = parse_quantity(limits["memory"]).value() if limits.get("memory") else 0
    return Resources(
        cpu_period=period, cpu_quota=quota, cpu_shares=shares, memory_limit_bytes=memory
    )


def security_for(pod: v1.Pod, container: v1.Container) -> SecurityConfig:
    """The pod's securityContext with the container's on top, field by field."""
    pod_sc = pod.spec.security_context
    sc = container.security_context

    def pick(field: str) -> int | bool | None:
        if sc.HasField(field):
            value: int | bool = getattr(sc, field)
            return value
        if pod_sc.HasField(field):
            value = getattr(pod_sc, field)
            return value
        return None

    user = pick("run_as_user")
    group = pick("run_as_group")
    privileged = sc.privileged if sc.HasField("privileged") else False
    escalation = (
        sc.allow_privilege_escalation if sc.HasField("allow_privilege_escalation") else True
    )
    return SecurityConfig(
        run_as_user=int(user) if user is not None else None,
        run_as_group=int(group) if group is not None else None,
        run_as_non_root=bool(pick("run_as_non_root")),
        supplemental_groups=tuple(pod_sc.supplemental_groups),
        privileged=privileged,
        read_only_root_filesystem=(
            sc.read_only_root_filesystem if sc.HasField("read_only_root_filesystem") else False
        ),
        # Kubernetes sets no_new_privs only when escalation is explicitly refused and the
        # container is not privileged.
        no_new_privileges=not escalation and not privileged,
        capabilities_add=tuple(sc.capabilities.add),
        capabilities_drop=tuple(sc.capabilities.drop),
    )


def verify_run_as_non_root(
    security: SecurityConfig, image_uid: int | None, image_user: str
) -> str | None:
    """Why the container must not start under runAsNonRoot (the kubelet's message), or None.

    The effective UID is runAsUser, else the image's USER; a USER given by name cannot be
    verified and is refused, as Kubernetes does.
    """
    if not security.run_as_non_root:
        return None
    if security.run_as_user is not None:
        if security.run_as_user == 0:
            return "container's runAsUser breaks non-root policy"
        return None
    if image_uid is None and image_user:
        return (f"container has runAsNonRoot and image has non-numeric user ({image_user}),"
                " cannot verify user is non-root")
    if not image_uid:
        return "container has runAsNonRoot and image will run as root"
    return None
