"""kubelite-dns: parse options into settings, then serve the cluster's DNS."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from clusterdns.records import DEFAULT_TTL, normalize_zone
from clusterdns.server import ClusterDns, DnsSettings
from clusterdns.upstream import DNS_PORT, parse_upstreams
from kubelite import daemon, logs
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    SERVICE_ACCOUNT_DIR,
    SERVICE_HOST_ENV,
    ClientConfig,
    ConfigError,
    in_cluster_config,
    load_kubeconfig,
)
from kubelite.durations import duration_flag
from kubelite.health import join_host_port, maybe_health_server

HEALTH_PORT = 8181
"""CoreDNS' readiness port (its ``ready`` plugin)."""


def default_server(
    env: Mapping[str, str] = os.environ, root: Path = SERVICE_ACCOUNT_DIR,
) -> str | ClientConfig:
    """$KUBELITE_SERVER, else in a pod the API's Service (KUBERNETES_SERVICE_HOST/PORT):
    over TLS with the pod's ServiceAccount token and the cluster CA when they are mounted,
    in plaintext when they are not; else 127.0.0.1:6443."""
    explicit = env.get("KUBELITE_SERVER")
    if explicit:
        return explicit
    if env.get(SERVICE_HOST_ENV) and (root / "token").is_file():
        return in_cluster_config(env, root)
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT")
    if host and port and port.isdigit():
        return join_host_port(host, int(port))
    return "127.0.0.1:6443"


def parse_args(argv: list[str] | None = None
               ) -> tuple[str | ClientConfig, DnsSettings, str]:
    """(API server address or client config, settings, log level)."""
    p = argparse.ArgumentParser(prog="kubelite-dns", description=__doc__)
    p.add_argument("--server", default=None,
                   help="API server host:port in plaintext (default: $KUBELITE_SERVER, else"
                        " in a pod the in-cluster config: $KUBERNETES_SERVICE_HOST:"
                        "$KUBERNETES_SERVICE_PORT with the pod's ServiceAccount token, else"
                        " 127.0.0.1:6443)")
    p.add_argument("--kubeconfig", default="", metavar="PATH",
                   help="kubeconfig with the API server, its CA and credentials (wins over"
                        " --server)")
    p.add_argument("--listen-address", default="", metavar="IP",
                   help="address to serve DNS on, UDP and TCP (default: every address)")
    p.add_argument("--port", type=int, default=DNS_PORT,
                   help="port to serve DNS on, UDP and TCP (0: any free one)")
    p.add_argument("--cluster-domain", default="cluster.local",
                   help="the zone answered from Services and pods")
    p.add_argument("--upstream", default="", metavar="IP[:PORT],...",
                   help="resolvers for names outside the cluster domain (default: the"
                        " nameservers of --resolv-conf)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", metavar="PATH",
                   help="where the upstream resolvers are read when --upstream is not given"
                        " (this server's own address is skipped)")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL,
                   help="TTL of the cluster domain's records, seconds")
    p.add_argument("--upstream-timeout", type=duration_flag, default=2.0, metavar="DURATION",
                   help="how long an upstream has to answer before the next one is asked")
    p.add_argument("--health-address", default=None,
                   help="host:port of the gRPC health service (readiness; empty: none;"
                        f" default: LISTEN_ADDRESS:{HEALTH_PORT}, or 0.0.0.0:{HEALTH_PORT})")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    try:
        zone = normalize_zone(a.cluster_domain)
    except ValueError as e:
        p.error(f"--cluster-domain: invalid value {a.cluster_domain!r}: {e}")
    try:
        upstreams = parse_upstreams(a.upstream)
    except ValueError as e:
        p.error(f"--upstream: invalid value {e}")
    if not 0 <= a.port < 65536:
        p.error(f"--port: must be from 0 to 65535, got {a.port}")
    if not 0 <= a.ttl <= 2**31 - 1:
        p.error(f"--ttl: must be from 0 to 2147483647 seconds, got {a.ttl}")
    if a.upstream_timeout <= 0:
        p.error(f"--upstream-timeout: must be greater than 0, got {a.upstream_timeout}")
    health_address = a.health_address
    if health_address is None:
        health_address = join_host_port(a.listen_address or "0.0.0.0", HEALTH_PORT)
    settings = DnsSettings(
        listen_address=a.listen_address,
        port=a.port,
        cluster_domain=zone.rstrip("."),
        ttl=a.ttl,
        upstreams=upstreams,
        resolv_conf=a.resolv_conf,
        upstream_timeout=a.upstream_timeout,
        health_address=health_address,
    )
    try:
        if a.kubeconfig:
            target: str | ClientConfig = load_kubeconfig(a.kubeconfig)
        else:
            target = a.server or default_server()
    except ConfigError as e:
        p.error(f"--kubeconfig: {e}" if a.kubeconfig else str(e))
    return target, settings, a.log_level


def main(argv: list[str] | None = None) -> None:
    server, settings, level = parse_args(argv)
    logs.configure(level, component="dns")

    async def serve() -> None:
        # grpc.aio objects bind to the loop they are made on: make them inside it.
        client = ApiClient(server)
        dns_server = ClusterDns(settings, client)
        health = maybe_health_server(settings.health_address, "dns", dns_server.readiness)

        async def start() -> None:
            try:
                await dns_server.start()
            except OSError as e:  # the address is taken or not ours: say so, no traceback
                raise SystemExit(f"kubelite-dns: {e}") from e

        async def stop() -> None:
            await dns_server.stop()
            await client.close()

        await daemon.serve_until_signalled(start, stop, health=health)

    daemon.run(serve())


if __name__ == "__main__":
    main()
