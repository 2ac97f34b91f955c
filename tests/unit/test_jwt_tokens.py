"""RS256 JWTs, ServiceAccount token claims and bootstrap token Secrets, as the API server
checks them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kubelite.auth import jwt, tokens
from kubelite.auth.user import ALL_AUTHENTICATED, BOOTSTRAPPERS
from protos.v1 import objects_pb2 as v1

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ISSUER = tokens.DEFAULT_ISSUER


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_signed_token_verifies_and_carries_its_claims(key: rsa.RSAPrivateKey) -> None:
    token = jwt.sign({"sub": "me", "n": 1}, key)
    assert token.count(".") == 2 and "=" not in token
    header, _, _, _ = jwt.split(token)
    assert header == {"alg": "RS256", "kid": jwt.key_id(key.public_key())}
    assert jwt.verify(token, [key.public_key()]) == {"sub": "me", "n": 1}


def test_any_trusted_key_verifies(key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    token = jwt.sign({"a": "b"}, key)
    assert jwt.verify(token, [other_key.public_key(), key.public_key()]) == {"a": "b"}


def test_a_token_of_another_key_is_refused(key: rsa.RSAPrivateKey,
                                           other_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(jwt.JwtError, match="invalid signature"):
        jwt.verify(jwt.sign({"a": "b"}, other_key), [key.public_key()])


def _tamper(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    body = jwt.b64url_encode(json.dumps(claims).encode())
    return f"{header}.{body}.{signature}"


def test_changed_claims_break_the_signature(key: rsa.RSAPrivateKey) -> None:
    token = jwt.sign({"sub": "me"}, key)
    with pytest.raises(jwt.JwtError, match="invalid signature"):
        jwt.verify(_tamper(token, {"sub": "admin"}), [key.public_key()])


@pytest.mark.parametrize("token", [
    "", "a.b", "a.b.c.d", "!!!.e30.e30", "e30.e30.", "W10.e30.e30",
    jwt.b64url_encode(b'{"alg":"none"}') + ".e30.e30",
    jwt.b64url_encode(b'{"alg":"HS256"}') + ".e30.e30",
    "x" * (jwt.MAX_TOKEN_BYTES + 1),
])
def test_malformed_tokens_are_refused(key: rsa.RSAPrivateKey, token: str) -> None:
    with pytest.raises(jwt.JwtError):
        jwt.verify(token, [key.public_key()])


def test_key_files_take_public_keys_certificates_and_private_keys(
        key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    private = other_key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
    keys = jwt.load_public_keys(public + private)
    assert [jwt.key_id(k) for k in keys] == [jwt.key_id(key.public_key()),
                                             jwt.key_id(other_key.public_key())]
    with pytest.raises(jwt.JwtError, match="no public key"):
        jwt.load_public_keys(b"nothing here")
    assert jwt.key_id(jwt.load_private_key(private).public_key()) == jwt.key_id(
        other_key.public_key())


# ------------------------------------------------------------------ ServiceAccount claims


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = tokens.service_account_claims(
        issuer=ISSUER, audiences=[ISSUER], namespace="ns", name="robot", uid="sa-uid",
        pod=tokens.BoundObject("web", "pod-uid"), now=NOW, expiration_seconds=3600)
    claims.update(overrides)
    return claims


def _parse(claims: dict[str, Any], now: dt.datetime = NOW) -> tokens.ServiceAccountClaims:
    return tokens.parse_service_account_claims(claims, issuers=[ISSUER], audiences=[ISSUER],
                                               now=now)


def test_service_account_claims_round_trip() -> None:
    claims = _claims()
    assert claims["sub"] == "system:serviceaccount:ns:robot"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["kubernetes.io"] == {"namespace": "ns",
                                       "serviceaccount": {"name": "robot", "uid": "sa-uid"},
                                       "pod": {"name": "web", "uid": "pod-uid"}}
    parsed = _parse(claims)
    assert (parsed.namespace, parsed.name, parsed.uid) == ("ns", "robot", "sa-uid")
    assert parsed.pod == tokens.BoundObject("web", "pod-uid")
    user = parsed.user()
    assert user.name == "system:serviceaccount:ns:robot"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ns",
                           ALL_AUTHENTICATED)
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("web",)


def test_expired_claims_are_refused() -> None:
    with pytest.raises(tokens.TokenInvalid, match="expired"):
        _parse(_claims(), NOW + dt.timedelta(seconds=3600))


def test_claims_from_the_future_are_refused_beyond_the_leeway() -> None:
    later = int(NOW.timestamp()) + 120
    with pytest.raises(tokens.TokenInvalid, match="not valid yet"):
        _parse(_claims(nbf=later, iat=later))
    _parse(_claims(nbf=int(NOW.timestamp()) + 30))


@pytest.mark.parametrize(("overrides", "why"), [
    ({"iss": "https://elsewhere"}, "issuer"),
    ({"aud": ["https://elsewhere"]}, "audiences"),
    ({"aud": "https://elsewhere"}, "audiences"),
    ({"exp": "soon"}, "claim exp"),
    ({"sub": "system:serviceaccount:ns:other"}, "sub"),
    ({"kubernetes.io": {"namespace": "ns"}}, "serviceaccount"),
    ({"kubernetes.io": "x"}, "kubernetes.io"),
])
def test_claims_that_do_not_fit_are_refused(overrides: dict[str, Any], why: str) -> None:
    with pytest.raises(tokens.TokenInvalid, match=why):
        _parse(_claims(**overrides))


def test_a_single_audience_string_is_taken() -> None:
    assert _parse(_claims(aud=ISSUER)).audiences == (ISSUER,)


# ------------------------------------------------------------------ bootstrap tokens


def _secret(**data: str) -> v1.Secret:
    values = {"token-id": "abcdef", "token-secret": "0123456789abcdef",
              "usage-bootstrap-authentication": "true", **data}
    return v1.Secret(metadata=v1.ObjectMeta(name="bootstrap-token-abcdef",
                                            namespace="kube-system"),
                     type=tokens.BOOTSTRAP_TOKEN_SECRET_TYPE,
                     data={k: v.encode() for k, v in values.items()})


def test_bootstrap_tokens_parse() -> None:
    assert tokens.parse_bootstrap_token("abcdef.0123456789abcdef") == ("abcdef",
                                                                       "0123456789abcdef")
    for text in ("abcdef.0123456789abcde", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef",
                 "eyJhbGciOi.x.y"):
        assert tokens.parse_bootstrap_token(text) is None
    assert tokens.bootstrap_token_secret_name("abcdef") == "bootstrap-token-abcdef"


def test_a_valid_bootstrap_token_is_its_user_with_extra_groups() -> None:
    secret = _secret(expiration="2030-01-03T00:00:00Z",
                     **{"auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"})
    user = tokens.bootstrap_token_user(secret, "abcdef", "0123456789abcdef", NOW)
    assert user.name == "system:bootstrap:abcdef"
    assert user.groups == (BOOTSTRAPPERS, "system:bootstrappers:kubeadm:default-node-token",
                           ALL_AUTHENTICATED)


@pytest.mark.parametrize(("secret", "why"), [
    (_secret(**{"token-secret": "ffffffffffffffff"}), "does not match"),
    (_secret(expiration="2030-01-02T00:00:00Z"), "expired"),
    (_secret(expiration="tomorrow"), "RFC 3339"),
    (_secret(**{"usage-bootstrap-authentication": "false"}), "usage-bootstrap-authentication"),
    (_secret(**{"auth-extra-groups": "system:masters"}), "auth-extra-groups"),
    (_secret(**{"token-id": "zzzzzz"}), "token-id"),
])
def test_bootstrap_tokens_the_secret_does_not_back_are_refused(secret: v1.Secret,
                                                               why: str) -> None:
    with pytest.raises(tokens.TokenInvalid, match=why):
        tokens.bootstrap_token_user(secret, "abcdef", "0123456789abcdef", NOW)


def test_a_bootstrap_secret_of_another_type_or_being_deleted_is_refused() -> None:
    secret = _secret()
    secret.type = "Opaque"
    with pytest.raises(tokens.TokenInvalid, match="type"):
        tokens.bootstrap_token_user(secret, "abcdef", "0123456789abcdef", NOW)
    secret = _secret()
    secret.metadata.deletion_timestamp = "2030-01-01T00:00:00Z"
    with pytest.raises(tokens.TokenInvalid, match="deleted"):
        tokens.bootstrap_token_user(secret, "abcdef", "0123456789abcdef", NOW)
