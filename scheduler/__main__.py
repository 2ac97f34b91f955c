"""kubelite-scheduler: parse options into settings, then schedule while holding the Lease."""

from __future__ import annotations

import argparse
import socket
import uuid

from kubelite import daemon, logs
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig
from kubelite.client.leaderelection import LeaderElectionSettings
from kubelite.durations import duration_flag
from kubelite.health import maybe_health_server
from scheduler.queue import QueueSettings
from scheduler.scheduler import Scheduler, SchedulerSettings


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "t", "1", "yes"):
        return True
    if value in ("false", "f", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")


def percentage(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not in the valid range [0-100]")
    return value


def parse_args(argv: list[str] | None = None) -> tuple[str | ClientConfig, SchedulerSettings, str]:
    """(API server address or client config, settings, log level)."""
    p = argparse.ArgumentParser(prog="kubelite-scheduler", description=__doc__)
    daemon.add_api_server_flags(p)
    p.add_argument("--leader-elect", type=boolean, nargs="?", const=True, default=True,
                   help="run only while holding the kube-system/kube-scheduler Lease")
    p.add_argument("--leader-elect-lease-duration", type=duration_flag, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=duration_flag, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=duration_flag, default=2.0)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--leader-elect-resource-name", default="kube-scheduler")
    p.add_argument("--scheduler-name", default="default-scheduler",
                   help="schedule pods whose spec.schedulerName is this")
    p.add_argument("--pod-initial-backoff", type=duration_flag, default=1.0)
    p.add_argument("--pod-max-backoff", type=duration_flag, default=10.0)
    p.add_argument("--pod-max-in-unschedulable", type=duration_flag, default=300.0,
                   help="retry an unschedulable pod after this long even without events")
    p.add_argument("--percentage-of-nodes-to-score", type=percentage, default=0,
                   help="stop filtering once this percentage of the nodes is found feasible"
                        " (at least 100 nodes); 0: adaptive, as kube-scheduler (50%% minus"
                        " 1%% per 125 nodes, at least 5%%)")
    p.add_argument("--identity", default="",
                   help="leader election identity (default: host name + random suffix)")
    p.add_argument("--health-address", default="127.0.0.1:10259",
                   help="host:port of the gRPC health service (readiness; empty: none)")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    identity = a.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
    election = None
    if a.leader_elect:
        election = LeaderElectionSettings(
            name=a.leader_elect_resource_name,
            namespace=a.leader_elect_resource_namespace,
            identity=identity,
            lease_duration=a.leader_elect_lease_duration,
            renew_deadline=a.leader_elect_renew_deadline,
            retry_period=a.leader_elect_retry_period,
        )
    settings = SchedulerSettings(
        scheduler_name=a.scheduler_name,
        queue=QueueSettings(
            pod_initial_backoff=a.pod_initial_backoff,
            pod_max_backoff=a.pod_max_backoff,
            max_in_unschedulable=a.pod_max_in_unschedulable,
        ),
        percentage_of_nodes_to_score=a.percentage_of_nodes_to_score,
        leader_election=election,
        identity=identity,
        health_address=a.health_address,
    )
    return daemon.api_server_target(a), settings, a.log_level


def main(argv: list[str] | None = None) -> None:
    server, settings, level = parse_args(argv)
    logs.configure(level, component="scheduler")

    async def serve() -> None:
        # grpc.aio objects bind to the loop they are made on: make them inside it.
        client = ApiClient(server)
        scheduler = Scheduler(settings, client)
        health = maybe_health_server(
            settings.health_address, "scheduler", scheduler.readiness,
            lambda: {"leader": scheduler.is_leading} if settings.leader_election else {},
        )

        async def stop() -> None:
            await scheduler.stop()
            await client.close()

        await daemon.serve_until_signalled(scheduler.start, stop, health=health)

    daemon.run(serve())


if __name__ == "__main__":
    main()
