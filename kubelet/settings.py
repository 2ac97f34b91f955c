"""The kubelet's settings: every timer configurable, Kubernetes' defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubelet.routes import RouteAgentSettings
from kubelet.server import AuthorizationSettings, ServingTls


@dataclass(frozen=True)
class KubeletSettings:
    node_name: str
    """Name of this node's Node object."""
    address: str = "127.0.0.1"
    """The node's IP: its InternalIP and where the kubelet API listens; also the pods' IP
    when there is no pod_cidr (pods share the node's network)."""
    pod_cidr: str = ""
    """The node's podCIDR, a block of the loopback range (127.0.0.0/8): each pod gets an
    address of its own from it, so containerPorts of different pods do not collide. Empty:
    pods share the node's IP and containerPorts act as host ports (nodes on separate hosts,
    which cannot reach each other's loopback addresses)."""
    server: str = "127.0.0.1:6443"
    """API server address (plaintext), used when there is no ``kubeconfig``."""
    kubeconfig: str = ""
    """A kubeconfig file: the API server, its CA and this kubelet's credentials (upstream's
    --kubeconfig). Empty: ``server`` in plaintext."""
    bootstrap_kubeconfig: str = ""
    """A kubeconfig with a bootstrap token (--bootstrap-kubeconfig): when ``kubeconfig`` has
    no valid client certificate, the kubelet asks the cluster for one with it and writes
    ``kubeconfig`` (TLS bootstrap, kubelet/tls_bootstrap.py)."""
    cert_dir: str = ""
    """Where bootstrapped keys and certificates live (--cert-dir; empty: root_dir/pki)."""
    bootstrap_wait_timeout: float = 3600.0
    """Seconds a bootstrapped certificate may take to be approved and signed."""
    root_dir: str = "/var/lib/kubelite/kubelet"
    """Pods' directories, containers' state and logs."""
    port: int = 10250
    """Port of the kubelet API (logs, exec); 0 picks a free one."""
    cpu: str = ""
    """Capacity cpu; empty: the machine's count."""
    memory: str = ""
    """Capacity memory; empty: the machine's total."""
    max_pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    """Extra node labels (kubernetes.io/hostname, os and arch are always set)."""
    taints: tuple[str, ...] = ()
    """Taints to register with, as ``key[=value]:Effect``."""
    node_status_update_frequency: float = 10.0
    """Seconds between node status updates."""
    node_lease_duration: int = 40
    """leaseDurationSeconds of the node's Lease; it is renewed every quarter of this."""
    sync_frequency: float = 10.0
    """Seconds between full re-syncs of every pod, besides event-driven ones."""
    housekeeping_interval: float = 1.0
    """Seconds between checks of running containers (exits, restarts due)."""
    backoff_initial: float = 10.0
    """First crash-loop back-off, seconds; it doubles per restart."""
    backoff_max: float = 300.0
    """Cap on the crash-loop back-off, seconds."""
    backoff_reset: float = 600.0
    """A container that ran this long without failing starts again from backoff_initial."""
    stop_pods_on_exit: bool = False
    """On SIGTERM, stop every pod before exiting (local clusters). Otherwise pods keep
    running, as containers do when a real kubelet stops, and the next start adopts them."""
    runtime: str = "process"
    """The container runtime: process (host processes) or containerd (CRI)."""
    container_runtime_endpoint: str = "unix:///run/containerd/containerd.sock"
    """The CRI runtime's socket (containerd runtime)."""
    runtime_request_timeout: float = 120.0
    """Deadline of each CRI call but image pulls, seconds."""
    image_pull_timeout: float = 600.0
    """Deadline of one image pull, seconds."""
    pod_pids_limit: int = -1
    """Most processes one pod's containers may have together (-1: no limit)."""
    cgroup_root: str = "/kubelite"
    """Parent cgroup of the pods' cgroups (containerd runtime)."""
    cni_conf_dir: str = "/etc/cni/net.d"
    """Where the kubelet writes the pod network's CNI configuration for the runtime, once the
    node has a podCIDR (containerd runtime)."""
    cni_bridge: str = "cni0"
    """The node's pod bridge; nodes sharing a host need one each."""
    image_gc_high_threshold: int = 85
    """Image disk usage (percent) above which unused images are removed."""
    image_gc_low_threshold: int = 80
    """Image disk usage (percent) the removal brings it down to."""
    image_gc_interval: float = 300.0
    """Seconds between checks of the image disk's usage."""
    routes: RouteAgentSettings = field(default_factory=RouteAgentSettings)
    """Routes to the other nodes' podCIDRs via their InternalIPs (host-gw)."""
    isolation: str = "auto"
    """Process runtime isolation: auto, mount-namespace, user-namespace or none."""
    default_grace_seconds: int = 30
    """Grace period when a pod names none."""
    cluster_dns: tuple[str, ...] = ()
    """IPs of the cluster DNS Service (--cluster-dns): the nameservers of pods with dnsPolicy
    ClusterFirst. Empty: those pods get the node's resolver configuration (Default)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain: pods search ``<namespace>.svc.<domain> svc.<domain>
    <domain>`` and pods with a subdomain are named ``<hostname>.<subdomain>.<namespace>.svc.
    <domain>``."""
    resolv_conf: str = "/etc/resolv.conf"
    """The node's resolver configuration: pods with dnsPolicy Default get it, ClusterFirst pods
    its search domains. Empty: none (pods of the Default policy resolve through the node's
    loopback address)."""
    health_address: str = ""
    """host:port of the gRPC health service the process serves (empty: none)."""
    tls_cert_file: str = ""
    """The kubelet API's serving certificate (PEM). With ``tls_private_key_file`` and
    ``client_ca_file`` the API speaks TLS, requires client certificates and authorizes its
    callers; all empty: plaintext, open to every caller (insecure mode)."""
    tls_private_key_file: str = ""
    """The serving certificate's private key (PEM)."""
    client_ca_file: str = ""
    """CA(s) whose client certificates the kubelet API accepts (PEM)."""
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)
    """How long the API server's answers about the kubelet API's callers are cached."""

    def __post_init__(self) -> None:
        tls = (self.tls_cert_file, self.tls_private_key_file, self.client_ca_file)
        if any(tls) and not all(tls):
            raise ValueError("tls_cert_file, tls_private_key_file and client_ca_file go"
                             " together: a TLS kubelet API needs its certificate, its key and"
                             " the CA of its callers' certificates")

    @property
    def serving_tls(self) -> ServingTls | None:
        """The kubelet API's TLS; None: plaintext."""
        if not self.tls_cert_file:
            return None
        return ServingTls(self.tls_cert_file, self.tls_private_key_file, self.client_ca_file)
