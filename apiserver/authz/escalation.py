"""RBAC's escalation prevention: nobody grants permissions they do not hold.

As upstream's RBAC storage: a Role or ClusterRole may be created or changed only by a user
who holds every permission its rules grant (in its namespace, or cluster-wide for a
ClusterRole) or who has the ``escalate`` verb on it; a RoleBinding or ClusterRoleBinding only
by one who holds every permission of the role it refers to or has the ``bind`` verb on that
role. ``system:masters`` and the server's own writes (no user) are never held back.

It runs with the admission plugins (it sees the object a create, update or patch would store)
on a server that authorizes requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

from apiserver.admission.plugin import CREATE, UPDATE, Attributes, Plugin
from apiserver.authz.attributes import Attributes as RequestAttributes
from apiserver.authz.attributes import Authorizer
from apiserver.authz.rbac import ALL, RbacIndex, Rule, rules_of
from kubelite.auth.user import MASTERS, UserInfo
from protos.v1 import objects_pb2 as v1

RBAC_GROUP = "rbac.authorization.k8s.io"
Permission = tuple[str, str, str, str]
"""(verb, API group, resource, resource name or "") — one atomic grant."""


def _atoms(rule: Rule) -> Iterator[Permission]:
    names = sorted(rule.resource_names) or [""]
    for verb in sorted(rule.verbs):
        for group in sorted(rule.api_groups):
            for resource in rule.resources:
                for name in names:
                    yield verb, group, resource, name


def _covers(owner: Rule, atom: Permission) -> bool:
    """Whether ``owner`` grants all of ``atom`` (a wildcard is covered only by a wildcard)."""
    verb, group, resource, name = atom
    if ALL not in owner.verbs and verb not in owner.verbs:
        return False
    if ALL not in owner.api_groups and group not in owner.api_groups:
        return False
    if ALL not in owner.resources and resource not in owner.resources:
        base, slash, sub = resource.partition("/")
        if not (slash and base != ALL and f"*/{sub}" in owner.resources):
            return False
    return not owner.resource_names or (bool(name) and name in owner.resource_names)


def uncovered(owner: Sequence[Rule], wanted: Iterable[Rule]) -> list[Permission]:
    """The permissions of ``wanted`` that no rule of ``owner`` grants."""
    return [atom for rule in wanted for atom in _atoms(rule)
            if not any(_covers(r, atom) for r in owner)]


def _describe(missing: Sequence[Permission]) -> str:
    shown = "; ".join(
        f'{{APIGroups:["{g}"], Resources:["{r}"]'
        + (f', ResourceNames:["{n}"]' if n else "") + f', Verbs:["{v}"]}}'
        for v, g, r, n in missing[:10])
    more = f"; and {len(missing) - 10} more" if len(missing) > 10 else ""
    return shown + more


class EscalationCheck(Plugin):
    """The check as an admission plugin (validating phase)."""

    name: ClassVar[str] = "RBACEscalation"
    needs_user: ClassVar[bool] = True

    def __init__(self, index: RbacIndex, authorizer: Authorizer) -> None:
        self.index = index
        self.authorizer = authorizer

    async def validate(self, a: Attributes) -> None:
        user = a.user
        if (user is None or a.operation not in (CREATE, UPDATE) or a.subresource
                or MASTERS in user.groups or a.obj is None):
            return
        obj = a.obj
        if isinstance(obj, (v1.Role, v1.ClusterRole)):
            self._check_role(a, user, obj)
        elif isinstance(obj, (v1.RoleBinding, v1.ClusterRoleBinding)):
            self._check_binding(a, user, obj)

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str,
                 name: str) -> bool:
        return self.authorizer.authorize(RequestAttributes(
            user, verb, resource, RBAC_GROUP, namespace=namespace, name=name)).allowed

    def _check_role(self, a: Attributes, user: UserInfo, role: v1.Role | v1.ClusterRole
                    ) -> None:
        namespace = role.metadata.namespace if isinstance(role, v1.Role) else ""
        if self._allowed(user, "escalate", a.rtype.plural, namespace, role.metadata.name):
            return
        wanted = rules_of(role.rules)
        if isinstance(role, v1.ClusterRole) and role.HasField("aggregation_rule"):
            # What it aggregates now is what it will grant.
            wanted = self.index.cluster_role_rules(role.metadata.name) + wanted
        self._refuse_unless_held(a, user, namespace, wanted)

    def _check_binding(self, a: Attributes, user: UserInfo,
                       binding: v1.RoleBinding | v1.ClusterRoleBinding) -> None:
        namespace = binding.metadata.namespace if isinstance(binding, v1.RoleBinding) else ""
        ref = binding.role_ref
        resource = "clusterroles" if ref.kind == "ClusterRole" else "roles"
        if self._allowed(user, "bind", resource, namespace, ref.name):
            return
        rules = self.index.referenced_rules(ref.kind, namespace, ref.name)
        if rules is None:
            raise a.forbidden(f'user "{user.name}" cannot bind {ref.kind} "{ref.name}": it'
                              " does not exist (or is not known yet) and the user has no"
                              f' "bind" permission on it')
        self._refuse_unless_held(a, user, namespace, rules)

    def _refuse_unless_held(self, a: Attributes, user: UserInfo, namespace: str,
                            wanted: Sequence[Rule]) -> None:
        missing = uncovered(self.index.rules_for(user, namespace), wanted)
        if missing:
            groups = " ".join(f'"{g}"' for g in user.groups)
            raise a.forbidden(f'user "{user.name}" (groups=[{groups}]) is attempting to grant'
                              f" RBAC permissions not currently held: {_describe(missing)}")
