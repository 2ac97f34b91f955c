"""`kubelite up --apiservers N`: N API server processes over the one etcd, on ports of their
own, and every component, klctl and the client configs given all of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from kubelite.cli import local
from kubelite.cli.local import LocalClusterSettings, parse_args
from kubelite.client.config import load_kubeconfig
from kubelite.pki import ClusterPki


@pytest.fixture(autouse=True)
def no_etcd_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "find_etcd", lambda: "etcd")


def argv_of(settings: LocalClusterSettings) -> dict[str, Sequence[str]]:
    return {c.name: getattr(c.process, "argv", ()) for c in local._components(settings)}


def value(args: Sequence[str], flag: str) -> str:
    return args[list(args).index(flag) + 1]


def test_one_api_server_by_default() -> None:
    s = parse_args(["up"])[1]
    assert s.apiservers == 1
    assert s.apiserver_ports() == [(6443, 6444)]
    assert s.api_servers() == "127.0.0.1:6443"


def test_several_api_servers_and_every_client_gets_them_all(tmp_path: Path) -> None:
    _, s = parse_args(["up", "--data-dir", str(tmp_path / "c"), "--apiservers", "3",
                       "--nodes", "1"])
    assert s.apiserver_ports() == [(6443, 6444), (6445, 6446), (6447, 6448)]
    servers = "127.0.0.1:6443,127.0.0.1:6445,127.0.0.1:6447"
    assert s.api_servers() == servers
    argv = argv_of(s)
    assert {"apiserver", "apiserver-2", "apiserver-3"} <= set(argv)
    for name, port in (("apiserver", 6443), ("apiserver-2", 6445), ("apiserver-3", 6447)):
        assert value(argv[name], "--listen") == f"127.0.0.1:{port}"
        assert value(argv[name], "--http-listen") == f"127.0.0.1:{port + 1}"
        assert value(argv[name], "--etcd-servers") == "127.0.0.1:2479"
        # Secured: the one serving certificate (valid for 127.0.0.1, whatever the port).
        assert value(argv[name], "--tls-cert-file").endswith("apiserver.crt")
    for name in ("scheduler", "controller-manager", "kubelet-node-1", "proxy-node-1"):
        assert value(argv[name], "--server") == servers, name
    # The client configs name every server: the kubelet's kubeconfig wins over --server.
    local.init_credentials(s)
    pki = ClusterPki(s.data_dir)
    for conf in (pki.admin_conf, pki.scheduler_conf, pki.controller_manager_conf,
                 pki.proxy_conf, pki.kubelet_conf("node-1")):
        assert load_kubeconfig(conf).server == servers, conf
        cluster = yaml.safe_load(conf.read_text())["clusters"][0]["cluster"]
        assert cluster["server"] == ("https://127.0.0.1:6443,https://127.0.0.1:6445,"
                                     "https://127.0.0.1:6447")
    # Up again with one: the configs name that one alone.
    _, one = parse_args(["up", "--data-dir", str(tmp_path / "c"), "--nodes", "1"])
    local.init_credentials(one)
    assert load_kubeconfig(pki.kubelet_conf("node-1")).server == "127.0.0.1:6443"


def test_insecure_api_servers() -> None:
    _, s = parse_args(["up", "--insecure", "--apiservers", "2", "--api-port", "7000",
                       "--http-api-port", "8000"])
    argv = argv_of(s)
    assert value(argv["apiserver-2"], "--listen") == "127.0.0.1:7002"
    assert value(argv["apiserver-2"], "--http-listen") == "127.0.0.1:8002"
    assert "--insecure" in argv["apiserver-2"]
    assert value(argv["kubelet-node-1"], "--server") == "127.0.0.1:7000,127.0.0.1:7002"
    assert local.admin_target(s) == "127.0.0.1:7000,127.0.0.1:7002"
    bound = [(port, name) for _, port, name in s.bound_ports() if name == "apiservers"]
    assert bound == [(7002, "apiservers"), (8002, "apiservers")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--apiservers", "0"], "--apiservers: invalid value 0: must be at least 1"),
    (["--apiservers", "2", "--api-port", "7000", "--http-api-port", "7002"],
     "--apiservers: invalid value 2: API server 2's gRPC port 7002 is --http-api-port's too"),
    (["--apiservers", "2", "--api-port", "65535", "--http-api-port", "6444"],
     "--apiservers: invalid value 2: API server 2's gRPC port 65537 is not a port"),
    (["--apiservers", "4", "--etcd-port", "6449"],
     "--apiservers: invalid value 4: API server 4's gRPC port 6449 is --etcd-port's too"),
])
def test_api_server_ports_that_collide_are_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["up", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
