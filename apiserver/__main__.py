"""kubelite-apiserver: parse options into settings and serve."""

from __future__ import annotations

import argparse

from apiserver.allocator import IPRange, PortRange
from apiserver.api import ApiSettings
from apiserver.etcd import EtcdSettings
from apiserver.server import ApiServer, ApiServerSettings
from apiserver.watch_cache import WatchCacheSettings
from kubelite import daemon, logs


def parse_args(argv: list[str] | None = None) -> tuple[ApiServerSettings, str]:
    p = argparse.ArgumentParser(prog="kubelite-apiserver", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:6443", help="host:port to serve gRPC on")
    p.add_argument(
        "--etcd-servers", default="127.0.0.1:2379", help="comma-separated etcd host:port list"
    )
    p.add_argument("--etcd-prefix", default="/registry", help="key prefix in etcd")
    p.add_argument("--compaction-interval", type=float, default=300.0,
                   help="seconds between etcd compactions (0 disables)")
    p.add_argument("--watch-cache-size", type=int, default=10_000,
                   help="events kept per resource for resuming watches")
    p.add_argument("--watch-cache-max-bytes", type=int, default=32 * 1024 * 1024,
                   help="bytes of objects kept per resource for resuming watches")
    p.add_argument("--watch-progress-interval", type=float, default=1.0,
                   help="seconds between bookmarks/progress checks on quiet watches")
    p.add_argument("--event-ttl", type=int, default=3600,
                   help="seconds an Event is kept (0: forever)")
    p.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds of the not-ready/unreachable NoExecute tolerations"
                        " added to pods that lack them")
    p.add_argument("--service-cluster-ip-range", default="127.96.0.0/16",
                   help="CIDR to allocate Service ClusterIPs from (a loopback block lets"
                        " proxies bind them without privileges)")
    p.add_argument("--service-node-port-range", default="30000-32767",
                   help="port range to allocate NodePort Services' nodePorts from")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.watch_cache_max_bytes < 0:
        p.error(f"--watch-cache-max-bytes: must not be negative, got {a.watch_cache_max_bytes}")
    try:
        IPRange.parse(a.service_cluster_ip_range)
        PortRange.parse(a.service_node_port_range)
    except ValueError as e:
        p.error(str(e))
    settings = ApiServerSettings(
        listen=a.listen,
        etcd=EtcdSettings(endpoints=tuple(s.strip() for s in a.etcd_servers.split(",") if s)),
        api=ApiSettings(
            storage_prefix=a.etcd_prefix,
            service_cluster_ip_range=a.service_cluster_ip_range,
            service_node_port_range=a.service_node_port_range,
            watch_cache=WatchCacheSettings(
                capacity=a.watch_cache_size, max_bytes=a.watch_cache_max_bytes,
                progress_interval=a.watch_progress_interval,
            ),
            default_toleration_seconds=a.default_toleration_seconds,
            event_ttl=a.event_ttl,
        ),
        compaction_interval=a.compaction_interval,
    )
    return settings, a.log_level


def main(argv: list[str] | None = None) -> None:
    settings, level = parse_args(argv)
    logs.configure(level, component="apiserver")

    async def serve() -> None:
        # grpc.aio objects bind to the loop they are made on: make them inside it.
        server = ApiServer(settings)
        await daemon.serve_until_signalled(server.start, server.stop)

    daemon.run(serve())


if __name__ == "__main__":
    main()
