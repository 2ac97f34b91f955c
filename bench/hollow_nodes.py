"""Hollow nodes in their own process, as kubemark runs hollow kubelets apart from the load.

Registers N Ready nodes (kubelite.testing.hollow.HollowCluster), keeps them Ready with
heartbeats and Leases, and marks every pod bound to one of them Running and Ready. Prints
``ready`` on stdout once the nodes exist and its pod informer has synced; runs until SIGTERM.

Usage: python -m bench.hollow_nodes --server HOST:PORT [--nodes 100] [--workers 16]
"""

from __future__ import annotations

import argparse

from kubelite import daemon, logs
from kubelite.client.client import ApiClient
from kubelite.testing.hollow import HollowCluster

READY_LINE = "ready"
"""What the process prints on stdout once its nodes are registered and it watches pods."""


def node_names(count: int, prefix: str = "hollow-node-") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.hollow_nodes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="API server host:port (plaintext)")
    p.add_argument("--nodes", type=int, default=100, help="hollow nodes to register")
    p.add_argument("--node-prefix", default="hollow-node-", help="node names: PREFIX0, PREFIX1...")
    p.add_argument("--cpu", default="4", help="each node's cpu capacity")
    p.add_argument("--memory", default="8Gi", help="each node's memory capacity")
    p.add_argument("--workers", type=int, default=16,
                   help="pods the hollow kubelet updates at once")
    p.add_argument("--heartbeat", type=float, default=10.0,
                   help="seconds between node status and Lease renewals (kubelet: 10)")
    p.add_argument("--log-level", default="warning")
    a = p.parse_args(argv)
    if a.nodes < 1:
        p.error("--nodes: must be at least 1")
    if a.workers < 1:
        p.error("--workers: must be at least 1")
    if not a.heartbeat > 0:
        p.error("--heartbeat: must be more than 0")
    return a


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    logs.configure(a.log_level, component="hollow-nodes")

    async def serve() -> None:
        client = ApiClient(a.server)
        cluster = HollowCluster(client, node_names(a.nodes, a.node_prefix), cpu=a.cpu,
                                memory=a.memory, heartbeat=a.heartbeat, workers=a.workers)

        async def stop() -> None:
            try:
                await cluster.stop()
            finally:
                await client.close()

        await daemon.serve_until_signalled(cluster.start, stop,
                                           ready=lambda: print(READY_LINE, flush=True))

    daemon.run(serve())


if __name__ == "__main__":
    main()
