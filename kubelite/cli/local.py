"""`kubelite`: run a whole cluster on this machine as separate processes.

    kubelite up [--nodes N] [--data-dir D] ...  start everything; Ctrl-C (or `kubelite down`)
                                                stops it (`kubelite up --help`: every option)
    kubelite status [--data-dir D]              each component's process and health
    kubelite down [--data-dir D]                stop a cluster started by `kubelite up`
    kubelite init [--data-dir D] ...            the cluster's certificates and client configs
    kubelite join SERVER --token ID.SECRET ...  join this machine to a cluster as a node
    kubelite token create [--data-dir D] ...    the join token's Secret, for nodes to join

Components: etcd, the API server (``--apiservers N``: N of them, every client calling them
round robin), the scheduler, the controller manager, and per node a kubelet and a proxy on its
own loopback address (127.0.0.2, 127.0.0.3, ...). Every
component's log is ``<data-dir>/logs/<component>.log``; etcd keeps its data in
``<data-dir>/etcd``, so `up` again on the same data dir keeps the cluster's objects. The data
dir (~/.kubelite unless given) is how `status` and `down` find the cluster.

Several clusters can run on one machine side by side when each has its own data dir, its own
ports, its own node addresses and its own ClusterIP range (--service-cluster-ip-range: one
proxy per machine owns each ClusterIP).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

from kubelite.api.errors import ApiError
from kubelite.cli import init as init_command
from kubelite.cli import join as join_command
from kubelite.cli import token as token_command
from kubelite.cli.addons import dns_cluster_ip, install_dns
from kubelite.cli.local_containerd import (
    ContainerdNode,
    RegistryComponent,
    missing_for_containerd,
)
from kubelite.client.config import ClientConfig, load_kubeconfig
from kubelite.cluster_security import apiserver_security, etcd_tls
from kubelite.components import (
    ApiServer,
    ControllerManager,
    Etcd,
    Kubelet,
    Proxy,
    Scheduler,
    installed_script,
)
from kubelite.etcd_process import find_etcd
from kubelite.health import join_host_port
from kubelite.pki import ClusterPki, init_cluster
from kubelite.processes import (
    INTERRUPTED_EXIT_CODE,
    ManagedProcess,
    ignore_interrupts,
    interrupt_on_sigterm,
    supervise_until_signalled,
)

STATE_FILE = "cluster.json"
CONTROL_PLANE_ADDRESS = "127.0.0.1"
"""Where etcd, the API server, the scheduler and the controller manager listen."""
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
LOOPBACK_SERVICE_RANGE = "127.96.0.0/16"
"""ClusterIPs of the process runtime: loopback, bound by proxies without root."""
POD_SERVICE_RANGE = "10.96.0.0/16"
"""ClusterIPs of the containerd runtime (Kubernetes' default block): proxies put them on a
dummy interface, which pods reach through their gateway."""
CLUSTER_IP_INTERFACE = "kube-ipvs0"


def default_data_dir() -> Path:
    return Path.home() / ".kubelite"


@dataclass(frozen=True)
class LocalClusterSettings:
    """A local cluster; ``__post_init__`` checks every field (ValueError naming its option)."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Where etcd's data, the nodes' pods, the logs and the cluster's state file live (made
    absolute: `status` and `down` find the cluster through it)."""
    nodes: int = 3
    """Nodes to start, each a kubelet + proxy on its own address from node_address_base."""
    node_address_base: str = "127.0.0.2"
    """The first node's address; node i gets this address + i - 1 (a loopback address: every
    one of 127.0.0.0/8 is this machine's without configuration)."""
    service_cluster_ip_range: str = LOOPBACK_SERVICE_RANGE
    """The API server's range for ClusterIPs (loopback, so proxies bind them without root;
    10.96.0.0/16 with the containerd runtime)."""
    etcd_port: int = 2479
    """etcd client port on 127.0.0.1 (not 2379, so a system etcd can run beside it)."""
    etcd_peer_port: int = 2480
    """etcd peer port on 127.0.0.1 (not 2380, so a system etcd can run beside it)."""
    api_port: int = ApiServer.PORT
    """API server port on 127.0.0.1 (the first API server's, with several)."""
    http_api_port: int = ApiServer.HTTP_PORT
    """The API server's Kubernetes-compatible HTTP API port on 127.0.0.1 (kubectl's server in
    ``<data-dir>/kubectl.conf``; the first API server's, with several)."""
    apiservers: int = 1
    """API server processes over the one etcd, each with its own watch cache: API server N
    serves gRPC on api_port + 2(N-1) and its HTTP API on http_api_port + 2(N-1) (6443/6444,
    6445/6446, ... by default). Every component and klctl gets all of them and spreads its
    calls round robin over those that are up."""
    kubelet_port: int = Kubelet.PORT
    """Kubelet API port on each node's address."""
    scheduler_health_port: int = Scheduler.HEALTH_PORT
    """Scheduler's gRPC health port on 127.0.0.1 (kube-scheduler's healthz port)."""
    controller_manager_health_port: int = ControllerManager.HEALTH_PORT
    """Controller manager's gRPC health port on 127.0.0.1 (kube-controller-manager's)."""
    kubelet_health_port: int = Kubelet.HEALTH_PORT
    """Kubelet's gRPC health port on each node's address (the kubelet's healthz port)."""
    proxy_health_port: int = Proxy.HEALTH_PORT
    """Proxy's gRPC health port on each node's address (kube-proxy's healthz port)."""
    ready_timeout: float = 60.0
    """Seconds each component gets to become healthy."""
    pod_network: str = "127.244.0.0/16"
    """Loopback block the nodes' podCIDRs are cut from: node N gets its N-th /24
    (127.244.1.0/24, ...) and each of its pods an address of its own there, so pods on one
    node can listen on the same containerPort. Empty: pods share their node's address.
    Process runtime only."""
    runtime: str = "process"
    """process: pods are host processes (no root, no engine); containerd: pods are containers
    of a containerd per node, with their own network namespace and IP (root)."""
    cluster_cidr: str = "10.244.0.0/16"
    """The pods' network with the containerd runtime: node IPAM gives each node a /24 of it,
    and each node's bridge gives its pods addresses from that."""
    local_registry: bool = False
    """containerd runtime: serve the project's images (busybox, and its test server as
    nginx) from a registry on 127.0.0.1 and pull docker.io's images from it."""
    registry_port: int = 5000
    """The local registry's port on 127.0.0.1."""
    insecure: bool = False
    """No TLS, authentication, authorization, admission or encryption at rest (for learning
    only: every process on this machine may then do anything to the cluster). By default the
    cluster is secured as kubeadm sets one up (`kubelite init` in the data dir first)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.runtime not in ("process", "containerd"):
            raise SettingError("runtime", self.runtime, "must be process or containerd")
        if self.runtime == "containerd":
            if self.service_cluster_ip_range == LOOPBACK_SERVICE_RANGE:
                # Pods in their own network namespaces reach ClusterIPs through their
                # gateway: not on loopback.
                object.__setattr__(self, "service_cluster_ip_range", POD_SERVICE_RANGE)
            object.__setattr__(self, "pod_network", "")
            self._check_cluster_cidr()
        elif self.local_registry:
            raise SettingError("local_registry", True, "needs --runtime containerd (the"
                               " process runtime has no image store)")
        if self.nodes < 1:
            raise SettingError("nodes", self.nodes, "must be at least 1")
        if not self.ready_timeout > 0:
            raise SettingError("ready_timeout", self.ready_timeout, "must be more than 0")
        if self.apiservers < 1:
            raise SettingError("apiservers", self.apiservers, "must be at least 1")
        seen: dict[int, str] = {}
        for name in PORT_FIELDS:
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise SettingError(name, port, "must be a port from 1 to 65535")
            if port in seen:
                raise SettingError(name, port, f"{option(seen[port])} uses it; every port must"
                                   " differ")
            seen[port] = name
        for n, (port, http_port) in enumerate(self.apiserver_ports()[1:], start=2):
            for what, value in (("gRPC", port), ("HTTP API", http_port)):
                if not 1 <= value <= 65535:
                    raise SettingError("apiservers", self.apiservers, f"API server {n}'s"
                                       f" {what} port {value} is not a port (1-65535)")
                if value in seen:
                    raise SettingError("apiservers", self.apiservers, f"API server {n}'s"
                                       f" {what} port {value} is {option(seen[value])}'s too;"
                                       " give the API servers other ports")
                seen[value] = "apiservers"
        self._check_node_addresses()
        self._check_service_range()
        self.node_pod_cidrs()

    def _check_node_addresses(self) -> None:
        base = self.node_address_base
        try:
            first = ipaddress.IPv4Address(base)
        except ValueError:
            first = None
        if first is None or first not in LOOPBACK:
            raise SettingError("node_address_base", base, "must be an IPv4 loopback address"
                               " (127.0.0.0/8), such as 127.0.0.2")
        last = int(first) + self.nodes - 1
        if last >= int(LOOPBACK.broadcast_address) or first == LOOPBACK.network_address:
            raise SettingError("node_address_base", base, f"the {self.nodes} node addresses from"
                               " there must lie within 127.0.0.1-127.255.255.254")
        if int(first) <= int(ipaddress.IPv4Address(CONTROL_PLANE_ADDRESS)) <= last:
            raise SettingError("node_address_base", base, "the node addresses must not include"
                               f" {CONTROL_PLANE_ADDRESS} (the control plane's)")

    def _check_cluster_cidr(self) -> None:
        text = self.cluster_cidr
        try:
            network = ipaddress.IPv4Network(text)
        except ValueError:
            raise SettingError("cluster_cidr", text, "must be a CIDR such as"
                               " 10.244.0.0/16") from None
        if network.prefixlen > 24 - max(1, self.nodes - 1).bit_length():
            raise SettingError("cluster_cidr", text, f"has no room for {self.nodes} nodes'"
                               " /24 blocks")
        if network.subnet_of(LOOPBACK) or network.overlaps(
                ipaddress.IPv4Network(self.service_cluster_ip_range, strict=False)):
            raise SettingError("cluster_cidr", text, "must not be loopback nor overlap the"
                               " service ClusterIP range")

    def _check_service_range(self) -> None:
        text = self.service_cluster_ip_range
        try:
            network = ipaddress.IPv4Network(text)
        except ValueError:
            raise SettingError("service_cluster_ip_range", text, "must be a CIDR such as"
                               " 127.96.0.0/16") from None
        if self.runtime == "containerd":
            if network.subnet_of(LOOPBACK):
                raise SettingError("service_cluster_ip_range", text, "must not be loopback"
                                   " with the containerd runtime (pods reach ClusterIPs"
                                   f" through their gateway), e.g. {POD_SERVICE_RANGE}")
            return
        if not network.subnet_of(LOOPBACK):
            raise SettingError("service_cluster_ip_range", text, "must be inside 127.0.0.0/8"
                               " (proxies bind ClusterIPs on loopback)")
        addresses = [ipaddress.IPv4Address(a) for a in self.node_addresses()]
        if any(a in network for a in addresses):
            raise SettingError("service_cluster_ip_range", text, "overlaps the node addresses"
                               f" {addresses[0]}-{addresses[-1]}")
        if ipaddress.IPv4Address(CONTROL_PLANE_ADDRESS) in network:
            raise SettingError("service_cluster_ip_range", text, "must not include"
                               f" {CONTROL_PLANE_ADDRESS} (the control plane's)")

    def node_pod_cidrs(self) -> list[str]:
        """Each node's podCIDR, node-1 first ("" each without a pod_network)."""
        text = self.pod_network
        if not text:
            return [""] * self.nodes
        try:
            network = ipaddress.IPv4Network(text)
        except ValueError:
            raise SettingError("pod_network", text,
                               "must be a CIDR such as 127.244.0.0/16") from None
        if not network.subnet_of(LOOPBACK) or network.prefixlen > 24:
            raise SettingError("pod_network", text, "must be a block of 127.0.0.0/8 of /24 or"
                               " more (pods bind their loopback addresses)")
        blocks = [str(b) for _, b in zip(range(self.nodes + 1), network.subnets(new_prefix=24),
                                         strict=False)][1:]
        if len(blocks) < self.nodes:
            raise SettingError("pod_network", text, f"has no room for {self.nodes} nodes' /24"
                               " blocks (node N gets the N-th)")
        taken = [ipaddress.IPv4Address(a) for a in
                 (*self.node_addresses(), CONTROL_PLANE_ADDRESS)]
        if any(a in network for a in taken) or network.overlaps(
                ipaddress.IPv4Network(self.service_cluster_ip_range)):
            raise SettingError("pod_network", text, "overlaps the node addresses, the control"
                               " plane's or the service ClusterIP range")
        return blocks

    def node_addresses(self) -> list[str]:
        """Each node's address, node-1 first."""
        first = int(ipaddress.IPv4Address(self.node_address_base))
        return [str(ipaddress.IPv4Address(first + i)) for i in range(self.nodes)]

    def apiserver_ports(self) -> list[tuple[int, int]]:
        """(gRPC port, HTTP API port) of each API server, the first one's first."""
        return [(self.api_port + 2 * i, self.http_api_port + 2 * i)
                for i in range(self.apiservers)]

    def api_servers(self) -> str:
        """Every API server's gRPC address, comma-separated (what clients are given)."""
        return ",".join(f"{CONTROL_PLANE_ADDRESS}:{port}" for port, _ in self.apiserver_ports())

    def bound_ports(self) -> list[tuple[str, int, str]]:
        """(address, port, field) of every port the cluster listens on."""
        result = [(CONTROL_PLANE_ADDRESS, getattr(self, name), name)
                  for name in PORT_FIELDS if name not in NODE_PORT_FIELDS]
        for port, http_port in self.apiserver_ports()[1:]:
            result += [(CONTROL_PLANE_ADDRESS, port, "apiservers"),
                       (CONTROL_PLANE_ADDRESS, http_port, "apiservers")]
        if self.local_registry:
            result.append((CONTROL_PLANE_ADDRESS, self.registry_port, "registry_port"))
        for address in self.node_addresses():
            result.extend((address, getattr(self, name), name) for name in NODE_PORT_FIELDS)
        return result


NODE_PORT_FIELDS = ("kubelet_port", "kubelet_health_port", "proxy_health_port")
"""Ports every node listens on at its own address."""
PORT_FIELDS = ("api_port", "http_api_port", "etcd_port", "etcd_peer_port", "scheduler_health_port",
               "controller_manager_health_port", *NODE_PORT_FIELDS)


def option(name: str) -> str:
    """The command-line option of a LocalClusterSettings field."""
    return "--" + name.replace("_", "-")


class SettingError(ValueError):
    """A LocalClusterSettings value breaks a rule; the message names its option."""

    def __init__(self, name: str, value: object, rule: str) -> None:
        super().__init__(f"{option(name)}: invalid value {value}: {rule}")
        self.field = name


def ports_in_use(settings: LocalClusterSettings) -> list[str]:
    """One line per port of the cluster that something on this machine already holds."""
    problems = []
    for address, port, name in settings.bound_ports():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError as e:
                why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound: {e}"
                problems.append(f"port {port} on {address} ({option(name)}) {why}")
    return problems


class Supervised(Protocol):
    """What the supervisor needs of a component's process."""

    name: str
    log_path: Path

    @property
    def pid(self) -> int | None: ...
    @property
    def returncode(self) -> int | None: ...
    def start(self) -> None: ...
    def running(self) -> bool: ...
    def stop(self, timeout: float = ...) -> int | None: ...
    def tail(self, lines: int = ...) -> str: ...


@dataclass
class Component:
    process: Supervised
    health: str
    """Space-separated checks, all of which must pass: ``http://...`` (answers "true"),
    ``grpc://host:port`` (gRPC health says SERVING), ``node:NAME`` (the Node is Ready) or
    ``process`` (the process runs)."""

    @property
    def name(self) -> str:
        return self.process.name


def _script(name: str) -> str:
    beside = installed_script(name)
    return str(beside) if beside.exists() else name


def cluster_pki(s: LocalClusterSettings) -> ClusterPki | None:
    """Where the cluster's credentials are (None: an insecure cluster)."""
    return None if s.insecure else ClusterPki(s.data_dir)


def node_names(s: LocalClusterSettings) -> list[str]:
    return [f"node-{i}" for i in range(1, s.nodes + 1)]


def init_credentials(s: LocalClusterSettings) -> None:
    """`kubelite init` for this cluster: what is missing of its CAs, certificates, client
    configs, keys and encryption config is made; what exists is kept. The client configs
    then name every API server of this run (the one serving certificate is valid for all:
    they differ in port only)."""
    result = init_cluster(
        s.data_dir, apiserver_addresses=[CONTROL_PLANE_ADDRESS], apiserver_port=s.api_port,
        nodes=[(name, [address]) for name, address in zip(node_names(s), s.node_addresses(),
                                                           strict=True)],
        service_cidr=s.service_cluster_ip_range, etcd_addresses=[CONTROL_PLANE_ADDRESS],
    )
    pki = result.pki
    name_servers([pki.admin_conf, pki.scheduler_conf, pki.controller_manager_conf,
                  pki.proxy_conf, *(pki.kubelet_conf(name) for name in node_names(s))],
                 s.api_servers())


def name_servers(kubeconfigs: list[Path], servers: str) -> None:
    """Makes each kubeconfig's clusters name ``servers`` (comma-separated host:port), so an
    `up` with another count of API servers than the last one rewrites them."""
    from kubelite.client.config import read_kubeconfig_file, server_url, write_kubeconfig_data

    url = server_url(servers)
    for path in kubeconfigs:
        data = read_kubeconfig_file(path)
        clusters = data.get("clusters") or []
        if all(entry["cluster"].get("server") == url for entry in clusters):
            continue
        for entry in clusters:
            entry["cluster"]["server"] = url
        write_kubeconfig_data(path, data)


def admin_target(s: LocalClusterSettings) -> str | ClientConfig:
    """How the cluster's administrator connects (a plaintext address when insecure)."""
    pki = cluster_pki(s)
    return s.api_servers() if pki is None else load_kubeconfig(pki.admin_conf)


def _components(s: LocalClusterSettings) -> list[Component]:
    data = s.data_dir
    logs = data / "logs"
    host = CONTROL_PLANE_ADDRESS
    pki = cluster_pki(s)
    scheme = "http" if pki is None else "https"

    def component(name: str, argv: list[str], health: str) -> Component:
        return Component(ManagedProcess(name, argv, logs / f"{name}.log",
                                        {**os.environ, "PYTHONUNBUFFERED": "1"}), health)

    etcd = Etcd(data_dir=str(data / "etcd"),
                client_urls=(f"{scheme}://{host}:{s.etcd_port}",),
                peer_url=f"{scheme}://{host}:{s.etcd_peer_port}",
                tls=None if pki is None else etcd_tls(pki))
    apis = [ApiServer(listen=f"{host}:{port}", http_listen=f"{host}:{http_port}",
                      etcd_servers=f"{host}:{s.etcd_port}",
                      service_cluster_ip_range=s.service_cluster_ip_range,
                      security=None if pki is None else apiserver_security(pki))
            for port, http_port in s.apiserver_ports()]
    servers = s.api_servers()
    """Every client gets every API server (round robin over those up)."""
    scheduler = Scheduler(server=servers,
                          kubeconfig=None if pki is None else str(pki.scheduler_conf),
                          health_address=f"{host}:{s.scheduler_health_port}")
    containers = s.runtime == "containerd"
    controller_manager = ControllerManager(
        server=servers, health_address=f"{host}:{s.controller_manager_health_port}",
        allocate_node_cidrs=containers, cluster_cidr=s.cluster_cidr if containers else None)
    if pki is not None:
        controller_manager = replace(
            controller_manager, kubeconfig=str(pki.controller_manager_conf),
            cluster_signing_cert_file=str(pki.ca_cert),
            cluster_signing_key_file=str(pki.ca_key), root_ca_file=str(pki.ca_cert))
    components = [component(etcd.component, etcd.argv(find_etcd()), etcd.health_url)]
    # The API server's health is on its own (TLS) port; the others serve plaintext health.
    for n, api in enumerate(apis, start=1):
        components.append(component(apiserver_name(n), api.argv(_script(api.script)),
                                    f"{'grpc' if pki is None else 'grpcs'}://{api.health}"))
    for daemon in (scheduler, controller_manager):
        components.append(component(daemon.component, daemon.argv(_script(daemon.script)),
                                    f"grpc://{daemon.health}"))
    images = data / "images"
    registry_url = None
    if containers and s.local_registry:
        registry = RegistryComponent(data / "registry", images, s.registry_port)
        components.append(Component(registry, "process"))
        registry_url = registry.url
    with_proxy = installed_script(Proxy.script).exists()
    pod_cidrs = s.node_pod_cidrs()
    for i, address in enumerate(s.node_addresses(), start=1):
        name = f"node-{i}"
        node_dir = data / "nodes" / name
        kubelet = Kubelet(node_name=name, address=address, server=servers,
                          root_dir=str(node_dir), port=s.kubelet_port,
                          health_address=join_host_port(address, s.kubelet_health_port),
                          pod_cidr=pod_cidrs[i - 1] or None, stop_pods_on_exit=True,
                          cluster_dns=(dns_cluster_ip(s.service_cluster_ip_range),))
        if pki is not None:
            kubelet = replace(
                kubelet, kubeconfig=str(pki.kubelet_conf(name)),
                tls_cert_file=str(pki.kubelet_serving_cert(name)),
                tls_private_key_file=str(pki.kubelet_serving_key(name)),
                client_ca_file=str(pki.ca_cert))
        if containers:
            containerd = ContainerdNode(f"containerd-{name}", node_dir / "containerd", images,
                                        registry_url)
            components.append(Component(containerd, "process"))
            kubelet = replace(kubelet, container_runtime="containerd",
                              container_runtime_endpoint=containerd.endpoint,
                              cgroup_root=f"/kubelite/{name}",
                              cni_conf_dir=containerd.cni_conf_dir,
                              # One bridge per node: the nodes share this machine's network.
                              cni_bridge=f"kubelite{i}")
        components.append(component(f"kubelet-{name}", kubelet.argv(_script(kubelet.script)),
                                    f"grpc://{kubelet.health} node:{name}"))
        if with_proxy:
            proxy = Proxy(node_name=name, node_ip=address, server=servers,
                          kubeconfig=None if pki is None else str(pki.proxy_conf),
                          health_address=join_host_port(address, s.proxy_health_port),
                          cluster_ip_interface=CLUSTER_IP_INTERFACE if containers else None,
                          service_cluster_ip_range=(
                              s.service_cluster_ip_range if containers else None))
            components.append(component(f"proxy-{name}", proxy.argv(_script(proxy.script)),
                                        f"grpc://{proxy.health}"))
    return components


def apiserver_name(n: int) -> str:
    """The process (and log) name of API server ``n``: apiserver, apiserver-2, ..."""
    return ApiServer.component if n == 1 else f"{ApiServer.component}-{n}"


def _grpc_healthy(address: str, ca_pem: bytes | None = None) -> bool:
    """gRPC health says SERVING (over TLS trusting ``ca_pem`` when given)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kubelite.auth.anonymous_transport import (
        ANONYMOUS_CLIENT_CERT_PEM,
        ANONYMOUS_CLIENT_KEY_PEM,
    )

    # Health answers anyone who completes the handshake (with the anonymous certificate).
    channel = (grpc.insecure_channel(address) if ca_pem is None
               else grpc.secure_channel(address, grpc.ssl_channel_credentials(
                   ca_pem, ANONYMOUS_CLIENT_KEY_PEM, ANONYMOUS_CLIENT_CERT_PEM)))
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def _node_ready(server: str | ClientConfig, name: str) -> bool:
    from kubelite.api.errors import ApiError
    from kubelite.client.client import ApiClient
    from protos.v1 import objects_pb2 as v1

    async def check() -> bool:
        async with ApiClient(server, timeout=2, wait_for_ready=False) as client:
            try:
                node = await client.get(v1.Node, name)
            except ApiError:
                return False
            return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    return asyncio.run(check())


def healthy(health: str, pid_alive: bool, server: str | ClientConfig,
            pki: ClusterPki | None = None) -> bool:
    """Whether the process runs and every check in ``health`` (see Component) passes
    (``pki``: the secured cluster's credentials, for its TLS checks)."""
    if not pid_alive:
        return False
    return all(_check(check, server, pki) for check in health.split())


def _check(health: str, server: str | ClientConfig, pki: ClusterPki | None) -> bool:
    if health.startswith(("http://", "https://")):
        context = None
        if health.startswith("https://") and pki is not None:
            # etcd's /health: its CA, and a client certificate it accepts.
            context = ssl.create_default_context(cafile=str(pki.etcd_ca_cert))
            context.load_cert_chain(str(pki.apiserver_etcd_client_cert),
                                    str(pki.apiserver_etcd_client_key))
        try:
            with urllib.request.urlopen(health, timeout=1, context=context) as r:
                return b"true" in r.read()
        except OSError:
            return False
    if health.startswith("grpc://"):
        return _grpc_healthy(health.removeprefix("grpc://"))
    if health.startswith("grpcs://"):
        ca = None if pki is None else pki.ca_cert.read_bytes()
        return _grpc_healthy(health.removeprefix("grpcs://"), ca)
    if health.startswith("node:"):
        return _node_ready(server, health.removeprefix("node:"))
    return True


def _say(text: str) -> None:
    print(text, flush=True)


class LocalCluster:
    def __init__(self, settings: LocalClusterSettings) -> None:
        self.settings = settings
        self.pki = cluster_pki(settings)
        if self.pki is not None:
            init_credentials(settings)
        self.components = _components(settings)
        self.server = settings.api_servers()
        """Every API server's address, comma-separated."""
        self.admin = admin_target(settings)
        """How the cluster's administrator connects (its client config when secured)."""
        self.logs = settings.data_dir / "logs"

    def start(self) -> None:
        # Control plane one by one (each needs the previous); nodes together, then wait.
        nodes = [c for c in self.components if c.name.startswith(("kubelet-", "proxy-"))]
        for c in self.components:
            if c in nodes:
                continue
            self._start(c)
            self._wait(c)
        for c in nodes:
            self._start(c)
        for c in nodes:
            self._wait(c)
        self._write_state()

    def _start(self, c: Component) -> None:
        _say(f"  starting {c.name} ...")
        c.process.start()

    def _wait(self, c: Component) -> None:
        started = time.monotonic()
        deadline = started + self.settings.ready_timeout
        while not healthy(c.health, c.process.running(), self.admin, self.pki):
            if not c.process.running():
                raise RuntimeError(f"{c.name} exited with code {c.process.returncode};"
                                   f" see {c.process.log_path}:\n{c.process.tail(15)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{c.name} not healthy after {self.settings.ready_timeout}s;"
                                   f" see {c.process.log_path}")
            time.sleep(0.1)
        _say(f"  {c.name} ready ({time.monotonic() - started:.1f}s)")

    def _write_state(self) -> None:
        state = {
            "supervisor": os.getpid(),
            "server": self.server,
            "secure": self.pki is not None,
            "components": {c.name: {"pid": c.process.pid, "health": c.health}
                           for c in self.components},
        }
        (self.settings.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def stop(self) -> None:
        # Nodes first (kubelets stop their pods), the API server and etcd last.
        for c in reversed(self.components):
            if c.process.running():
                _say(f"  stopping {c.name}")
                c.process.stop()
        (self.settings.data_dir / STATE_FILE).unlink(missing_ok=True)

    def supervise(self) -> int:
        """Blocks until a signal (0) or until a component dies (1)."""
        return supervise_until_signalled([c.process for c in self.components], _say)


def _write_klctl_config(server: str, data_dir: Path, pki: ClusterPki | None
                        ) -> tuple[Path, Path]:
    """Writes klctl's config: the default one (the cluster started last is klctl's) and
    ``<data-dir>/config`` (this cluster's, for $KUBELITE_CONFIG); returns both paths. A
    secured cluster's is a copy of its admin kubeconfig (admin.conf)."""
    from kubelite.cli.config import default_config_path, write_config

    default, own = default_config_path(), data_dir / "config"
    for path in (default, own) if own.resolve() != default.resolve() else (default,):
        if pki is None:
            write_config(path, server)
        else:
            _copy_private(pki.admin_conf, path)
    return default, own


KUBECTL_CONFIG = init_command.KUBECTL_CONFIG


def write_kubectl_config(settings: LocalClusterSettings, pki: ClusterPki | None) -> Path:
    """Writes ``<data-dir>/kubectl.conf``: a kubeconfig for kubectl and the official clients,
    whose server is the HTTP API; a secured cluster's is its admin's (admin.conf's
    credentials), an insecure one's plain HTTP with none."""
    from kubelite.client.config import write_kubeconfig_data

    server = f"{CONTROL_PLANE_ADDRESS}:{settings.http_api_port}"
    if pki is not None:
        return init_command.write_kubectl_config(pki, server)
    data: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubelite", "cluster": {"server": f"http://{server}"}}],
        "users": [{"name": "kubelite", "user": {}}],
        "contexts": [{"name": "kubelite", "context": {"cluster": "kubelite",
                                                      "user": "kubelite"}}],
        "current-context": "kubelite", "preferences": {},
    }
    return write_kubeconfig_data(settings.data_dir / KUBECTL_CONFIG, data)


def _copy_private(source: Path, target: Path) -> None:
    """Copies a credentials file atomically, readable by its owner alone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(source.read_bytes())
    os.replace(tmp, target)


async def ensure_bootstrap_token(admin: str | ClientConfig, pki: ClusterPki) -> None:
    """The Secret of init's join token (kube-system/bootstrap-token-ID), so nodes can join
    with `kubelite join`; kept when it exists."""
    from kubelite.api.errors import AlreadyExists
    from kubelite.client.client import ApiClient
    from kubelite.pki import bootstrap_token_secret_data, bootstrap_token_secret_name
    from protos.v1 import objects_pb2 as v1

    token = pki.read_bootstrap_token()
    secret = v1.Secret(
        metadata=v1.ObjectMeta(name=bootstrap_token_secret_name(token),
                               namespace="kube-system"),
        type="bootstrap.kubernetes.io/token",
        string_data=bootstrap_token_secret_data(token),
    )
    async with ApiClient(admin) as client:
        try:
            await client.create(secret)
        except AlreadyExists:
            pass


def _security_summary(cluster: LocalCluster) -> str:
    pki = cluster.pki
    if pki is None:
        return ("INSECURE: no TLS, authentication or authorization (--insecure); any process"
                " on this machine may do anything to this cluster.\n")
    return (f"Secured: TLS everywhere, x509/token authentication, RBAC, Secrets encrypted."
            f" Admin credentials: {pki.admin_conf}.\n"
            f"Join another node: kubelite join {cluster.server} --token"
            f" {pki.read_bootstrap_token()} --discovery-token-ca-cert-hash"
            f" {pki.ca_cert_hash()} --node-name NAME\n")


def _alive(pid: int) -> bool:
    """Running (an exited process its parent has not reaped yet does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _running_supervisor(data_dir: Path) -> int | None:
    state = data_dir / STATE_FILE
    if not state.exists():
        return None
    pid = json.loads(state.read_text()).get("supervisor")
    return int(pid) if pid and _alive(int(pid)) else None


def up(settings: LocalClusterSettings) -> int:
    pid = _running_supervisor(settings.data_dir)
    if pid is not None:
        print(f"a cluster is already running from {settings.data_dir} (pid {pid})",
              file=sys.stderr)
        return 1
    if settings.runtime == "containerd":
        missing = missing_for_containerd(settings.local_registry)
        if missing:
            print("error: --runtime containerd needs what this machine lacks:\n  "
                  + "\n  ".join(missing) + "\n(the process runtime, the default, needs none"
                  " of it)", file=sys.stderr)
            return 1
    busy = ports_in_use(settings)
    if busy:
        print("error: " + "\n  ".join(busy) + "\n(another cluster? give this one other"
              " ports with the options named; `kubelite up --help` lists them)", file=sys.stderr)
        return 1
    try:
        cluster = LocalCluster(settings)
    except (FileNotFoundError, ValueError) as e:  # no etcd; a path the runtime cannot use
        print(f"error: {e}", file=sys.stderr)
        return 1
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _say(f"Starting kubelite ({settings.nodes} nodes on {settings.node_addresses()[0]}..."
         f"{settings.node_addresses()[-1]}) in {settings.data_dir}")
    started = time.monotonic()
    interrupt_on_sigterm()
    try:
        cluster.start()
        if cluster.pki is not None:
            asyncio.run(ensure_bootstrap_token(cluster.admin, cluster.pki))
        if asyncio.run(install_dns(cluster.admin, settings.service_cluster_ip_range)):
            _say(f"  cluster DNS: kube-dns at"
                 f" {dns_cluster_ip(settings.service_cluster_ip_range)} (kube-system)")
        config, own = _write_klctl_config(cluster.server, settings.data_dir, cluster.pki)
        kubectl_config = write_kubectl_config(settings, cluster.pki)
        also = f" (this cluster's alone: KUBELITE_CONFIG={own})" if own != config else ""
        where = ("" if settings.data_dir == default_data_dir()
                 else f" --data-dir {settings.data_dir}")
        _say(
            f"\nkubelite is ready in {time.monotonic() - started:.1f}s."
            f" API server{'s' if settings.apiservers > 1 else ''}: {cluster.server}\n"
            f"klctl is configured through {config}{also}; try:\n"
            f"  klctl get nodes\n"
            f"  klctl apply -f deploy/examples/\n"
            f"  klctl get pods -o wide\n"
            f"kubectl and the Kubernetes clients: the HTTP API at"
            f" {'http' if cluster.pki is None else 'https'}://{CONTROL_PLANE_ADDRESS}:"
            f"{settings.http_api_port}; try:\n"
            f"  export KUBECONFIG={kubectl_config}\n"
            f"  kubectl get nodes\n"
            f"Logs: {cluster.logs}/. Stop with Ctrl-C or `kubelite down{where}`.\n"
            + _security_summary(cluster)
        )
        code = cluster.supervise()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before it was up: not an error to trace
        print("interrupted while starting", file=sys.stderr)
        code = INTERRUPTED_EXIT_CODE
    except (RuntimeError, TimeoutError, FileNotFoundError, ApiError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    finally:
        ignore_interrupts()
        _say("Stopping kubelite")
        cluster.stop()
    return code


def down(settings: LocalClusterSettings, timeout: float = 60.0) -> int:
    pid = _running_supervisor(settings.data_dir)
    if pid is None:
        (settings.data_dir / STATE_FILE).unlink(missing_ok=True)
        print(f"no cluster is running from {settings.data_dir}", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        print(f"the cluster (pid {pid}) did not stop within {timeout}s", file=sys.stderr)
        return 1
    print("kubelite stopped")
    return 0


def status(settings: LocalClusterSettings) -> int:
    state_file = settings.data_dir / STATE_FILE
    if _running_supervisor(settings.data_dir) is None:
        print(f"no cluster is running from {settings.data_dir}")
        return 1
    state = json.loads(state_file.read_text())
    print(f"{'COMPONENT':<22}{'PID':<10}{'PROCESS':<10}HEALTH")
    all_ok = True
    check: Callable[[str, bool, str | ClientConfig, ClusterPki | None], bool] = healthy
    pki = ClusterPki(settings.data_dir) if state.get("secure") else None
    admin = state["server"] if pki is None else load_kubeconfig(pki.admin_conf)
    for name, info in state["components"].items():
        alive = info["pid"] is not None and _alive(int(info["pid"]))
        ok = check(info["health"], alive, admin, pki)
        all_ok = all_ok and ok
        print(f"{name:<22}{info['pid']!s:<10}{'running' if alive else 'stopped':<10}"
              f"{'healthy' if ok else 'unhealthy'}")
    return 0 if all_ok else 1


UP_OPTIONS: tuple[tuple[str, type, str, str], ...] = (
    ("nodes", int, "N", "how many nodes to start, each a kubelet and a proxy on its own"
                        " address"),
    ("node_address_base", str, "ADDRESS", "the first node's address (a loopback address);"
                                          " node N gets this address + N - 1"),
    ("service_cluster_ip_range", str, "CIDR", "the range the API server allocates ClusterIPs"
                                              " from (inside 127.0.0.0/8); two clusters on one"
                                              " machine need ranges that do not overlap"),
    ("api_port", int, "PORT", "API server port on 127.0.0.1 (klctl's server)"),
    ("http_api_port", int, "PORT", "the API server's Kubernetes HTTP API port on 127.0.0.1"
                                   " (kubectl's server, in <data-dir>/kubectl.conf)"),
    ("apiservers", int, "N", "API server processes over the one etcd; API server N serves on"
                             " --api-port + 2(N-1) and --http-api-port + 2(N-1), and every"
                             " component and klctl spreads its calls round robin over them"),
    ("etcd_port", int, "PORT", "etcd client port on 127.0.0.1"),
    ("etcd_peer_port", int, "PORT", "etcd peer port on 127.0.0.1"),
    ("scheduler_health_port", int, "PORT", "scheduler's gRPC health port on 127.0.0.1"),
    ("controller_manager_health_port", int, "PORT", "controller manager's gRPC health port on"
                                                    " 127.0.0.1"),
    ("kubelet_port", int, "PORT", "kubelet API port (logs, exec) on each node's address"),
    ("kubelet_health_port", int, "PORT", "kubelet's gRPC health port on each node's address"),
    ("proxy_health_port", int, "PORT", "proxy's gRPC health port on each node's address"),
    ("ready_timeout", float, "SECONDS", "seconds each component gets to become healthy"),
    ("runtime", str, "RUNTIME", "process (pods as host processes; no root) or containerd"
                                " (pods as containers with their own network namespace and"
                                " IP; needs root, containerd, runc and the CNI plugins)"),
    ("cluster_cidr", str, "CIDR", "containerd runtime: the pods' network; each node gets a"
                                  " /24 of it"),
    ("local_registry", bool, "", "containerd runtime: serve the project's images (busybox,"
                                 " and its test server as nginx) from a registry on"
                                 " 127.0.0.1 and pull docker.io's images from it"),
    ("registry_port", int, "PORT", "the local registry's port on 127.0.0.1"),
    ("insecure", bool, "", "for learning only: no TLS, authentication, authorization,"
                           " admission or encryption (any local process may do anything)"),
    ("pod_network", str, "CIDR", "loopback block node N's podCIDR is the N-th /24 of (each pod"
                                 " its own address); empty: pods share their node's address;"
                                 " two clusters on one machine need blocks that do not overlap"),
)
"""`kubelite up`'s options besides --data-dir: (settings field, type, metavar, help)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubelite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("health", help="exit 0 when a component's gRPC health is SERVING")
    probe.add_argument("address", help="host:port of the component's health service")
    probe.add_argument("--ca-file", type=Path, default=None, metavar="PATH",
                       help="ask over TLS, trusting this CA (the API server's port)")
    defaults = LocalClusterSettings()
    summaries = {
        "up": "start a local cluster (Ctrl-C or `kubelite down` stops it)",
        "down": "stop the cluster started by `kubelite up` from the data dir",
        "status": "each component's process and health, for the cluster of the data dir",
    }
    for name, summary in summaries.items():
        s = sub.add_parser(name, help=summary, description=summary,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        s.set_defaults(parser=s)
        s.add_argument("--data-dir", type=Path, default=defaults.data_dir, metavar="DIR",
                       help="where etcd's data, the pods, the logs and the cluster's state"
                            " live; `status` and `down` find the cluster by it")
        if name == "up":
            for field_name, kind, metavar, text in UP_OPTIONS:
                if kind is bool:
                    s.add_argument(option(field_name), action="store_true", help=text)
                    continue
                choices = ["process", "containerd"] if field_name == "runtime" else None
                s.add_argument(option(field_name), type=kind, metavar=metavar,
                               default=getattr(defaults, field_name), help=text,
                               choices=choices)
    init_command.add_parser(sub, defaults.data_dir)
    join_command.add_parser(sub)
    token_command.add_parser(sub, defaults.data_dir)
    return p


def settings_from(a: argparse.Namespace) -> LocalClusterSettings:
    """The settings of parsed options; a bad value exits with its subcommand's usage."""
    given = {f.name: getattr(a, f.name) for f in fields(LocalClusterSettings)
             if hasattr(a, f.name)}
    try:
        return LocalClusterSettings(**given)
    except SettingError as e:
        parser: argparse.ArgumentParser = a.parser
        parser.error(str(e))


def parse_args(argv: list[str] | None = None) -> tuple[str, LocalClusterSettings]:
    """The command (up, down or status) and its settings; bad input exits with usage (2)."""
    p = build_parser()
    a = p.parse_args(argv)
    if a.command in ("health", "join", "token"):
        p.error(f"{a.command} takes its own options, not cluster options")
    return a.command, settings_from(a)


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if a.command == "health":
        serving = _grpc_healthy(a.address, None if a.ca_file is None else a.ca_file.read_bytes())
        print("SERVING" if serving else "NOT_SERVING")
        raise SystemExit(0 if serving else 1)
    if a.command == "init":
        raise SystemExit(init_command.run(a))
    if a.command == "join":
        raise SystemExit(join_command.main(a))
    if a.command == "token":
        raise SystemExit(token_command.run(a))
    code = {"up": up, "down": down, "status": status}[a.command](settings_from(a))
    raise SystemExit(code)
