"""Every component's command line: the one place that knows each daemon's console script, the
flags it takes and where its gRPC health service answers by default.

A component is a frozen dataclass of the values it runs with (API server address, ports, node
name and address, timers, ...); ``argv()`` is the command that starts it and ``health`` the
host:port of its health service. `kubelite up`, the test harnesses and the etcd helper build
their commands here; the test suite parses every command built here with the daemon's own
parser and checks that deploy/docker-compose.yml and deploy/node-entrypoint.sh run what these
specs produce.

Specs take keywords only. A field's flag is its name with dashes (``node_name`` is
``--node-name``) unless its metadata names another; a ``None`` field is not passed, so the
daemon's default (Kubernetes') applies; a ``True`` boolean is passed alone, ``False`` not at
all; a nested dataclass (timers, leader election) passes its own fields the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

from kubelite.health import join_host_port

LOCALHOST = "127.0.0.1"


def installed_script(name: str) -> Path:
    """Where console script ``name`` is installed: beside this interpreter (the venv's bin)."""
    return Path(sys.executable).with_name(name)


def local_url(url: str) -> str:
    """``url`` as this host reaches it: a listen-on-any address (0.0.0.0) is 127.0.0.1."""
    return url.replace("//0.0.0.0:", f"//{LOCALHOST}:")


def local_address(address: str) -> str:
    """``host:port`` as this host reaches it: 0.0.0.0 (or no host) is 127.0.0.1."""
    host, _, port = address.rpartition(":")
    return f"{LOCALHOST}:{port}" if host in ("", "0.0.0.0") else address


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def flags_of(spec: Any) -> list[str]:
    """A dataclass's fields as command-line flags (see the module docstring)."""
    args: list[str] = []
    for f in fields(spec):
        value = getattr(spec, f.name)
        if value is None or value is False:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if value is True:
            args.append(flag)
        elif is_dataclass(value):
            args += flags_of(value)
        else:
            args += [flag, _text(value)]
    return args


class Spec:
    """What every component spec has: its names and its command line."""

    component: ClassVar[str]
    """The component's name (the process and log name of the control-plane ones)."""
    script: ClassVar[str]
    """Its console script (or binary)."""
    module: ClassVar[str | None]
    """The package whose ``__main__.parse_args`` reads its flags (None: not ours)."""

    def flags(self) -> list[str]:
        return flags_of(self)

    def argv(self, program: str | None = None) -> list[str]:
        """The command: ``program`` (default: the console script's name) and the flags."""
        return [self.script if program is None else program, *self.flags()]


class Daemon(Spec):
    """One of kubelite's own components: each serves the gRPC health service."""

    @property
    def health(self) -> str:
        """host:port of its gRPC health service ("": it serves none)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class LeaderElection:
    """Leader election of the scheduler and the controller manager (None: the default)."""

    lease_duration: float | None = field(
        default=None, metadata={"flag": "--leader-elect-lease-duration"})
    """Seconds the Lease is held (Kubernetes: 15)."""
    renew_deadline: float | None = field(
        default=None, metadata={"flag": "--leader-elect-renew-deadline"})
    """A leader that could not renew for this long steps down, seconds (Kubernetes: 10)."""
    retry_period: float | None = field(
        default=None, metadata={"flag": "--leader-elect-retry-period"})
    """Seconds between tries to acquire or renew the Lease (Kubernetes: 2)."""


@dataclass(frozen=True, kw_only=True)
class EtcdTls:
    """etcd's TLS for clients and peers (kubeadm: both, with client certificates required).

    Fields are etcd's flags of the same name; a None field is not passed."""

    cert_file: str | None = None
    """Serving certificate for clients (--cert-file)."""
    key_file: str | None = None
    """Its private key (--key-file)."""
    trusted_ca_file: str | None = None
    """CA that client certificates must chain to (--trusted-ca-file)."""
    client_cert_auth: bool = False
    """Refuse clients without a certificate from ``trusted_ca_file`` (--client-cert-auth)."""
    peer_cert_file: str | None = None
    """Certificate for peer connections, served and shown (--peer-cert-file)."""
    peer_key_file: str | None = None
    """Its private key (--peer-key-file)."""
    peer_trusted_ca_file: str | None = None
    """CA that peer certificates must chain to (--peer-trusted-ca-file)."""
    peer_client_cert_auth: bool = False
    """Refuse peers without a certificate from ``peer_trusted_ca_file``
    (--peer-client-cert-auth)."""

    def __post_init__(self) -> None:
        for what, cert, key, ca, auth in (
            ("", self.cert_file, self.key_file, self.trusted_ca_file, self.client_cert_auth),
            ("peer_", self.peer_cert_file, self.peer_key_file, self.peer_trusted_ca_file,
             self.peer_client_cert_auth),
        ):
            if (cert is None) != (key is None):
                raise ValueError(f"{what}cert_file and {what}key_file go together")
            if auth and (ca is None or cert is None):
                raise ValueError(f"{what}client_cert_auth needs {what}trusted_ca_file and"
                                 f" {what}cert_file")

    @property
    def clients(self) -> bool:
        """Whether clients are served over TLS (https client URLs)."""
        return self.cert_file is not None

    @property
    def peers(self) -> bool:
        """Whether peers talk TLS (https peer URLs)."""
        return self.peer_cert_file is not None


@dataclass(frozen=True, kw_only=True)
class Etcd(Spec):
    """A one-member etcd."""

    component: ClassVar[str] = "etcd"
    script: ClassVar[str] = "etcd"
    module: ClassVar[str | None] = None
    CLIENT_PORT: ClassVar[int] = 2379
    PEER_PORT: ClassVar[int] = 2380

    data_dir: str
    """Its data directory."""
    client_urls: tuple[str, ...]
    """URLs it serves clients on (--listen-client-urls)."""
    advertise_client_urls: tuple[str, ...] | None = None
    """URLs it tells clients (None: client_urls)."""
    peer_url: str | None = None
    """Its peer URL, listened on and advertised as the one member of the initial cluster
    (None: etcd's default)."""
    name: str = "kubelite"
    """The member's name."""
    log_level: str | None = "warn"
    logger: str | None = "zap"
    heartbeat_interval: int | None = None
    """Milliseconds between leader heartbeats (etcd: 100)."""
    election_timeout: int | None = None
    """Milliseconds without a heartbeat before an election (etcd: 1000)."""
    tls: EtcdTls | None = None
    """Client and peer TLS (None: plaintext; the URLs' schemes must agree)."""

    def __post_init__(self) -> None:
        tls = self.tls or EtcdTls()
        for url in (*self.client_urls, *(self.advertise_client_urls or ())):
            if url.startswith("https://") != tls.clients:
                raise ValueError(f"client URL {url}: https exactly when tls.cert_file is set")
        if self.peer_url is not None and self.peer_url.startswith("https://") != tls.peers:
            raise ValueError(
                f"peer URL {self.peer_url}: https exactly when tls.peer_cert_file is set")

    def flags(self) -> list[str]:
        advertise = self.advertise_client_urls or self.client_urls
        args = ["--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", _text(self.client_urls),
                "--advertise-client-urls", _text(advertise)]
        if self.peer_url is not None:
            args += ["--listen-peer-urls", self.peer_url,
                     "--initial-advertise-peer-urls", self.peer_url,
                     "--initial-cluster", f"{self.name}={self.peer_url}"]
        for flag, value in (("--log-level", self.log_level), ("--logger", self.logger),
                            ("--heartbeat-interval", self.heartbeat_interval),
                            ("--election-timeout", self.election_timeout)):
            if value is not None:
                args += [flag, str(value)]
        if self.tls is not None:
            args += flags_of(self.tls)
        return args

    @property
    def health_url(self) -> str:
        """Its /health on the first client URL (an any-address one reached on localhost)."""
        return local_url(self.client_urls[0]) + "/health"


@dataclass(frozen=True, kw_only=True)
class ApiServerSecurity:
    """A secured API server's files (upstream's flags of the same names): its serving
    certificate, the CA of client certificates, the ServiceAccount keys, the kubelet client
    certificate, etcd's client certificate and the encryption configuration."""

    tls_cert_file: str
    tls_private_key_file: str
    client_ca_file: str
    service_account_key_file: str
    """Public key that verifies ServiceAccount tokens."""
    service_account_signing_key_file: str
    """Private key that signs them (TokenRequest)."""
    kubelet_client_certificate: str
    kubelet_client_key: str
    kubelet_certificate_authority: str | None = None
    """CA of the kubelets' serving certificates (None: not verified, as upstream's default)."""
    etcd_cafile: str | None = None
    etcd_certfile: str | None = None
    etcd_keyfile: str | None = None
    encryption_provider_config: str | None = None
    enable_bootstrap_token_auth: bool = True
    """Accept bootstrap tokens (nodes joining)."""

    def flags(self) -> list[str]:
        return flags_of(self)


@dataclass(frozen=True, kw_only=True)
class ApiServer(Daemon):
    component: ClassVar[str] = "apiserver"
    script: ClassVar[str] = "kubelite-apiserver"
    module: ClassVar[str | None] = "apiserver"
    PORT: ClassVar[int] = 6443
    HTTP_PORT: ClassVar[int] = 6444
    """The Kubernetes-compatible HTTP API's port (kubectl's), beside the gRPC one."""

    listen: str = f"{LOCALHOST}:{PORT}"
    """host:port it serves the API (and its gRPC health) on."""
    http_listen: str | None = None
    """host:port it serves the Kubernetes-compatible HTTP/JSON API on, for kubectl and the
    official clients (None: none)."""
    etcd_servers: str
    """Comma-separated etcd host:port list."""
    etcd_prefix: str | None = None
    """Key prefix in etcd (default /registry)."""
    service_cluster_ip_range: str | None = None
    """CIDR of Service ClusterIPs."""
    watch_progress_interval: float | None = None
    """Seconds between bookmarks on quiet watches."""
    security: ApiServerSecurity | None = None
    """TLS, authentication, authorization and encryption (None: --insecure, for learning)."""

    def flags(self) -> list[str]:
        # No security: the explicit --insecure (a daemon without it refuses to start bare).
        return flags_of(self) + (["--insecure"] if self.security is None else [])

    @property
    def health(self) -> str:
        """The API's own address (as this host reaches it): it serves gRPC health too."""
        return local_address(self.listen)


@dataclass(frozen=True, kw_only=True)
class LeaderElected(Daemon):
    """A control-plane daemon on the control-plane host that works while it leads."""

    HEALTH_PORT: ClassVar[int]

    server: str
    """The API server's host:port."""
    kubeconfig: str | None = None
    """Its client config: the API server's CA and its own credentials (None: plaintext)."""
    health_address: str | None = None
    """host:port of its gRPC health service ("": none; None: 127.0.0.1:HEALTH_PORT)."""
    identity: str | None = None
    """Its holder identity in the leader-election Lease (None: hostname and a random
    suffix)."""
    leader_election: LeaderElection | None = None

    @property
    def health(self) -> str:
        return _health(self.health_address, LOCALHOST, self.HEALTH_PORT)


def _health(explicit: str | None, host: str, port: int) -> str:
    return explicit if explicit is not None else join_host_port(host, port)


@dataclass(frozen=True, kw_only=True)
class SchedulerTimers:
    pod_initial_backoff: float | None = None
    """First retry delay of an unschedulable pod, seconds (Kubernetes: 1)."""
    pod_max_backoff: float | None = None
    """Cap on that delay, seconds (Kubernetes: 10)."""


@dataclass(frozen=True, kw_only=True)
class Scheduler(LeaderElected):
    component: ClassVar[str] = "scheduler"
    script: ClassVar[str] = "kubelite-scheduler"
    module: ClassVar[str | None] = "scheduler"
    HEALTH_PORT: ClassVar[int] = 10259
    """kube-scheduler's healthz port."""

    timers: SchedulerTimers | None = None


@dataclass(frozen=True, kw_only=True)
class ControllerManagerTimers:
    node_monitor_period: float | None = None
    """Seconds between node health checks (Kubernetes: 5)."""
    node_monitor_grace_period: float | None = None
    """A node unheard of for this long is Ready=Unknown, seconds (Kubernetes: 40)."""
    cronjob_check_period: float | None = None
    """Seconds between CronJob schedule checks (Kubernetes: 10)."""
    cron_time_scale: float | None = None
    """How many times faster than the wall clock cron schedules run (tests; default 1)."""


@dataclass(frozen=True, kw_only=True)
class ControllerManager(LeaderElected):
    component: ClassVar[str] = "controller-manager"
    script: ClassVar[str] = "kubelite-controller-manager"
    module: ClassVar[str | None] = "controller_manager"
    HEALTH_PORT: ClassVar[int] = 10257
    """kube-controller-manager's healthz port."""

    timers: ControllerManagerTimers | None = None
    allocate_node_cidrs: bool = False
    """Give every Node a podCIDR from cluster_cidr (node IPAM)."""
    cluster_cidr: str | None = None
    """The pods' network the nodes' podCIDRs are cut from."""
    node_cidr_mask_size: int | None = None
    """Prefix length of each node's podCIDR (None: 24)."""
    cluster_signing_cert_file: str | None = None
    """CA certificate that signs approved CertificateSigningRequests (nodes joining)."""
    cluster_signing_key_file: str | None = None
    root_ca_file: str | None = None
    """CA certificate published to every namespace as the kube-root-ca.crt ConfigMap."""


@dataclass(frozen=True, kw_only=True)
class KubeletTimers:
    node_status_update_frequency: float | None = None
    """Seconds between node status updates (Kubernetes: 10)."""
    node_lease_duration: int | None = None
    """Its node Lease's duration, renewed every quarter of it, seconds (Kubernetes: 40)."""
    sync_frequency: float | None = None
    """Seconds between full pod syncs (default 10)."""
    housekeeping_interval: float | None = None
    """Seconds between housekeeping passes: container exits, probes (default 1)."""
    backoff_initial: float | None = None
    """First crash-loop back-off, seconds (Kubernetes: 10)."""
    backoff_max: float | None = None
    """Cap on the crash-loop back-off, seconds (Kubernetes: 300)."""


@dataclass(frozen=True, kw_only=True)
class Kubelet(Daemon):
    """A node's kubelet; the node's name is its process name's suffix (kubelet-NAME)."""

    component: ClassVar[str] = "kubelet"
    script: ClassVar[str] = "kubelite-kubelet"
    module: ClassVar[str | None] = "kubelet"
    PORT: ClassVar[int] = 10250
    """The kubelet API's port."""
    HEALTH_PORT: ClassVar[int] = 10248
    """The kubelet's healthz port."""

    node_name: str
    address: str
    """The node's IP: its InternalIP, its pods' IP (without a pod_cidr) and where the kubelet
    API listens."""
    server: str
    """The API server's host:port."""
    kubeconfig: str | None = None
    """Its client config: the API server's CA and the node's credentials (None: plaintext)."""
    tls_cert_file: str | None = None
    """The kubelet API's serving certificate (None: the kubelet API is plaintext)."""
    tls_private_key_file: str | None = None
    client_ca_file: str | None = None
    """CA of the client certificates the kubelet API requires."""
    root_dir: str | None = None
    """Where its pods' files live (default /var/lib/kubelite/kubelet)."""
    port: int | None = None
    """Kubelet API port (0: any; None: PORT)."""
    cpu: str | None = None
    """Capacity cpu it reports (None: this machine's)."""
    memory: str | None = None
    """Capacity memory it reports (None: this machine's)."""
    labels: Mapping[str, str] | None = field(default=None, metadata={"flag": "--node-labels"})
    """The Node's labels."""
    taints: tuple[str, ...] | None = field(
        default=None, metadata={"flag": "--register-with-taints"})
    """The Node's taints, each key=value:Effect."""
    pod_cidr: str | None = None
    """Loopback block giving each pod its own IP (None: pods use the node's)."""
    health_address: str | None = None
    """host:port of its gRPC health service ("": none; None: ADDRESS:HEALTH_PORT)."""
    timers: KubeletTimers | None = None
    stop_pods_on_exit: bool = False
    """Stop every pod on SIGTERM (False: leave them for the next start)."""
    container_runtime: str | None = None
    """process or containerd (None: process)."""
    container_runtime_endpoint: str | None = None
    """The CRI runtime's socket, unix:///... (containerd runtime)."""
    cgroup_root: str | None = None
    """Parent cgroup of its pods' cgroups (containerd runtime)."""
    cni_conf_dir: str | None = None
    """Where it writes the pod network's CNI configuration (containerd's CNI conf dir)."""
    cni_bridge: str | None = None
    """Its pod bridge (nodes sharing a host need one each)."""
    host_gw_routes: bool = False
    """Keep routes to the other nodes' podCIDRs via their InternalIPs (nodes on one L2
    network, containerd runtime)."""
    cluster_dns: tuple[str, ...] | None = None
    """The cluster DNS Service's IPs, its pods' nameservers (None: the node's resolver)."""
    cluster_domain: str | None = None
    """The cluster's DNS domain (None: cluster.local)."""

    @property
    def health(self) -> str:
        return _health(self.health_address, self.address, self.HEALTH_PORT)


@dataclass(frozen=True, kw_only=True)
class Proxy(Daemon):
    """A node's proxy (one per node; its process name is proxy-NAME)."""

    component: ClassVar[str] = "proxy"
    script: ClassVar[str] = "kubelite-proxy"
    module: ClassVar[str | None] = "proxy"
    HEALTH_PORT: ClassVar[int] = 10256
    """kube-proxy's healthz port."""

    node_name: str
    node_ip: str
    """The node's IP: where NodePort listeners bind."""
    server: str
    """The API server's host:port."""
    kubeconfig: str | None = None
    """Its client config: the API server's CA and its own credentials (None: plaintext)."""
    health_address: str | None = None
    """host:port of its gRPC health service ("": none; None: NODE_IP:HEALTH_PORT)."""
    cluster_ip_interface: str | None = None
    """A dummy interface it puts ClusterIPs on, so pods reach them (None: they are loopback
    addresses)."""
    service_cluster_ip_range: str | None = None
    """The ClusterIP range whose addresses it manages on cluster_ip_interface."""

    @property
    def health(self) -> str:
        return _health(self.health_address, self.node_ip, self.HEALTH_PORT)


@dataclass(frozen=True, kw_only=True)
class ClusterDns(Daemon):
    """The cluster's DNS server (its process name is dns, or dns-N for several)."""

    component: ClassVar[str] = "dns"
    script: ClassVar[str] = "kubelite-dns"
    module: ClassVar[str | None] = "clusterdns"
    PORT: ClassVar[int] = 53
    HEALTH_PORT: ClassVar[int] = 8181
    """CoreDNS' readiness port."""

    server: str
    """The API server's host:port."""
    kubeconfig: str | None = None
    """Its client config (None: plaintext, or the pod's ServiceAccount in a cluster)."""
    listen_address: str | None = None
    """Address it serves DNS on, UDP and TCP (None: every address)."""
    port: int | None = None
    """Port it serves DNS on (None: PORT)."""
    cluster_domain: str | None = None
    """The zone of Services and pods (None: cluster.local)."""
    upstream: tuple[str, ...] | None = None
    """Resolvers of other names, IP[:PORT] each (None: resolv_conf's nameservers)."""
    resolv_conf: str | None = None
    """Where the upstreams are read from when none are given (None: /etc/resolv.conf)."""
    ttl: int | None = None
    """TTL of the cluster domain's records, seconds (None: 5, as CoreDNS)."""
    upstream_timeout: float | None = None
    """Seconds an upstream has to answer before the next is asked (None: 2)."""
    health_address: str | None = None
    """host:port of its gRPC health service ("": none; None: LISTEN_ADDRESS:HEALTH_PORT)."""

    @property
    def health(self) -> str:
        if self.health_address is not None:
            return self.health_address
        return local_address(join_host_port(self.listen_address or "", self.HEALTH_PORT))


DAEMONS: tuple[type[Daemon], ...] = (ApiServer, Scheduler, ControllerManager, Kubelet, Proxy,
                                     ClusterDns)
"""Our own components (etcd aside)."""
