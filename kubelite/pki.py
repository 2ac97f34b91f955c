"""The cluster's PKI: certificate authorities, certificates, CSRs and `kubelite init`'s files.

One cluster CA signs every component's certificate; a separate etcd CA signs etcd's and the
API server's etcd client certificate, so no cluster certificate can talk to etcd (kubeadm's
design). Identities are x509 subjects as Kubernetes reads them: the common name is the user,
the organizations its groups. Keys are RSA 2048.

:func:`init_cluster` writes kubeadm's layout under a data dir (see :class:`ClusterPki`), keeps
what exists and adds what is missing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api.errors import KubeliteError
from kubelite.api.names import is_dns1123_subdomain
from kubelite.client.config import join_host_port, kubeconfig_data

RSA_KEY_SIZE = 2048
CA_DAYS = 3650
"""A CA's validity (kubeadm: 10 years)."""
CERT_DAYS = 365
"""A leaf certificate's validity (kubeadm: 1 year)."""
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates are valid from this long before they are made, so hosts whose clocks lag a
little accept them at once."""

DEFAULT_APISERVER_PORT = 6443
DEFAULT_SERVICE_CIDR = "127.96.0.0/16"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_CLUSTER_NAME = "kubelite"

CLUSTER_CA_NAME = "kubernetes"
ETCD_CA_NAME = "etcd-ca"
APISERVER_NAME = "kube-apiserver"
APISERVER_KUBELET_CLIENT_NAME = "kube-apiserver-kubelet-client"
APISERVER_ETCD_CLIENT_NAME = "kube-apiserver-etcd-client"
ETCD_SERVER_NAME = "kube-etcd"
ETCD_PEER_NAME = "kube-etcd-peer"
ADMIN_NAME = "kubernetes-admin"
SCHEDULER_NAME = "system:kube-scheduler"
CONTROLLER_MANAGER_NAME = "system:kube-controller-manager"
PROXY_NAME = "system:kube-proxy"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"

BOOTSTRAP_TOKEN_PATTERN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
"""``ID.SECRET`` of a bootstrap token."""
BOOTSTRAP_TOKEN_SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_TOKEN_SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAP_TOKEN_DEFAULT_GROUPS = ("system:bootstrappers:kubeadm:default-node-token",)
"""The extra group kubeadm gives its join tokens (every bootstrap token is also in
system:bootstrappers)."""
DEFAULT_BOOTSTRAP_TOKEN_TTL = 24 * 3600.0
"""Seconds a join token is valid (kubeadm's default)."""
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class PkiError(KubeliteError):
    """A certificate, key, CSR or PKI file is unusable, or an input to make one is invalid."""


# --------------------------------------------------------------------------- keys


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _load_key(pem: bytes, what: str = "private key") -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise PkiError(f"{what}: not an unencrypted PEM private key") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"{what}: an RSA key is required, not {type(key).__name__}")
    return key


def new_rsa_key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM as SubjectPublicKeyInfo), e.g. the ServiceAccount token
    signing pair ``sa.key``/``sa.pub``."""
    key = _new_key()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return _key_pem(key), public


# --------------------------------------------------------------------------- certificates


def load_certificates(pem: bytes, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise PkiError(f"{what}: not a PEM certificate") from e


def load_certificate(pem: bytes, what: str = "certificate") -> x509.Certificate:
    """The first certificate of a PEM bundle (the leaf of a chain)."""
    return load_certificates(pem, what)[0]


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    if not common_name:
        raise PkiError("common name: required")
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _sans(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for dns in dns_names:
        if dns not in seen:
            seen.add(dns)
            names.append(x509.DNSName(dns))
    for text in ip_addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise PkiError(f"IP address {text!r}: not a valid IP address") from None
        if str(ip) not in seen:
            seen.add(str(ip))
            names.append(x509.IPAddress(ip))
    return names


def split_addresses(addresses: Sequence[str], field: str = "address") -> tuple[list[str],
                                                                              list[str]]:
    """(DNS names, IP addresses) of host names and IPs mixed; a value that is neither is an
    error naming ``field``."""
    dns: list[str] = []
    ips: list[str] = []
    for a in addresses:
        try:
            ips.append(str(ipaddress.ip_address(a)))
            continue
        except ValueError:
            pass
        if is_dns1123_subdomain(a):
            raise PkiError(f"{field}: {a!r} is neither an IP address nor a DNS name")
        dns.append(a)
    return dns, ips


def new_ca(common_name: str, *, days: int = CA_DAYS, key: bytes | None = None
           ) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM). ``key``: an existing key PEM to reuse."""
    private = _load_key(key, "CA key") if key is not None else _new_key()
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    public = private.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    return _cert_pem(cert), _key_pem(private)


def _leaf(
    ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, subject: x509.Name,
    public: Any, *, key_usage: x509.KeyUsage, extended: Sequence[x509.ObjectIdentifier],
    sans: Sequence[x509.GeneralName], lifetime: datetime.timedelta,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    # No certificate outlives its CA (as Kubernetes' signer does).
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True,
    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False)


def _load_ca(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[x509.Certificate,
                                                            rsa.RSAPrivateKey]:
    ca_cert = load_certificate(ca_cert_pem, "CA certificate")
    ca_key = _load_key(ca_key_pem, "CA key")
    if ca_cert.public_key() != ca_key.public_key():
        raise PkiError("CA key: does not belong to the CA certificate")
    return ca_cert, ca_key


def issue(
    ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str,
    organizations: Sequence[str] = (), *, client: bool = False, server: bool = False,
    dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (), days: int = CERT_DAYS,
    key: bytes | None = None,
) -> tuple[bytes, bytes]:
    """A certificate signed by the CA for CN ``common_name``, O ``organizations``, usable for
    client and/or server auth, with the SANs given: (certificate PEM, key PEM). ``key``: an
    existing key PEM to certify (a new one otherwise)."""
    if not client and not server:
        raise PkiError(f"certificate {common_name!r}: needs client or server usage")
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    private = _load_key(key) if key is not None else _new_key()
    extended = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    cert = _leaf(ca_cert, ca_key, _name(common_name, organizations), private.public_key(),
                 key_usage=_LEAF_KEY_USAGE, extended=extended,
                 sans=_sans(dns_names, ip_addresses), lifetime=datetime.timedelta(days=days))
    return _cert_pem(cert), _key_pem(private)


def public_key_hash(cert_pem: bytes) -> str:
    """``sha256:HEX`` of the certificate's DER SubjectPublicKeyInfo (kubeadm's
    --discovery-token-ca-cert-hash)."""
    return public_key_hash_of(load_certificate(cert_pem))


def public_key_hash_of(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _subject_names(name: x509.Name) -> tuple[str, list[str]]:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cns[0].value) if cns else "", [str(o.value) for o in orgs])


def identity(cert_pem: bytes) -> tuple[str, list[str]]:
    """(user, groups) of a certificate as Kubernetes reads it: CN and the O entries."""
    return _subject_names(load_certificate(cert_pem).subject)


def _san_values(ext: x509.Extensions) -> tuple[list[str], list[str], list[str], list[str]]:
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (list(san.get_values_for_type(x509.DNSName)),
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
            list(san.get_values_for_type(x509.RFC822Name)),
            list(san.get_values_for_type(x509.UniformResourceIdentifier)))


def certificate_sans(cert_pem: bytes) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName."""
    dns, ips, _, _ = _san_values(load_certificate(cert_pem).extensions)
    return dns, ips


def is_issued_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    """Whether the (first) certificate is signed by the CA's key under the CA's name."""
    return _issued_by(load_certificate(cert_pem), load_certificate(ca_cert_pem, "CA"))


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# --------------------------------------------------------------------------- CSRs


@dataclass(frozen=True)
class CsrSubject:
    """What a certificate signing request asks for."""

    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    email_addresses: tuple[str, ...]
    uris: tuple[str, ...]


def new_csr(common_name: str, organizations: Sequence[str] = (), dns_names: Sequence[str] = (),
            ip_addresses: Sequence[str] = (), key_pem: bytes | None = None) -> bytes:
    """A PEM CSR for CN/O and SANs, signed by ``key_pem`` (required)."""
    if key_pem is None:
        raise PkiError("CSR: a private key is required")
    key = _load_key(key_pem)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        _name(common_name, organizations))
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PkiError("request: not a PEM certificate signing request") from e
    if not csr.is_signature_valid:
        raise PkiError("request: the CSR's signature does not verify")
    return csr


def csr_subject(csr_pem: bytes) -> CsrSubject:
    """The identity and SANs a CSR asks for (its signature is checked first)."""
    csr = _load_csr(csr_pem)
    cn, orgs = _subject_names(csr.subject)
    dns, ips, emails, uris = _san_values(csr.extensions)
    return CsrSubject(cn, tuple(orgs), tuple(dns), tuple(ips), tuple(emails), tuple(uris))


_KEY_USAGES = {
    "digital signature": "digital_signature",
    "signing": "digital_signature",
    "content commitment": "content_commitment",
    "key encipherment": "key_encipherment",
    "key agreement": "key_agreement",
    "data encipherment": "data_encipherment",
}
_EXTENDED_USAGES = {
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
}
SUPPORTED_USAGES = tuple(_KEY_USAGES) + tuple(_EXTENDED_USAGES)
"""The CertificateSigningRequest usages :func:`sign_csr` accepts (Kubernetes' names)."""


def sign_csr(ca_cert_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, usages: Sequence[str],
             days: int = CERT_DAYS, *, duration: datetime.timedelta | None = None) -> bytes:
    """The certificate PEM for a CSR: its subject and SANs, the usages given as
    Kubernetes names them in a CertificateSigningRequest (``digital signature``, ``key
    encipherment``, ``client auth``, ``server auth``, ...), valid for ``duration`` when
    given (a CSR's expirationSeconds), else ``days``."""
    csr = _load_csr(csr_pem)
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement"), False)
    extended: list[x509.ObjectIdentifier] = []
    for usage in usages:
        if usage in _KEY_USAGES:
            flags[_KEY_USAGES[usage]] = True
        elif usage in _EXTENDED_USAGES:
            if _EXTENDED_USAGES[usage] not in extended:
                extended.append(_EXTENDED_USAGES[usage])
        else:
            raise PkiError(f"usages: unsupported value {usage!r}; supported values: "
                           + ", ".join(f'"{u}"' for u in SUPPORTED_USAGES))
    key_usage = x509.KeyUsage(key_cert_sign=False, crl_sign=False, encipher_only=False,
                              decipher_only=False, **flags)
    dns, ips, _, _ = _san_values(csr.extensions)
    cert = _leaf(ca_cert, ca_key, csr.subject, csr.public_key(), key_usage=key_usage,
                 extended=extended, sans=_sans(dns, ips),
                 lifetime=duration if duration is not None else datetime.timedelta(days=days))
    return _cert_pem(cert)


# --------------------------------------------------------------------------- bootstrap tokens


def new_bootstrap_token() -> str:
    """A random bootstrap token ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    def pick(n: int) -> str:
        return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(n))
    return f"{pick(6)}.{pick(16)}"


def parse_bootstrap_token(token: str) -> tuple[str, str]:
    """(token id, token secret) of ``ID.SECRET``."""
    match = BOOTSTRAP_TOKEN_PATTERN.match(token.strip())
    if match is None:
        raise PkiError("token: must match [a-z0-9]{6}.[a-z0-9]{16}")
    return match.group(1), match.group(2)


def bootstrap_token_secret_name(token: str) -> str:
    """``bootstrap-token-<id>``: the Secret in kube-system that holds the token."""
    return BOOTSTRAP_TOKEN_SECRET_PREFIX + parse_bootstrap_token(token)[0]


def bootstrap_token_secret_data(
    token: str, ttl: float | None = DEFAULT_BOOTSTRAP_TOKEN_TTL, *,
    now: datetime.datetime | None = None,
    extra_groups: Sequence[str] = BOOTSTRAP_TOKEN_DEFAULT_GROUPS,
    description: str = "the token kubelite init made for joining nodes",
) -> dict[str, str]:
    """The string data of the token's Secret (type bootstrap.kubernetes.io/token, named
    :func:`bootstrap_token_secret_name`): expiring ``ttl`` seconds from ``now`` (never when
    ``ttl`` is None or 0), usable for authentication and signing."""
    token_id, token_secret = parse_bootstrap_token(token)
    for group in extra_groups:
        if not group.startswith("system:bootstrappers:"):
            raise PkiError(f"extra_groups: {group!r} must start with system:bootstrappers:")
    data = {
        "description": description,
        "token-id": token_id,
        "token-secret": token_secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
    }
    if ttl:
        start = now or datetime.datetime.now(datetime.UTC)
        expiration = start.astimezone(datetime.UTC) + datetime.timedelta(seconds=ttl)
        data["expiration"] = expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    if extra_groups:
        data["auth-extra-groups"] = ",".join(extra_groups)
    return data


# --------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class ClusterPki:
    """Where a cluster's credentials are under its data dir (kubeadm's layout)."""

    data_dir: Path

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki_dir / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        """The API server's serving certificate followed by the CA (the chain it sends)."""
        return self.pki_dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.pki_dir / "apiserver.key"

    @property
    def apiserver_kubelet_client_cert(self) -> Path:
        return self.pki_dir / "apiserver-kubelet-client.crt"

    @property
    def apiserver_kubelet_client_key(self) -> Path:
        return self.pki_dir / "apiserver-kubelet-client.key"

    @property
    def apiserver_etcd_client_cert(self) -> Path:
        return self.pki_dir / "apiserver-etcd-client.crt"

    @property
    def apiserver_etcd_client_key(self) -> Path:
        return self.pki_dir / "apiserver-etcd-client.key"

    @property
    def etcd_dir(self) -> Path:
        return self.pki_dir / "etcd"

    @property
    def etcd_ca_cert(self) -> Path:
        return self.etcd_dir / "ca.crt"

    @property
    def etcd_ca_key(self) -> Path:
        return self.etcd_dir / "ca.key"

    @property
    def etcd_server_cert(self) -> Path:
        return self.etcd_dir / "server.crt"

    @property
    def etcd_server_key(self) -> Path:
        return self.etcd_dir / "server.key"

    @property
    def etcd_peer_cert(self) -> Path:
        return self.etcd_dir / "peer.crt"

    @property
    def etcd_peer_key(self) -> Path:
        return self.etcd_dir / "peer.key"

    @property
    def sa_key(self) -> Path:
        """The ServiceAccount token signing key (RSA, PEM)."""
        return self.pki_dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """Its public key (SubjectPublicKeyInfo PEM), which verifies the tokens."""
        return self.pki_dir / "sa.pub"

    @property
    def encryption_config(self) -> Path:
        """The API server's EncryptionConfiguration (--encryption-provider-config)."""
        return self.pki_dir / "encryption-config.yaml"

    @property
    def bootstrap_token(self) -> Path:
        """The join token ``ID.SECRET`` (its Secret is made by whoever starts the cluster)."""
        return self.data_dir / "bootstrap-token"

    @property
    def admin_conf(self) -> Path:
        return self.data_dir / "admin.conf"

    @property
    def scheduler_conf(self) -> Path:
        return self.data_dir / "scheduler.conf"

    @property
    def controller_manager_conf(self) -> Path:
        return self.data_dir / "controller-manager.conf"

    @property
    def proxy_conf(self) -> Path:
        return self.data_dir / "proxy.conf"

    @property
    def kubelet_conf_dir(self) -> Path:
        return self.data_dir / "kubelet"

    @property
    def kubelet_pki_dir(self) -> Path:
        return self.pki_dir / "kubelet"

    def kubelet_conf(self, node: str) -> Path:
        """The node's kubeconfig (user system:node:<node>)."""
        return self.kubelet_conf_dir / f"{node}.conf"

    def kubelet_client_cert(self, node: str) -> Path:
        return self.kubelet_pki_dir / f"{node}.crt"

    def kubelet_client_key(self, node: str) -> Path:
        return self.kubelet_pki_dir / f"{node}.key"

    def kubelet_serving_cert(self, node: str) -> Path:
        """The kubelet API's serving certificate (SANs: the node's addresses)."""
        return self.kubelet_pki_dir / f"{node}-serving.crt"

    def kubelet_serving_key(self, node: str) -> Path:
        return self.kubelet_pki_dir / f"{node}-serving.key"

    def read_bootstrap_token(self) -> str:
        try:
            return self.bootstrap_token.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise PkiError(f"cannot read {self.bootstrap_token}: {e.strerror or e}") from e

    def ca_cert_hash(self) -> str:
        """The cluster CA's ``sha256:HEX`` (what `kubelite join` is given)."""
        try:
            return public_key_hash(self.ca_cert.read_bytes())
        except OSError as e:
            raise PkiError(f"cannot read {self.ca_cert}: {e.strerror or e}") from e


@dataclass(frozen=True)
class NodeCredentials:
    """A node `kubelite init` makes credentials for."""

    name: str
    """The node's name (a DNS subdomain)."""
    addresses: tuple[str, ...]
    """Its IPs or host names: the SANs of its kubelet's serving certificate."""


@dataclass(frozen=True)
class InitResult:
    """What :func:`init_cluster` made and kept."""

    pki: ClusterPki
    created: tuple[Path, ...]
    """Files written by this run, in order."""
    kept: tuple[Path, ...]
    """Files that existed and were kept."""
    server: str
    """host:port of the API server the client configs name."""
    bootstrap_token: str
    ca_cert_hash: str


def first_service_ip(service_cidr: str) -> str:
    """The first address of the service range (the ``kubernetes`` Service's ClusterIP)."""
    try:
        network = ipaddress.ip_network(service_cidr, strict=False)
    except ValueError:
        raise PkiError(f"service_cidr: {service_cidr!r} is not a CIDR such as 10.96.0.0/16"
                       ) from None
    if network.num_addresses < 4:
        raise PkiError(f"service_cidr: {service_cidr!r} is too small")
    return str(network.network_address + 1)


def apiserver_sans(apiserver_addresses: Sequence[str], service_cidr: str,
                   cluster_domain: str) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) of the API server's serving certificate."""
    dns, ips = split_addresses(apiserver_addresses, "apiserver_addresses")
    dns += ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            f"kubernetes.default.svc.{cluster_domain}"]
    ips += ["127.0.0.1", first_service_ip(service_cidr)]
    return _unique(dns), _unique(ips)


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def encryption_config_yaml(key: bytes | None = None) -> str:
    """An EncryptionConfiguration: Secrets encrypted with aesgcm ``key1`` (32 random bytes
    unless given), identity last so data written before encryption stays readable."""
    secret = key if key is not None else secrets.token_bytes(32)
    config = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [
                {"aesgcm": {"keys": [{"name": "key1",
                                      "secret": base64.b64encode(secret).decode("ascii")}]}},
                {"identity": {}},
            ],
        }],
    }
    return yaml.safe_dump(config, sort_keys=False)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Writes a new file atomically with ``mode`` (never briefly more open than that)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widened beyond ``mode``
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


class _Init:
    """One run of init_cluster: makes what is missing, checks and keeps what exists."""

    def __init__(self, pki: ClusterPki) -> None:
        self.pki = pki
        self.created: list[Path] = []
        self.kept: list[Path] = []

    def directory(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)

    def file(self, path: Path, make: Callable[[], bytes], mode: int) -> bytes:
        if path.exists():
            self.kept.append(path)
            return path.read_bytes()
        data = make()
        _write(path, data, mode)
        self.created.append(path)
        return data

    def pair(
        self, cert_path: Path, key_path: Path,
        make: Callable[[bytes | None], tuple[bytes, bytes]], *,
        issuer: bytes | None = None, dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (), append_issuer: bool = False,
    ) -> tuple[bytes, bytes]:
        """The certificate and key at these paths: kept when both exist (checked against the
        issuer and the SANs required), made from the key when only the key exists, made anew
        when neither does."""
        have_cert, have_key = cert_path.exists(), key_path.exists()
        if have_cert and not have_key:
            raise PkiError(f"{cert_path} exists without its key {key_path}: remove the"
                           " certificate to make a new pair")
        if have_cert:
            cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
            self.check(cert_path, cert_pem, key_pem, issuer, dns_names, ip_addresses)
            self.kept += [cert_path, key_path]
            return cert_pem, key_pem
        existing_key = key_path.read_bytes() if have_key else None
        cert_pem, key_pem = make(existing_key)
        if existing_key is None:
            _write(key_path, key_pem, 0o600)
            self.created.append(key_path)
        else:
            self.kept.append(key_path)
        written = cert_pem + (issuer if append_issuer and issuer is not None else b"")
        _write(cert_path, written, 0o644)
        self.created.append(cert_path)
        return written, key_pem

    def check(self, cert_path: Path, cert_pem: bytes, key_pem: bytes, issuer: bytes | None,
              dns_names: Sequence[str], ip_addresses: Sequence[str]) -> None:
        cert = load_certificate(cert_pem, str(cert_path))
        key = _load_key(key_pem, f"{cert_path.with_suffix('.key')}")
        if cert.public_key() != key.public_key():
            raise PkiError(f"{cert_path}: does not belong to its key (remove both to make a"
                           " new pair)")
        if issuer is not None and not _issued_by(cert, load_certificate(issuer)):
            raise PkiError(f"{cert_path}: not issued by the CA of this data dir (remove it"
                           " and its key to make a new pair)")
        have_dns, have_ips, _, _ = _san_values(cert.extensions)
        missing = [d for d in dns_names if d not in have_dns] + [
            i for i in ip_addresses if i not in {str(ipaddress.ip_address(h)) for h in have_ips}]
        if missing:
            raise PkiError(f"{cert_path}: exists without the subject alternative names"
                           f" {', '.join(missing)} (remove it to make one that has them)")


def init_cluster(
    data_dir: str | os.PathLike[str], *,
    apiserver_addresses: Sequence[str] = (),
    apiserver_port: int = DEFAULT_APISERVER_PORT,
    nodes: Sequence[tuple[str, Sequence[str]]] = (),
    service_cidr: str = DEFAULT_SERVICE_CIDR,
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN,
    etcd_addresses: Sequence[str] = (),
    cluster_name: str = DEFAULT_CLUSTER_NAME,
) -> InitResult:
    """Writes the cluster's CAs, certificates, client configs, ServiceAccount key pair,
    EncryptionConfiguration and join token under ``data_dir`` (:class:`ClusterPki`'s
    layout): keys 0600, directories 0700. Files that exist are kept (and checked: a serving
    certificate without a SAN now required is an error); what is missing is added.

    The client configs name ``https://<first apiserver address>:<apiserver_port>``
    (127.0.0.1 when no address is given)."""
    if not 0 < apiserver_port < 65536:
        raise PkiError(f"apiserver_port: {apiserver_port} is not a port number (1-65535)")
    for message in is_dns1123_subdomain(cluster_domain):
        raise PkiError(f"cluster_domain: {cluster_domain!r}: {message}")
    if not cluster_name:
        raise PkiError("cluster_name: required")
    api_dns, api_ips = apiserver_sans(apiserver_addresses, service_cidr, cluster_domain)
    etcd_dns, etcd_ips = split_addresses(etcd_addresses, "etcd_addresses")
    etcd_dns, etcd_ips = _unique(["localhost", *etcd_dns]), _unique(["127.0.0.1", *etcd_ips])
    node_specs = _node_specs(nodes)
    server = join_host_port(apiserver_addresses[0] if apiserver_addresses else "127.0.0.1",
                            apiserver_port)

    pki = ClusterPki(Path(data_dir).expanduser())
    run = _Init(pki)
    if not pki.data_dir.exists():
        pki.data_dir.mkdir(mode=0o700, parents=True)
    for d in (pki.pki_dir, pki.etcd_dir):
        run.directory(d)

    ca, ca_key = run.pair(pki.ca_cert, pki.ca_key, lambda k: new_ca(CLUSTER_CA_NAME, key=k))
    etcd_ca, etcd_ca_key = run.pair(pki.etcd_ca_cert, pki.etcd_ca_key,
                                    lambda k: new_ca(ETCD_CA_NAME, key=k))

    def leaf(cert_path: Path, key_path: Path, ca_pair: tuple[bytes, bytes], cn: str,
             orgs: Sequence[str] = (), *, client: bool = False, server: bool = False,
             dns: Sequence[str] = (), ips: Sequence[str] = (), chain: bool = False,
             ) -> tuple[bytes, bytes]:
        return run.pair(
            cert_path, key_path,
            lambda k: issue(ca_pair[0], ca_pair[1], cn, orgs, client=client, server=server,
                            dns_names=dns, ip_addresses=ips, key=k),
            issuer=ca_pair[0], dns_names=dns, ip_addresses=ips, append_issuer=chain)

    leaf(pki.apiserver_cert, pki.apiserver_key, (ca, ca_key), APISERVER_NAME, server=True,
         dns=api_dns, ips=api_ips, chain=True)
    leaf(pki.apiserver_kubelet_client_cert, pki.apiserver_kubelet_client_key, (ca, ca_key),
         APISERVER_KUBELET_CLIENT_NAME, [MASTERS_GROUP], client=True)
    leaf(pki.apiserver_etcd_client_cert, pki.apiserver_etcd_client_key,
         (etcd_ca, etcd_ca_key), APISERVER_ETCD_CLIENT_NAME, client=True)
    leaf(pki.etcd_server_cert, pki.etcd_server_key, (etcd_ca, etcd_ca_key), ETCD_SERVER_NAME,
         server=True, client=True, dns=etcd_dns, ips=etcd_ips)
    leaf(pki.etcd_peer_cert, pki.etcd_peer_key, (etcd_ca, etcd_ca_key), ETCD_PEER_NAME,
         server=True, client=True, dns=etcd_dns, ips=etcd_ips)

    sa_pair: list[bytes] = []

    def sa_key() -> bytes:
        private, public = new_rsa_key_pair()
        sa_pair.append(public)
        return private

    sa_private = run.file(pki.sa_key, sa_key, 0o600)
    run.file(pki.sa_pub, lambda: sa_pair[0] if sa_pair else _public_pem(sa_private), 0o644)
    run.file(pki.encryption_config, lambda: encryption_config_yaml().encode(), 0o600)
    token = run.file(pki.bootstrap_token, lambda: (new_bootstrap_token() + "\n").encode(),
                     0o600).decode().strip()
    parse_bootstrap_token(token)

    def conf(path: Path, user: str, orgs: Sequence[str] = ()) -> None:
        def make() -> bytes:
            cert_pem, key_pem = issue(ca, ca_key, user, orgs, client=True)
            return _kubeconfig_bytes(cluster=cluster_name, server=server, ca=ca, user=user,
                                     cert=cert_pem, key=key_pem)
        run.file(path, make, 0o600)

    conf(pki.admin_conf, ADMIN_NAME, [MASTERS_GROUP])
    conf(pki.scheduler_conf, SCHEDULER_NAME)
    conf(pki.controller_manager_conf, CONTROLLER_MANAGER_NAME)
    conf(pki.proxy_conf, PROXY_NAME)

    if node_specs:
        run.directory(pki.kubelet_conf_dir)
        run.directory(pki.kubelet_pki_dir)
    for node in node_specs:
        user = NODE_USER_PREFIX + node.name
        client_cert, client_key = leaf(pki.kubelet_client_cert(node.name),
                                       pki.kubelet_client_key(node.name), (ca, ca_key), user,
                                       [NODES_GROUP], client=True)
        dns, ips = split_addresses(node.addresses, f"nodes[{node.name}].addresses")
        leaf(pki.kubelet_serving_cert(node.name), pki.kubelet_serving_key(node.name),
             (ca, ca_key), user, [NODES_GROUP], server=True,
             dns=_unique([node.name, *dns]), ips=ips)
        run.file(pki.kubelet_conf(node.name), lambda: _kubeconfig_bytes(
            cluster=cluster_name, server=server, ca=ca, user=user, cert=client_cert,
            key=client_key), 0o600)

    return InitResult(pki=pki, created=tuple(run.created), kept=tuple(run.kept),
                      server=server, bootstrap_token=token, ca_cert_hash=public_key_hash(ca))


def _kubeconfig_bytes(*, cluster: str, server: str, ca: bytes, user: str, cert: bytes,
                      key: bytes) -> bytes:
    data = kubeconfig_data(cluster=cluster, server=server, ca_pem=ca, user=user,
                           cert_pem=cert, key_pem=key)
    return yaml.safe_dump(data, sort_keys=False).encode()


def _public_pem(private_pem: bytes) -> bytes:
    return _load_key(private_pem, "sa.key").public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _node_specs(nodes: Sequence[tuple[str, Sequence[str]]]) -> list[NodeCredentials]:
    specs: dict[str, NodeCredentials] = {}
    for i, (name, addresses) in enumerate(nodes):
        for message in is_dns1123_subdomain(name):
            raise PkiError(f"nodes[{i}].name: {name!r}: {message}")
        if not addresses:
            raise PkiError(f"nodes[{i}].addresses: node {name!r} needs at least one address")
        split_addresses(addresses, f"nodes[{i}].addresses")
        if name in specs:
            raise PkiError(f"nodes[{i}].name: {name!r} is given twice")
        specs[name] = NodeCredentials(name, tuple(addresses))
    return list(specs.values())
