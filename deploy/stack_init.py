#!/usr/bin/env python3
"""The compose stack's one-shot `init` service (installed in the image as
kubelite-stack-init): `kubelite init` in the pki volume, then what nodes join with in the join
volume and the administrator's client config for the host.

    kubelite-stack-init --host-server 127.0.0.1:6443 [kubelite init's options ...]

- ``--data-dir`` (/etc/kubelite, the pki volume): `kubelite init`'s data dir with every
  option not named here passed on (--apiserver-address, --etcd-address, ...). The CAs' keys
  are there: only control-plane containers mount it.
- ``--join-dir`` (/etc/kubelite-join, the join volume, read-only in node containers):
  ``ca.crt``, ``ca-cert-hash`` and ``token`` (what `kubelite join` takes on another host),
  ``bootstrap-kubelet.conf`` (the API server, the CA and the token: a kubelet's
  --bootstrap-kubeconfig) and ``proxy.conf`` (the proxies' credentials, system:kube-proxy).
- ``--export`` (/export/config, a directory of the host): the admin's kubeconfig with the
  API server as the host reaches it (``--host-server``, the published port on 127.0.0.1,
  which the API server's certificate names), owned by whoever owns that directory.

Every run keeps the credentials that exist (`kubelite init` adds only what is missing) and
writes the join files and the export again, so a changed host port is picked up.

``--insecure`` (docker-compose.insecure.yml, for learning only): no credentials at all; the
export is klctl's plaintext config, ``{"server": HOST:PORT}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kubelite.cli import init as init_command
from kubelite.cli.config import write_config
from kubelite.cli.join import BOOTSTRAP_KUBECONFIG, BOOTSTRAP_USER, CLUSTER_NAME
from kubelite.cli.local import build_parser
from kubelite.client.config import (
    ConfigError,
    load_kubeconfig,
    normalize_server,
    read_kubeconfig_file,
    server_url,
    write_kubeconfig,
    write_kubeconfig_data,
)
from kubelite.pki import ClusterPki, PkiError

JOIN_FILES = ("ca.crt", "ca-cert-hash", "token", BOOTSTRAP_KUBECONFIG, "proxy.conf")
"""What the join volume holds."""


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the rest (`kubelite init`'s)."""
    p = argparse.ArgumentParser(prog="kubelite-stack-init", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("/etc/kubelite"), metavar="DIR",
                   help="kubelite init's data dir (the pki volume)")
    p.add_argument("--join-dir", type=Path, default=Path("/etc/kubelite-join"), metavar="DIR",
                   help="where the files nodes join with are written (the join volume)")
    p.add_argument("--export", type=Path, default=Path("/export/config"), metavar="PATH",
                   help="where the admin's kubeconfig for the host is written")
    p.add_argument("--host-server", required=True, metavar="HOST:PORT",
                   help="the API server as the host reaches it (the published port)")
    p.add_argument("--insecure", action="store_true",
                   help="for learning only: make no credentials; export a plaintext config")
    args, init_args = p.parse_known_args(argv)
    try:
        args.host_server = normalize_server(args.host_server)
    except ConfigError as e:
        p.error(f"--host-server: {e}")
    return args, init_args


def run_init(data_dir: Path, init_args: list[str]) -> int:
    """`kubelite init --data-dir DIR ...` (its own usage errors exit 2)."""
    return init_command.run(build_parser().parse_args(
        ["init", "--data-dir", str(data_dir), *init_args]))


def write_join_files(pki: ClusterPki, join_dir: Path) -> None:
    """The join volume's files, each replaced atomically."""
    join_dir.mkdir(parents=True, exist_ok=True)
    ca = pki.ca_cert.read_bytes()
    token = pki.read_bootstrap_token()
    server = load_kubeconfig(pki.admin_conf).server
    write_file(join_dir / "ca.crt", ca, 0o644)
    write_file(join_dir / "ca-cert-hash", (pki.ca_cert_hash() + "\n").encode(), 0o644)
    write_file(join_dir / "token", (token + "\n").encode(), 0o600)
    write_kubeconfig(join_dir / BOOTSTRAP_KUBECONFIG, cluster=CLUSTER_NAME, server=server,
                     ca_pem=ca, user=BOOTSTRAP_USER, token=token)
    write_file(join_dir / "proxy.conf", pki.proxy_conf.read_bytes(), 0o600)


def export_admin_config(pki: ClusterPki, target: Path, host_server: str) -> None:
    """admin.conf with every cluster's server the host's address, owned by the owner of the
    directory it is written to (the host user who made it)."""
    data = read_kubeconfig_file(pki.admin_conf)
    for entry in data.get("clusters") or []:
        entry["cluster"]["server"] = server_url(host_server)
    write_kubeconfig_data(target, data)
    give_to_directory_owner(target)


def give_to_directory_owner(path: Path) -> None:
    owner = path.parent.stat()
    os.chown(path, owner.st_uid, owner.st_gid)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Writes a file atomically with ``mode``."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args, init_args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.insecure:
        give_to_directory_owner(write_config(args.export, args.host_server))
        print(f"INSECURE (for learning only): no credentials; klctl on the host talks"
              f" plaintext to {args.host_server}.", flush=True)
        return 0
    code = run_init(args.data_dir, init_args)
    if code != 0:
        return code
    pki = ClusterPki(args.data_dir)
    try:
        write_join_files(pki, args.join_dir)
        export_admin_config(pki, args.export, args.host_server)
    except (OSError, ConfigError, PkiError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Nodes join with {args.join_dir}/: {', '.join(JOIN_FILES)}.\n"
          f"klctl on the host: KUBELITE_CONFIG=<the exported directory>/{args.export.name}"
          f" (the cluster's admin, server {server_url(args.host_server)}).", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
