"""The kubelet's TLS bootstrap on disk: which kubeconfig is still good, the node kubeconfig it
writes, the serving certificate's placeholder, and the flags."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from kubelet import __main__ as kubelet_main
from kubelet.tls_bootstrap import (
    BootstrapError,
    ServingCertificate,
    TlsBootstrapSettings,
    certificate_usable,
    existing_client_config,
    issued,
    write_node_kubeconfig,
)
from kubelite import pki
from kubelite.api import certificates as csrs
from kubelite.client.config import ClientConfig, load_kubeconfig
from protos.v1 import objects_pb2 as v1


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return pki.new_ca("kubernetes")


def settings(tmp_path: Path) -> TlsBootstrapSettings:
    return TlsBootstrapSettings(
        node_name="node-a", bootstrap_kubeconfig=str(tmp_path / "bootstrap.conf"),
        kubeconfig=str(tmp_path / "kubelet.conf"), cert_dir=str(tmp_path / "pki"),
        serving_addresses=("10.0.0.5", "node-a"))


def test_the_node_kubeconfig_names_the_certificate_files(ca: tuple[bytes, bytes],
                                                         tmp_path: Path) -> None:
    cert, key = pki.issue(ca[0], ca[1], "system:node:node-a", ["system:nodes"], client=True)
    (tmp_path / "c.crt").write_bytes(cert)
    (tmp_path / "c.key").write_bytes(key)
    bootstrap = ClientConfig("10.0.0.1:6443", ca_pem=ca[0], token="abcdef.0123456789abcdef")
    path = str(tmp_path / "kubelet.conf")
    write_node_kubeconfig(path, bootstrap, tmp_path / "c.crt", tmp_path / "c.key")
    config = load_kubeconfig(path)
    assert (config.server, config.ca_pem, config.cert_pem, config.key_pem, config.token) == (
        "10.0.0.1:6443", ca[0], cert, key, None)
    assert (Path(path).stat().st_mode & 0o777) == 0o600
    assert existing_client_config(path) is not None


def test_an_expired_or_missing_client_certificate_means_bootstrapping(
        ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    assert existing_client_config(str(tmp_path / "none.conf")) is None
    cert, key = pki.issue(ca[0], ca[1], "system:node:node-a", ["system:nodes"], client=True)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    assert certificate_usable(cert, key)
    assert not certificate_usable(cert, key, now=later)
    other_key, _ = pki.new_rsa_key_pair()
    assert not certificate_usable(cert, other_key)
    assert not certificate_usable(b"garbage", key)


def test_the_serving_certificate_starts_as_an_untrusted_placeholder(
        ca: tuple[bytes, bytes], tmp_path: Path) -> None:
    s = settings(tmp_path)
    serving = ServingCertificate(s, ClientConfig("10.0.0.1:6443", ca_pem=ca[0]))
    serving.prepare()
    assert serving.needed and not serving.issued.is_set()
    placeholder = serving.cert_file.read_bytes()
    key = serving.key_file.read_bytes()
    assert not pki.is_issued_by(placeholder, ca[0])
    assert pki.load_certificate(placeholder).public_key() == pki.load_certificate(
        pki.new_ca("x", key=key)[0]).public_key()
    assert serving.ca_file.read_bytes() == ca[0]
    assert (serving.key_file.stat().st_mode & 0o777) == 0o600

    # Once the cluster signed one for the node's addresses, a restart keeps it.
    request = pki.new_csr("system:node:node-a", ["system:nodes"], ["node-a"], ["10.0.0.5"],
                          key_pem=key)
    serving.cert_file.write_bytes(pki.sign_csr(ca[0], ca[1], request, ["server auth"]))
    again = ServingCertificate(s, ClientConfig("10.0.0.1:6443", ca_pem=ca[0]))
    again.prepare()
    assert not again.needed and again.issued.is_set()
    assert again.key_file.read_bytes() == key

    # A node whose address changed asks again.
    moved = ServingCertificate(
        dataclasses.replace(s, serving_addresses=("10.0.0.6", "node-a")),
        ClientConfig("10.0.0.1:6443", ca_pem=ca[0]))
    moved.prepare()
    assert moved.needed


def test_denied_and_failed_requests_say_why() -> None:
    csr = v1.CertificateSigningRequest(metadata=v1.ObjectMeta(name="csr-abc"))
    assert issued(csr) is None
    csrs.add_condition(csr, csrs.DENIED, "KubectlDeny", "not this one")
    with pytest.raises(BootstrapError, match=r"csr-abc was denied \(KubectlDeny: not this one\)"):
        issued(csr)
    failed = v1.CertificateSigningRequest(metadata=v1.ObjectMeta(name="csr-f"))
    csrs.add_condition(failed, csrs.FAILED, "SignerValidationFailure", "bad usages")
    with pytest.raises(BootstrapError, match=r"csr-f failed \(SignerValidationFailure"):
        issued(failed)


def test_bootstrap_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s, _ = kubelet_main.parse_args([
        "--node-name", "n", "--root-dir", str(tmp_path), "--bootstrap-kubeconfig", "b.conf",
        "--kubeconfig", "k.conf", "--bootstrap-wait-timeout", "2m"])
    assert (s.bootstrap_kubeconfig, s.kubeconfig, s.cert_dir, s.bootstrap_wait_timeout) == (
        "b.conf", "k.conf", str(tmp_path / "pki"), 120.0)
    with pytest.raises(SystemExit):
        kubelet_main.parse_args(["--node-name", "n", "--bootstrap-kubeconfig", "b.conf"])
    assert "--kubeconfig: required with --bootstrap-kubeconfig" in capsys.readouterr().err
