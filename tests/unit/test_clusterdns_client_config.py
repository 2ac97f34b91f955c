"""How kubelite-dns finds the API server: --kubeconfig, --server, $KUBELITE_SERVER, the
in-cluster config of its pod (ServiceAccount token and cluster CA), or the API's Service."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterdns.__main__ import default_server, parse_args
from kubelite.client.config import ClientConfig, write_kubeconfig
from kubelite.testing.tls import CertificateAuthority

POD_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def mounted(root: Path, ca: CertificateAuthority) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    root.mkdir(parents=True)
    (root / "ca.crt").write_bytes(ca.cert_pem)
    (root / "token").write_text("eyJhbGciOiJSUzI1NiJ9.e30.sig\n")
    (root / "namespace").write_text("kube-system")
    return root


def test_in_a_pod_with_a_token_the_in_cluster_config_is_used(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    config = default_server(POD_ENV, mounted(tmp_path / "sa", ca))
    assert isinstance(config, ClientConfig)
    assert (config.server, config.ca_pem, config.namespace) == (
        "10.96.0.1:443", ca.cert_pem, "kube-system")
    assert config.token_file == str(tmp_path / "sa" / "token")
    assert config.current_token() == "eyJhbGciOiJSUzI1NiJ9.e30.sig"


def test_in_a_pod_without_a_token_the_service_is_used_in_plaintext(tmp_path: Path) -> None:
    assert default_server(POD_ENV, tmp_path / "absent") == "10.96.0.1:443"


def test_kubelite_server_wins_and_outside_a_pod_it_is_the_local_default(
        tmp_path: Path) -> None:
    root = mounted(tmp_path / "sa", CertificateAuthority())
    assert default_server({**POD_ENV, "KUBELITE_SERVER": "api:6443"}, root) == "api:6443"
    assert default_server({}, root) == "127.0.0.1:6443"


def test_kubeconfig_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = CertificateAuthority()
    pair = ca.issue("system:kube-dns", server=False)
    path = write_kubeconfig(tmp_path / "dns.conf", cluster="kubelite", server="127.0.0.1:6443",
                            ca_pem=ca.cert_pem, user="dns", cert_pem=pair.cert_pem,
                            key_pem=pair.key_pem)
    target, _, _ = parse_args(["--kubeconfig", str(path), "--server", "ignored:1"])
    assert isinstance(target, ClientConfig)
    assert (target.server, target.cert_pem) == ("127.0.0.1:6443", pair.cert_pem)
    assert parse_args(["--server", "10.0.0.1:6443"])[0] == "10.0.0.1:6443"

    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", str(tmp_path / "missing.conf")])
    assert "--kubeconfig: kubeconfig" in capsys.readouterr().err
