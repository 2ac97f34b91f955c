"""`kubelite up|down|status` options: every port, the node address block and the data dir are
settable and documented in --help; bad values are errors naming the option and the rule."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest

from kubelite.cli import local
from kubelite.cli.local import LocalClusterSettings, build_parser, parse_args

UP_OPTIONS = {
    "--data-dir", "--nodes", "--node-address-base", "--api-port", "--http-api-port",
    "--etcd-port",
    "--etcd-peer-port", "--kubelet-port", "--kubelet-health-port", "--proxy-health-port",
    "--scheduler-health-port", "--controller-manager-health-port",
    "--service-cluster-ip-range", "--ready-timeout", "--pod-network", "--runtime",
    "--cluster-cidr", "--local-registry", "--registry-port", "--insecure", "--apiservers",
}


@pytest.fixture(autouse=True)
def no_etcd_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "find_etcd", lambda: "etcd")


def argv_of(settings: LocalClusterSettings) -> dict[str, Sequence[str]]:
    return {c.name: getattr(c.process, "argv", ()) for c in local._components(settings)}


def test_defaults_are_kubernetes_ports_and_an_absolute_data_dir() -> None:
    command, s = parse_args(["up"])
    assert command == "up"
    assert s == LocalClusterSettings()
    assert s.data_dir == Path.home() / ".kubelite" and s.data_dir.is_absolute()
    assert s.node_addresses() == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert (s.api_port, s.etcd_port, s.etcd_peer_port, s.kubelet_port) == (6443, 2479, 2480,
                                                                             10250)
    assert s.http_api_port == 6444
    assert (s.scheduler_health_port, s.controller_manager_health_port, s.kubelet_health_port,
            s.proxy_health_port) == (10259, 10257, 10248, 10256)
    assert s.service_cluster_ip_range == "127.96.0.0/16"
    for command in ("status", "down"):
        assert parse_args([command])[1].data_dir == Path.home() / ".kubelite"


def test_every_option_reaches_the_components(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, s = parse_args([
        "up", "--data-dir", "rel/dir", "--nodes", "2", "--node-address-base", "127.0.1.10",
        "--api-port", "7443", "--http-api-port", "7444", "--etcd-port", "3479",
        "--etcd-peer-port", "3490",
        "--kubelet-port", "11250", "--kubelet-health-port", "11248",
        "--proxy-health-port", "11256", "--scheduler-health-port", "11259",
        "--controller-manager-health-port", "11257",
        "--service-cluster-ip-range", "127.97.0.0/16", "--ready-timeout", "30",
    ])
    assert s.data_dir == tmp_path / "rel" / "dir"  # absolute, from where it was given
    assert s.node_addresses() == ["127.0.1.10", "127.0.1.11"]
    assert s.ready_timeout == 30
    argv = argv_of(s)
    assert set(argv) == {"etcd", "apiserver", "scheduler", "controller-manager",
                         "kubelet-node-1", "kubelet-node-2", "proxy-node-1", "proxy-node-2"}

    def value(name: str, flag: str) -> str:
        args = argv[name]
        return args[args.index(flag) + 1]

    # Secured by default: TLS to etcd, the API server's certificates, every client's config.
    pki = tmp_path / "rel" / "dir" / "pki"
    assert value("etcd", "--listen-client-urls") == "https://127.0.0.1:3479"
    assert value("etcd", "--listen-peer-urls") == "https://127.0.0.1:3490"
    assert "--client-cert-auth" in argv["etcd"]
    assert value("apiserver", "--tls-cert-file") == str(pki / "apiserver.crt")
    assert value("apiserver", "--client-ca-file") == str(pki / "ca.crt")
    assert value("apiserver", "--encryption-provider-config") == str(
        pki / "encryption-config.yaml")
    assert "--insecure" not in argv["apiserver"]
    assert value("scheduler", "--kubeconfig").endswith("scheduler.conf")
    assert value("controller-manager", "--cluster-signing-key-file") == str(pki / "ca.key")
    assert value("etcd", "--data-dir") == str(tmp_path / "rel" / "dir" / "etcd")
    assert value("apiserver", "--listen") == "127.0.0.1:7443"
    assert value("apiserver", "--http-listen") == "127.0.0.1:7444"
    assert value("apiserver", "--etcd-servers") == "127.0.0.1:3479"
    assert value("apiserver", "--service-cluster-ip-range") == "127.97.0.0/16"
    assert value("scheduler", "--health-address") == "127.0.0.1:11259"
    assert value("controller-manager", "--health-address") == "127.0.0.1:11257"
    for name, address in (("node-1", "127.0.1.10"), ("node-2", "127.0.1.11")):
        assert value(f"kubelet-{name}", "--address") == address
        assert value(f"kubelet-{name}", "--port") == "11250"
        assert value(f"kubelet-{name}", "--health-address") == f"{address}:11248"
        assert value(f"kubelet-{name}", "--server") == "127.0.0.1:7443"
        assert value(f"proxy-{name}", "--node-ip") == address
        assert value(f"proxy-{name}", "--health-address") == f"{address}:11256"
        assert value(f"kubelet-{name}", "--kubeconfig").endswith(f"kubelet/{name}.conf")
        assert value(f"kubelet-{name}", "--tls-cert-file") == str(
            pki / "kubelet" / f"{name}-serving.crt")


def test_insecure_is_explicit_and_drops_every_credential() -> None:
    _, s = parse_args(["up", "--insecure"])
    argv = argv_of(s)
    assert "--insecure" in argv["apiserver"]
    assert "--tls-cert-file" not in argv["apiserver"]
    assert argv["etcd"][argv["etcd"].index("--listen-client-urls") + 1].startswith("http://")
    assert all("--kubeconfig" not in args for args in argv.values())


def test_up_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["up", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    up = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = [a for a in up.choices["up"]._actions if a.dest != "help"]
    assert {s for a in actions for s in a.option_strings} == UP_OPTIONS
    for action in actions:
        assert action.help and len(action.help) > 15, action.option_strings
        assert action.option_strings[0] in text
    assert "(default: 6443)" in text and "(default: 127.0.0.2)" in text
    assert str(Path.home() / ".kubelite") in text


@pytest.mark.parametrize(("argv", "message"), [
    (["--api-port", "0"], "--api-port: invalid value 0: must be a port from 1 to 65535"),
    (["--proxy-health-port", "70000"], "--proxy-health-port: invalid value 70000"),
    (["--etcd-port", "http"], "--etcd-port: invalid int value: 'http'"),
    (["--nodes", "0"], "--nodes: invalid value 0: must be at least 1"),
    (["--node-address-base", "10.0.0.2"],
     "--node-address-base: invalid value 10.0.0.2: must be an IPv4 loopback address"),
    (["--node-address-base", "localhost"], "--node-address-base: invalid value localhost"),
    (["--node-address-base", "127.255.255.253", "--nodes", "3"],
     "--node-address-base: invalid value 127.255.255.253: the 3 node addresses from there"
     " must lie within 127.0.0.1-127.255.255.254"),
    (["--node-address-base", "127.0.0.1"],
     "--node-address-base: invalid value 127.0.0.1: the node addresses must not include"
     " 127.0.0.1"),
    (["--kubelet-port", "6443"], "--kubelet-port: invalid value 6443: --api-port uses it"),
    (["--etcd-peer-port", "2479"], "--etcd-peer-port: invalid value 2479: --etcd-port uses it"),
    (["--http-api-port", "6443"], "--http-api-port: invalid value 6443: --api-port uses it"),
    (["--service-cluster-ip-range", "nope"],
     "--service-cluster-ip-range: invalid value nope: must be a CIDR"),
    (["--service-cluster-ip-range", "10.96.0.0/12"],
     "--service-cluster-ip-range: invalid value 10.96.0.0/12: must be inside 127.0.0.0/8"),
    (["--service-cluster-ip-range", "127.0.0.0/24"],
     "--service-cluster-ip-range: invalid value 127.0.0.0/24: overlaps the node addresses"),
])
def test_bad_options_are_errors_naming_the_option(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["up", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_up_refuses_ports_in_use_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        _, s = parse_args(["up", "--data-dir", str(tmp_path / "c"), "--api-port", str(port)])
        assert local.up(s) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 (--api-port) is in use" in err
    assert not (tmp_path / "c").exists()


def test_containerd_runtime_moves_clusterips_off_loopback_and_runs_a_containerd_per_node(
) -> None:
    _, s = parse_args(["up", "--runtime", "containerd", "--local-registry", "--nodes", "2"])
    assert (s.service_cluster_ip_range, s.pod_network) == (local.POD_SERVICE_RANGE, "")
    argv = argv_of(s)
    names = [c.name for c in local._components(s)]
    assert names.index("registry") < names.index("containerd-node-1") < names.index(
        "kubelet-node-1")
    kubelet = " ".join(argv["kubelet-node-1"])
    assert "--container-runtime containerd" in kubelet and "--cni-bridge kubelite1" in kubelet
    assert "--pod-cidr" not in kubelet  # node IPAM gives it
    manager = " ".join(argv["controller-manager"])
    assert "--allocate-node-cidrs --cluster-cidr 10.244.0.0/16" in manager
    proxy = " ".join(argv["proxy-node-2"])
    assert "--cluster-ip-interface kube-ipvs0 --service-cluster-ip-range 10.96.0.0/16" in proxy


@pytest.mark.parametrize(("argv", "message"), [
    (["--local-registry"], "--local-registry: invalid value True: needs --runtime containerd"),
    (["--runtime", "containerd", "--service-cluster-ip-range", "127.97.0.0/16"],
     "--service-cluster-ip-range: invalid value 127.97.0.0/16: must not be loopback"),
    (["--runtime", "containerd", "--cluster-cidr", "10.96.0.0/12"],
     "--cluster-cidr: invalid value 10.96.0.0/12: must not be loopback nor overlap"),
    (["--runtime", "containerd", "--cluster-cidr", "10.244.0.0/25"],
     "--cluster-cidr: invalid value 10.244.0.0/25: has no room for 3 nodes' /24 blocks"),
])
def test_bad_containerd_options_name_the_option(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["up", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_containerd_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubelite.cli import local_containerd

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    missing = local_containerd.missing_for_containerd(local_registry=True)
    text = "\n".join(missing)
    assert missing[0].startswith("root")
    for needed in ("containerd (apt-get install containerd)", "runc (apt-get install runc)",
                   "skopeo (apt-get install skopeo)",
                   "/usr/lib/cni/bridge (apt-get install containernetworking-plugins)"):
        assert needed in text


def test_containerd_sockets_move_to_run_when_the_data_dir_is_deep() -> None:
    from kubelite.cli.local_containerd import SOCKET_DIR, socket_path

    assert socket_path(Path("/d/nodes/node-1/containerd")) == Path(
        "/d/nodes/node-1/containerd/containerd.sock")
    deep = Path("/tmp/" + "x" * 90 + "/nodes/node-1/containerd")
    moved = socket_path(deep)
    assert moved.parent.parent == SOCKET_DIR and len(str(moved)) < 100
    assert moved != socket_path(Path(str(deep).replace("node-1", "node-2")))


def test_kubectl_config_points_at_the_http_api_with_the_admins_credentials(
        tmp_path: Path) -> None:
    from kubelite.client.config import read_kubeconfig_file
    from kubelite.pki import init_cluster

    _, s = parse_args(["up", "--data-dir", str(tmp_path / "c"), "--http-api-port", "7444"])
    pki = init_cluster(s.data_dir).pki
    path = local.write_kubectl_config(s, pki)
    assert path == s.data_dir / "kubectl.conf" and path.stat().st_mode & 0o077 == 0
    config, admin = read_kubeconfig_file(path), read_kubeconfig_file(pki.admin_conf)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7444"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"] == (
        admin["clusters"][0]["cluster"]["certificate-authority-data"])
    assert config["users"] == admin["users"]
    assert config["current-context"] == admin["current-context"]

    _, insecure = parse_args(["up", "--data-dir", str(tmp_path / "i"), "--insecure"])
    config = read_kubeconfig_file(local.write_kubectl_config(insecure, None))
    assert config["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:6444"}
