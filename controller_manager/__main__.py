"""kubelite-controller-manager: parse options into settings and run the controllers."""

from __future__ import annotations

import argparse
import socket
import uuid

from controller_manager.certificates import SigningCA
from controller_manager.manager import ControllerManager
from controller_manager.node_ipam import cluster_range
from controller_manager.serviceaccounts import read_root_ca
from controller_manager.settings import ControllerManagerSettings
from kubelite import daemon, logs
from kubelite.client.leaderelection import LeaderElectionSettings
from kubelite.durations import duration_flag
from kubelite.health import maybe_health_server


def parse_args(argv: list[str] | None = None) -> tuple[ControllerManagerSettings, str]:
    p = argparse.ArgumentParser(prog="kubelite-controller-manager", description=__doc__)
    daemon.add_api_server_flags(p)
    p.add_argument("--controllers", default="*",
                   help="comma-separated: * for all, name to enable, -name to disable")
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--leader-elect", default="true", choices=["true", "false"])
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    p.add_argument("--identity", default="")
    p.add_argument("--node-monitor-period", type=float, default=5.0)
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0)
    p.add_argument("--cronjob-check-period", type=float, default=10.0)
    p.add_argument("--cron-time-scale", type=float, default=1.0,
                   help="schedule seconds per real second (tests only)")
    p.add_argument("--job-pod-failure-backoff", type=float, default=10.0)
    p.add_argument("--job-pod-failure-backoff-max", type=float, default=360.0)
    p.add_argument("--allocate-node-cidrs", nargs="?", const="true", default="false",
                   choices=["true", "false"],
                   help="give every Node without a podCIDR a block of --cluster-cidr")
    p.add_argument("--cluster-cidr", default="",
                   help="the pods' address range, e.g. 10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=0,
                   help="prefix length of each node's podCIDR (default 24 for IPv4, 64 for "
                        "IPv6)")
    p.add_argument("--cluster-signing-cert-file", default="",
                   help="PEM of the cluster CA that signs approved certificate signing"
                        " requests (csrsigning; empty: none is signed)")
    p.add_argument("--cluster-signing-key-file", default="",
                   help="PEM of the private key of --cluster-signing-cert-file")
    p.add_argument("--cluster-signing-duration", type=duration_flag, default=8760 * 3600.0,
                   help="the longest validity of a signed certificate (default 8760h)")
    p.add_argument("--root-ca-file", default="",
                   help="PEM of the cluster CA published as kube-root-ca.crt in every namespace"
                        " (default: the CA the API server is trusted with)")
    p.add_argument("--resource-quota-sync-period", type=duration_flag, default=300.0,
                   help="how often every ResourceQuota's usage is recomputed (default 5m)")
    p.add_argument("--health-address", default="127.0.0.1:10257",
                   help="host:port of the gRPC health service (readiness; empty: none)")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    allocate_node_cidrs = a.allocate_node_cidrs == "true"
    if allocate_node_cidrs or a.cluster_cidr:
        try:
            cluster_range(a.cluster_cidr, a.node_cidr_mask_size)
        except ValueError as e:
            p.error(str(e))
    if bool(a.cluster_signing_cert_file) != bool(a.cluster_signing_key_file):
        p.error("--cluster-signing-cert-file and --cluster-signing-key-file: give both or"
                " neither")
    if a.cluster_signing_cert_file:
        try:
            SigningCA.load(a.cluster_signing_cert_file, a.cluster_signing_key_file)
        except ValueError as e:
            p.error(str(e))
    if not a.cluster_signing_duration > 0:
        p.error("--cluster-signing-duration: must be more than 0")
    if a.root_ca_file:
        try:
            read_root_ca(a.root_ca_file)
        except ValueError as e:
            p.error(str(e))
    if a.resource_quota_sync_period < 0:
        p.error("--resource-quota-sync-period: must not be negative")
    identity = a.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    settings = ControllerManagerSettings(
        server=daemon.api_server_target(a),
        controllers=tuple(c for c in a.controllers.split(",") if c),
        workers=a.workers,
        leader_elect=a.leader_elect == "true",
        leader_election=LeaderElectionSettings(
            name="kube-controller-manager", identity=identity,
            lease_duration=a.leader_elect_lease_duration,
            renew_deadline=a.leader_elect_renew_deadline,
            retry_period=a.leader_elect_retry_period,
        ),
        node_monitor_period=a.node_monitor_period,
        node_monitor_grace_period=a.node_monitor_grace_period,
        cronjob_check_period=a.cronjob_check_period,
        cron_time_scale=a.cron_time_scale,
        job_pod_failure_backoff=a.job_pod_failure_backoff,
        job_pod_failure_backoff_max=a.job_pod_failure_backoff_max,
        allocate_node_cidrs=allocate_node_cidrs,
        cluster_cidr=a.cluster_cidr,
        node_cidr_mask_size=a.node_cidr_mask_size,
        cluster_signing_cert_file=a.cluster_signing_cert_file,
        cluster_signing_key_file=a.cluster_signing_key_file,
        cluster_signing_duration=a.cluster_signing_duration,
        health_address=a.health_address,
        root_ca_file=a.root_ca_file,
        resource_quota_sync_period=a.resource_quota_sync_period,
    )
    return settings, a.log_level


def main(argv: list[str] | None = None) -> None:
    settings, level = parse_args(argv)
    logs.configure(level, component="controller-manager")

    async def serve() -> None:
        manager = ControllerManager(settings)
        health = maybe_health_server(
            settings.health_address, "controller-manager", manager.readiness,
            lambda: {"leader": manager.is_leader} if settings.leader_elect else {},
        )

        await daemon.serve_until_signalled(manager.start, manager.stop, health=health)

    daemon.run(serve())


if __name__ == "__main__":
    main()
