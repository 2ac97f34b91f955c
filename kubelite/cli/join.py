"""`kubelite join`: make this machine a node of a running cluster with a bootstrap token, as
kubeadm join does.

    kubelite join SERVER --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX \\
        --node-name N --data-dir D [--node-address A] [--kubelet-arg=--flag=value ...]

1. Discovery: the cluster CA comes from the API server's TLS handshake, trusted only when its
   public key has the given hash and it issued the server's certificate.
2. Trusting that CA alone, the token is tried against the API server: an unknown or expired
   token is an error here, not a kubelet waiting forever.
3. ``D/bootstrap-kubelet.conf`` (server, CA, token) and ``D/pki/ca.crt`` are written.
4. The kubelet runs as `kubelite up` runs a node's, with ``--bootstrap-kubeconfig``: its
   client certificate (``D/kubelet.conf``) and its serving certificate come from
   CertificateSigningRequests the controller manager approves and signs. Then the proxy runs
   with the node's kubeconfig.

Ctrl-C (or SIGTERM) stops both; ``join`` again on the same data dir starts the node again
with the certificates it has. Logs: ``D/logs/``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubelite import pki
from kubelite.api.errors import ApiError, Forbidden, Unauthorized, Unavailable
from kubelite.api.names import is_dns1123_subdomain
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    ClientConfig,
    ConfigError,
    normalize_server,
    split_servers,
    write_kubeconfig,
)
from kubelite.components import Kubelet, Proxy, installed_script
from kubelite.health import check_health, join_host_port
from kubelite.join_discovery import DiscoveryError, discover_ca, normalize_ca_hash
from kubelite.processes import (
    INTERRUPTED_EXIT_CODE,
    ManagedProcess,
    ignore_interrupts,
    interrupt_on_sigterm,
    supervise_until_signalled,
)
from protos.v1 import objects_pb2 as v1

BOOTSTRAP_KUBECONFIG = "bootstrap-kubelet.conf"
KUBELET_KUBECONFIG = "kubelet.conf"
CLUSTER_NAME = "kubernetes"
BOOTSTRAP_USER = "tls-bootstrap-token-user"
"""Names in the bootstrap kubeconfig (kubeadm's)."""


class JoinError(Exception):
    """Joining cannot go on; the message says why (and names the option at fault)."""


def _default_data_dir() -> Path:
    return Path.home() / ".kubelite-node"


@dataclass(frozen=True)
class JoinSettings:
    """A node joining a cluster; ``__post_init__`` checks every field (JoinError naming its
    option)."""

    server: str
    """host:port (or https://host:port) of the cluster's API server."""
    token: str
    """The bootstrap token, ID.SECRET."""
    ca_cert_hash: str
    """sha256:HEX of the cluster CA's public key (SubjectPublicKeyInfo)."""
    node_name: str
    """This node's name (its Node object and its identity system:node:NAME)."""
    data_dir: Path = field(default_factory=_default_data_dir)
    """Where the node's credentials, pods and logs live."""
    node_address: str = ""
    """The node's IP: its InternalIP and where the kubelet API listens (empty: the address
    this machine reaches the API server from)."""
    kubelet_port: int = Kubelet.PORT
    kubelet_health_port: int = Kubelet.HEALTH_PORT
    proxy_health_port: int = Proxy.HEALTH_PORT
    kubelet_args: tuple[str, ...] = ()
    """Further kubelet flags, passed as they are (``--cluster-dns=10.96.0.10``)."""
    discovery_timeout: float = 10.0
    """Seconds to connect to the API server for discovery and the token check."""
    ready_timeout: float = 3600.0
    """Seconds the kubelet may take to be certified and healthy (its requests may wait for
    an administrator), and the proxy to become healthy."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "server", normalize_server(self.server))
        except ConfigError as e:
            raise JoinError(f"SERVER: {e}") from None
        try:
            pki.parse_bootstrap_token(self.token)
        except pki.PkiError:
            raise JoinError("--token: must be ID.SECRET, matching [a-z0-9]{6}.[a-z0-9]{16}"
                            ) from None
        try:
            object.__setattr__(self, "ca_cert_hash", normalize_ca_hash(self.ca_cert_hash))
        except DiscoveryError as e:
            raise JoinError(f"--{e}") from None
        problems = is_dns1123_subdomain(self.node_name)
        if problems:
            raise JoinError(f"--node-name: {self.node_name!r}: {'; '.join(problems)}")
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        for name in ("kubelet_port", "kubelet_health_port", "proxy_health_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise JoinError(f"--{name.replace('_', '-')}: {port} is not a port (1-65535)")
        for name in ("discovery_timeout", "ready_timeout"):
            if not getattr(self, name) > 0:
                raise JoinError(f"--{name.replace('_', '-')}: must be more than 0")

    @property
    def host_port(self) -> tuple[str, int]:
        """The (first) API server's host and port, where the CA is discovered."""
        host, _, port = split_servers(self.server)[0].rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def bootstrap_kubeconfig(self) -> Path:
        return self.data_dir / BOOTSTRAP_KUBECONFIG

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / KUBELET_KUBECONFIG

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"


def _say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- discovery and the token


def discover(settings: JoinSettings) -> bytes:
    """The cluster CA's PEM, pinned by its hash."""
    host, port = settings.host_port
    try:
        return discover_ca(host, port, settings.ca_cert_hash, settings.discovery_timeout)
    except DiscoveryError as e:
        raise JoinError(f"discovery: {e}") from None


async def check_token(settings: JoinSettings, ca_pem: bytes) -> None:
    """Asks the API server, over TLS with the discovered CA, whether the token may request
    certificates (it lists them, as the node bootstrapper role allows)."""
    token_id = settings.token.partition(".")[0]
    config = ClientConfig(settings.server, ca_pem=ca_pem, token=settings.token)
    async with ApiClient(config, timeout=settings.discovery_timeout,
                         wait_for_ready=False) as client:
        try:
            await client.list(v1.CertificateSigningRequest, page_size=1)
        except Unauthorized:
            raise JoinError(
                f"--token: the API server does not accept bootstrap token {token_id}: it is"
                f" unknown, expired, or its Secret kube-system/bootstrap-token-{token_id} is"
                " not for authentication") from None
        except Forbidden as e:
            raise JoinError(f"--token: bootstrap token {token_id} may not request"
                            f" certificates (is its user in system:bootstrappers?): {e}"
                            ) from None
        except Unavailable as e:
            raise JoinError(f"cannot reach the API server at {settings.server} over TLS: {e}"
                            ) from None
        except ApiError as e:
            raise JoinError(f"the API server refused the token check: {e}") from None


def write_bootstrap_files(settings: JoinSettings, ca_pem: bytes) -> None:
    """``bootstrap-kubelet.conf`` (server, CA, token; 0600) and ``pki/ca.crt``."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_kubeconfig(settings.bootstrap_kubeconfig, cluster=CLUSTER_NAME,
                     server=settings.server, ca_pem=ca_pem, user=BOOTSTRAP_USER,
                     token=settings.token)
    settings.ca_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.ca_file.write_bytes(ca_pem)


def node_address(settings: JoinSettings) -> str:
    """The node's address: the one given, else the one this machine reaches the server from."""
    if settings.node_address:
        return settings.node_address
    host, port = settings.host_port
    try:
        family = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, port))  # UDP: picks the route, sends nothing
            return str(s.getsockname()[0])
    except OSError as e:
        raise JoinError(f"--node-address: none given and no route to {host} to pick one from:"
                        f" {e.strerror or e}") from None


# ---------------------------------------------------------------- the node's processes


def _script(name: str) -> str:
    beside = installed_script(name)
    return str(beside) if beside.exists() else name


@dataclass
class NodeProcess:
    """One of the node's processes and where its gRPC health answers."""

    process: ManagedProcess
    health: str

    @property
    def name(self) -> str:
        return self.process.name

    def healthy(self) -> bool:
        return self.process.running() and asyncio.run(check_health(self.health)) == "SERVING"


def node_processes(settings: JoinSettings, address: str) -> tuple[NodeProcess, NodeProcess]:
    """The kubelet (bootstrapping) and the proxy (with the node's kubeconfig)."""
    logs = settings.data_dir / "logs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    name = settings.node_name
    kubelet = Kubelet(node_name=name, address=address, server=settings.server,
                      root_dir=str(settings.data_dir / "kubelet"), port=settings.kubelet_port,
                      health_address=join_host_port(address, settings.kubelet_health_port),
                      stop_pods_on_exit=True)
    kubelet_argv = [*kubelet.argv(_script(kubelet.script)),
                    "--bootstrap-kubeconfig", str(settings.bootstrap_kubeconfig),
                    "--kubeconfig", str(settings.kubeconfig), *settings.kubelet_args]
    proxy = Proxy(node_name=name, node_ip=address, server=settings.server,
                  health_address=join_host_port(address, settings.proxy_health_port))
    proxy_argv = [*proxy.argv(_script(proxy.script)), "--kubeconfig", str(settings.kubeconfig)]
    return (
        NodeProcess(ManagedProcess(f"kubelet-{name}", kubelet_argv,
                                   logs / f"kubelet-{name}.log", env), kubelet.health),
        NodeProcess(ManagedProcess(f"proxy-{name}", proxy_argv, logs / f"proxy-{name}.log",
                                   env), proxy.health),
    )


class JoinedNode:
    """The node's kubelet and proxy as child processes."""

    def __init__(self, settings: JoinSettings, address: str) -> None:
        self.settings = settings
        self.kubelet, self.proxy = node_processes(settings, address)
        self.started: list[NodeProcess] = []

    def start(self) -> None:
        """The kubelet until it is certified and healthy, then the proxy."""
        self._start(self.kubelet)
        self._wait(self.kubelet, self.settings.kubeconfig.exists,
                   "certified (its certificate signing request approved and signed)")
        self._start(self.proxy)
        self._wait(self.proxy, lambda: True, "healthy")

    def _start(self, p: NodeProcess) -> None:
        _say(f"  starting {p.name} ...")
        p.process.start()
        self.started.append(p)

    def _wait(self, p: NodeProcess, ready: Callable[[], bool], what: str) -> None:
        started = time.monotonic()
        deadline = started + self.settings.ready_timeout
        while not (ready() and p.healthy()):
            if not p.process.running():
                raise JoinError(f"{p.name} exited with code {p.process.returncode}; see"
                                f" {p.process.log_path}:\n{p.process.tail(15)}")
            if time.monotonic() > deadline:
                raise JoinError(f"{p.name} not {what} after {self.settings.ready_timeout:g}s;"
                                f" see {p.process.log_path}")
            time.sleep(0.1)
        _say(f"  {p.name} ready ({time.monotonic() - started:.1f}s)")

    def supervise(self) -> int:
        """Blocks until a signal (0) or until a process dies (1)."""
        return supervise_until_signalled([p.process for p in self.started], _say)

    def stop(self) -> None:
        for p in reversed(self.started):
            if p.process.running():
                _say(f"  stopping {p.name}")
                p.process.stop()


def join(settings: JoinSettings) -> int:
    """Discovery, the token check, the bootstrap files, then the node until a signal."""
    try:
        ca_pem = discover(settings)
        _say(f"[discovery] cluster CA {settings.ca_cert_hash} trusted, from"
             f" {settings.server}")
        asyncio.run(check_token(settings, ca_pem))
        _say(f"[discovery] bootstrap token {settings.token.partition('.')[0]} accepted")
        write_bootstrap_files(settings, ca_pem)
        address = node_address(settings)
    except JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _say(f"Joining node {settings.node_name} ({address}) to {settings.server}; data in"
         f" {settings.data_dir}")
    node = JoinedNode(settings, address)
    interrupt_on_sigterm()
    try:
        node.start()
        _say(f"\nThis node has joined the cluster: its kubelet has a certificate for"
             f" system:node:{settings.node_name} ({settings.kubeconfig}).\n"
             f"Run 'klctl get nodes' on the control plane to see it. Logs:"
             f" {settings.data_dir / 'logs'}/. Stop with Ctrl-C.\n")
        code = node.supervise()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before it was up: not an error to trace
        print("interrupted while starting", file=sys.stderr)
        code = INTERRUPTED_EXIT_CODE
    except JoinError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    finally:
        ignore_interrupts()
        node.stop()
    return code


# ---------------------------------------------------------------- the command line


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``kubelite join``'s parser, under `kubelite`'s subcommands."""
    summary = "join this machine to a cluster as a node, with a bootstrap token"
    p = sub.add_parser("join", help=summary, description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(parser=p)
    p.add_argument("server", metavar="SERVER", help="the API server, host:port (or several,"
                                                    " comma-separated: the node's kubelet"
                                                    " and proxy use them round robin)")
    p.add_argument("--token", required=True, metavar="ID.SECRET",
                   help="the bootstrap token (`kubelite init` prints one)")
    p.add_argument("--discovery-token-ca-cert-hash", required=True, metavar="sha256:HEX",
                   help="hash of the cluster CA's public key, which the API server must"
                        " present")
    p.add_argument("--node-name", required=True, help="this node's name")
    p.add_argument("--data-dir", type=Path, default=_default_data_dir(), metavar="DIR",
                   help="where the node's credentials, pods and logs live (default"
                        " ~/.kubelite-node)")
    p.add_argument("--node-address", default="", metavar="IP",
                   help="the node's IP (default: the address this machine reaches the API"
                        " server from)")
    p.add_argument("--kubelet-port", type=int, default=Kubelet.PORT, metavar="PORT")
    p.add_argument("--kubelet-health-port", type=int, default=Kubelet.HEALTH_PORT,
                   metavar="PORT")
    p.add_argument("--proxy-health-port", type=int, default=Proxy.HEALTH_PORT, metavar="PORT")
    p.add_argument("--kubelet-arg", action="append", default=[], metavar="--FLAG=VALUE",
                   help="a further kubelet flag (repeatable), e.g."
                        " --kubelet-arg=--cluster-dns=10.96.0.10")
    p.add_argument("--ready-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="how long the kubelet may take to be certified and healthy")


def settings_from(a: argparse.Namespace) -> JoinSettings:
    """The settings of parsed options; a bad value exits with the subcommand's usage."""
    try:
        return JoinSettings(
            server=a.server, token=a.token, ca_cert_hash=a.discovery_token_ca_cert_hash,
            node_name=a.node_name, data_dir=a.data_dir, node_address=a.node_address,
            kubelet_port=a.kubelet_port, kubelet_health_port=a.kubelet_health_port,
            proxy_health_port=a.proxy_health_port, kubelet_args=tuple(a.kubelet_arg),
            ready_timeout=a.ready_timeout)
    except JoinError as e:
        parser: argparse.ArgumentParser = a.parser
        parser.error(str(e))


def main(a: argparse.Namespace) -> int:
    return join(settings_from(a))


__all__ = ["JoinError", "JoinSettings", "add_parser", "join", "main"]
