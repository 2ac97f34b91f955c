"""What a request asks to do, how an authorizer answers, and the chain that asks each in turn.

Attributes are Kubernetes' resource attributes (user, verb, API group, resource, subresource,
namespace, name); a decision is allow, deny or no opinion, with a reason. The chain starts with
the ``system:masters`` short cut, then asks each authorizer: the first allow or deny wins; when
none has an opinion the request is forbidden, with Kubernetes' message.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kubelite.api.errors import Forbidden
from kubelite.auth.user import MASTERS, UserInfo

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
"""The verbs of resource requests (RBAC rules may also name others: impersonate, bind,
escalate, approve, sign, use)."""


@dataclass(frozen=True)
class Attributes:
    user: UserInfo
    verb: str
    resource: str
    """Plural resource name, ``pods``."""
    api_group: str = ""
    """``""`` for the core group, ``apps``, ``rbac.authorization.k8s.io`` ..."""
    subresource: str = ""
    """``status``, ``binding``, ``log``, ``exec``, ``token`` ... or empty."""
    namespace: str = ""
    """Empty for cluster-scoped resources and for requests across all namespaces."""
    name: str = ""
    """Empty for list, watch and create (Kubernetes' rule: a create names no object)."""

    @property
    def combined_resource(self) -> str:
        """``pods/log`` as RBAC rules name a subresource."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def qualified_resource(self) -> str:
        """``pods``, ``deployments.apps``: the resource as Kubernetes' errors name it."""
        return f"{self.resource}.{self.api_group}" if self.api_group else self.resource

    def describe(self) -> str:
        """Kubernetes' sentence for what was refused, without the leading resource."""
        scope = (f'in the namespace "{self.namespace}"' if self.namespace
                 else "at the cluster scope")
        return (f'User "{self.user.name}" cannot {self.verb} resource'
                f' "{self.combined_resource}" in API group "{self.api_group}" {scope}')

    def forbidden(self, reason: str = "") -> Forbidden:
        """The Forbidden error Kubernetes answers with, word for word:
        ``pods "web" is forbidden: User "x" cannot get resource "pods" in API group "" in the
        namespace "b"`` (and ``: reason`` when an authorizer gave one)."""
        target = (f'{self.qualified_resource} "{self.name}"' if self.name
                  else self.qualified_resource)
        message = f"{target} is forbidden: {self.describe()}"
        return Forbidden(f"{message}: {reason}" if reason else message)


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


NO_OPINION = Verdict(Decision.NO_OPINION)


class Authorizer(Protocol):
    def authorize(self, attributes: Attributes) -> Verdict:
        """Allow, deny or no opinion (then the next authorizer is asked)."""
        ...


class PrivilegedGroups:
    """Members of ``system:masters`` may do anything, whatever RBAC says (upstream's first
    authorizer), so the cluster's administrators can never lock themselves out."""

    def __init__(self, groups: Sequence[str] = (MASTERS,)) -> None:
        self.groups = frozenset(groups)

    def authorize(self, attributes: Attributes) -> Verdict:
        if not self.groups.isdisjoint(attributes.user.groups):
            return Verdict(Decision.ALLOW)
        return NO_OPINION


class Chain:
    """Asks each authorizer in turn; the first allow or deny is the answer. Without one, the
    request is refused and the reasons given on the way say why."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = tuple(authorizers)

    def authorize(self, attributes: Attributes) -> Verdict:
        reasons = []
        for authorizer in self.authorizers:
            verdict = authorizer.authorize(attributes)
            if verdict.decision is not Decision.NO_OPINION:
                return verdict
            if verdict.reason:
                reasons.append(verdict.reason)
        return Verdict(Decision.NO_OPINION, "; ".join(reasons))

    def check(self, attributes: Attributes) -> None:
        """Raises Kubernetes' Forbidden unless the request is allowed."""
        verdict = self.authorize(attributes)
        if not verdict.allowed:
            raise attributes.forbidden(verdict.reason)
