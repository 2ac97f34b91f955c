"""`kubelite init`: the command line over kubelite.pki.init_cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubelite.cli.init import parse_node
from kubelite.cli.local import main
from kubelite.client.config import load_kubeconfig
from kubelite.pki import ClusterPki, certificate_sans


def _init(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(["init", *args])
    return int(done.value.code or 0)


def test_init_prints_what_it_made_and_the_join_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "cluster"
    assert _init("--data-dir", str(d), "--apiserver-address", "127.0.0.9",
                 "--apiserver-port", "7443", "--node", "n1=127.0.0.2,n1.lan") == 0
    out = capsys.readouterr().out
    assert "wrote pki/ca.crt\n" in out and "wrote kubelet/n1.conf\n" in out
    assert f"export KUBELITE_CONFIG={d / 'admin.conf'}" in out
    # kubectl's kubeconfig: the admin's credentials, the Kubernetes HTTP API as its server.
    assert f"export KUBECONFIG={d / 'kubectl.conf'}" in out
    kubectl = load_kubeconfig(d / "kubectl.conf")
    admin = load_kubeconfig(d / "admin.conf")
    assert (kubectl.server, admin.server) == ("127.0.0.9:6444", "127.0.0.9:7443")
    assert (kubectl.cert_pem, kubectl.ca_pem) == (admin.cert_pem, admin.ca_pem)
    pki = ClusterPki(d)
    join = re.search(r"kubelite join (\S+) --token (\S+) \\\n\s+--discovery-token-ca-cert-hash"
                     r" (\S+) --node-name NAME --data-dir DIR", out)
    assert join is not None, out
    assert join.groups() == ("127.0.0.9:7443", pki.read_bootstrap_token(), pki.ca_cert_hash())
    assert certificate_sans(pki.kubelet_serving_cert("n1").read_bytes()) == (
        ["n1", "n1.lan"], ["127.0.0.2"])

    assert _init("--data-dir", str(d), "--node", "n1=127.0.0.2", "--node", "n2=127.0.0.3") == 0
    again = capsys.readouterr().out
    assert "wrote pki/kubelet/n2.crt" in again and "wrote pki/ca.crt" not in again
    assert re.search(r"kept \d+ existing files", again)


def test_init_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _init("--data-dir", str(tmp_path), "--node", "n1") == 2
    assert "--node: 'n1' must be NAME=ADDR[,ADDR]" in capsys.readouterr().err
    assert _init("--data-dir", str(tmp_path), "--service-cluster-ip-range", "nope") == 1
    assert capsys.readouterr().err == (
        "error: --service-cluster-ip-range: 'nope' is not a CIDR such as 10.96.0.0/16\n")
    assert _init("--data-dir", str(tmp_path), "--node", "N_1=127.0.0.2") == 1
    assert capsys.readouterr().err.startswith("error: --node: 'N_1': a lowercase RFC 1123")


def test_parse_node() -> None:
    assert parse_node("a=1.2.3.4, b.lan") == ("a", ["1.2.3.4", "b.lan"])
    for bad in ("a", "a=", "=1.2.3.4", "a=,"):
        with pytest.raises(ValueError, match="must be NAME=ADDR"):
            parse_node(bad)
