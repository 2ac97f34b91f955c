"""Encryption at rest: Kubernetes' EncryptionConfiguration and the value transformers it makes.

``--encryption-provider-config FILE`` names an EncryptionConfiguration
(apiserver.config.k8s.io/v1): for each group of resources, a list of providers in order. The
first provider writes (with its first key); every provider reads, chosen by the prefix a
value was written with (``k8s:enc:<provider>:v1:<key name>:``, as Kubernetes stores it), and
``identity`` reads values that have no such prefix. A value read with anything but the
writing provider and key is *stale*: an update rewrites it even when nothing else changed,
which is how a rotation re-encrypts old values.

AES-GCM binds each ciphertext to its etcd key (the key is the additional authenticated data,
as upstream does), so a value copied under another key does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kubelite.api.registry import RESOURCES, ResourceType

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
ENCRYPTED_PREFIX = b"k8s:enc:"
"""Every encrypted value starts with this; no serialized object does."""
GCM_NONCE_BYTES = 12
CBC_IV_BYTES = 16
SECRETBOX_NONCE_BYTES = 24
AES_KEY_SIZES = {"aesgcm": (16, 24, 32), "aescbc": (32,)}
"""Key sizes in bytes each AES provider takes (Kubernetes' documented sizes)."""
SECRETBOX_KEY_SIZE = 32
PROVIDER_KINDS = ("aesgcm", "aescbc", "secretbox", "identity", "kms")


class EncryptionConfigError(ValueError):
    """The configuration file is not a valid EncryptionConfiguration; the message names the
    field and the rule."""


class TransformError(Exception):
    """A stored value cannot be read back (unknown key, wrong key, tampered ciphertext)."""


class ValueTransformer(Protocol):
    """Turns the stored form of one resource's values into plaintext and back."""

    def to_storage(self, plain: bytes, key: bytes) -> bytes:
        """The value to write under etcd key ``key``."""
        ...

    def from_storage(self, stored: bytes, key: bytes) -> tuple[bytes, bool]:
        """The plaintext of the value read from etcd key ``key``, and whether it is stale
        (not written the way ``to_storage`` writes now). Raises TransformError."""
        ...


class _KeyCipher(Protocol):
    def encrypt(self, plain: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, body: bytes, aad: bytes) -> bytes: ...


class _AesGcm:
    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(secret)

    def encrypt(self, plain: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def decrypt(self, body: bytes, aad: bytes) -> bytes:
        if len(body) < GCM_NONCE_BYTES:
            raise TransformError("the value is shorter than an AES-GCM nonce")
        try:
            return self._aead.decrypt(body[:GCM_NONCE_BYTES], body[GCM_NONCE_BYTES:], aad)
        except InvalidTag:
            raise TransformError(
                "AES-GCM authentication failed: the value was not written under this etcd key"
                " with this key, or it was altered"
            ) from None


class _AesCbc:
    """Kubernetes' aescbc: a random IV and PKCS#7 padding; unauthenticated (upstream
    recommends aesgcm or KMS instead; it is here to read what it wrote)."""

    def __init__(self, secret: bytes) -> None:
        self._algorithm = algorithms.AES(secret)

    def encrypt(self, plain: bytes, aad: bytes) -> bytes:
        iv = os.urandom(CBC_IV_BYTES)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return iv + encryptor.update(padded) + encryptor.finalize()

    def decrypt(self, body: bytes, aad: bytes) -> bytes:
        if len(body) < 2 * CBC_IV_BYTES or len(body) % CBC_IV_BYTES:
            raise TransformError("the value is not an AES-CBC ciphertext (bad length)")
        decryptor = Cipher(self._algorithm, modes.CBC(body[:CBC_IV_BYTES])).decryptor()
        padded = decryptor.update(body[CBC_IV_BYTES:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise TransformError("AES-CBC padding is invalid: wrong key or altered value") from None


class _Secretbox:
    """NaCl secretbox (XSalsa20-Poly1305) with a random 24-byte nonce, through PyNaCl."""

    def __init__(self, box: Any) -> None:
        self._box = box
        self._nacl_error: type[Exception] = importlib.import_module("nacl.exceptions").CryptoError

    def encrypt(self, plain: bytes, aad: bytes) -> bytes:
        return bytes(self._box.encrypt(plain, os.urandom(SECRETBOX_NONCE_BYTES)))

    def decrypt(self, body: bytes, aad: bytes) -> bytes:
        try:
            return bytes(self._box.decrypt(body))
        except self._nacl_error:
            raise TransformError(
                "secretbox authentication failed: wrong key or altered value"
            ) from None


def secretbox_available() -> bool:
    """Whether PyNaCl (not a dependency of kubelite) is installed for the secretbox provider."""
    try:
        importlib.import_module("nacl.secret")
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class ProviderKey:
    provider: str
    """aesgcm, aescbc or secretbox."""
    name: str
    """The key's name, part of every value it writes."""
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return f"k8s:enc:{self.provider}:v1:{self.name}:".encode()


@dataclass(frozen=True)
class Provider:
    kind: str
    """aesgcm, aescbc, secretbox or identity."""
    keys: tuple[ProviderKey, ...] = ()
    """In order; the first one writes (none for identity)."""


class ProviderChain:
    """The ValueTransformer of one resource: its providers in order."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.providers = tuple(providers)
        self._ciphers: dict[bytes, _KeyCipher] = {}
        readers: list[bytes | None] = []
        for provider in providers:
            if provider.kind == "identity":
                readers.append(None)
            for key in provider.keys:
                self._ciphers.setdefault(key.prefix, _cipher(key))
                readers.append(key.prefix)
        self._writer = readers[0]
        """The prefix every value is written with; None: written as plaintext."""
        self._reads_plaintext = None in readers

    @property
    def writes_plaintext(self) -> bool:
        return self._writer is None

    def to_storage(self, plain: bytes, key: bytes) -> bytes:
        if self._writer is None:
            return plain
        return self._writer + self._ciphers[self._writer].encrypt(plain, key)

    def from_storage(self, stored: bytes, key: bytes) -> tuple[bytes, bool]:
        if not stored.startswith(ENCRYPTED_PREFIX):
            if not self._reads_plaintext:
                raise TransformError(
                    "the value is not encrypted and identity is not among the resource's"
                    " providers"
                )
            return stored, self._writer is not None
        prefix = _prefix_of(stored)
        cipher = self._ciphers.get(prefix) if prefix is not None else None
        if cipher is None or prefix is None:
            raise TransformError(_unknown_key_message(stored, prefix))
        return cipher.decrypt(stored[len(prefix):], key), prefix != self._writer


def _prefix_of(stored: bytes) -> bytes | None:
    """``k8s:enc:<provider>:v1:<name>:`` at the start of ``stored``, or None."""
    parts = stored.split(b":", 5)
    if len(parts) < 6 or parts[3] != b"v1" or not parts[2] or not parts[4]:
        return None
    return b":".join(parts[:5]) + b":"


def _unknown_key_message(stored: bytes, prefix: bytes | None) -> str:
    if prefix is None:
        return "the value starts with k8s:enc: but has no provider and key name after it"
    _, _, provider, _, name, _ = prefix.decode(errors="replace").split(":")
    return (
        f'the value was encrypted by {provider} key "{name}", which is not among the'
        " resource's providers in the encryption configuration"
    )


def _cipher(key: ProviderKey) -> _KeyCipher:
    if key.provider == "aesgcm":
        return _AesGcm(key.secret)
    if key.provider == "aescbc":
        return _AesCbc(key.secret)
    secret_module = importlib.import_module("nacl.secret")
    return _Secretbox(secret_module.SecretBox(key.secret))


@dataclass(frozen=True)
class ResourceRule:
    resources: tuple[str, ...]
    """``secrets``, ``deployments.apps``, ``*.apps``, ``*.`` (the core group) or ``*.*``."""
    providers: tuple[Provider, ...]

    def matches(self, rtype: ResourceType) -> bool:
        return any(_matches(pattern, rtype) for pattern in self.resources)


def resource_name(rtype: ResourceType) -> str:
    """The name a configuration gives a resource: ``secrets``, ``deployments.apps``."""
    return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural


def _matches(pattern: str, rtype: ResourceType) -> bool:
    if pattern == "*.*":
        return True
    if pattern.startswith("*."):
        return pattern[2:] == rtype.group
    return pattern == resource_name(rtype)


@dataclass(frozen=True)
class EncryptionConfig:
    rules: tuple[ResourceRule, ...]
    """In file order; a resource takes the first rule that names it."""

    def transformers(
        self, resources: Iterable[ResourceType] = RESOURCES
    ) -> dict[str, ValueTransformer]:
        """One transformer per configured resource, by plural; others are not listed (their
        values are stored as they are, at no cost)."""
        out: dict[str, ValueTransformer] = {}
        chains: dict[int, ProviderChain] = {}
        for rtype in resources:
            if not rtype.stored:
                continue
            for index, rule in enumerate(self.rules):
                if rule.matches(rtype):
                    if index not in chains:
                        chains[index] = ProviderChain(rule.providers)
                    out[rtype.plural] = chains[index]
                    break
        return out


def load(path: str | Path) -> EncryptionConfig:
    """The configuration in ``path``; EncryptionConfigError naming the file and the field."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise EncryptionConfigError(
            f"cannot read {path}: {e.strerror or e}"
        ) from e
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise EncryptionConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse(doc)
    except EncryptionConfigError as e:
        raise EncryptionConfigError(f"{path}: {e}") from e


def parse(doc: object) -> EncryptionConfig:
    """An EncryptionConfiguration document (as loaded from YAML or JSON)."""
    if not isinstance(doc, Mapping):
        raise EncryptionConfigError("must be a mapping (an EncryptionConfiguration object)")
    if doc.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(
            f'apiVersion: Unsupported value: {doc.get("apiVersion")!r}: supported values:'
            f' "{API_VERSION}"'
        )
    if doc.get("kind") != KIND:
        raise EncryptionConfigError(
            f'kind: Unsupported value: {doc.get("kind")!r}: supported values: "{KIND}"'
        )
    _no_unknown(doc, ("apiVersion", "kind", "resources"), "")
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionConfigError("resources: Required value: at least one entry is required")
    known = {resource_name(r) for r in RESOURCES if r.stored}
    seen: dict[str, str] = {}
    rules = []
    for i, entry in enumerate(entries):
        path = f"resources[{i}]"
        if not isinstance(entry, Mapping):
            raise EncryptionConfigError(f"{path}: must be a mapping with resources and providers")
        _no_unknown(entry, ("resources", "providers"), path)
        names = entry.get("resources")
        if not isinstance(names, list) or not names:
            raise EncryptionConfigError(
                f"{path}.resources: Required value: at least one resource is required"
            )
        for j, name in enumerate(names):
            where = f"{path}.resources[{j}]"
            if not isinstance(name, str) or not name:
                raise EncryptionConfigError(f"{where}: must be a non-empty string")
            if not name.startswith("*.") and name not in known:
                raise EncryptionConfigError(
                    f'{where}: Unsupported value: "{name}": not a resource this API server'
                    ' stores (write plurals, with the group for non-core ones: "secrets",'
                    ' "deployments.apps", or a wildcard "*.apps", "*.*")'
                )
            if name in seen:
                raise EncryptionConfigError(
                    f'{where}: Duplicate value: "{name}" (already in {seen[name]})'
                )
            seen[name] = where
        rules.append(ResourceRule(tuple(names), _providers(entry.get("providers"), path)))
    return EncryptionConfig(tuple(rules))


def _providers(items: object, path: str) -> tuple[Provider, ...]:
    path = f"{path}.providers"
    if not isinstance(items, list) or not items:
        raise EncryptionConfigError(f"{path}: Required value: at least one provider is required")
    providers = []
    key_names: dict[tuple[str, str], str] = {}
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise EncryptionConfigError(f"{where}: must be a mapping naming one provider")
        kinds = [k for k in item if k in PROVIDER_KINDS]
        unknown = [str(k) for k in item if k not in PROVIDER_KINDS]
        if unknown:
            raise EncryptionConfigError(
                f"{where}: unknown provider {', '.join(unknown)} (supported: aesgcm, aescbc,"
                " secretbox, identity)"
            )
        if len(kinds) != 1:
            raise EncryptionConfigError(
                f"{where}: exactly one provider must be given, got"
                f" {', '.join(kinds) if kinds else 'none'}"
            )
        kind = kinds[0]
        body = item[kind]
        if kind == "kms":
            raise EncryptionConfigError(f"{where}.kms: KMS providers are not supported")
        if kind == "identity":
            if body not in (None, {}):
                raise EncryptionConfigError(f"{where}.identity: must be empty ({{}})")
            providers.append(Provider("identity"))
            continue
        if kind == "secretbox" and not secretbox_available():
            raise EncryptionConfigError(
                f"{where}.secretbox: the secretbox provider needs PyNaCl, which is not"
                " installed (pip install pynacl), or use aesgcm"
            )
        keys = _keys(kind, body, f"{where}.{kind}")
        for key in keys:
            if (kind, key.name) in key_names:
                raise EncryptionConfigError(
                    f'{where}.{kind}.keys: Duplicate value: key name "{key.name}" (already in'
                    f" {key_names[kind, key.name]})"
                )
            key_names[kind, key.name] = f"{where}.{kind}"
        providers.append(Provider(kind, keys))
    return tuple(providers)


def _keys(kind: str, body: object, path: str) -> tuple[ProviderKey, ...]:
    if not isinstance(body, Mapping):
        raise EncryptionConfigError(f"{path}: must be a mapping with keys")
    _no_unknown(body, ("keys",), path)
    items = body.get("keys")
    if not isinstance(items, list) or not items:
        raise EncryptionConfigError(f"{path}.keys: Required value: at least one key is required")
    sizes = AES_KEY_SIZES.get(kind, (SECRETBOX_KEY_SIZE,))
    keys = []
    for i, item in enumerate(items):
        where = f"{path}.keys[{i}]"
        if not isinstance(item, Mapping):
            raise EncryptionConfigError(f"{where}: must be a mapping with name and secret")
        _no_unknown(item, ("name", "secret"), where)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise EncryptionConfigError(f"{where}.name: Required value")
        if ":" in name:
            # The name ends the stored prefix at the next colon.
            raise EncryptionConfigError(f'{where}.name: Invalid value: "{name}": must not'
                                        " contain ':'")
        text = item.get("secret")
        if not isinstance(text, str) or not text:
            raise EncryptionConfigError(f"{where}.secret: Required value")
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionConfigError(
                f"{where}.secret: Invalid value: must be base64 (the key's bytes encoded)"
            ) from None
        if len(secret) not in sizes:
            wanted = ", ".join(str(s) for s in sizes[:-1])
            wanted = f"{wanted} or {sizes[-1]}" if wanted else str(sizes[-1])
            raise EncryptionConfigError(
                f"{where}.secret: Invalid value: {kind} keys must be {wanted} bytes, got"
                f" {len(secret)}"
            )
        keys.append(ProviderKey(kind, name, secret))
    return tuple(keys)


def _no_unknown(doc: Mapping[Any, Any], allowed: Sequence[str], path: str) -> None:
    for field in doc:
        if field not in allowed:
            where = f"{path}.{field}" if path else str(field)
            raise EncryptionConfigError(
                f"{where}: unknown field (allowed here: {', '.join(allowed)})"
            )


def new_key() -> str:
    """A fresh 32-byte key, base64-encoded, as a configuration's ``secret`` takes it."""
    return base64.b64encode(os.urandom(32)).decode()
