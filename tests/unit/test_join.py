"""`kubelite join`'s options and the node it starts: each bad value is an error naming its
option, and the kubelet and proxy command lines are ones their daemons accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelet import __main__ as kubelet_main
from kubelite.cli import local
from kubelite.cli.join import JoinError, JoinSettings, node_processes, write_bootstrap_files
from kubelite.client.config import load_kubeconfig

TOKEN = "abcdef.0123456789abcdef"
HASH = "sha256:" + "ab" * 32


def settings(tmp_path: Path, **kw: object) -> JoinSettings:
    args: dict[str, object] = {"server": "https://10.0.0.1:6443", "token": TOKEN,
                               "ca_cert_hash": HASH, "node_name": "worker-1",
                               "data_dir": tmp_path}
    args.update(kw)
    return JoinSettings(**args)  # type: ignore[arg-type]


def test_settings_are_normalized(tmp_path: Path) -> None:
    s = settings(tmp_path, ca_cert_hash=HASH.upper().replace("SHA256", "sha256"))
    assert s.server == "10.0.0.1:6443"
    assert s.host_port == ("10.0.0.1", 6443)
    assert s.ca_cert_hash == HASH
    assert s.bootstrap_kubeconfig == tmp_path / "bootstrap-kubelet.conf"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("token", "abcdef", "--token: must be ID.SECRET"),
    ("token", "ABCDEF.0123456789abcdef", "--token: must be ID.SECRET"),
    ("ca_cert_hash", "md5:00", "--discovery-token-ca-cert-hash: 'md5:00' must be sha256:"),
    ("ca_cert_hash", "sha256:abc", "--discovery-token-ca-cert-hash"),
    ("node_name", "Worker_1", "--node-name: 'Worker_1'"),
    ("kubelet_port", 0, "--kubelet-port: 0 is not a port"),
    ("ready_timeout", 0.0, "--ready-timeout: must be more than 0"),
])
def test_bad_values_name_their_option(tmp_path: Path, field: str, value: object,
                                      message: str) -> None:
    with pytest.raises(JoinError, match=message.replace("(", r"\(")):
        settings(tmp_path, **{field: value})


def test_the_bootstrap_kubeconfig_holds_server_ca_and_token(tmp_path: Path) -> None:
    from kubelite import pki

    ca, _ = pki.new_ca("kubernetes")
    s = settings(tmp_path / "node")
    write_bootstrap_files(s, ca)
    config = load_kubeconfig(s.bootstrap_kubeconfig)
    assert (config.server, config.ca_pem, config.token) == ("10.0.0.1:6443", ca, TOKEN)
    assert (s.bootstrap_kubeconfig.stat().st_mode & 0o777) == 0o600
    assert s.ca_file.read_bytes() == ca


def test_the_node_runs_a_bootstrapping_kubelet_and_a_proxy_with_its_kubeconfig(
        tmp_path: Path) -> None:
    s = settings(tmp_path, kubelet_args=("--cluster-dns=10.96.0.10",), kubelet_port=11250)
    kubelet, proxy = node_processes(s, "10.0.0.7")
    kubelet_settings, _ = kubelet_main.parse_args(list(kubelet.process.argv[1:]))
    assert kubelet_settings.node_name == "worker-1"
    assert kubelet_settings.address == "10.0.0.7"
    assert kubelet_settings.port == 11250
    assert kubelet_settings.bootstrap_kubeconfig == str(tmp_path / "bootstrap-kubelet.conf")
    assert kubelet_settings.kubeconfig == str(tmp_path / "kubelet.conf")
    assert kubelet_settings.cluster_dns == ("10.96.0.10",)
    assert kubelet.health == "10.0.0.7:10248"
    assert proxy.health == "10.0.0.7:10256"
    argv = list(proxy.process.argv)
    assert argv[argv.index("--kubeconfig") + 1] == str(tmp_path / "kubelet.conf")


def test_join_is_a_kubelite_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    parser = local.build_parser()
    a = parser.parse_args(["join", "10.0.0.1:6443", "--token", TOKEN,
                           "--discovery-token-ca-cert-hash", HASH, "--node-name", "w",
                           "--kubelet-arg=--cluster-dns=10.96.0.10"])
    assert (a.command, a.server, a.kubelet_arg) == ("join", "10.0.0.1:6443",
                                                    ["--cluster-dns=10.96.0.10"])
    with pytest.raises(SystemExit):
        local.main(["join", "10.0.0.1:6443", "--token", "nope",
                    "--discovery-token-ca-cert-hash", HASH, "--node-name", "w"])
    assert "--token: must be ID.SECRET" in capsys.readouterr().err
