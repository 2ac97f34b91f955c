"""The bearer tokens the API server accepts, as data: bootstrap tokens (``ID.SECRET`` and the
Secret ``kube-system/bootstrap-token-ID`` that makes one valid) and the claims of ServiceAccount
tokens (JWTs, see kubelite.auth.jwt).

Pure functions over the Secret and the claims: the API server supplies the objects and the
clock, so what makes a token valid is testable without one.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubelite.auth.user import (
    ALL_AUTHENTICATED,
    BOOTSTRAP_USER_PREFIX,
    BOOTSTRAPPERS,
    SERVICE_ACCOUNT_USER_PREFIX,
    UserInfo,
    service_account_user,
)
from protos.v1 import objects_pb2 as v1

# ------------------------------------------------------------------ bootstrap tokens

BOOTSTRAP_TOKEN_PATTERN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
"""``ID.SECRET`` of a bootstrap token."""
BOOTSTRAP_TOKEN_SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_TOKEN_SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAP_TOKEN_NAMESPACE = "kube-system"
BOOTSTRAP_EXTRA_GROUP_PATTERN = re.compile(r"^system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]$")
"""What a group in ``auth-extra-groups`` must look like (upstream's rule)."""


def parse_bootstrap_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a bootstrap token; None for anything else (it may be another kind)."""
    match = BOOTSTRAP_TOKEN_PATTERN.match(token)
    return (match.group(1), match.group(2)) if match else None


def bootstrap_token_secret_name(token_id: str) -> str:
    """The Secret in kube-system that holds the token with this id."""
    return BOOTSTRAP_TOKEN_SECRET_PREFIX + token_id


def _secret_value(secret: v1.Secret, key: str) -> str:
    if key in secret.data:
        return secret.data[key].decode("utf-8", errors="replace")
    return secret.string_data.get(key, "")


class TokenInvalid(ValueError):
    """A token this server cannot accept; the message says why (for the log, never the caller:
    the caller only ever hears "Unauthorized")."""


def bootstrap_token_user(
    secret: v1.Secret, token_id: str, token_secret: str, now: dt.datetime
) -> UserInfo:
    """The user ``system:bootstrap:ID`` that a valid bootstrap token authenticates as, in
    ``system:bootstrappers`` and the Secret's ``auth-extra-groups``; TokenInvalid when the
    Secret does not make the token valid (type, secret, usage, expiry, deletion, groups)."""
    if secret.type != BOOTSTRAP_TOKEN_SECRET_TYPE:
        raise TokenInvalid(f"secret has type {secret.type!r}, not {BOOTSTRAP_TOKEN_SECRET_TYPE}")
    if secret.metadata.deletion_timestamp:
        raise TokenInvalid("the token's secret is being deleted")
    stored_id = _secret_value(secret, "token-id")
    if stored_id and stored_id != token_id:
        raise TokenInvalid("the secret's token-id is not the token's id")
    stored_secret = _secret_value(secret, "token-secret")
    if not stored_secret or not hmac.compare_digest(stored_secret.encode(),
                                                    token_secret.encode()):
        raise TokenInvalid("the token's secret does not match")
    if _secret_value(secret, "usage-bootstrap-authentication") != "true":
        raise TokenInvalid("the token is not marked usage-bootstrap-authentication")
    expiration = _secret_value(secret, "expiration")
    if expiration:
        try:
            expires = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
        except ValueError:
            raise TokenInvalid(f"expiration {expiration!r} is not an RFC 3339 time") from None
        if expires.tzinfo is None:
            raise TokenInvalid(f"expiration {expiration!r} has no time zone")
        if expires <= now:
            raise TokenInvalid(f"the token expired at {expiration}")
    groups = [BOOTSTRAPPERS]
    for group in filter(None, (g.strip() for g in
                               _secret_value(secret, "auth-extra-groups").split(","))):
        if not BOOTSTRAP_EXTRA_GROUP_PATTERN.match(group):
            raise TokenInvalid(f"auth-extra-groups: {group!r} must match"
                               f" {BOOTSTRAP_EXTRA_GROUP_PATTERN.pattern}")
        if group not in groups:
            groups.append(group)
    return UserInfo(BOOTSTRAP_USER_PREFIX + token_id, groups=(*groups, ALL_AUTHENTICATED))


# ------------------------------------------------------------------ ServiceAccount tokens

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
"""Kubernetes' default --service-account-issuer; also the default audience."""
KUBERNETES_CLAIM = "kubernetes.io"
MIN_EXPIRATION_SECONDS = 600
"""A TokenRequest may not ask for less (upstream: 10 minutes)."""
MAX_EXPIRATION_SECONDS = 2**32
"""Nor for more (upstream: 2^32 seconds)."""
DEFAULT_EXPIRATION_SECONDS = 3600


@dataclass(frozen=True)
class BoundObject:
    """What a token is bound to (a pod): the token dies with it."""

    name: str
    uid: str


@dataclass(frozen=True)
class ServiceAccountClaims:
    """The private claims of a ServiceAccount token (``kubernetes.io``) and its lifetime."""

    namespace: str
    name: str
    uid: str
    pod: BoundObject | None
    issued_at: int
    not_before: int
    expires: int
    audiences: tuple[str, ...]

    @property
    def subject(self) -> str:
        return f"{SERVICE_ACCOUNT_USER_PREFIX}{self.namespace}:{self.name}"

    def user(self) -> UserInfo:
        """The identity the token stands for; the bound pod rides along in ``extra`` as
        upstream reports it (``authentication.kubernetes.io/pod-name`` and ``-uid``)."""
        user = service_account_user(self.namespace, self.name, self.uid)
        if self.pod is None:
            return user
        extra = {"authentication.kubernetes.io/pod-name": (self.pod.name,),
                 "authentication.kubernetes.io/pod-uid": (self.pod.uid,)}
        return UserInfo(user.name, user.uid, user.groups, extra)


def service_account_claims(
    *, issuer: str, audiences: Sequence[str], namespace: str, name: str, uid: str,
    pod: BoundObject | None, now: dt.datetime, expiration_seconds: int,
) -> dict[str, Any]:
    """The claims of a token for ServiceAccount ``namespace/name`` as Kubernetes writes them."""
    issued = int(now.timestamp())
    private: dict[str, Any] = {"namespace": namespace,
                               "serviceaccount": {"name": name, "uid": uid}}
    if pod is not None:
        private["pod"] = {"name": pod.name, "uid": pod.uid}
    return {
        "iss": issuer,
        "aud": list(audiences),
        "sub": f"{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + expiration_seconds,
        KUBERNETES_CLAIM: private,
    }


def _string(mapping: Mapping[str, Any], key: str, path: str) -> str:
    value = mapping.get(key)
    if not isinstance(value, str) or not value:
        raise TokenInvalid(f"claim {path}: a non-empty string is required")
    return value


def _time(claims: Mapping[str, Any], key: str) -> int:
    value = claims.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenInvalid(f"claim {key}: a number (seconds since the epoch) is required")
    return int(value)


def parse_service_account_claims(
    claims: Mapping[str, Any], *, issuers: Sequence[str], audiences: Sequence[str],
    now: dt.datetime, leeway: int = 60,
) -> ServiceAccountClaims:
    """The ServiceAccount claims of a verified token's claims, checked: issued by one of
    ``issuers``, for one of ``audiences``, within its lifetime (``leeway`` seconds of clock
    skew allowed on ``nbf``/``iat``, none on ``exp``); TokenInvalid otherwise."""
    issuer = claims.get("iss")
    if issuer not in issuers:
        raise TokenInvalid(f"issuer {issuer!r} is not trusted")
    audience = claims.get("aud")
    token_audiences = (audience,) if isinstance(audience, str) else (
        tuple(a for a in audience if isinstance(a, str)) if isinstance(audience, list) else ())
    if not set(token_audiences) & set(audiences):
        raise TokenInvalid(f"audiences {list(token_audiences)} name none of {list(audiences)}")
    seconds = now.timestamp()
    expires = _time(claims, "exp")
    if seconds >= expires:
        raise TokenInvalid("the token has expired")
    not_before = _time(claims, "nbf") if "nbf" in claims else 0
    issued = _time(claims, "iat") if "iat" in claims else 0
    if not_before > seconds + leeway or issued > seconds + leeway:
        raise TokenInvalid("the token is not valid yet")
    private = claims.get(KUBERNETES_CLAIM)
    if not isinstance(private, dict):
        raise TokenInvalid(f"claim {KUBERNETES_CLAIM}: an object is required")
    namespace = _string(private, "namespace", f"{KUBERNETES_CLAIM}.namespace")
    account = private.get("serviceaccount")
    if not isinstance(account, dict):
        raise TokenInvalid(f"claim {KUBERNETES_CLAIM}.serviceaccount: an object is required")
    name = _string(account, "name", f"{KUBERNETES_CLAIM}.serviceaccount.name")
    uid = _string(account, "uid", f"{KUBERNETES_CLAIM}.serviceaccount.uid")
    if claims.get("sub") != f"{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}":
        raise TokenInvalid("claim sub does not name the token's ServiceAccount")
    pod = None
    if "pod" in private:
        ref = private["pod"]
        if not isinstance(ref, dict):
            raise TokenInvalid(f"claim {KUBERNETES_CLAIM}.pod: an object is required")
        pod = BoundObject(_string(ref, "name", f"{KUBERNETES_CLAIM}.pod.name"),
                          _string(ref, "uid", f"{KUBERNETES_CLAIM}.pod.uid"))
    return ServiceAccountClaims(namespace, name, uid, pod, issued, not_before, expires,
                                token_audiences)
