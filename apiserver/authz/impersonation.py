"""Acting as another user (``klctl --as``): metadata ``impersonate-user``,
``impersonate-group`` (repeatable), ``impersonate-uid`` and ``impersonate-extra-KEY``, each
allowed only with the ``impersonate`` verb on what it names, as upstream: ``users`` (or the
ServiceAccount itself in its namespace for ``system:serviceaccount:NS:NAME``), ``groups``,
``uids`` and ``userextras/KEY`` of authentication.k8s.io.
"""

from __future__ import annotations

from collections.abc import Sequence

from apiserver.authz.attributes import Attributes, Authorizer
from kubelite.api.errors import BadRequest
from kubelite.auth.user import (
    ALL_AUTHENTICATED,
    ANONYMOUS,
    SERVICE_ACCOUNT_USER_PREFIX,
    UserInfo,
    service_account_user,
)

USER = "impersonate-user"
GROUP = "impersonate-group"
UID = "impersonate-uid"
EXTRA_PREFIX = "impersonate-extra-"
KEY_PREFIX = "impersonate-"
"""What every impersonation key starts with."""
AUTHENTICATION_GROUP = "authentication.k8s.io"


_KEYS = frozenset((USER, GROUP, UID))


def is_impersonation_key(key: str) -> bool:
    """Whether a metadata key asks for impersonation."""
    return key in _KEYS or key.startswith(EXTRA_PREFIX)


def requested(metadata: Sequence[tuple[str, str | bytes]]) -> bool:
    return any(is_impersonation_key(k) for k, _ in metadata)


def impersonate(user: UserInfo, metadata: Sequence[tuple[str, str | bytes]],
                authorizer: Authorizer) -> UserInfo:
    """The user ``user`` acts as, after checking it may; ``user`` itself when the request
    asks for no impersonation. Raises Forbidden (Kubernetes' message) or BadRequest."""
    name = ""
    uid = ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for key, raw in metadata:
        value = raw.decode() if isinstance(raw, bytes) else raw
        if key == USER:
            if name:
                raise BadRequest("only one impersonate-user may be given")
            name = value
        elif key == GROUP:
            groups.append(value)
        elif key == UID:
            uid = value
        elif key.startswith(EXTRA_PREFIX):
            extra.setdefault(key.removeprefix(EXTRA_PREFIX), []).append(value)
    if not name:
        if groups or uid or extra:
            raise BadRequest("impersonating groups, a uid or extra fields requires"
                             " impersonate-user")
        return user

    def check(attributes: Attributes) -> None:
        verdict = authorizer.authorize(attributes)
        if not verdict.allowed:
            raise attributes.forbidden(verdict.reason)

    if name.startswith(SERVICE_ACCOUNT_USER_PREFIX):
        namespace, _, account = name.removeprefix(SERVICE_ACCOUNT_USER_PREFIX).partition(":")
        check(Attributes(user, "impersonate", "serviceaccounts", namespace=namespace,
                         name=account))
        default_groups = list(service_account_user(namespace, account).groups)
    else:
        check(Attributes(user, "impersonate", "users", name=name))
        default_groups = []
    for group in groups:
        check(Attributes(user, "impersonate", "groups", name=group))
    if uid:
        check(Attributes(user, "impersonate", "uids", api_group=AUTHENTICATION_GROUP,
                         name=uid))
    for key, values in extra.items():
        for value in values:
            check(Attributes(user, "impersonate", "userextras", api_group=AUTHENTICATION_GROUP,
                             subresource=key, name=value))
    final_groups = groups or default_groups
    if name != ANONYMOUS and ALL_AUTHENTICATED not in final_groups:
        final_groups.append(ALL_AUTHENTICATED)
    return UserInfo(name, uid, tuple(final_groups), {k: tuple(v) for k, v in extra.items()})
