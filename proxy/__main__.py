"""kubelite-proxy: parse options into settings, then serve Services on this node."""

from __future__ import annotations

import argparse
import os
import resource

from kubelite import daemon, logs
from kubelite.client.client import ApiClient
from kubelite.durations import duration_flag
from kubelite.health import join_host_port, maybe_health_server
from proxy.proxier import Proxier, ProxySettings
from proxy.tcp import DIAL_TIMEOUTS, TcpSettings
from proxy.udp import UdpSettings


def parse_args(argv: list[str] | None = None) -> tuple[str, ProxySettings, str]:
    """(API server address, settings, log level)."""
    p = argparse.ArgumentParser(prog="kubelite-proxy", description=__doc__)
    p.add_argument("--node-name", required=True)
    p.add_argument("--node-ip", required=True, help="address NodePort listeners bind")
    p.add_argument("--server", default=os.environ.get("KUBELITE_SERVER", "127.0.0.1:6443"),
                   help="API server host:port (default: $KUBELITE_SERVER or 127.0.0.1:6443)")
    p.add_argument("--udp-timeout", type=duration_flag, default=0.25,
                   help="idle time after which a UDP client association is dropped")
    p.add_argument("--no-splice", action="store_true",
                   help="copy bulk TCP data through user space instead of os.splice")
    p.add_argument("--takeover-interval", type=duration_flag, default=0.5,
                   help="how often to try again to bind an address another process on this"
                        " host holds (another node's proxy): one proxy per host owns each"
                        " ClusterIP, and another takes it over within this time when it stops")
    p.add_argument("--health-address", default=None,
                   help="host:port of the gRPC health service (readiness; empty: none;"
                        " default: NODE_IP:10256)")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    health_address = a.health_address
    if health_address is None:
        health_address = join_host_port(a.node_ip, 10256)
    settings = ProxySettings(
        node_name=a.node_name,
        node_ip=a.node_ip,
        tcp=TcpSettings(dial_timeouts=DIAL_TIMEOUTS, splice=not a.no_splice),
        udp=UdpSettings(idle_timeout=a.udp_timeout),
        takeover_interval=a.takeover_interval,
        health_address=health_address,
    )
    return a.server, settings, a.log_level


def raise_open_file_limit() -> None:
    """Every relayed connection holds two sockets (and pipes when bulk): as upstream's
    userspace proxy, lift the soft RLIMIT_NOFILE to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str] | None = None) -> None:
    server, settings, level = parse_args(argv)
    logs.configure(level, component="proxy")
    raise_open_file_limit()

    async def serve() -> None:
        # grpc.aio objects bind to the loop they are made on: make them inside it.
        client = ApiClient(server)
        proxier = Proxier(settings, client)
        health = maybe_health_server(settings.health_address, "proxy", proxier.readiness)

        async def stop() -> None:
            await proxier.stop()
            await client.close()

        await daemon.serve_until_signalled(proxier.start, stop, health=health)

    daemon.run(serve())


if __name__ == "__main__":
    main()
