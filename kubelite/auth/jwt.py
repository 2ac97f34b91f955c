"""JSON Web Tokens signed with RS256 (RFC 7519, RFC 7515's compact form), as Kubernetes signs
ServiceAccount tokens: ``base64url(header).base64url(claims).base64url(signature)``, the
signature RSASSA-PKCS1-v1_5 over SHA-256 of the first two parts.

Only what ServiceAccount tokens need: RS256 signing and verification against a set of public
keys, and the key id Kubernetes puts in the header. Claims (expiry, audience) are checked by the
caller, which knows what it expects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHM = "RS256"
MAX_TOKEN_BYTES = 64 * 1024
"""Longer bearer tokens are refused before any decoding."""


class JwtError(ValueError):
    """A token that is not a well-formed RS256 JWT, or whose signature no key verifies."""


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url text; JwtError when it is not base64url."""
    if not text or any(c in text for c in "=+/ \n"):
        raise JwtError("not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise JwtError(f"not base64url text: {e}") from None


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The ``kid`` Kubernetes puts in its tokens' header: the base64url SHA-256 of the key's
    DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url_encode(hashlib.sha256(der).digest())


def sign(claims: Mapping[str, Any], private_key: rsa.RSAPrivateKey) -> str:
    """The compact RS256 JWT of ``claims`` (a JSON object), its header naming the key id."""
    header = {"alg": ALGORITHM, "kid": key_id(private_key.public_key())}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":"), sort_keys=True).encode())
        for part in (header, claims)
    )
    signature = private_key.sign(signing_input.encode("ascii"), padding.PKCS1v15(),
                                 hashes.SHA256())
    return f"{signing_input}.{b64url_encode(signature)}"


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise JwtError(f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise JwtError(f"{what} is not a JSON object")
    return value


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWT, unverified."""
    if len(token) > MAX_TOKEN_BYTES:
        raise JwtError(f"token longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three dot-separated parts")
    header = _json_object(b64url_decode(parts[0]), "header")
    claims = _json_object(b64url_decode(parts[1]), "claims")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has a JWT's shape and an RS256 header (cheap; nothing verified)."""
    try:
        header, _, _, _ = split(token)
    except (JwtError, UnicodeEncodeError):
        return False
    return header.get("alg") == ALGORITHM


def verify(token: str, public_keys: Sequence[rsa.RSAPublicKey]) -> dict[str, Any]:
    """The claims of ``token`` when one of ``public_keys`` verifies its RS256 signature (the
    key named by the header's ``kid`` first); JwtError otherwise."""
    try:
        header, claims, signing_input, signature = split(token)
    except UnicodeEncodeError:
        raise JwtError("a JWT is ASCII text") from None
    if header.get("alg") != ALGORITHM:
        raise JwtError(f"unsupported signing algorithm {header.get('alg')!r}: only RS256")
    kid = header.get("kid")
    ordered = sorted(public_keys, key=lambda k: key_id(k) != kid) if kid else public_keys
    for key in ordered:
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return claims
    raise JwtError("invalid signature: no trusted key signed this token")


# ------------------------------------------------------------------ keys from PEM files


def load_private_key(pem: bytes, what: str = "private key") -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM file (PKCS#1 or PKCS#8, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise JwtError(f"{what}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise JwtError(f"{what}: an RSA key is required, not {type(key).__name__}")
    return key


_PEM_BEGIN = b"-----BEGIN "


def _pem_blocks(pem: bytes) -> list[tuple[str, bytes]]:
    """(label, block) of every PEM block in a file."""
    blocks = []
    for chunk in pem.split(_PEM_BEGIN)[1:]:
        label, _, _ = chunk.partition(b"-----")
        end = f"-----END {label.decode(errors='replace')}-----".encode()
        body, found, _ = chunk.partition(end)
        if found:
            blocks.append((label.decode(errors="replace"), _PEM_BEGIN + body + end + b"\n"))
    return blocks


def load_public_keys(pem: bytes, what: str = "key file") -> list[rsa.RSAPublicKey]:
    """Every RSA public key of a PEM file as ``--service-account-key-file`` takes it: public
    keys, certificates (their keys) and private keys (their public halves), in any mix."""
    keys: list[rsa.RSAPublicKey] = []
    for label, block in _pem_blocks(pem):
        try:
            if label == "CERTIFICATE":
                key: object = x509.load_pem_x509_certificate(block).public_key()
            elif label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                key = serialization.load_pem_public_key(block)
            elif label.endswith("PRIVATE KEY"):
                key = serialization.load_pem_private_key(block, password=None).public_key()
            else:
                continue
        except (ValueError, TypeError) as e:
            raise JwtError(f"{what}: a {label} block does not load: {e}") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise JwtError(f"{what}: only RSA keys are supported, found {type(key).__name__}")
        keys.append(key)
    if not keys:
        raise JwtError(f"{what}: no public key, certificate or private key in PEM form")
    return keys
