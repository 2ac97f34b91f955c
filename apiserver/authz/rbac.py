"""RBAC (rbac.authorization.k8s.io/v1): Roles and ClusterRoles grant rules, RoleBindings and
ClusterRoleBindings give them to users, groups and ServiceAccounts.

Evaluated from memory: ``RbacIndex`` keeps the four kinds as the watch of the API's own caches
delivers them (``apply``), with the bindings indexed by subject, so a decision looks only at the
bindings of the request's user and groups. ClusterRoles with an aggregationRule get the rules of
every ClusterRole their selectors match, recursively (what upstream's aggregation controller
writes into them), worked out when first needed after a ClusterRole changes.

Allow decisions that hold for every object name are remembered, by user, groups and what the
request asks, until any RBAC object changes: most requests repeat one another's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import Message

from apiserver.authz.attributes import NO_OPINION, Attributes, Decision, Verdict
from kubelite.api.labels import Selector, selector_from_label_selector
from kubelite.auth.user import SERVICE_ACCOUNT_USER_PREFIX, UserInfo
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

GROUP = "rbac.authorization.k8s.io"
ALL = "*"
"""In verbs, apiGroups, resources: every one."""


@dataclass(frozen=True)
class Rule:
    """A PolicyRule, ready to match."""

    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: tuple[str, ...]
    resource_names: frozenset[str]

    @classmethod
    def of(cls, rule: v1.PolicyRule) -> Rule:
        return cls(frozenset(rule.verbs), frozenset(rule.api_groups), tuple(rule.resources),
                   frozenset(rule.resource_names))

    def allows(self, a: Attributes) -> bool:
        return (self.matches(a.verb, a.api_group, a.combined_resource, a.subresource)
                and resource_name_matches(self, a.name))

    def matches(self, verb: str, api_group: str, combined: str, subresource: str) -> bool:
        """Whether the rule covers the request, its resourceNames left aside."""
        return (verb_matches(self, verb) and api_group_matches(self, api_group)
                and resource_matches(self, combined, subresource))


def verb_matches(rule: Rule, verb: str) -> bool:
    return ALL in rule.verbs or verb in rule.verbs


def api_group_matches(rule: Rule, group: str) -> bool:
    return ALL in rule.api_groups or group in rule.api_groups


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    """``*`` matches everything, ``pods`` only pods itself (not pods/log), ``pods/log`` that
    subresource, ``*/status`` the status of every resource (upstream's ResourceMatches)."""
    for resource in rule.resources:
        if resource in (ALL, combined):
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    """No resourceNames: any object; otherwise only those, never a request without a name
    (list, watch, create)."""
    return not rule.resource_names or name in rule.resource_names


def rules_of(rules: Iterable[v1.PolicyRule]) -> tuple[Rule, ...]:
    # nonResourceURLs rules have no resources: they never match a gRPC (resource) request.
    return tuple(Rule.of(r) for r in rules if r.resources)


SubjectKey = tuple[str, str]
"""("user", name) or ("group", name): who a binding names (a ServiceAccount is its user)."""


def subject_keys(subjects: Iterable[v1.Subject], binding_namespace: str) -> set[SubjectKey]:
    keys: set[SubjectKey] = set()
    for s in subjects:
        if s.kind == "User":
            keys.add(("user", s.name))
        elif s.kind == "Group":
            keys.add(("group", s.name))
        elif s.kind == "ServiceAccount":
            # A RoleBinding's ServiceAccount without a namespace is one of the binding's.
            namespace = s.namespace or binding_namespace
            if namespace:
                keys.add(("user", f"{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{s.name}"))
    return keys


def user_keys(user: UserInfo) -> list[SubjectKey]:
    return [("user", user.name), *(("group", g) for g in user.groups)]


@dataclass(frozen=True)
class Binding:
    kind: str
    """RoleBinding or ClusterRoleBinding."""
    namespace: str
    name: str
    role_kind: str
    role_name: str
    subjects: frozenset[SubjectKey]
    allowed: Verdict = field(init=False, compare=False, repr=False)
    """What a request this binding allows is answered (its reason built once)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed",
                           Verdict(Decision.ALLOW, f"RBAC: allowed by {self.describe()}"))

    def describe(self) -> str:
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return (f'{self.kind} "{self.name}"{where} of {self.role_kind} "{self.role_name}"')


DecisionKey = tuple[str, tuple[str, ...], str, str, str, str, str]
"""(user name, groups, verb, API group, resource, subresource, namespace): what an RBAC
decision depends on, the object's name aside."""


@dataclass(frozen=True)
class _ClusterRole:
    rules: tuple[Rule, ...]
    labels: dict[str, str]
    aggregation: tuple[Selector, ...] | None
    """Selectors of the ClusterRoles whose rules it aggregates; None: not aggregated."""


class RbacIndex:
    """The RBAC objects, by what a decision looks up."""

    def __init__(self, decision_cache_size: int = 4096) -> None:
        self.decision_cache_size = decision_cache_size
        """Allow decisions remembered at most; all are forgotten when there are more."""
        self._allowed: dict[DecisionKey, Verdict] = {}
        """Allow decisions that hold whatever the object's name; emptied on any change."""
        self._roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._cluster_roles: dict[str, _ClusterRole] = {}
        self._effective: dict[str, tuple[Rule, ...]] = {}
        """Rules of ClusterRoles with aggregation worked out; emptied on any change."""
        self._bindings: dict[tuple[str, str, str], Binding] = {}
        """(kind, namespace, name) -> binding."""
        self._by_subject: dict[tuple[str, SubjectKey], set[tuple[str, str, str]]] = (
            defaultdict(set))
        """(namespace or "" for ClusterRoleBindings, subject) -> bindings naming it."""

    # ---------------------------------------------------------------- updates

    def apply(self, kind: str, obj: Message, deleted: bool) -> None:
        """Takes in an added, changed or deleted (``deleted``) object of an RBAC kind."""
        self._allowed.clear()
        if isinstance(obj, v1.Role):
            key = (obj.metadata.namespace, obj.metadata.name)
            if deleted:
                self._roles.pop(key, None)
            else:
                self._roles[key] = rules_of(obj.rules)
        elif isinstance(obj, v1.ClusterRole):
            self._effective.clear()
            if deleted:
                self._cluster_roles.pop(obj.metadata.name, None)
            else:
                self._cluster_roles[obj.metadata.name] = _ClusterRole(
                    rules_of(obj.rules), dict(obj.metadata.labels), self._selectors(obj))
        elif isinstance(obj, (v1.RoleBinding, v1.ClusterRoleBinding)):
            self._remove_binding((kind, obj.metadata.namespace, obj.metadata.name))
            if not deleted:
                self._add_binding(kind, obj)
        else:
            raise TypeError(f"not an RBAC object: {type(obj).__name__}")

    def reset(self, kind: str) -> None:
        """Forgets every object of ``kind`` (before a relist feeds them again)."""
        self._allowed.clear()
        if kind == "Role":
            self._roles.clear()
        elif kind == "ClusterRole":
            self._cluster_roles.clear()
            self._effective.clear()
        else:
            for key in [k for k in self._bindings if k[0] == kind]:
                self._remove_binding(key)

    @staticmethod
    def _selectors(role: v1.ClusterRole) -> tuple[Selector, ...] | None:
        if not role.HasField("aggregation_rule"):
            return None
        selectors = []
        for selector in role.aggregation_rule.cluster_role_selectors:
            try:
                selectors.append(selector_from_label_selector(selector))
            except ValueError as e:
                log.warning("ignoring an invalid aggregation selector",
                            clusterrole=role.metadata.name, error=str(e))
        return tuple(selectors)

    def _add_binding(self, kind: str, obj: v1.RoleBinding | v1.ClusterRoleBinding) -> None:
        namespace = obj.metadata.namespace if kind == "RoleBinding" else ""
        binding = Binding(kind, namespace, obj.metadata.name, obj.role_ref.kind,
                          obj.role_ref.name, frozenset(subject_keys(obj.subjects, namespace)))
        key = (kind, namespace, obj.metadata.name)
        self._bindings[key] = binding
        for subject in binding.subjects:
            self._by_subject[(namespace, subject)].add(key)

    def _remove_binding(self, key: tuple[str, str, str]) -> None:
        binding = self._bindings.pop(key, None)
        if binding is None:
            return
        for subject in binding.subjects:
            index = (binding.namespace, subject)
            names = self._by_subject.get(index)
            if names is not None:
                names.discard(key)
                if not names:
                    del self._by_subject[index]

    # ---------------------------------------------------------------- reads

    def remembered(self, key: DecisionKey) -> Verdict | None:
        """The allow decision remembered for ``key``, if any."""
        return self._allowed.get(key)

    def remember(self, key: DecisionKey, verdict: Verdict) -> None:
        """Keeps an allow decision that holds for every object name, until RBAC changes."""
        if len(self._allowed) >= self.decision_cache_size:
            self._allowed.clear()  # simpler than LRU; refilled by the requests that repeat
        self._allowed[key] = verdict

    def cluster_role_rules(self, name: str) -> tuple[Rule, ...]:
        """The rules a ClusterRole grants, aggregated ones included; none if it is missing."""
        rules = self._effective.get(name)
        if rules is None:
            rules = self._aggregate(name, set())
            self._effective[name] = rules
        return rules

    def _aggregate(self, name: str, visiting: set[str]) -> tuple[Rule, ...]:
        role = self._cluster_roles.get(name)
        if role is None:
            return ()
        if role.aggregation is None:
            return role.rules
        visiting = visiting | {name}
        rules: dict[Rule, None] = {}
        for other in sorted(self._cluster_roles):
            if other in visiting:
                continue
            labels = self._cluster_roles[other].labels
            if any(s.matches(labels) for s in role.aggregation):
                rules.update(dict.fromkeys(self._aggregate(other, visiting)))
        return tuple(rules)

    def role_rules(self, binding: Binding) -> tuple[Rule, ...]:
        if binding.role_kind == "ClusterRole":
            return self.cluster_role_rules(binding.role_name)
        if binding.role_kind == "Role" and binding.namespace:
            return self._roles.get((binding.namespace, binding.role_name), ())
        return ()

    def referenced_rules(self, role_kind: str, namespace: str, name: str
                         ) -> tuple[Rule, ...] | None:
        """The rules of the role a binding in ``namespace`` refers to; None when there is
        no such role (here, yet)."""
        if role_kind == "ClusterRole":
            if name not in self._cluster_roles:
                return None
            return self.cluster_role_rules(name)
        if role_kind == "Role" and (namespace, name) in self._roles:
            return self._roles[(namespace, name)]
        return None

    def rules_for(self, user: UserInfo, namespace: str) -> list[Rule]:
        """Every rule the user holds in ``namespace`` (cluster-wide ones too; only those for
        ``namespace=""``)."""
        rules: dict[Rule, None] = {}
        for binding in self.bindings_for(user, namespace):
            rules.update(dict.fromkeys(self.role_rules(binding)))
        return list(rules)

    def bindings_for(self, user: UserInfo, namespace: str) -> Iterator[Binding]:
        """The ClusterRoleBindings naming the user or one of its groups, then (for a
        namespace) the RoleBindings there that do."""
        keys = user_keys(user)
        scopes = ("", namespace) if namespace else ("",)
        for scope in scopes:
            seen: set[tuple[str, str, str]] = set()
            for key in keys:
                for binding_key in sorted(self._by_subject.get((scope, key), ())):
                    if binding_key not in seen:
                        seen.add(binding_key)
                        yield self._bindings[binding_key]


class RbacAuthorizer:
    def __init__(self, index: RbacIndex) -> None:
        self.index = index

    def authorize(self, a: Attributes) -> Verdict:
        user = a.user
        key = (user.name, user.groups, a.verb, a.api_group, a.resource, a.subresource,
               a.namespace)
        remembered = self.index.remembered(key)
        if remembered is not None:
            return remembered
        combined = a.combined_resource
        # The first rule that allows decides (its binding is the reason). The decision is
        # the same for every name unless a rule limited to some names came before it.
        named_before = False
        for binding in self.index.bindings_for(user, a.namespace):
            for rule in self.index.role_rules(binding):
                if not rule.matches(a.verb, a.api_group, combined, a.subresource):
                    continue
                if not rule.resource_names:
                    if not named_before:
                        self.index.remember(key, binding.allowed)
                    return binding.allowed
                if a.name in rule.resource_names:
                    return binding.allowed
                named_before = True
        return NO_OPINION
