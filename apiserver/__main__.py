"""kubelite-apiserver: parse options into settings and serve."""

from __future__ import annotations

import argparse

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
    p.add_argument("--watch-progress-interval", type=float, default=1.0,
                   help="seconds between bookmarks/progress checks on quiet watches")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    settings = ApiServerSettings(
        listen=a.listen,
        etcd=EtcdSettings(endpoints=tuple(s.strip() for s in a.etcd_servers.split(",") if s)),
        api=ApiSettings(
            storage_prefix=a.etcd_prefix,
            watch_cache=WatchCacheSettings(
                capacity=a.watch_cache_size, progress_interval=a.watch_progress_interval
            ),
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
