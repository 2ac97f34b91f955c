"""Finding the cluster CA from the API server itself, trusting only a hash of its key.

A joining node knows the API server's address and ``sha256:HEX``, the hash of the cluster
CA's SubjectPublicKeyInfo (kubeadm's ``--discovery-token-ca-cert-hash``). It opens a TLS
connection without verifying anything, takes the certificates the server sent (the API
server sends its serving certificate followed by the CA), picks the one whose key has that
hash, and accepts it only if it is a CA that signed the serving certificate. From then on the
node trusts that CA alone.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from kubelite.api.errors import KubeliteError
from kubelite.pki import public_key_hash_of

CA_HASH_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
DEFAULT_DISCOVERY_TIMEOUT = 10.0
"""Seconds to connect and finish the TLS handshake."""


class DiscoveryError(KubeliteError):
    """The API server could not be reached, or did not present the pinned CA."""


def normalize_ca_hash(ca_hash: str) -> str:
    """``sha256:hex`` in lower case; anything else is an error naming the flag's rule."""
    text = ca_hash.strip().lower()
    if not CA_HASH_PATTERN.match(text):
        raise DiscoveryError(f"discovery-token-ca-cert-hash: {ca_hash!r} must be sha256:"
                             " followed by 64 hex digits")
    return text


def peer_chain(host: str, port: int, timeout: float = DEFAULT_DISCOVERY_TIMEOUT,
               ) -> list[x509.Certificate]:
    """The certificates the TLS server at host:port sends, unverified, leaf first."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is trusted yet: the hash decides
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])  # gRPC servers refuse a handshake without h2
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            ders = _unverified_chain(tls)
    except ssl.SSLError as e:
        raise DiscoveryError(f"TLS handshake with {where} failed: {e.reason or e}") from e
    except OSError as e:
        raise DiscoveryError(f"cannot connect to {where}: {e.strerror or e}") from e
    if not ders:
        raise DiscoveryError(f"{where} sent no certificate")
    return [x509.load_der_x509_certificate(d) for d in ders]


def _unverified_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER of each certificate the peer sent. Python 3.13 has SSLSocket.get_unverified_chain;
    before, the same method exists on the socket's internal _ssl object."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(d) for d in public()]
    internal: Any = tls._sslobj  # type: ignore[attr-defined]
    chain = internal.get_unverified_chain() or []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]


def discover_ca(host: str, port: int, ca_hash: str,
                timeout: float = DEFAULT_DISCOVERY_TIMEOUT) -> bytes:
    """The PEM of the CA with public key hash ``ca_hash`` that issued the serving certificate
    of the TLS server at host:port (blocking: run it in a thread from async code)."""
    wanted = normalize_ca_hash(ca_hash)
    chain = peer_chain(host, port, timeout)
    leaf = chain[0]
    where = f"{host}:{port}"
    for cert in chain:
        if public_key_hash_of(cert) != wanted:
            continue
        if not _is_ca(cert):
            raise DiscoveryError(f"the certificate of {where} with hash {wanted}"
                                 f" ({cert.subject.rfc4514_string()}) is not a CA")
        if cert is not leaf:
            try:
                leaf.verify_directly_issued_by(cert)
            except (ValueError, TypeError, InvalidSignature):
                raise DiscoveryError(
                    f"the serving certificate of {where} ({leaf.subject.rfc4514_string()}) is"
                    f" not issued by the CA with hash {wanted}") from None
        return cert.public_bytes(serialization.Encoding.PEM)
    sent = ", ".join(f"{c.subject.rfc4514_string()} {public_key_hash_of(c)}" for c in chain)
    raise DiscoveryError(f"{where} did not present the CA with hash {wanted} (it sent: {sent});"
                         " is the hash that of this cluster's CA?")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
