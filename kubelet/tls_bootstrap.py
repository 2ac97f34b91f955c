"""TLS bootstrap: a kubelet that has only a bootstrap token gets its certificates from the
cluster, as upstream's kubelet does with --bootstrap-kubeconfig.

Client certificate: unless ``--kubeconfig`` already holds a client certificate that is still
valid, the kubelet makes a key in ``--cert-dir`` (kept across restarts), asks for a
certificate with a CertificateSigningRequest (generateName ``csr-``, signer
``kubernetes.io/kube-apiserver-client-kubelet``, CN ``system:node:N``, O ``system:nodes``)
made with the bootstrap kubeconfig's credentials, watches it until it carries the
certificate, and writes ``--kubeconfig``: the bootstrap kubeconfig's server and CA, and the
certificate and key files in the cert dir. A denied or failed request is an error that ends
the kubelet.

Serving certificate (unless ``--tls-cert-file`` is given): the kubelet API serves
``kubelet-server.crt``/``.key`` of the cert dir. Until the cluster has signed one for the
node's own addresses (signer ``kubernetes.io/kubelet-serving``, asked for with the node's own
identity once the client certificate exists), the file holds a placeholder signed by its own
key, which no caller trusts, so the kubelet API refuses every handshake as upstream's does
while it has no certificate; the server picks up the signed certificate at the next
connection (it reloads changed files), with the same key.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization

from kubelet.settings import KubeletSettings
from kubelite import pki
from kubelite.api import certificates as csrs
from kubelite.api.errors import ApiError, Expired, KubeliteError, Unavailable
from kubelite.client.client import ApiClient
from kubelite.client.config import (
    ClientConfig,
    ConfigError,
    load_kubeconfig,
    server_url,
    write_kubeconfig_data,
)
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

CLIENT_CERT_FILE = "kubelet-client.crt"
CLIENT_KEY_FILE = "kubelet-client.key"
SERVING_CERT_FILE = "kubelet-server.crt"
SERVING_KEY_FILE = "kubelet-server.key"
CA_FILE = "ca.crt"
"""The cluster CA, from the bootstrap kubeconfig: the kubelet API's client CA unless
--client-ca-file names another."""
CLUSTER_NAME = "default-cluster"
USER_NAME = "default-auth"
CONTEXT_NAME = "default-context"
"""Names in the kubeconfig the kubelet writes (upstream's)."""


class BootstrapError(KubeliteError):
    """The kubelet could not get its certificate (denied, failed, timed out, refused)."""


@dataclass(frozen=True)
class TlsBootstrapSettings:
    """What the TLS bootstrap needs to know."""

    node_name: str
    """The node whose identity (``system:node:N``) the certificates carry."""
    bootstrap_kubeconfig: str
    """The kubeconfig with the bootstrap token (--bootstrap-kubeconfig)."""
    kubeconfig: str
    """Where the kubeconfig with the node's own certificate is, or is written (--kubeconfig)."""
    cert_dir: str
    """Where keys and certificates live (--cert-dir)."""
    serving_addresses: tuple[str, ...] = ()
    """The names and IPs the serving certificate is asked for (the node's addresses and its
    hostname); empty: no serving certificate is bootstrapped."""
    wait_timeout: float = 3600.0
    """Seconds to wait for a request to be approved and signed before giving up."""
    retry_interval: float = 1.0
    """Seconds before watching a request again after the stream broke."""
    request_timeout: float = 30.0
    """Deadline of each API call, seconds."""

    def path(self, name: str) -> Path:
        return Path(self.cert_dir) / name


# ---------------------------------------------------------------- files


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_key(path: Path) -> bytes:
    """The private key PEM at ``path``, made (0600) when missing or unreadable as a key."""
    if path.exists():
        pem = path.read_bytes()
        try:
            serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            log.warning("replacing an unusable private key", path=str(path))
        else:
            return pem
    pem, _ = pki.new_rsa_key_pair()
    _write(path, pem, 0o600)
    return pem


def certificate_usable(cert_pem: bytes, key_pem: bytes, *, ca_pem: bytes | None = None,
                       dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
                       now: dt.datetime | None = None) -> bool:
    """Whether the certificate is current, belongs to the key, is issued by ``ca_pem`` (when
    given) and names every one of ``dns_names`` and ``ip_addresses``."""
    try:
        cert = pki.load_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (pki.PkiError, ValueError, TypeError):
        return False
    moment = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= moment < cert.not_valid_after_utc:
        return False
    if cert.public_key() != key.public_key():
        return False
    if ca_pem is not None and not pki.is_issued_by(cert_pem, ca_pem):
        return False
    if dns_names or ip_addresses:
        have_dns, have_ips = pki.certificate_sans(cert_pem)
        if not set(dns_names) <= set(have_dns) or not set(ip_addresses) <= set(have_ips):
            return False
    return True


def existing_client_config(path: str) -> ClientConfig | None:
    """The config of ``path`` when it is a kubeconfig with a client certificate still valid
    (None: the kubelet must bootstrap)."""
    if not path or not Path(path).exists():
        return None
    try:
        config = load_kubeconfig(path)
    except ConfigError as e:
        log.warning("kubeconfig unusable; bootstrapping a new one", path=path, error=str(e))
        return None
    if config.cert_pem is None or config.key_pem is None:
        return None
    if not certificate_usable(config.cert_pem, config.key_pem):
        log.info("client certificate expired or unusable; bootstrapping a new one", path=path)
        return None
    return config


def write_node_kubeconfig(path: str, bootstrap: ClientConfig, cert_file: Path,
                          key_file: Path) -> None:
    """The node's kubeconfig: the bootstrap config's server and CA, the certificate and key
    as files (so a renewed certificate needs no new kubeconfig)."""
    assert bootstrap.ca_pem is not None
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {
            "server": server_url(bootstrap.server),
            "certificate-authority-data": base64.b64encode(bootstrap.ca_pem).decode("ascii"),
            **({"tls-server-name": bootstrap.server_name} if bootstrap.server_name else {}),
        }}],
        "users": [{"name": USER_NAME, "user": {
            "client-certificate": str(cert_file.resolve()),
            "client-key": str(key_file.resolve()),
        }}],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CLUSTER_NAME,
                                                         "user": USER_NAME}}],
        "current-context": CONTEXT_NAME,
    }
    write_kubeconfig_data(path, data)


# ---------------------------------------------------------------- requests


async def request_certificate(
    client: ApiClient, request_pem: bytes, signer: str, usages: Sequence[str], *,
    wait_timeout: float, retry_interval: float,
) -> bytes:
    """Creates a CertificateSigningRequest (generateName ``csr-``) and returns the certificate
    PEM once issued. BootstrapError when it is denied, fails, vanishes or takes longer than
    ``wait_timeout`` seconds."""
    csr = v1.CertificateSigningRequest(
        metadata=v1.ObjectMeta(generate_name="csr-"),
        spec=v1.CertificateSigningRequestSpec(request=request_pem, signer_name=signer,
                                              usages=list(usages)),
    )
    try:
        created = await client.create(csr)
    except ApiError as e:
        raise BootstrapError(f"cannot create a certificate signing request (signer {signer}):"
                             f" {e}") from e
    name = created.metadata.name
    log.info("certificate signing request created; waiting for approval and signing",
             csr=name, signer=signer)
    try:
        async with asyncio.timeout(wait_timeout):
            return await wait_for_certificate(client, name, retry_interval)
    except TimeoutError:
        raise BootstrapError(
            f"certificate signing request {name} (signer {signer}) has no certificate after"
            f" {wait_timeout:g}s: is it approved? (klctl certificate approve {name}) Is the"
            " controller manager signing (--cluster-signing-cert-file)?") from None


async def wait_for_certificate(client: ApiClient, name: str, retry_interval: float) -> bytes:
    """Watches request ``name`` until it carries a certificate (returned)."""
    version = ""
    while True:
        try:
            async for event in client.watch(v1.CertificateSigningRequest,
                                            field_selector=f"metadata.name={name}",
                                            resource_version=version):
                version = event.resource_version or version
                if event.type == "BOOKMARK" or event.object is None:
                    continue
                if event.type == "DELETED":
                    raise BootstrapError(f"certificate signing request {name} was deleted"
                                         " before it was signed")
                certificate = issued(event.object)
                if certificate is not None:
                    return certificate
        except Expired:
            version = ""
        except Unavailable as e:
            log.info("watch of the certificate signing request broke; watching again",
                     csr=name, error=str(e))
            await asyncio.sleep(retry_interval)
        except ApiError as e:
            raise BootstrapError(f"cannot watch certificate signing request {name}: {e}"
                                 ) from e


def issued(csr: v1.CertificateSigningRequest) -> bytes | None:
    """The request's certificate once issued; BootstrapError when denied or failed."""
    name = csr.metadata.name
    for kind, outcome in ((csrs.DENIED, "was denied"), (csrs.FAILED, "failed")):
        condition = csrs.condition(csr, kind)
        if condition is not None:
            why = ": ".join(p for p in (condition.reason, condition.message) if p)
            raise BootstrapError(f"certificate signing request {name} {outcome}"
                                 + (f" ({why})" if why else ""))
    return csr.status.certificate or None


# ---------------------------------------------------------------- the client certificate


async def bootstrap_client_certificate(settings: TlsBootstrapSettings) -> ClientConfig:
    """The node's client config: ``settings.kubeconfig`` when still valid, else one made by
    asking the cluster for a certificate with the bootstrap kubeconfig's credentials."""
    existing = existing_client_config(settings.kubeconfig)
    if existing is not None:
        return existing
    try:
        bootstrap = load_kubeconfig(settings.bootstrap_kubeconfig)
    except ConfigError as e:
        raise BootstrapError(f"--bootstrap-kubeconfig: {e}") from e
    if bootstrap.ca_pem is None:
        raise BootstrapError(f"--bootstrap-kubeconfig {settings.bootstrap_kubeconfig}: the"
                             " cluster needs its certificate-authority (certificates are"
                             " only asked for over TLS)")
    key_file = settings.path(CLIENT_KEY_FILE)
    cert_file = settings.path(CLIENT_CERT_FILE)
    key = ensure_key(key_file)
    request = pki.new_csr(csrs.node_user_name(settings.node_name), [csrs.NODE_ORGANIZATION],
                          key_pem=key)
    log.info("bootstrapping the node's client certificate", node=settings.node_name,
             server=bootstrap.server)
    async with ApiClient(bootstrap, timeout=settings.request_timeout) as client:
        cert = await request_certificate(
            client, request, csrs.KUBE_APISERVER_CLIENT_KUBELET_SIGNER,
            csrs.KUBELET_CLIENT_USAGES, wait_timeout=settings.wait_timeout,
            retry_interval=settings.retry_interval)
    _write(cert_file, cert, 0o644)
    write_node_kubeconfig(settings.kubeconfig, bootstrap, cert_file, key_file)
    log.info("client certificate issued; kubeconfig written", kubeconfig=settings.kubeconfig,
             not_after=pki.load_certificate(cert).not_valid_after_utc.isoformat())
    return load_kubeconfig(settings.kubeconfig)


# ---------------------------------------------------------------- the serving certificate


def serving_names(addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the serving certificate's addresses."""
    try:
        return pki.split_addresses(addresses, "serving addresses")
    except pki.PkiError as e:
        raise BootstrapError(str(e)) from e


class ServingCertificate:
    """Keeps the kubelet API's certificate files in the cert dir: the cluster-signed
    certificate, or a placeholder while one is asked for (see the module's docstring)."""

    def __init__(self, settings: TlsBootstrapSettings, config: ClientConfig) -> None:
        self.settings = settings
        self.config = config
        self.cert_file = settings.path(SERVING_CERT_FILE)
        self.key_file = settings.path(SERVING_KEY_FILE)
        self.ca_file = settings.path(CA_FILE)
        self.dns_names, self.ip_addresses = serving_names(settings.serving_addresses)
        self.needed = False
        """Whether a certificate must be asked for (none valid is on disk)."""
        self.issued = asyncio.Event()
        """Set once the files hold a certificate the cluster signed."""
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        """Why asking for the certificate failed (the kubelet API then keeps the
        placeholder)."""

    def prepare(self) -> None:
        """Writes the CA file and makes sure key and certificate files exist: the signed
        certificate when it is still good, else a placeholder (and ``needed`` is set)."""
        if self.config.ca_pem is None:
            raise BootstrapError("the serving certificate is only asked for over TLS: the"
                                 " kubeconfig has no certificate-authority")
        _write(self.ca_file, self.config.ca_pem, 0o644)
        key = ensure_key(self.key_file)
        current = self.cert_file.read_bytes() if self.cert_file.exists() else b""
        if certificate_usable(current, key, ca_pem=self.config.ca_pem,
                              dns_names=self.dns_names, ip_addresses=self.ip_addresses):
            self.issued.set()
            return
        self.needed = True
        placeholder, _ = pki.new_ca(f"{csrs.node_user_name(self.settings.node_name)}"
                                    " (no certificate yet)", days=1, key=key)
        _write(self.cert_file, placeholder, 0o644)

    def start(self) -> None:
        if self.needed and self._task is None:
            self._task = asyncio.create_task(self._obtain(), name="kubelet-serving-certificate")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _obtain(self) -> None:
        key = self.key_file.read_bytes()
        request = pki.new_csr(csrs.node_user_name(self.settings.node_name),
                              [csrs.NODE_ORGANIZATION], self.dns_names, self.ip_addresses,
                              key_pem=key)
        try:
            async with ApiClient(self.config, timeout=self.settings.request_timeout) as client:
                cert = await request_certificate(
                    client, request, csrs.KUBELET_SERVING_SIGNER, csrs.KUBELET_SERVING_USAGES,
                    wait_timeout=self.settings.wait_timeout,
                    retry_interval=self.settings.retry_interval)
        except BootstrapError as e:
            self.error = e
            log.error("no serving certificate; the kubelet API refuses every caller",
                      error=str(e))
            return
        _write(self.cert_file, cert, 0o644)
        self.issued.set()
        log.info("serving certificate issued", cert_file=str(self.cert_file),
                 dns_names=self.dns_names, ip_addresses=self.ip_addresses)


# ---------------------------------------------------------------- the kubelet


async def bootstrap_kubelet(
    settings: KubeletSettings, *, retry_interval: float = 1.0,
) -> tuple[KubeletSettings, ServingCertificate | None]:
    """The kubelet's settings once bootstrapped (its kubeconfig, and its serving certificate
    files unless --tls-cert-file was given) and the serving certificate to start with it
    (None: nothing to keep). Settings without a bootstrap kubeconfig are returned as they
    are."""
    if not settings.bootstrap_kubeconfig:
        return settings, None
    own_tls = bool(settings.tls_cert_file)
    bootstrap = TlsBootstrapSettings(
        node_name=settings.node_name,
        bootstrap_kubeconfig=settings.bootstrap_kubeconfig,
        kubeconfig=settings.kubeconfig,
        cert_dir=settings.cert_dir or os.path.join(settings.root_dir, "pki"),
        serving_addresses=() if own_tls else (settings.address, settings.node_name),
        wait_timeout=settings.bootstrap_wait_timeout,
        retry_interval=retry_interval,
    )
    config = await bootstrap_client_certificate(bootstrap)
    if own_tls:
        return settings, None
    serving = ServingCertificate(bootstrap, config)
    serving.prepare()
    return dataclasses.replace(
        settings, tls_cert_file=str(serving.cert_file),
        tls_private_key_file=str(serving.key_file), client_ca_file=str(serving.ca_file),
    ), serving
