"""kubelite-proxy: parse options into settings, then serve Services on this node."""

from __future__ import annotations

import argparse
import resource

from kubelite import daemon, logs
from kubelite.client.client import ApiClient
from kubelite.client.config import ClientConfig
from kubelite.durations import duration_flag
from kubelite.health import join_host_port, maybe_health_server
from proxy.addresses import ClusterIPInterfaceSettings, check_interface_name, parse_service_range
from proxy.proxier import Proxier, ProxySettings
from proxy.tcp import DIAL_TIMEOUTS, TcpSettings
from proxy.udp import UdpSettings


def parse_args(argv: list[str] | None = None) -> tuple[str | ClientConfig, ProxySettings, str]:
    """(API server address or client config, settings, log level)."""
    p = argparse.ArgumentParser(prog="kubelite-proxy", description=__doc__)
    p.add_argument("--node-name", required=True)
    p.add_argument("--node-ip", required=True, help="address NodePort listeners bind")
    daemon.add_api_server_flags(p)
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
    p.add_argument("--cluster-ip-interface", default="", metavar="NAME",
                   help="interface on which to keep every ClusterIP as a /32 local address,"
                        " made (a dummy) when missing, as upstream's kube-ipvs0: needed when"
                        " pods in their own network namespaces reach ClusterIPs through the"
                        " node (needs root); empty (default): bind ClusterIPs as they are"
                        " (loopback ClusterIPs)")
    p.add_argument("--service-cluster-ip-range", default="", metavar="CIDR",
                   help="the API server's ClusterIP range: only addresses inside it are added"
                        " to and removed from --cluster-ip-interface (required with it)")
    p.add_argument("--cluster-ip-interface-sync-period", type=duration_flag, default=30.0,
                   metavar="DURATION",
                   help="how often the addresses of --cluster-ip-interface are checked in"
                        " full (missing ones re-added, those of deleted Services removed);"
                        " Service changes are applied at once")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.cluster_ip_interface:
        try:
            check_interface_name(a.cluster_ip_interface)
        except ValueError as e:
            p.error(f"--cluster-ip-interface: invalid value {a.cluster_ip_interface}: {e}")
        if not a.service_cluster_ip_range:
            p.error("--cluster-ip-interface needs --service-cluster-ip-range (only addresses"
                    " inside it are ever removed from the interface)")
    if a.service_cluster_ip_range:
        try:
            parse_service_range(a.service_cluster_ip_range)
        except ValueError as e:
            p.error(f"--service-cluster-ip-range: invalid value {a.service_cluster_ip_range}:"
                    f" {e}")
    if a.cluster_ip_interface_sync_period <= 0:
        p.error("--cluster-ip-interface-sync-period: must be greater than 0, got"
                f" {a.cluster_ip_interface_sync_period}")
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
        cluster_ip_interface=ClusterIPInterfaceSettings(
            name=a.cluster_ip_interface,
            service_cluster_ip_range=a.service_cluster_ip_range,
            sync_period=a.cluster_ip_interface_sync_period,
        ),
    )
    return daemon.api_server_target(a), settings, a.log_level


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
