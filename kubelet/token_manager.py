"""ServiceAccount tokens for pods' projected volumes, requested from the API server and cached.

As upstream's kubelet token manager: one token per (pod, ServiceAccount, audiences,
expiration), asked for with a TokenRequest bound to the pod (so the token dies with it). The
cached token is served until 80% of its lifetime has passed or it is 24 hours old, whichever
comes first, less a few seconds of random jitter so that a node's pods do not all ask at
once. A refresh that fails serves the cached token while it is still valid. A pod's tokens
are forgotten when it goes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from kubelite.api.meta import parse_time
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

DEFAULT_EXPIRATION_SECONDS = 3600
"""A serviceAccountToken projection without expirationSeconds asks for an hour, as the API's
defaulting does."""


class TokenRequester(Protocol):
    """Creates the ``token`` subresource of a ServiceAccount (a TokenRequest), as
    ApiClient.request_token does."""

    async def request_token(
        self, namespace: str, service_account: str, request: v1.TokenRequest
    ) -> v1.TokenRequest: ...


@dataclass(frozen=True)
class TokenManagerSettings:
    """When cached tokens are asked for again (upstream's kubelet defaults)."""

    refresh_fraction: float = 0.8
    """A token is refreshed once this fraction of its lifetime has passed."""
    max_ttl: float = 24 * 3600.0
    """A token older than this is refreshed whatever its lifetime (seconds)."""
    max_jitter: float = 10.0
    """Refreshes come up to this many seconds early, at random, spreading them out."""

    def __post_init__(self) -> None:
        if not 0.0 < self.refresh_fraction <= 1.0:
            raise ValueError(f"refresh_fraction: must be in (0, 1], got {self.refresh_fraction}")
        if self.max_ttl <= 0:
            raise ValueError(f"max_ttl: must be greater than 0, got {self.max_ttl}")
        if self.max_jitter < 0:
            raise ValueError(f"max_jitter: must not be negative, got {self.max_jitter}")


@dataclass(frozen=True)
class TokenKey:
    """What one cached token is for."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    audiences: tuple[str, ...]
    """Empty: the API server's default audience."""
    expiration_seconds: int


@dataclass(frozen=True)
class CachedToken:
    token: str
    issued_at: float
    """When its lifetime started (epoch seconds): the expiry less its lifetime."""
    expires_at: float
    """Epoch seconds after which the API server refuses it."""


class TokenManager:
    def __init__(
        self,
        requester: TokenRequester,
        settings: TokenManagerSettings = TokenManagerSettings(),
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """``clock``: epoch seconds (token expiries are wall-clock times); ``jitter``: a
        number in [0, 1) scaling ``settings.max_jitter`` at each refresh check."""
        self.requester = requester
        self.settings = settings
        self.clock = clock
        self.jitter = jitter
        self._tokens: dict[TokenKey, CachedToken] = {}

    async def get(
        self,
        pod: v1.Pod,
        audiences: Sequence[str] = (),
        expiration_seconds: int = DEFAULT_EXPIRATION_SECONDS,
    ) -> str:
        """A token of the pod's ServiceAccount bound to the pod: the cached one unless it is
        due for a refresh. Raises the API's error when none can be had."""
        key = TokenKey(
            namespace=pod.metadata.namespace,
            service_account=pod.spec.service_account_name or "default",
            pod_name=pod.metadata.name,
            pod_uid=pod.metadata.uid,
            audiences=tuple(audiences),
            expiration_seconds=expiration_seconds,
        )
        self._drop_expired()
        cached = self._tokens.get(key)
        if cached is not None and not self.requires_refresh(cached):
            return cached.token
        try:
            fresh = await self._request(key)
        except Exception as e:
            if cached is not None and self.clock() < cached.expires_at:
                log.warning("refreshing a ServiceAccount token failed; the cached one is"
                            " still valid", pod=f"{key.namespace}/{key.pod_name}",
                            service_account=key.service_account, error=str(e),
                            expires_in=round(cached.expires_at - self.clock()))
                return cached.token
            raise
        self._tokens[key] = fresh
        return fresh.token

    def requires_refresh(self, cached: CachedToken) -> bool:
        """Whether the token is due: past ``refresh_fraction`` of its lifetime or older
        than ``max_ttl``, both brought forward by the jitter."""
        now = self.clock()
        jitter = self.jitter() * self.settings.max_jitter
        if now > cached.issued_at + self.settings.max_ttl - jitter:
            return True
        lifetime = cached.expires_at - cached.issued_at
        refresh_at = cached.issued_at + lifetime * self.settings.refresh_fraction
        return now > refresh_at - jitter

    def forget_pod(self, pod_uid: str) -> None:
        """Drops every token bound to the pod (it is gone from this node)."""
        for key in [k for k in self._tokens if k.pod_uid == pod_uid]:
            del self._tokens[key]

    def cached(self) -> dict[TokenKey, CachedToken]:
        """The cache's content (a copy)."""
        return dict(self._tokens)

    def _drop_expired(self) -> None:
        now = self.clock()
        for key in [k for k, t in self._tokens.items() if now >= t.expires_at]:
            del self._tokens[key]

    async def _request(self, key: TokenKey) -> CachedToken:
        request = v1.TokenRequest(spec=v1.TokenRequestSpec(
            audiences=list(key.audiences),
            expiration_seconds=key.expiration_seconds,
            bound_object_ref=v1.BoundObjectReference(
                kind="Pod", api_version="v1", name=key.pod_name, uid=key.pod_uid),
        ))
        response = await self.requester.request_token(
            key.namespace, key.service_account, request)
        token = response.status.token
        if not token:
            raise ValueError(f"the TokenRequest for serviceaccount {key.namespace}/"
                             f"{key.service_account} came back without a token")
        if not response.status.expiration_timestamp:
            raise ValueError(f"the TokenRequest for serviceaccount {key.namespace}/"
                             f"{key.service_account} came back without an"
                             " expirationTimestamp")
        expires_at = parse_time(response.status.expiration_timestamp).timestamp()
        # The server may grant another lifetime than asked: its answer's spec says which.
        lifetime = (response.spec.expiration_seconds
                    if response.spec.HasField("expiration_seconds")
                    else key.expiration_seconds)
        return CachedToken(token=token, issued_at=expires_at - lifetime, expires_at=expires_at)


__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "CachedToken",
    "TokenKey",
    "TokenManager",
    "TokenManagerSettings",
    "TokenRequester",
]
