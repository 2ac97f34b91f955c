"""Who a request comes from (docs/security.md section 3).

In order: the client certificate the TLS handshake verified, when the client CA issued it (CN
the user, O entries the groups; the public anonymous-transport certificate that token-only
clients present is nobody, see kubelite.auth.anonymous_transport), then a bearer token: a
bootstrap token (``ID.SECRET``, valid while its Secret ``kube-system/bootstrap-token-ID`` is)
or a ServiceAccount JWT (signed by a trusted key, for this server's audience, unexpired, and
bound to a ServiceAccount and pod that still exist with the uids it names). A request with
neither is anonymous when ``--anonymous-auth`` allows it and Unauthorized otherwise; so is
one whose credentials fail, with the reason in the log and only "Unauthorized" in the answer.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apiserver.api import Api
from apiserver.authz.node import NodeGraph
from apiserver.authz.store import Uids
from kubelite.api.errors import NotFound, Unauthorized
from kubelite.api.registry import by_kind
from kubelite.auth import jwt, tokens
from kubelite.auth.user import ALL_AUTHENTICATED, ALL_UNAUTHENTICATED, ANONYMOUS, UserInfo
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

SECRETS = by_kind("Secret")
SERVICE_ACCOUNT_KIND = "ServiceAccount"
UNAUTHORIZED = "Unauthorized"


@dataclass(frozen=True)
class AuthenticationSettings:
    anonymous: bool = False
    """--anonymous-auth: requests without credentials are served as ``system:anonymous``
    (group ``system:unauthenticated``) instead of refused; RBAC then decides."""
    bootstrap_tokens: bool = False
    """--enable-bootstrap-token-auth: bootstrap tokens (``ID.SECRET``, their Secret in
    kube-system) authenticate, for nodes joining."""
    service_account_key_files: tuple[str, ...] = ()
    """--service-account-key-file: PEM files of the public keys (or certificates, or private
    keys) that ServiceAccount tokens may be signed with; the signing key's own public half is
    always trusted too."""
    service_account_issuers: tuple[str, ...] = (tokens.DEFAULT_ISSUER,)
    """--service-account-issuer: the ``iss`` of the tokens this server signs (the first) and
    accepts (any)."""
    api_audiences: tuple[str, ...] = ()
    """--api-audiences: a token must name one of these in ``aud``; empty: the issuers."""
    x509_cache_size: int = 1024
    """Distinct client certificates whose parsed identity is kept."""

    def __post_init__(self) -> None:
        if not self.service_account_issuers or not all(self.service_account_issuers):
            raise ValueError("--service-account-issuer: at least one non-empty issuer is"
                             " required")

    @property
    def audiences(self) -> tuple[str, ...]:
        return self.api_audiences or self.service_account_issuers


def load_verification_keys(files: Sequence[str]) -> list[rsa.RSAPublicKey]:
    keys: list[rsa.RSAPublicKey] = []
    for name in files:
        try:
            data = Path(name).read_bytes()
        except OSError as e:
            raise ValueError(f"--service-account-key-file: cannot read {name}: {e}") from e
        try:
            keys += jwt.load_public_keys(data, f"--service-account-key-file {name}")
        except jwt.JwtError as e:
            raise ValueError(str(e)) from e
    return keys


@dataclass(frozen=True)
class _Certificate:
    user: UserInfo | None
    """None when the certificate is no identity: the anonymous-transport one, one the client
    CA did not issue, or one not for client authentication."""
    not_after: float
    """When it expires, in seconds since the epoch (compared on every request)."""


def load_client_cas(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise ValueError(f"--client-ca-file: no PEM certificate: {e}") from e


def certificate_user(pem: bytes, client_cas: Sequence[x509.Certificate]
                     ) -> tuple[UserInfo | None, dt.datetime]:
    """(the user a verified client certificate names, when it expires): CN the name, O the
    groups; no user unless one of ``client_cas`` issued it for client authentication (the
    handshake also takes the public anonymous-transport certificate, which is nobody)."""
    cert = x509.load_pem_x509_certificate(pem)
    if not any(_issued_by(cert, ca) for ca in client_cas):
        return None, cert.not_valid_after_utc
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        client = (ExtendedKeyUsageOID.CLIENT_AUTH in usages
                  or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages)
    except x509.ExtensionNotFound:
        client = True
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    groups = [str(o.value) for o in cert.subject.get_attributes_for_oid(
        NameOID.ORGANIZATION_NAME)]
    user = UserInfo(name, groups=(*groups, ALL_AUTHENTICATED)) if client and name else None
    return user, cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Authenticator:
    """Turns a request's credentials into a UserInfo (see the module's docstring)."""

    def __init__(
        self,
        api: Api,
        settings: AuthenticationSettings,
        *,
        service_accounts: Uids,
        pods: NodeGraph,
        verification_keys: Sequence[rsa.RSAPublicKey] = (),
        client_cas: Sequence[x509.Certificate] = (),
        clock: Clock = _utc_now,
    ) -> None:
        self.api = api
        self.settings = settings
        self.service_accounts = service_accounts
        self.pods = pods
        self.keys = list(verification_keys)
        self.client_cas = list(client_cas)
        self.clock = clock
        # Certificate expiry is checked on every request: seconds are far cheaper than an
        # aware datetime, and tests' clocks still decide.
        self._seconds: Callable[[], float] = (
            time.time if clock is _utc_now else lambda: clock().timestamp())
        self._certificates: OrderedDict[bytes, _Certificate] = OrderedDict()

    @property
    def accepts_certificates(self) -> bool:
        """Whether a client certificate can name a user here (a client CA is configured)."""
        return bool(self.client_cas)

    async def authenticate(self, certificate: bytes | None, authorization: str | None
                           ) -> UserInfo:
        """The user of a request with this verified client certificate (PEM) and this
        ``authorization`` header; Unauthorized when there is none to be had."""
        if certificate and self.client_cas:
            user = self._certificate_user(certificate)
            if user is not None:
                return user
        token = _bearer_token(authorization)
        if token is not None:
            return await self._token_user(token)
        if self.settings.anonymous:
            return UserInfo(ANONYMOUS, groups=(ALL_UNAUTHENTICATED,))
        raise Unauthorized(UNAUTHORIZED)

    def _certificate_user(self, pem: bytes) -> UserInfo | None:
        cached = self._certificates.get(pem)
        if cached is None:
            try:
                user, not_after = certificate_user(pem, self.client_cas)
            except ValueError as e:
                log.info("client certificate refused", reason=f"does not parse: {e}")
                raise Unauthorized(UNAUTHORIZED) from None
            cached = _Certificate(user, not_after.timestamp())
            self._certificates[pem] = cached
            if len(self._certificates) > self.settings.x509_cache_size:
                self._certificates.popitem(last=False)
        else:
            self._certificates.move_to_end(pem)
        if cached.not_after <= self._seconds():
            # The handshake checked it; a connection may outlive it.
            log.info("client certificate refused", reason="expired",
                     user=cached.user.name if cached.user else "")
            raise Unauthorized(UNAUTHORIZED)
        return cached.user

    async def _token_user(self, token: str) -> UserInfo:
        try:
            bootstrap = tokens.parse_bootstrap_token(token)
            if bootstrap is not None:
                if not self.settings.bootstrap_tokens:
                    raise tokens.TokenInvalid("bootstrap tokens are not enabled"
                                              " (--enable-bootstrap-token-auth)")
                return await self._bootstrap_user(*bootstrap)
            return self._service_account_user(token)
        except (tokens.TokenInvalid, jwt.JwtError) as e:
            log.info("bearer token refused", reason=str(e))
            raise Unauthorized(UNAUTHORIZED) from None

    async def _bootstrap_user(self, token_id: str, token_secret: str) -> UserInfo:
        try:
            secret = await self.api.get(SECRETS, tokens.BOOTSTRAP_TOKEN_NAMESPACE,
                                        tokens.bootstrap_token_secret_name(token_id))
        except NotFound:
            raise tokens.TokenInvalid(f"no secret for bootstrap token {token_id}") from None
        assert isinstance(secret, v1.Secret)
        return tokens.bootstrap_token_user(secret, token_id, token_secret, self.clock())

    def _service_account_user(self, token: str) -> UserInfo:
        if not self.keys:
            raise tokens.TokenInvalid("no --service-account-key-file: tokens are not accepted")
        claims = tokens.parse_service_account_claims(
            jwt.verify(token, self.keys), issuers=self.settings.service_account_issuers,
            audiences=self.settings.audiences, now=self.clock(),
        )
        account = self.service_accounts.get(SERVICE_ACCOUNT_KIND, claims.namespace,
                                            claims.name)
        if account is None:
            raise tokens.TokenInvalid(
                f"service account {claims.namespace}/{claims.name} does not exist")
        if account[0] != claims.uid:
            raise tokens.TokenInvalid(
                f"service account {claims.namespace}/{claims.name} has uid {account[0]}, the"
                f" token names {claims.uid}")
        if claims.pod is not None:
            pod = self.pods.pod(claims.namespace, claims.pod.name)
            if pod is None:
                raise tokens.TokenInvalid(
                    f"pod {claims.namespace}/{claims.pod.name} the token is bound to does not"
                    " exist")
            if pod.uid != claims.pod.uid:
                raise tokens.TokenInvalid(
                    f"pod {claims.namespace}/{claims.pod.name} has uid {pod.uid}, the token"
                    f" names {claims.pod.uid}")
            if pod.deletion_timestamp and _before(pod.deletion_timestamp, self.clock()):
                raise tokens.TokenInvalid(
                    f"pod {claims.namespace}/{claims.pod.name} the token is bound to is"
                    " deleted")
        return claims.user()


def _before(timestamp: str, now: dt.datetime) -> bool:
    try:
        return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")) <= now
    except ValueError:
        return True


def _bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
