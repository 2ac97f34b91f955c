"""`kubelite init`: a cluster's PKI and client configs under its data dir, as kubeadm's
init phases make them (see kubelite.pki for the layout), and the `kubelite join` line for
nodes. Running it again keeps what exists and adds what is missing (a new --node)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from kubelite.client.config import join_host_port, read_kubeconfig_file, write_kubeconfig_data
from kubelite.components import ApiServer
from kubelite.pki import (
    DEFAULT_APISERVER_PORT,
    DEFAULT_CLUSTER_DOMAIN,
    DEFAULT_CLUSTER_NAME,
    DEFAULT_SERVICE_CIDR,
    ClusterPki,
    InitResult,
    PkiError,
    init_cluster,
)

FLAG_OF_FIELD = {
    "apiserver_addresses": "--apiserver-address", "apiserver_port": "--apiserver-port",
    "service_cidr": "--service-cluster-ip-range", "cluster_domain": "--cluster-domain",
    "etcd_addresses": "--etcd-address", "cluster_name": "--cluster-name",
}
"""init_cluster's arguments as the flags that set them, for error messages."""

SUMMARY = ("make the cluster's certificates, keys and client configs in the data dir"
           " (kept when they exist)")


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               default_data_dir: Path) -> argparse.ArgumentParser:
    """Adds `init` to `kubelite`'s subcommands."""
    p: argparse.ArgumentParser = sub.add_parser(
        "init", help=SUMMARY, description=SUMMARY,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.set_defaults(parser=p)
    p.add_argument("--data-dir", type=Path, default=default_data_dir, metavar="DIR",
                   help="where the pki/ directory and the client configs are written")
    p.add_argument("--apiserver-address", action="append", default=[], metavar="HOST",
                   help="an IP or DNS name clients reach the API server at (repeatable; a"
                        " SAN of its certificate; the first is the client configs' server;"
                        " 127.0.0.1 when none)")
    p.add_argument("--apiserver-port", type=int, default=DEFAULT_APISERVER_PORT,
                   metavar="PORT", help="the API server's port in the client configs")
    p.add_argument("--http-api-port", type=int, default=ApiServer.HTTP_PORT, metavar="PORT",
                   help="the API server's Kubernetes HTTP API port, kubectl.conf's server")
    p.add_argument("--node", action="append", default=[], metavar="NAME=ADDR[,ADDR]",
                   help="a node to make kubelet credentials for, with its addresses"
                        " (repeatable)")
    p.add_argument("--etcd-address", action="append", default=[], metavar="HOST",
                   help="an address etcd serves on besides 127.0.0.1 (repeatable)")
    p.add_argument("--service-cluster-ip-range", default=DEFAULT_SERVICE_CIDR, metavar="CIDR",
                   help="the Service range: its first address is a SAN of the API server")
    p.add_argument("--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN, metavar="DOMAIN",
                   help="the cluster's DNS domain (kubernetes.default.svc.DOMAIN is a SAN)")
    p.add_argument("--cluster-name", default=DEFAULT_CLUSTER_NAME, metavar="NAME",
                   help="the cluster's name in the client configs")
    return p


def parse_node(text: str) -> tuple[str, list[str]]:
    """(name, addresses) of ``NAME=ADDR[,ADDR]``."""
    name, sep, addresses = text.partition("=")
    values = [a.strip() for a in addresses.split(",") if a.strip()]
    if not sep or not name.strip() or not values:
        raise ValueError(f"--node: {text!r} must be NAME=ADDR[,ADDR]")
    return name.strip(), values


def run(args: argparse.Namespace) -> int:
    """Runs `kubelite init` with parsed options; bad options exit with usage (2), a file
    that does not fit the request is an error line and status 1."""
    parser: argparse.ArgumentParser = args.parser
    try:
        nodes = [parse_node(n) for n in args.node]
    except ValueError as e:
        parser.error(str(e))
    try:
        result = init_cluster(
            args.data_dir, apiserver_addresses=args.apiserver_address,
            apiserver_port=args.apiserver_port, nodes=nodes,
            service_cidr=args.service_cluster_ip_range, cluster_domain=args.cluster_domain,
            etcd_addresses=args.etcd_address, cluster_name=args.cluster_name)
        if not 0 < args.http_api_port < 65536:
            raise PkiError(f"--http-api-port: {args.http_api_port} is not a port number"
                           " (1-65535)")
        host = args.apiserver_address[0] if args.apiserver_address else "127.0.0.1"
        write_kubectl_config(result.pki, join_host_port(host, args.http_api_port))
    except PkiError as e:
        print(f"error: {flag_message(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or args.data_dir}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(report(result), end="")
    return 0


KUBECTL_CONFIG = "kubectl.conf"


def write_kubectl_config(pki: ClusterPki, server: str) -> Path:
    """``<data-dir>/kubectl.conf``: the admin's kubeconfig (admin.conf's credentials) with
    the Kubernetes HTTP API (``host:port``) as its server, for kubectl and the official
    clients."""
    data = read_kubeconfig_file(pki.admin_conf)
    for entry in data.get("clusters") or []:
        entry["cluster"]["server"] = f"https://{server}"
    return write_kubeconfig_data(pki.data_dir / KUBECTL_CONFIG, data)


def flag_message(message: str) -> str:
    """An init_cluster error with the argument it names as the flag (``--node`` for
    ``nodes[i].name``)."""
    field, sep, rest = message.partition(": ")
    if sep and field in FLAG_OF_FIELD:
        return f"{FLAG_OF_FIELD[field]}: {rest}"
    if sep and re.fullmatch(r"nodes\[\d+\]\.(name|addresses)", field):
        return f"--node: {rest}"
    return message


def report(result: InitResult) -> str:
    """What `init` made, and how to use it."""
    root = result.pki.data_dir
    lines = [f"wrote {path.relative_to(root)}" for path in result.created]
    if result.kept:
        lines.append(f"kept {len(result.kept)} existing files")
    lines += [
        "",
        f"The cluster's credentials are in {root}.",
        "klctl as the cluster's admin:",
        f"  export KUBELITE_CONFIG={result.pki.admin_conf}",
        "kubectl (or the official clients) as the cluster's admin:",
        f"  export KUBECONFIG={result.pki.data_dir / KUBECTL_CONFIG}",
        "A node joins with:",
        f"  kubelite join {result.server} --token {result.bootstrap_token} \\",
        f"    --discovery-token-ca-cert-hash {result.ca_cert_hash} --node-name NAME"
        " --data-dir DIR",
    ]
    return "\n".join(lines) + "\n"
