"""kubelite-kubelet: parse options into settings and run the kubelet."""

from __future__ import annotations

import argparse
import ipaddress
import os

from kubelet.kubelet import Kubelet
from kubelet.pod_ips import parse_pod_cidr
from kubelet.routes import RouteAgentSettings
from kubelet.server import AuthorizationSettings
from kubelet.settings import KubeletSettings
from kubelet.tls_bootstrap import BootstrapError, bootstrap_kubelet
from kubelite import daemon, logs
from kubelite.api.names import is_dns1123_subdomain
from kubelite.client.config import ConfigError
from kubelite.durations import duration_flag
from kubelite.health import join_host_port, maybe_health_server


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        labels[key] = value
    return labels


def parse_args(argv: list[str] | None = None) -> tuple[KubeletSettings, str]:
    p = argparse.ArgumentParser(prog="kubelite-kubelet", description=__doc__)
    p.add_argument("--node-name", required=True)
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="node IP: InternalIP, pod IP and where the kubelet API listens",
    )
    p.add_argument(
        "--pod-cidr",
        default="",
        help="loopback block (e.g. 127.244.1.0/24) giving each pod its own IP; empty: pods"
        " share the node's IP",
    )
    p.add_argument("--server", default=os.environ.get("KUBELITE_SERVER", "127.0.0.1:6443"),
                   help="API server host:port in plaintext, when there is no --kubeconfig")
    p.add_argument("--kubeconfig", default="", metavar="PATH",
                   help="kubeconfig with the API server, its CA and this kubelet's"
                        " credentials (wins over --server)")
    p.add_argument("--bootstrap-kubeconfig", default="", metavar="PATH",
                   help="kubeconfig with a bootstrap token: when --kubeconfig has no valid"
                        " client certificate, one is asked for with it and --kubeconfig"
                        " written (and, without --tls-cert-file, a serving certificate)")
    p.add_argument("--cert-dir", default="", metavar="DIR",
                   help="where bootstrapped keys and certificates are kept (default:"
                        " ROOT_DIR/pki)")
    p.add_argument("--bootstrap-wait-timeout", type=duration_flag, default=3600.0,
                   metavar="DURATION",
                   help="how long a bootstrapped certificate may take to be approved and"
                        " signed (1h)")
    p.add_argument("--tls-cert-file", default="", metavar="PATH",
                   help="serving certificate of the kubelet API (with --tls-private-key-file"
                        " and --client-ca-file: TLS, client certificates required, callers"
                        " authorized; none of them: plaintext, every caller served)")
    p.add_argument("--tls-private-key-file", default="", metavar="PATH",
                   help="private key of --tls-cert-file")
    p.add_argument("--client-ca-file", default="", metavar="PATH",
                   help="CA whose client certificates the kubelet API accepts")
    p.add_argument("--authorization-webhook-cache-authorized-ttl", type=duration_flag,
                   default=300.0, metavar="DURATION",
                   help="how long an allow from the API server about a kubelet API caller"
                        " is cached (5m)")
    p.add_argument("--authorization-webhook-cache-unauthorized-ttl", type=duration_flag,
                   default=30.0, metavar="DURATION",
                   help="how long a denial from the API server about a kubelet API caller"
                        " is cached (30s)")
    p.add_argument("--root-dir", default="/var/lib/kubelite/kubelet")
    p.add_argument("--port", type=int, default=10250, help="kubelet API port (0: any)")
    p.add_argument("--cpu", default="", help="capacity cpu (default: this machine's)")
    p.add_argument("--memory", default="", help="capacity memory (default: this machine's)")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--node-labels", default="", help="k=v,k2=v2")
    p.add_argument("--register-with-taints", default="", help="key=value:Effect,...")
    p.add_argument("--node-status-update-frequency", type=float, default=10.0)
    p.add_argument("--node-lease-duration", type=int, default=40)
    p.add_argument("--sync-frequency", type=float, default=10.0)
    p.add_argument("--housekeeping-interval", type=float, default=1.0)
    p.add_argument(
        "--backoff-initial", type=float, default=10.0, help="first crash-loop back-off, seconds"
    )
    p.add_argument("--backoff-max", type=float, default=300.0,
                   help="cap on the crash-loop back-off, seconds")
    p.add_argument("--backoff-reset", type=float, default=600.0,
                   help="a container that ran this long starts again from --backoff-initial")
    p.add_argument(
        "--stop-pods-on-exit",
        action="store_true",
        help="stop every pod on SIGTERM (default: leave them for the next start)",
    )
    p.add_argument(
        "--isolation", default="auto", choices=["auto", "mount-namespace", "user-namespace", "none"]
    )
    p.add_argument("--container-runtime", default="process", choices=["process", "containerd"],
                   help="process: pods as host processes; containerd: pods as containers"
                        " through CRI")
    p.add_argument("--container-runtime-endpoint",
                   default="unix:///run/containerd/containerd.sock",
                   help="the CRI runtime's socket (containerd runtime)")
    p.add_argument("--runtime-request-timeout", type=duration_flag,
                   default=120.0, help="deadline of each CRI call but image pulls (2m)")
    p.add_argument("--image-pull-timeout", type=duration_flag,
                   default=600.0, help="deadline of one image pull (10m)")
    p.add_argument("--pod-max-pids", type=int, default=-1,
                   help="most processes one pod may have (-1: no limit; containerd runtime)")
    p.add_argument("--cgroup-root", default="/kubelite",
                   help="parent cgroup of the pods' cgroups (containerd runtime)")
    p.add_argument("--cni-conf-dir", default="/etc/cni/net.d",
                   help="where the pod network's CNI configuration is written for the runtime")
    p.add_argument("--cni-bridge", default="cni0",
                   help="the node's pod bridge (nodes sharing a host need one each)")
    p.add_argument("--host-gw-routes", action="store_true",
                   help="keep a route to every other node's podCIDR via its InternalIP (nodes"
                        " on one L2 network, containerd runtime)")
    p.add_argument("--route-protocol", type=int, default=211,
                   help="kernel route protocol number marking the routes it owns")
    p.add_argument("--route-resync-interval", type=duration_flag, default=30.0,
                   help="how often its routes are compared with the Nodes in full")
    p.add_argument("--image-gc-high-threshold", type=int, default=85,
                   help="image disk usage percent above which unused images are removed")
    p.add_argument("--image-gc-interval", type=duration_flag, default=300.0,
                   help="how often the image disk's usage is checked")
    p.add_argument("--image-gc-low-threshold", type=int, default=80,
                   help="image disk usage percent that image removal brings it down to")
    p.add_argument("--cluster-dns", default="",
                   help="comma-separated IPs of the cluster DNS: the nameservers of pods with"
                        " dnsPolicy ClusterFirst (empty: those pods get the node's resolver"
                        " configuration)")
    p.add_argument("--cluster-domain", default="cluster.local",
                   help="the cluster's DNS domain, searched by pods after their namespace's")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="the node's resolver configuration, for pods with dnsPolicy Default and"
                        " the search domains of ClusterFirst pods (empty: none)")
    p.add_argument("--health-address", default=None,
                   help="host:port of the gRPC health service (readiness; empty: none;"
                        " default: ADDRESS:10248)")
    p.add_argument("--log-level", default="info")
    a = p.parse_args(argv)
    if a.pod_cidr:
        try:
            if a.container_runtime == "process":
                parse_pod_cidr(a.pod_cidr)
            else:
                ipaddress.ip_network(a.pod_cidr, strict=True)
        except ValueError as e:
            p.error(f"--pod-cidr: {e}")
    if a.pod_max_pids < -1 or a.pod_max_pids == 0:
        p.error(f"--pod-max-pids: invalid value {a.pod_max_pids}: must be -1 (no limit) or"
                " positive")
    if not 0 <= a.image_gc_low_threshold <= a.image_gc_high_threshold <= 100:
        p.error("--image-gc-low-threshold and --image-gc-high-threshold: must satisfy"
                f" 0 <= low ({a.image_gc_low_threshold}) <= high ({a.image_gc_high_threshold})"
                " <= 100")
    if a.container_runtime == "containerd" and not a.container_runtime_endpoint.startswith(
            "unix://"):
        p.error("--container-runtime-endpoint: must be a unix:// socket, e.g."
                " unix:///run/containerd/containerd.sock")
    if len(a.cni_bridge.encode()) > 15 or not a.cni_bridge:
        p.error(f"--cni-bridge: {a.cni_bridge!r} must be 1 to 15 bytes (a Linux interface name)")
    try:
        routes = RouteAgentSettings(enabled=a.host_gw_routes, route_protocol=a.route_protocol,
                                    resync_interval=a.route_resync_interval)
    except ValueError as e:
        p.error(f"--route-protocol/--route-resync-interval: {e}")
    cluster_dns = tuple(ip.strip() for ip in a.cluster_dns.split(",") if ip.strip())
    for address in cluster_dns:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            p.error(f"--cluster-dns: {address!r} is not an IP address")
    cluster_domain = a.cluster_domain.removesuffix(".")
    if cluster_domain and is_dns1123_subdomain(cluster_domain):
        p.error(f"--cluster-domain: {a.cluster_domain!r}: "
                f"{'; '.join(is_dns1123_subdomain(cluster_domain))}")
    health_address = a.health_address
    if health_address is None:
        health_address = join_host_port(a.address, 10248)
    tls_flags = {"--tls-cert-file": a.tls_cert_file,
                 "--tls-private-key-file": a.tls_private_key_file,
                 "--client-ca-file": a.client_ca_file}
    if any(tls_flags.values()) and not all(tls_flags.values()):
        missing = ", ".join(flag for flag, value in tls_flags.items() if not value)
        p.error(f"{missing}: required with {', '.join(f for f, v in tls_flags.items() if v)}"
                " (a TLS kubelet API needs its certificate, its key and its callers' CA)")
    if a.bootstrap_kubeconfig and not a.kubeconfig:
        p.error("--kubeconfig: required with --bootstrap-kubeconfig (where the kubeconfig"
                " with the node's own certificate is written)")
    authorization = AuthorizationSettings(
        allowed_ttl=a.authorization_webhook_cache_authorized_ttl,
        denied_ttl=a.authorization_webhook_cache_unauthorized_ttl)
    settings = KubeletSettings(
        node_name=a.node_name,
        address=a.address,
        pod_cidr=a.pod_cidr,
        server=a.server,
        kubeconfig=a.kubeconfig,
        bootstrap_kubeconfig=a.bootstrap_kubeconfig,
        cert_dir=a.cert_dir or os.path.join(a.root_dir, "pki"),
        bootstrap_wait_timeout=a.bootstrap_wait_timeout,
        root_dir=a.root_dir,
        port=a.port,
        cpu=a.cpu,
        memory=a.memory,
        max_pods=a.max_pods,
        labels=_labels(a.node_labels),
        taints=tuple(t for t in a.register_with_taints.split(",") if t),
        node_status_update_frequency=a.node_status_update_frequency,
        node_lease_duration=a.node_lease_duration,
        sync_frequency=a.sync_frequency,
        housekeeping_interval=a.housekeeping_interval,
        backoff_initial=a.backoff_initial,
        backoff_max=a.backoff_max,
        backoff_reset=a.backoff_reset,
        stop_pods_on_exit=a.stop_pods_on_exit,
        isolation=a.isolation,
        runtime=a.container_runtime,
        container_runtime_endpoint=a.container_runtime_endpoint,
        runtime_request_timeout=a.runtime_request_timeout,
        image_pull_timeout=a.image_pull_timeout,
        cgroup_root=a.cgroup_root,
        pod_pids_limit=a.pod_max_pids,
        cni_conf_dir=a.cni_conf_dir,
        cni_bridge=a.cni_bridge,
        image_gc_high_threshold=a.image_gc_high_threshold,
        image_gc_low_threshold=a.image_gc_low_threshold,
        image_gc_interval=a.image_gc_interval,
        routes=routes,
        cluster_dns=cluster_dns,
        cluster_domain=cluster_domain,
        resolv_conf=a.resolv_conf,
        health_address=health_address,
        tls_cert_file=a.tls_cert_file,
        tls_private_key_file=a.tls_private_key_file,
        client_ca_file=a.client_ca_file,
        authorization=authorization,
    )
    return settings, a.log_level


def main(argv: list[str] | None = None) -> None:
    settings, level = parse_args(argv)
    logs.configure(level, component="kubelet")
    os.makedirs(settings.root_dir, exist_ok=True)

    async def serve() -> None:
        try:
            effective, serving = await bootstrap_kubelet(settings)
            kubelet = Kubelet(effective)
        except (ConfigError, ValueError, BootstrapError) as e:  # one line, no traceback
            raise SystemExit(f"kubelite-kubelet: {e}") from e
        health = maybe_health_server(settings.health_address, "kubelet", kubelet.readiness)

        async def start() -> None:
            if serving is not None:
                serving.start()
            await kubelet.start()

        async def stop() -> None:
            await kubelet.stop()
            if serving is not None:
                await serving.stop()

        await daemon.serve_until_signalled(start, stop, health=health)

    daemon.run(serve())


if __name__ == "__main__":
    main()
