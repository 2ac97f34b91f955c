"""Encryption at rest: the EncryptionConfiguration file, the provider chain's round trips,
rotation order, the etcd key as authenticated data, and identity as a reader."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

import pytest

from apiserver import encryption
from apiserver.__main__ import parse_args
from apiserver.encryption import EncryptionConfigError, ProviderChain, TransformError
from apiserver.etcd import Etcd
from apiserver.storage import Storage
from kubelite.api.errors import InternalError
from kubelite.api.registry import by_plural

KEY1 = base64.b64encode(b"1" * 32).decode()
KEY2 = base64.b64encode(b"2" * 16).decode()
ETCD_KEY = b"/registry/secrets/default/s1"
PLAIN = b"\x0a\x04\x0a\x02s1 the secret value"


def config(*providers: dict[str, Any], resources: tuple[str, ...] = ("secrets",)) -> Any:
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}],
    }


def aesgcm(*keys: tuple[str, str]) -> dict[str, Any]:
    return {"aesgcm": {"keys": [{"name": n, "secret": s} for n, s in keys]}}


IDENTITY: dict[str, Any] = {"identity": {}}


def chain(*providers: dict[str, Any]) -> ProviderChain:
    transformer = encryption.parse(config(*providers)).transformers()["secrets"]
    assert isinstance(transformer, ProviderChain)
    return transformer


# ---------------------------------------------------------------------------- the file


@pytest.mark.parametrize(("doc", "message"), [
    ([], "must be a mapping"),
    ({**config(IDENTITY), "apiVersion": "v1"}, "apiVersion: Unsupported value: 'v1'"),
    ({**config(IDENTITY), "kind": "Config"}, "kind: Unsupported value: 'Config'"),
    ({**config(IDENTITY), "extra": 1}, "extra: unknown field"),
    ({**config(IDENTITY), "resources": []}, "resources: Required value"),
    (config(IDENTITY, resources=()), "resources[0].resources: Required value"),
    (config(IDENTITY, resources=("secret",)),
     'resources[0].resources[0]: Unsupported value: "secret": not a resource'),
    (config(IDENTITY, resources=("secrets", "secrets")),
     'resources[0].resources[1]: Duplicate value: "secrets"'),
    (config(), "resources[0].providers: Required value"),
    (config({"aesgcm": {"keys": []}, "identity": {}}),
     "resources[0].providers[0]: exactly one provider must be given, got aesgcm, identity"),
    (config({"rot13": {}}), "resources[0].providers[0]: unknown provider rot13"),
    (config({"kms": {"name": "x"}}), "resources[0].providers[0].kms: KMS providers are not"),
    (config({"identity": {"x": 1}}), "resources[0].providers[0].identity: must be empty"),
    (config({"aesgcm": {"keys": []}}), "resources[0].providers[0].aesgcm.keys: Required value"),
    (config(aesgcm(("", KEY1))), "resources[0].providers[0].aesgcm.keys[0].name: Required"),
    (config(aesgcm(("a:b", KEY1))), "aesgcm.keys[0].name: Invalid value: \"a:b\""),
    (config(aesgcm(("key1", ""))), "resources[0].providers[0].aesgcm.keys[0].secret: Required"),
    (config(aesgcm(("key1", "not base64!"))), "aesgcm.keys[0].secret: Invalid value: must be"
                                              " base64"),
    (config(aesgcm(("key1", base64.b64encode(b"x" * 10).decode()))),
     "aesgcm.keys[0].secret: Invalid value: aesgcm keys must be 16, 24 or 32 bytes, got 10"),
    (config({"aescbc": {"keys": [{"name": "k", "secret": KEY2}]}}),
     "aescbc.keys[0].secret: Invalid value: aescbc keys must be 32 bytes, got 16"),
    (config(aesgcm(("key1", KEY1), ("key1", KEY2))),
     'resources[0].providers[0].aesgcm.keys: Duplicate value: key name "key1"'),
    (config({"aesgcm": {"keys": [{"name": "k", "secret": KEY1, "extra": 1}]}}),
     "resources[0].providers[0].aesgcm.keys[0].extra: unknown field"),
])
def test_a_bad_configuration_names_the_field_and_the_rule(doc: Any, message: str) -> None:
    with pytest.raises(EncryptionConfigError) as caught:
        encryption.parse(doc)
    assert message in str(caught.value)


@pytest.mark.skipif(encryption.secretbox_available(), reason="PyNaCl is installed here")
def test_secretbox_without_pynacl_says_what_is_missing() -> None:
    doc = config({"secretbox": {"keys": [{"name": "k", "secret": KEY1}]}})
    with pytest.raises(EncryptionConfigError, match=r"providers\[0\].secretbox: .*PyNaCl"):
        encryption.parse(doc)


@pytest.mark.skipif(not encryption.secretbox_available(), reason="PyNaCl is not installed")
def test_secretbox_round_trip() -> None:
    transformer = chain({"secretbox": {"keys": [{"name": "k", "secret": KEY1}]}})
    stored = transformer.to_storage(PLAIN, ETCD_KEY)
    assert stored.startswith(b"k8s:enc:secretbox:v1:k:")
    assert transformer.from_storage(stored, ETCD_KEY) == (PLAIN, False)


def test_load_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(EncryptionConfigError, match=f"cannot read {missing}"):
        encryption.load(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n")
    with pytest.raises(EncryptionConfigError, match=f"{bad}: resources: Required value"):
        encryption.load(bad)


def test_the_api_server_refuses_a_bad_configuration_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "enc.yaml"
    bad.write_text("apiVersion: v1\n")
    with pytest.raises(SystemExit):
        parse_args(["--insecure", "--encryption-provider-config", str(bad)])
    assert "--encryption-provider-config" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n"
        f"- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      - name: key1\n"
        f"        secret: {KEY1}\n  - identity: {{}}\n"
    )
    settings, _ = parse_args(["--insecure", "--encryption-provider-config", str(good)])
    assert settings.encryption_provider_config == str(good)


def test_etcd_tls_flags_reach_the_settings() -> None:
    settings, _ = parse_args(["--insecure", "--etcd-servers", "https://127.0.0.1:2379",
                              "--etcd-cafile", "/ca.crt", "--etcd-certfile", "/c.crt",
                              "--etcd-keyfile", "/c.key"])
    assert (settings.etcd.ca_file, settings.etcd.cert_file, settings.etcd.key_file) == (
        "/ca.crt", "/c.crt", "/c.key")
    with pytest.raises(SystemExit):
        parse_args(["--insecure", "--etcd-certfile", "/c.crt"])


def test_resources_take_the_first_rule_that_names_them() -> None:
    doc = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {"resources": ["secrets"], "providers": [aesgcm(("s", KEY1))]},
            {"resources": ["*.apps"], "providers": [aesgcm(("apps", KEY1))]},
            {"resources": ["*."], "providers": [IDENTITY]},
        ],
    }
    transformers = encryption.parse(doc).transformers()
    assert transformers["secrets"].to_storage(PLAIN, ETCD_KEY).startswith(b"k8s:enc:aesgcm:v1:s:")
    assert transformers["deployments"].to_storage(PLAIN, ETCD_KEY).startswith(
        b"k8s:enc:aesgcm:v1:apps:")
    assert transformers["configmaps"].to_storage(PLAIN, ETCD_KEY) == PLAIN
    assert "jobs" not in transformers  # batch: named by no rule, stored as it is


# ---------------------------------------------------------------------------- values


def test_aesgcm_round_trip_hides_the_value() -> None:
    transformer = chain(aesgcm(("key1", KEY1)))
    stored = transformer.to_storage(PLAIN, ETCD_KEY)
    assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:")
    assert b"secret value" not in stored
    assert len(stored) == len(b"k8s:enc:aesgcm:v1:key1:") + 12 + len(PLAIN) + 16
    assert transformer.from_storage(stored, ETCD_KEY) == (PLAIN, False)
    assert transformer.to_storage(PLAIN, ETCD_KEY) != stored  # a fresh nonce each time


def test_aescbc_round_trip() -> None:
    transformer = chain({"aescbc": {"keys": [{"name": "cbc", "secret": KEY1}]}})
    stored = transformer.to_storage(PLAIN, ETCD_KEY)
    assert stored.startswith(b"k8s:enc:aescbc:v1:cbc:")
    assert transformer.from_storage(stored, ETCD_KEY) == (PLAIN, False)


def test_a_value_copied_under_another_etcd_key_does_not_decrypt() -> None:
    transformer = chain(aesgcm(("key1", KEY1)))
    stored = transformer.to_storage(PLAIN, ETCD_KEY)
    with pytest.raises(TransformError, match="authentication failed"):
        transformer.from_storage(stored, b"/registry/secrets/default/other")
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(TransformError, match="authentication failed"):
        transformer.from_storage(tampered, ETCD_KEY)


def test_rotation_reads_the_old_key_and_writes_the_new_one() -> None:
    old = chain(aesgcm(("key1", KEY1))).to_storage(PLAIN, ETCD_KEY)
    rotating = chain(aesgcm(("key2", KEY2), ("key1", KEY1)))
    assert rotating.from_storage(old, ETCD_KEY) == (PLAIN, True)  # readable, and stale
    new = rotating.to_storage(PLAIN, ETCD_KEY)
    assert new.startswith(b"k8s:enc:aesgcm:v1:key2:")
    assert rotating.from_storage(new, ETCD_KEY) == (PLAIN, False)
    # Once key1 is gone from the configuration, what it wrote cannot be read: named.
    with pytest.raises(TransformError, match='aesgcm key "key1", which is not among'):
        chain(aesgcm(("key2", KEY2))).from_storage(old, ETCD_KEY)


def test_a_key_of_the_same_name_under_another_provider_is_another_key() -> None:
    stored = chain(aesgcm(("k", KEY1))).to_storage(PLAIN, ETCD_KEY)
    with pytest.raises(TransformError, match='aesgcm key "k"'):
        chain({"aescbc": {"keys": [{"name": "k", "secret": KEY1}]}}).from_storage(
            stored, ETCD_KEY)


def test_identity_reads_plaintext_only_when_listed() -> None:
    with pytest.raises(TransformError, match="identity is not among"):
        chain(aesgcm(("key1", KEY1))).from_storage(PLAIN, ETCD_KEY)
    # Encrypting an existing cluster: old plaintext values read, and are stale.
    assert chain(aesgcm(("key1", KEY1)), IDENTITY).from_storage(PLAIN, ETCD_KEY) == (PLAIN, True)
    # Decrypting one (identity first): encrypted values still read and are stale.
    decrypting = chain(IDENTITY, aesgcm(("key1", KEY1)))
    encrypted = chain(aesgcm(("key1", KEY1))).to_storage(PLAIN, ETCD_KEY)
    assert decrypting.to_storage(PLAIN, ETCD_KEY) == PLAIN
    assert decrypting.from_storage(encrypted, ETCD_KEY) == (PLAIN, True)
    assert decrypting.from_storage(PLAIN, ETCD_KEY) == (PLAIN, False)


def test_identity_alone_does_not_read_encrypted_values() -> None:
    encrypted = chain(aesgcm(("key1", KEY1))).to_storage(PLAIN, ETCD_KEY)
    with pytest.raises(TransformError, match='aesgcm key "key1"'):
        chain(IDENTITY).from_storage(encrypted, ETCD_KEY)
    with pytest.raises(TransformError, match="no provider and key name"):
        chain(IDENTITY).from_storage(b"k8s:enc:garbage", ETCD_KEY)


def test_storage_reports_an_unreadable_value_as_an_internal_error_naming_the_key() -> None:
    storage = Storage(cast(Etcd, None), transformers=encryption.parse(
        config(aesgcm(("key2", KEY2)))).transformers())
    old = chain(aesgcm(("key1", KEY1))).to_storage(PLAIN, ETCD_KEY)
    with pytest.raises(InternalError) as caught:
        storage.plaintext(by_plural("secrets"), ETCD_KEY, old)
    assert str(caught.value) == (
        'Internal error occurred: unable to transform key "/registry/secrets/default/s1": the'
        ' value was encrypted by aesgcm key "key1", which is not among the resource\'s'
        " providers in the encryption configuration"
    )
    # An unconfigured resource's values pass as they are.
    assert storage.plaintext(by_plural("configmaps"), b"/registry/configmaps/a/b", old) == old
