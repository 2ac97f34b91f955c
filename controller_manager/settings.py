"""The controller manager's settings: Kubernetes' defaults, every timer configurable."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubelite.client.config import ClientConfig
from kubelite.client.leaderelection import LeaderElectionSettings


@dataclass(frozen=True)
class ControllerManagerSettings:
    server: str | ClientConfig = "127.0.0.1:6443"
    """API server address (plaintext), or a client config (server, CA, credentials)."""
    controllers: tuple[str, ...] = ("*",)
    """Kubernetes' --controllers: ``*`` for all, a name to add one, ``-name`` to drop one."""
    workers: int = 5
    """Concurrent reconciles per controller (Kubernetes' --concurrent-*-syncs)."""
    leader_elect: bool = True
    leader_election: LeaderElectionSettings = field(
        default_factory=lambda: LeaderElectionSettings(
            name="kube-controller-manager", identity="kube-controller-manager"
        )
    )
    """Lease kube-system/kube-controller-manager; durations 15 s / 10 s / 2 s."""
    resync_period: float = 0.0
    """Informer resync, seconds (0: never; level-triggered controllers do not need it)."""
    retry_base_delay: float = 0.005
    """First per-key retry delay of the work queues, seconds."""
    retry_max_delay: float = 1000.0
    """Cap on the per-key retry delay, seconds."""
    node_monitor_period: float = 5.0
    """How often the node lifecycle controller checks node leases, seconds."""
    node_monitor_grace_period: float = 40.0
    """A node whose lease is older than this is Ready=Unknown, seconds."""
    cronjob_check_period: float = 10.0
    """How often CronJobs are checked for due runs, seconds (Kubernetes: 10 s)."""
    cron_time_scale: float = 1.0
    """Seconds of schedule time per real second (tests: 60 makes ``*/1 * * * *`` fire each
    second). 1 in production."""
    terminated_pod_gc_threshold: int = 12500
    """Finished pods kept before the oldest are deleted."""
    job_pod_failure_backoff: float = 10.0
    """First delay before a Job replaces a failed pod, seconds (doubles per failure)."""
    job_pod_failure_backoff_max: float = 360.0
    """Cap on that delay, seconds (Kubernetes: 6 minutes)."""
    progress_check_period: float = 1.0
    """How often Deployments are re-checked against progressDeadlineSeconds, seconds."""
    allocate_node_cidrs: bool = False
    """Kubernetes' --allocate-node-cidrs: the node IPAM controller gives every Node without a
    podCIDR a block of cluster_cidr."""
    cluster_cidr: str = ""
    """--cluster-cidr: the pods' addresses, from which each node's podCIDR is carved."""
    node_cidr_mask_size: int = 0
    """--node-cidr-mask-size: prefix length of each node's podCIDR (0: 24 for an IPv4
    cluster_cidr, 64 for IPv6, as Kubernetes)."""
    cluster_signing_cert_file: str = ""
    """--cluster-signing-cert-file: PEM of the CA csrsigning issues certificates with (empty:
    it signs nothing)."""
    cluster_signing_key_file: str = ""
    """--cluster-signing-key-file: PEM of that CA's private key."""
    cluster_signing_duration: float = 8760 * 3600.0
    """--cluster-signing-duration: the longest validity of a signed certificate, seconds
    (8760h, as Kubernetes); a request's expirationSeconds may ask for less."""
    health_address: str = ""
    """host:port of the gRPC health service the process serves (empty: none)."""
    root_ca_file: str = ""
    """--root-ca-file: PEM of the cluster CA that root-ca-cert-publisher puts in every
    namespace's kube-root-ca.crt ConfigMap (empty: the CA this process trusts the API server
    with, if any)."""
    resource_quota_sync_period: float = 300.0
    """--resource-quota-sync-period: seconds between recomputations of every quota's usage."""
