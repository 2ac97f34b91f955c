"""The cluster PKI: `kubelite init`'s layout, names, usages and SANs, idempotency, the CA
hash, CSRs and bootstrap tokens."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubelite import pki
from kubelite.client.config import load_kubeconfig
from kubelite.pki import ClusterPki, InitResult, PkiError, init_cluster

LAYOUT = [
    "pki/ca.crt", "pki/ca.key", "pki/apiserver.crt", "pki/apiserver.key",
    "pki/apiserver-kubelet-client.crt", "pki/apiserver-kubelet-client.key",
    "pki/apiserver-etcd-client.crt", "pki/apiserver-etcd-client.key",
    "pki/etcd/ca.crt", "pki/etcd/ca.key", "pki/etcd/server.crt", "pki/etcd/server.key",
    "pki/etcd/peer.crt", "pki/etcd/peer.key", "pki/sa.key", "pki/sa.pub",
    "pki/encryption-config.yaml", "bootstrap-token", "admin.conf", "scheduler.conf",
    "controller-manager.conf", "proxy.conf",
    "kubelet/node-1.conf", "pki/kubelet/node-1.crt", "pki/kubelet/node-1.key",
    "pki/kubelet/node-1-serving.crt", "pki/kubelet/node-1-serving.key",
]
SECRET_FILES = [p for p in LAYOUT if p.endswith((".key", ".conf", ".yaml"))
                and p != "pki/sa.pub"] + ["bootstrap-token"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_cluster(
        tmp_path_factory.mktemp("d") / "data",
        apiserver_addresses=["10.0.0.5", "api.example.com"], apiserver_port=7443,
        nodes=[("node-1", ["127.0.0.2", "node-1.lan"])], service_cidr="10.96.0.0/12",
        cluster_domain="cluster.test", etcd_addresses=["10.0.0.6"])


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(i) for i in san.get_values_for_type(x509.IPAddress)})


def _usages(cert: x509.Certificate) -> set[str]:
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    names = {ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}
    return {names[u] for u in eku}


def test_layout_and_modes(cluster: InitResult) -> None:
    d = cluster.pki.data_dir
    made = sorted(str(p.relative_to(d)) for p in cluster.created)
    assert made == sorted(LAYOUT)
    assert cluster.kept == ()
    for name in SECRET_FILES:
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    for name in ("pki/ca.crt", "pki/apiserver.crt", "pki/sa.pub"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o644, name
    for directory in ("", "pki", "pki/etcd", "pki/kubelet", "kubelet"):
        assert stat.S_IMODE((d / directory).stat().st_mode) == 0o700, directory
    assert not [p for p in d.rglob(".*")], "no temporary files are left"


def test_identities_usages_and_issuers(cluster: InitResult) -> None:
    p = cluster.pki
    ca, etcd_ca = p.ca_cert.read_bytes(), p.etcd_ca_cert.read_bytes()
    assert pki.identity(ca) == ("kubernetes", [])
    assert pki.identity(etcd_ca) == ("etcd-ca", [])
    expected = {
        p.apiserver_cert: ("kube-apiserver", [], {"server"}, ca),
        p.apiserver_kubelet_client_cert: ("kube-apiserver-kubelet-client", ["system:masters"],
                                          {"client"}, ca),
        p.apiserver_etcd_client_cert: ("kube-apiserver-etcd-client", [], {"client"}, etcd_ca),
        p.etcd_server_cert: ("kube-etcd", [], {"server", "client"}, etcd_ca),
        p.etcd_peer_cert: ("kube-etcd-peer", [], {"server", "client"}, etcd_ca),
        p.kubelet_client_cert("node-1"): ("system:node:node-1", ["system:nodes"], {"client"},
                                          ca),
        p.kubelet_serving_cert("node-1"): ("system:node:node-1", ["system:nodes"], {"server"},
                                           ca),
    }
    for path, (cn, orgs, usages, issuer) in expected.items():
        pem = path.read_bytes()
        assert pki.identity(pem) == (cn, orgs), path
        assert _usages(_cert(path)) == usages, path
        assert pki.is_issued_by(pem, issuer), path
        other = etcd_ca if issuer == ca else ca
        assert not pki.is_issued_by(pem, other), path
        cert = _cert(path)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.not_valid_after_utc - cert.not_valid_before_utc < datetime.timedelta(
            days=366)
    ca_cert = _cert(p.ca_cert)
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc > datetime.timedelta(
        days=3649)


def test_serving_certificates_name_their_addresses(cluster: InitResult) -> None:
    p = cluster.pki
    dns, ips = _sans(_cert(p.apiserver_cert))
    assert dns == {"api.example.com", "localhost", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.test"}
    assert ips == {"10.0.0.5", "127.0.0.1", "10.96.0.1"}
    assert _sans(_cert(p.etcd_server_cert)) == ({"localhost"}, {"127.0.0.1", "10.0.0.6"})
    assert _sans(_cert(p.etcd_peer_cert)) == ({"localhost"}, {"127.0.0.1", "10.0.0.6"})
    assert _sans(_cert(p.kubelet_serving_cert("node-1"))) == ({"node-1", "node-1.lan"},
                                                              {"127.0.0.2"})


def test_apiserver_certificate_file_is_the_chain(cluster: InitResult) -> None:
    chain = x509.load_pem_x509_certificates(cluster.pki.apiserver_cert.read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=kube-apiserver",
                                                           "CN=kubernetes"]
    assert chain[1] == _cert(cluster.pki.ca_cert)


def test_client_configs(cluster: InitResult) -> None:
    p = cluster.pki
    users = {p.admin_conf: ("kubernetes-admin", ["system:masters"]),
             p.scheduler_conf: ("system:kube-scheduler", []),
             p.controller_manager_conf: ("system:kube-controller-manager", []),
             p.proxy_conf: ("system:kube-proxy", []),
             p.kubelet_conf("node-1"): ("system:node:node-1", ["system:nodes"])}
    for path, who in users.items():
        config = load_kubeconfig(path)
        assert config.server == "10.0.0.5:7443"
        assert config.ca_pem == p.ca_cert.read_bytes()
        assert config.cert_pem is not None and config.key_pem is not None
        assert pki.identity(config.cert_pem) == who
        data = yaml.safe_load(path.read_text())
        assert data["apiVersion"] == "v1" and data["kind"] == "Config"
        assert data["clusters"][0]["name"] == "kubelite"
        assert data["clusters"][0]["cluster"]["server"] == "https://10.0.0.5:7443"
        assert data["current-context"] == f"{who[0]}@kubelite"
    assert cluster.server == "10.0.0.5:7443"


def test_service_account_keys_encryption_config_and_token(cluster: InitResult) -> None:
    p = cluster.pki
    private = serialization.load_pem_private_key(p.sa_key.read_bytes(), None)
    public = serialization.load_pem_public_key(p.sa_pub.read_bytes())
    assert private.public_key() == public
    config = yaml.safe_load(p.encryption_config.read_text())
    assert config["apiVersion"] == "apiserver.config.k8s.io/v1"
    assert config["kind"] == "EncryptionConfiguration"
    [resource] = config["resources"]
    assert resource["resources"] == ["secrets"]
    aesgcm, identity = resource["providers"]
    assert identity == {"identity": {}}
    [key] = aesgcm["aesgcm"]["keys"]
    assert key["name"] == "key1" and len(base64.b64decode(key["secret"])) == 32
    token = p.read_bootstrap_token()
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    assert cluster.bootstrap_token == token


def test_ca_hash_is_sha256_of_the_subject_public_key_info(cluster: InitResult) -> None:
    ca = _cert(cluster.pki.ca_cert)
    spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    expected = "sha256:" + hashlib.sha256(spki).hexdigest()
    assert pki.public_key_hash(cluster.pki.ca_cert.read_bytes()) == expected
    assert cluster.ca_cert_hash == expected == cluster.pki.ca_cert_hash()


def test_init_again_keeps_everything_and_adds_new_nodes(tmp_path: Path) -> None:
    first = init_cluster(tmp_path, nodes=[("a", ["127.0.0.2"])])
    before = {p: p.read_bytes() for p in first.created}
    again = init_cluster(tmp_path, nodes=[("a", ["127.0.0.2"])])
    assert again.created == ()
    assert set(again.kept) == set(first.created)
    assert again.bootstrap_token == first.bootstrap_token
    assert again.ca_cert_hash == first.ca_cert_hash
    more = init_cluster(tmp_path, nodes=[("a", ["127.0.0.2"]), ("b", ["127.0.0.3"])])
    assert sorted(p.name for p in more.created) == ["b-serving.crt", "b-serving.key", "b.conf",
                                                     "b.crt", "b.key"]
    assert all(p.read_bytes() == data for p, data in before.items())
    assert pki.is_issued_by(more.pki.kubelet_client_cert("b").read_bytes(),
                            more.pki.ca_cert.read_bytes())


def test_a_lost_certificate_is_made_again_from_its_key(tmp_path: Path) -> None:
    p = init_cluster(tmp_path).pki
    key = p.apiserver_key.read_bytes()
    p.apiserver_cert.unlink()
    again = init_cluster(tmp_path)
    assert again.created == (p.apiserver_cert,)
    assert p.apiserver_key.read_bytes() == key
    assert pki.is_issued_by(p.apiserver_cert.read_bytes(), p.ca_cert.read_bytes())


def test_existing_files_that_do_not_fit_are_errors(tmp_path: Path) -> None:
    p = init_cluster(tmp_path).pki
    with pytest.raises(PkiError, match=r"apiserver\.crt: exists without the subject"
                                       r" alternative names 10\.1\.1\.1"):
        init_cluster(tmp_path, apiserver_addresses=["10.1.1.1"])
    p.apiserver_key.unlink()
    with pytest.raises(PkiError, match=r"apiserver\.crt exists without its key"):
        init_cluster(tmp_path)
    p.apiserver_cert.unlink()
    other, other_key = pki.new_ca("kubernetes")
    cert, key = pki.issue(other, other_key, "kube-apiserver", server=True)
    p.apiserver_cert.write_bytes(cert)
    p.apiserver_key.write_bytes(key)
    with pytest.raises(PkiError, match="not issued by the CA of this data dir"):
        init_cluster(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"apiserver_addresses": ["not an address"]}, "apiserver_addresses: 'not an address'"),
    ({"nodes": [("Bad_Name", ["127.0.0.2"])]}, r"nodes\[0\]\.name: 'Bad_Name'"),
    ({"nodes": [("a", [])]}, r"nodes\[0\]\.addresses: node 'a' needs at least one address"),
    ({"nodes": [("a", ["1.2.3.4"]), ("a", ["1.2.3.5"])]}, r"nodes\[1\]\.name: 'a' is given"),
    ({"service_cidr": "10.96.0.0/40"}, "service_cidr: '10.96.0.0/40' is not a CIDR"),
    ({"cluster_domain": "Cluster_Local"}, "cluster_domain: 'Cluster_Local'"),
    ({"apiserver_port": 0}, "apiserver_port: 0 is not a port number"),
    ({"etcd_addresses": ["a b"]}, "etcd_addresses: 'a b'"),
])
def test_bad_input_names_the_field(tmp_path: Path, kwargs: dict[str, object],
                                   message: str) -> None:
    with pytest.raises(PkiError, match=message):
        init_cluster(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "pki").exists(), "nothing is written for bad input"


def test_csr_sign_round_trip() -> None:
    ca, ca_key = pki.new_ca("kubernetes")
    key, _ = pki.new_rsa_key_pair()
    csr = pki.new_csr("system:node:n1", ["system:nodes"], ["n1"], ["10.0.0.9"], key)
    subject = pki.csr_subject(csr)
    assert subject == pki.CsrSubject("system:node:n1", ("system:nodes",), ("n1",),
                                     ("10.0.0.9",), (), ())
    cert = pki.sign_csr(ca, ca_key, csr, ["digital signature", "key encipherment",
                                          "server auth"], days=30)
    assert pki.identity(cert) == ("system:node:n1", ["system:nodes"])
    assert pki.certificate_sans(cert) == (["n1"], ["10.0.0.9"])
    assert pki.is_issued_by(cert, ca)
    parsed = x509.load_pem_x509_certificate(cert)
    assert _usages(parsed) == {"server"}
    ku = parsed.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    loaded_key = serialization.load_pem_private_key(key, None)
    assert parsed.public_key() == loaded_key.public_key()
    assert parsed.not_valid_after_utc - parsed.not_valid_before_utc < datetime.timedelta(
        days=31)

    with pytest.raises(PkiError, match="usages: unsupported value 'cert sign'"):
        pki.sign_csr(ca, ca_key, csr, ["cert sign"])
    tampered = csr.replace(csr[100:104], b"AAAA")
    with pytest.raises(PkiError, match="request"):
        pki.csr_subject(tampered)


def test_a_certificate_never_outlives_its_ca() -> None:
    ca, ca_key = pki.new_ca("short", days=2)
    cert, _ = pki.issue(ca, ca_key, "x", client=True, days=365)
    assert (x509.load_pem_x509_certificate(cert).not_valid_after_utc
            <= x509.load_pem_x509_certificate(ca).not_valid_after_utc)
    with pytest.raises(PkiError, match="needs client or server usage"):
        pki.issue(ca, ca_key, "x")
    _, other_key = pki.new_ca("other")
    with pytest.raises(PkiError, match="CA key: does not belong"):
        pki.issue(ca, other_key, "x", client=True)


def test_bootstrap_token_secret_data() -> None:
    token = pki.new_bootstrap_token()
    token_id, secret = pki.parse_bootstrap_token(token)
    assert pki.bootstrap_token_secret_name(token) == f"bootstrap-token-{token_id}"
    now = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    data = pki.bootstrap_token_secret_data(token, 3600, now=now)
    assert data["token-id"] == token_id and data["token-secret"] == secret
    assert data["usage-bootstrap-authentication"] == "true"
    assert data["usage-bootstrap-signing"] == "true"
    assert data["expiration"] == "2024-05-01T13:00:00Z"
    assert data["auth-extra-groups"] == "system:bootstrappers:kubeadm:default-node-token"
    assert "expiration" not in pki.bootstrap_token_secret_data(token, None)
    with pytest.raises(PkiError, match=r"token: must match \[a-z0-9\]\{6\}"):
        pki.parse_bootstrap_token("ABCDEF.0123456789abcdef")
    with pytest.raises(PkiError, match="must start with system:bootstrappers:"):
        pki.bootstrap_token_secret_data(token, extra_groups=["system:masters"])


def test_cluster_pki_paths() -> None:
    p = ClusterPki(Path("/d"))
    assert p.kubelet_conf("n") == Path("/d/kubelet/n.conf")
    assert p.kubelet_serving_key("n") == Path("/d/pki/kubelet/n-serving.key")
    assert p.etcd_peer_cert == Path("/d/pki/etcd/peer.crt")
