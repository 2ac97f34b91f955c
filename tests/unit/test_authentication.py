"""Who a request is: client certificates of the client CA (the anonymous-transport one is
nobody), bootstrap tokens while their Secret allows, ServiceAccount tokens while their
ServiceAccount and pod exist with the uids they name; anonymous requests only when allowed."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from apiserver.api import Api
from apiserver.authn import AuthenticationSettings, Authenticator, load_client_cas
from apiserver.authz.node import NodeGraph
from apiserver.authz.store import Uids
from kubelite.api.errors import NotFound, Unauthorized
from kubelite.auth import jwt, tokens
from kubelite.auth.anonymous_transport import ANONYMOUS_CLIENT_CERT_PEM
from kubelite.auth.user import ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, UserInfo
from kubelite.pki import issue, new_ca
from protos.v1 import objects_pb2 as v1

NOW = dt.datetime.now(dt.UTC)


class FakeApi:
    """Secrets by (namespace, name), as Api.get answers."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], v1.Secret] = {}

    async def get(self, rtype: Any, namespace: str, name: str) -> v1.Secret:
        try:
            return self.secrets[(namespace, name)]
        except KeyError:
            raise NotFound(f'secrets "{name}" not found') from None


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return new_ca("kubernetes")


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class World:
    def __init__(self, ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey,
                 client_ca: bool = True, **settings: Any) -> None:
        self.api = FakeApi()
        self.accounts = Uids()
        self.pods = NodeGraph()
        self.now = NOW
        self.authenticator = Authenticator(
            cast(Api, self.api), AuthenticationSettings(**settings),
            service_accounts=self.accounts, pods=self.pods,
            verification_keys=[key.public_key()],
            client_cas=load_client_cas(ca[0]) if client_ca else (),
            clock=lambda: self.now)

    async def user(self, certificate: bytes | None = None, header: str | None = None
                   ) -> UserInfo:
        return await self.authenticator.authenticate(certificate, header)


async def test_a_client_ca_certificate_is_its_subject(ca: tuple[bytes, bytes],
                                                      key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    cert, _ = issue(*ca, "alice", ["devs", "ops"], client=True)
    assert await world.user(cert) == UserInfo("alice", groups=("devs", "ops", ALL_AUTHENTICATED))
    assert await world.user(cert) == UserInfo("alice", groups=("devs", "ops", ALL_AUTHENTICATED))


async def test_certificates_that_are_nobody(ca: tuple[bytes, bytes],
                                            key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    server_only, _ = issue(*ca, "apiserver", server=True)
    other_ca = new_ca("another")
    foreign, _ = issue(*other_ca, "kubernetes-admin", ["system:masters"], client=True)
    for cert in (ANONYMOUS_CLIENT_CERT_PEM, server_only, foreign):
        with pytest.raises(Unauthorized):
            await world.user(cert)


async def test_an_expired_certificate_on_a_live_connection_is_refused(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    cert, _ = issue(*ca, "alice", client=True, days=1)
    await world.user(cert)
    world.now = x509.load_pem_x509_certificate(cert).not_valid_after_utc
    with pytest.raises(Unauthorized):
        await world.user(cert)


async def test_no_credentials_are_anonymous_only_when_allowed(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(Unauthorized):
        await World(ca, key).user(ANONYMOUS_CLIENT_CERT_PEM)
    anonymous = await World(ca, key, anonymous=True).user(ANONYMOUS_CLIENT_CERT_PEM)
    assert anonymous == UserInfo("system:anonymous", groups=(ALL_UNAUTHENTICATED,))
    for header in ("Basic abc", "Bearer", "bearer  "):
        with pytest.raises(Unauthorized):
            await World(ca, key).user(None, header)


def _bootstrap_secret(**data: str) -> v1.Secret:
    values = {"token-id": "abcdef", "token-secret": "0123456789abcdef",
              "usage-bootstrap-authentication": "true", **data}
    return v1.Secret(metadata=v1.ObjectMeta(name="bootstrap-token-abcdef",
                                            namespace="kube-system"),
                     type=tokens.BOOTSTRAP_TOKEN_SECRET_TYPE,
                     string_data=values)


async def test_bootstrap_tokens_need_the_flag_and_their_secret(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    header = "Bearer abcdef.0123456789abcdef"
    disabled = World(ca, key)
    disabled.api.secrets[("kube-system", "bootstrap-token-abcdef")] = _bootstrap_secret()
    with pytest.raises(Unauthorized):
        await disabled.user(None, header)
    world = World(ca, key, bootstrap_tokens=True)
    with pytest.raises(Unauthorized):
        await world.user(None, header)
    world.api.secrets[("kube-system", "bootstrap-token-abcdef")] = _bootstrap_secret()
    user = await world.user(None, header)
    assert user.name == "system:bootstrap:abcdef"
    assert "system:bootstrappers" in user.groups
    with pytest.raises(Unauthorized):
        await world.user(None, "Bearer abcdef.ffffffffffffffff")


def _account(world: World, uid: str = "sa-uid") -> None:
    world.accounts.apply("ServiceAccount", v1.ServiceAccount(metadata=v1.ObjectMeta(
        namespace="ns", name="robot", uid=uid)), False)


def _pod(world: World, uid: str = "pod-uid", deleting: str = "") -> v1.Pod:
    pod = v1.Pod(metadata=v1.ObjectMeta(namespace="ns", name="web", uid=uid,
                                        deletion_timestamp=deleting))
    world.pods.apply("Pod", pod, False)
    return pod


def _token(key: rsa.RSAPrivateKey, *, pod: bool = True, issuer: str = tokens.DEFAULT_ISSUER,
           now: dt.datetime = NOW) -> str:
    return "Bearer " + jwt.sign(tokens.service_account_claims(
        issuer=issuer, audiences=[tokens.DEFAULT_ISSUER], namespace="ns", name="robot",
        uid="sa-uid", pod=tokens.BoundObject("web", "pod-uid") if pod else None, now=now,
        expiration_seconds=3600), key)


async def test_a_service_account_token_is_its_account_while_it_and_its_pod_exist(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))  # no such account
    _account(world)
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))  # no such pod
    assert (await world.user(None, _token(key, pod=False))).name == (
        "system:serviceaccount:ns:robot")
    pod = _pod(world)
    user = await world.user(None, _token(key))
    assert user.name == "system:serviceaccount:ns:robot"
    assert user.uid == "sa-uid"
    assert user.extra["authentication.kubernetes.io/pod-uid"] == ("pod-uid",)
    _pod(world, deleting=(NOW + dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    await world.user(None, _token(key))  # still in its grace period
    _pod(world, deleting=(NOW - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))
    world.pods.apply("Pod", pod, True)
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))
    _pod(world, uid="new-pod-uid")  # the same name, another pod
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))
    _pod(world)
    _account(world, uid="recreated")
    with pytest.raises(Unauthorized):
        await world.user(None, _token(key))


async def test_tokens_of_other_issuers_keys_or_times_are_refused(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    _account(world)
    _pod(world)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for header in (_token(other), _token(key, issuer="https://elsewhere"),
                   _token(key, now=NOW - dt.timedelta(hours=2)), "Bearer not.a.jwt"):
        with pytest.raises(Unauthorized):
            await world.user(None, header)
    accepting = World(ca, key, service_account_issuers=("https://new", tokens.DEFAULT_ISSUER))
    _account(accepting)
    _pod(accepting)
    await accepting.user(None, _token(key))


async def test_a_certificate_wins_over_a_token(ca: tuple[bytes, bytes],
                                               key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key)
    cert, _ = issue(*ca, "alice", client=True)
    assert (await world.user(cert, "Bearer garbage")).name == "alice"


async def test_without_a_client_ca_certificates_are_nobody(
        ca: tuple[bytes, bytes], key: rsa.RSAPrivateKey) -> None:
    world = World(ca, key, client_ca=False)
    assert not world.authenticator.accepts_certificates
    cert, _ = issue(*ca, "alice", client=True)
    with pytest.raises(Unauthorized):
        await world.user(cert)
    _account(world)
    _pod(world)
    assert (await world.user(cert, _token(key))).name == (
        "system:serviceaccount:ns:robot")
