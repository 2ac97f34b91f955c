"""Authentication, impersonation and authorization of the API's requests, in one object the
servicer asks once per call (docs/security.md sections 3 and 4).

It owns the in-memory copies they read (ServiceAccounts, pods, RBAC objects; see
apiserver.authz.store), the bootstrap policy's reconciliation at start, and the TokenRequest
issuer. An insecure server has none of it: every request is served with no user (None).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from apiserver.api import Api
from apiserver.authn import (
    AuthenticationSettings,
    Authenticator,
    load_client_cas,
    load_verification_keys,
)
from apiserver.authz import bootstrap_policy, impersonation
from apiserver.authz.attributes import (
    Attributes,
    Authorizer,
    Chain,
    Decision,
    PrivilegedGroups,
    Verdict,
)
from apiserver.authz.node import NodeAuthorizer, NodeGraph
from apiserver.authz.rbac import RbacAuthorizer, RbacIndex
from apiserver.authz.store import Feed, LocalInformer, StoreSettings, Uids
from apiserver.token_request import TokenIssuer, TokenRequestSettings, load_signing_key
from kubelite.api.registry import ResourceType, by_kind
from kubelite.auth.user import UserInfo

log = structlog.get_logger(__name__)

AUTHORIZATION_MODES = ("Node", "RBAC", "AlwaysAllow")


@dataclass(frozen=True)
class AuthorizationSettings:
    modes: tuple[str, ...] = ("Node", "RBAC")
    """--authorization-mode: the authorizers asked in order (Node, RBAC, AlwaysAllow), after
    the ``system:masters`` short cut."""
    store: StoreSettings = field(default_factory=StoreSettings)
    """How the in-memory copies of ServiceAccounts, pods and RBAC objects recover."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in AUTHORIZATION_MODES]
        if unknown or not self.modes:
            raise ValueError(f"--authorization-mode: {','.join(unknown) or '(empty)'}: supported"
                             f" modes are {', '.join(AUTHORIZATION_MODES)}")
        if len(set(self.modes)) != len(self.modes):
            raise ValueError("--authorization-mode: a mode may be given once")


class AlwaysAllow:
    def authorize(self, attributes: Attributes) -> Verdict:
        return Verdict(Decision.ALLOW)


class Security:
    def __init__(
        self,
        api: Api,
        *,
        enabled: bool,
        authentication: AuthenticationSettings,
        authorization: AuthorizationSettings,
        token_requests: TokenRequestSettings,
        client_ca_pem: bytes | None = None,
    ) -> None:
        self.api = api
        self.enabled = enabled
        self.authorization_settings = authorization
        self.service_accounts = Uids()
        self.graph = NodeGraph()
        self.rbac = RbacIndex()
        signing_key = (load_signing_key(token_requests.signing_key_file)
                       if token_requests.signing_key_file else None)
        keys = load_verification_keys(authentication.service_account_key_files)
        if signing_key is not None:
            keys.append(signing_key.public_key())
        self.authenticator = Authenticator(api, authentication,
                                           service_accounts=self.service_accounts,
                                           pods=self.graph, verification_keys=keys,
                                           client_cas=load_client_cas(client_ca_pem)
                                           if client_ca_pem else ())
        self.tokens = TokenIssuer(api, signing_key, authentication.service_account_issuers[0],
                                  authentication.audiences,
                                  token_requests.max_expiration_seconds)
        authorizers: list[Authorizer] = [PrivilegedGroups()]
        for mode in authorization.modes:
            if mode == "Node":
                authorizers.append(NodeAuthorizer(self.graph))
            elif mode == "RBAC":
                authorizers.append(RbacAuthorizer(self.rbac))
            else:
                authorizers.append(AlwaysAllow())
        self.authorizer = Chain(authorizers)
        feeds: list[tuple[ResourceType, Feed]] = [
            (by_kind("ServiceAccount"), self.service_accounts), (by_kind("Pod"), self.graph),
            *((by_kind(k), self.rbac) for k in ("Role", "ClusterRole", "RoleBinding",
                                                "ClusterRoleBinding")),
        ]
        self._informers = [LocalInformer(api, rtype, feed, authorization.store)
                           for rtype, feed in feeds]

    async def start(self) -> None:
        """Reconciles the bootstrap policy and fills the in-memory copies (secure servers)."""
        if not self.enabled:
            return
        if "RBAC" in self.authorization_settings.modes:
            await bootstrap_policy.reconcile(self.api)
        for informer in self._informers:
            informer.start()
        await asyncio.gather(*(i.synced.wait() for i in self._informers))

    async def stop(self) -> None:
        for informer in self._informers:
            await informer.stop()

    async def user(self, context: grpc.aio.ServicerContext[Any, Any]) -> UserInfo | None:
        """Who the call comes from (impersonation applied); None on an insecure server.
        Raises Unauthorized, or Forbidden for an impersonation the caller may not do."""
        if not self.enabled:
            return None
        # One pass over the metadata for the two things read from it on every call.
        metadata = context.invocation_metadata() or ()
        header: str | bytes | None = None
        impersonating = False
        for key, value in metadata:
            if key == "authorization":
                if header is None:
                    header = value
            elif (not impersonating and key.startswith(impersonation.KEY_PREFIX)
                  and impersonation.is_impersonation_key(key)):
                impersonating = True
        if isinstance(header, bytes):
            header = header.decode(errors="replace")
        # The TLS auth context is built afresh on each call: only asked for when a
        # certificate can be someone.
        certificate = (_peer_certificate(context)
                       if self.authenticator.accepts_certificates else None)
        user = await self.authenticator.authenticate(certificate, header)
        if impersonating:
            user = impersonation.impersonate(user, tuple(metadata), self.authorizer)
        return user

    def check(self, user: UserInfo | None, verb: str, resource: str, *, api_group: str = "",
              subresource: str = "", namespace: str = "", name: str = "") -> None:
        """Raises Forbidden unless ``user`` may; no user (insecure) may do anything."""
        if user is None:
            return
        if resource == "namespaces" and name:
            # A namespace's namespace is itself (upstream's request info): a RoleBinding in it
            # may grant reading it.
            namespace = name
        self.authorizer.check(Attributes(user, verb, resource, api_group, subresource,
                                         namespace, name))

    def reviewer(self) -> Authorizer | None:
        """What access reviews are answered with; None (everything allowed) when insecure."""
        return self.authorizer if self.enabled else None


def _peer_certificate(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    """The PEM of the client certificate the TLS handshake verified, if any."""
    for certificate in context.auth_context().get("x509_pem_cert", ()):
        return certificate
    return None


def modes_from_flag(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())

