"""The roles and bindings every cluster starts with (upstream's bootstrap policy), and their
reconciliation at API server start.

User-facing roles as upstream: cluster-admin (bound to system:masters), admin, edit and view
(aggregated from system:aggregate-to-admin/-edit/-view, so a ClusterRole labelled
``rbac.authorization.k8s.io/aggregate-to-view: "true"`` extends view), system:basic-user and
system:discovery (every authenticated user). Component roles grant what kubelite's components do
here: the scheduler, the controller manager (its garbage collector and namespace controller
handle every kind, as upstream's do), kube-proxy, the cluster DNS and joining nodes.
system:node is here for reference: kubelets are authorized by the Node authorizer.

Reconciliation (upstream's ``rbac/bootstrap-roles`` post-start hook): a missing object is
created; one annotated ``rbac.authorization.kubernetes.io/autoupdate: "true"`` gets back the
rules (or aggregation selectors) and subjects it lacks; ``"false"`` leaves it as the cluster's
administrators made it.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from google.protobuf.message import Message

from apiserver.api import Api
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, Conflict, NotFound
from kubelite.api.registry import ResourceType, by_kind
from kubelite.auth.user import (
    ALL_AUTHENTICATED,
    ALL_UNAUTHENTICATED,
    BOOTSTRAPPERS,
    KUBE_CONTROLLER_MANAGER,
    KUBE_PROXY,
    KUBE_SCHEDULER,
    MASTERS,
    NODES,
)
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

RBAC_GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING_LABEL = "kubernetes.io/bootstrapping"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = READ + WRITE

CORE, APPS, BATCH = "", "apps", "batch"
COORDINATION = "coordination.k8s.io"
EVENTS = "events.k8s.io"
CERTIFICATES = "certificates.k8s.io"
AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"

CLUSTER_ROLES = by_kind("ClusterRole")
CLUSTER_ROLE_BINDINGS = by_kind("ClusterRoleBinding")

NODE_CLIENT_ROLE = "system:certificates.k8s.io:certificatesigningrequests:nodeclient"
SELF_NODE_CLIENT_ROLE = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"


def rule(verbs: Sequence[str], groups: Sequence[str], resources: Sequence[str],
         names: Sequence[str] = ()) -> v1.PolicyRule:
    return v1.PolicyRule(verbs=list(verbs), api_groups=list(groups), resources=list(resources),
                         resource_names=list(names))


def url_rule(verbs: Sequence[str], urls: Sequence[str]) -> v1.PolicyRule:
    return v1.PolicyRule(verbs=list(verbs), non_resource_urls=list(urls))


def _meta(name: str, labels: dict[str, str] | None = None) -> v1.ObjectMeta:
    return v1.ObjectMeta(
        name=name, labels={BOOTSTRAPPING_LABEL: "rbac-defaults", **(labels or {})},
        annotations={AUTOUPDATE: "true"},
    )


def cluster_role(name: str, rules: Sequence[v1.PolicyRule], *,
                 labels: dict[str, str] | None = None,
                 aggregate_from: str | None = None) -> v1.ClusterRole:
    role = v1.ClusterRole(metadata=_meta(name, labels), rules=list(rules))
    if aggregate_from is not None:
        role.aggregation_rule.cluster_role_selectors.add(
            match_labels={f"{AGGREGATE_TO}{aggregate_from}": "true"})
    return role


def _subject(kind: str, name: str, namespace: str = "") -> v1.Subject:
    group = "" if kind == "ServiceAccount" else RBAC_GROUP
    return v1.Subject(kind=kind, api_group=group, name=name, namespace=namespace)


def cluster_role_binding(name: str, role: str, subjects: Sequence[v1.Subject]
                         ) -> v1.ClusterRoleBinding:
    return v1.ClusterRoleBinding(
        metadata=_meta(name), subjects=list(subjects),
        role_ref=v1.RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=role),
    )


def _view_rules() -> list[v1.PolicyRule]:
    return [
        rule(READ, [CORE], ["pods", "pods/status", "pods/log", "services", "services/status",
                            "endpoints", "persistentvolumeclaims", "configmaps",
                            "serviceaccounts", "limitranges", "resourcequotas",
                            "resourcequotas/status", "events", "namespaces",
                            "namespaces/status"]),
        rule(READ, [APPS], ["controllerrevisions", "statefulsets", "statefulsets/scale",
                            "statefulsets/status", "daemonsets", "daemonsets/status",
                            "deployments", "deployments/scale", "deployments/status",
                            "replicasets", "replicasets/scale", "replicasets/status"]),
        rule(READ, [BATCH], ["jobs", "jobs/status", "cronjobs", "cronjobs/status"]),
        rule(READ, [COORDINATION], ["leases"]),
    ]


def _edit_rules() -> list[v1.PolicyRule]:
    return [
        rule(READ, [CORE], ["pods/exec", "pods/attach", "pods/portforward", "pods/proxy",
                            "secrets", "services/proxy"]),
        rule(["impersonate"], [CORE], ["serviceaccounts"]),
        rule(WRITE, [CORE], ["pods", "pods/exec", "pods/attach", "pods/portforward",
                             "pods/proxy"]),
        rule(["create"], [CORE], ["pods/eviction", "serviceaccounts/token"]),
        rule(WRITE, [CORE], ["services", "services/proxy", "endpoints",
                             "persistentvolumeclaims", "configmaps", "secrets",
                             "serviceaccounts", "events"]),
        rule(WRITE, [APPS], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments",
                             "deployments/scale", "deployments/rollback", "replicasets",
                             "replicasets/scale"]),
        rule(WRITE, [BATCH], ["jobs", "cronjobs"]),
        rule(WRITE, [COORDINATION], ["leases"]),
    ]


def _admin_rules() -> list[v1.PolicyRule]:
    return [
        rule(["create"], [AUTHORIZATION], ["localsubjectaccessreviews"]),
        rule(READ_WRITE, [RBAC_GROUP], ["roles", "rolebindings"]),
    ]


def _node_rules() -> list[v1.PolicyRule]:
    """What the Node authorizer lets a kubelet do (upstream's NodeRules), for reference."""
    return [
        rule(["create", "get", "list", "watch"], [CERTIFICATES],
             ["certificatesigningrequests"]),
        rule(["create"], [CERTIFICATES], ["certificatesigningrequests/selfnodeclient"]),
        rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
        rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"]),
        rule(READ, [CORE], ["services", "endpoints"]),
        rule(["create", "get", "list", "watch", "update", "patch", "delete"], [CORE],
             ["nodes"]),
        rule(["update", "patch"], [CORE], ["nodes/status"]),
        rule(["create", "update", "patch"], [CORE, EVENTS], ["events"]),
        rule(READ, [CORE], ["pods"]),
        rule(["delete"], [CORE], ["pods"]),
        rule(["update", "patch"], [CORE], ["pods/status"]),
        rule(["get"], [CORE], ["secrets", "configmaps", "persistentvolumeclaims"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(["get", "create", "update", "patch", "delete"], [COORDINATION], ["leases"]),
    ]


def _leader_election_rules(lease: str) -> list[v1.PolicyRule]:
    return [
        rule(["create"], [COORDINATION], ["leases"]),
        rule(["get", "update"], [COORDINATION], ["leases"], [lease]),
    ]


def _event_rules() -> list[v1.PolicyRule]:
    return [rule(["create", "patch", "update"], [CORE, EVENTS], ["events"])]


def cluster_roles() -> list[v1.ClusterRole]:
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])]),
        cluster_role("admin", [], aggregate_from="admin"),
        cluster_role("edit", [], labels={f"{AGGREGATE_TO}admin": "true"},
                     aggregate_from="edit"),
        cluster_role("view", [], labels={f"{AGGREGATE_TO}edit": "true"},
                     aggregate_from="view"),
        cluster_role("system:aggregate-to-admin", _admin_rules(),
                     labels={f"{AGGREGATE_TO}admin": "true"}),
        cluster_role("system:aggregate-to-edit", _edit_rules(),
                     labels={f"{AGGREGATE_TO}edit": "true"}),
        cluster_role("system:aggregate-to-view", _view_rules(),
                     labels={f"{AGGREGATE_TO}view": "true"}),
        cluster_role("system:basic-user", [
            rule(["create"], [AUTHORIZATION],
                 ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
        ]),
        cluster_role("system:discovery", [
            url_rule(["get"], ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                               "/readyz", "/version", "/version/"]),
        ]),
        cluster_role("system:public-info-viewer", [
            url_rule(["get"], ["/healthz", "/livez", "/readyz", "/version", "/version/"]),
        ]),
        cluster_role("system:kube-scheduler", [
            *_event_rules(),
            *_leader_election_rules("kube-scheduler"),
            rule(READ, [CORE], ["nodes", "namespaces", "services", "persistentvolumeclaims",
                                "persistentvolumes"]),
            rule(["delete", "get", "list", "watch"], [CORE], ["pods"]),
            rule(["create"], [CORE], ["pods/binding", "bindings"]),
            rule(["patch", "update"], [CORE], ["pods/status"]),
            rule(READ, [APPS], ["replicasets", "statefulsets"]),
            rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
            rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"]),
        ]),
        cluster_role("system:kube-controller-manager", [
            *_event_rules(),
            *_leader_election_rules("kube-controller-manager"),
            # The garbage collector reads every kind and deletes or un-owns dependents of any
            # kind; the namespace controller deletes everything in a namespace going away.
            rule(READ + ("update", "patch", "delete"), ["*"], ["*"]),
            rule(["create"], [CORE], ["pods", "endpoints", "serviceaccounts", "configmaps"]),
            rule(["create"], [APPS], ["replicasets", "controllerrevisions"]),
            rule(["create"], [BATCH], ["jobs"]),
            rule(["approve", "sign"], [CERTIFICATES], ["signers"]),
            rule(["create"], [AUTHENTICATION], ["tokenreviews"]),
            rule(["create"], [AUTHORIZATION], ["subjectaccessreviews"]),
        ]),
        cluster_role("system:node", _node_rules()),
        cluster_role("system:node-proxier", [
            rule(READ, [CORE], ["services", "endpoints", "nodes"]),
            *_event_rules(),
        ]),
        cluster_role("system:node-bootstrapper", [
            rule(["create", "get", "list", "watch"], [CERTIFICATES],
                 ["certificatesigningrequests"]),
        ]),
        cluster_role(NODE_CLIENT_ROLE, [
            rule(["create"], [CERTIFICATES], ["certificatesigningrequests/nodeclient"]),
        ]),
        cluster_role(SELF_NODE_CLIENT_ROLE, [
            rule(["create"], [CERTIFICATES], ["certificatesigningrequests/selfnodeclient"]),
        ]),
    ]


def cluster_role_bindings() -> list[v1.ClusterRoleBinding]:
    user, group = "User", "Group"
    return [
        cluster_role_binding("cluster-admin", "cluster-admin", [_subject(group, MASTERS)]),
        cluster_role_binding("system:basic-user", "system:basic-user",
                             [_subject(group, ALL_AUTHENTICATED)]),
        cluster_role_binding("system:discovery", "system:discovery",
                             [_subject(group, ALL_AUTHENTICATED)]),
        cluster_role_binding("system:public-info-viewer", "system:public-info-viewer",
                             [_subject(group, ALL_AUTHENTICATED),
                              _subject(group, ALL_UNAUTHENTICATED)]),
        cluster_role_binding("system:kube-scheduler", "system:kube-scheduler",
                             [_subject(user, KUBE_SCHEDULER)]),
        cluster_role_binding("system:kube-controller-manager", "system:kube-controller-manager",
                             [_subject(user, KUBE_CONTROLLER_MANAGER)]),
        cluster_role_binding("system:node-proxier", "system:node-proxier",
                             [_subject(user, KUBE_PROXY)]),
        cluster_role_binding("system:node-bootstrapper", "system:node-bootstrapper",
                             [_subject(group, BOOTSTRAPPERS)]),
        cluster_role_binding("system:node-autoapprove-bootstrap", NODE_CLIENT_ROLE,
                             [_subject(group, BOOTSTRAPPERS)]),
        cluster_role_binding("system:node-autoapprove-certificate-rotation",
                             SELF_NODE_CLIENT_ROLE, [_subject(group, NODES)]),
    ]


# ------------------------------------------------------------------ reconciliation


def _autoupdate(obj: v1.ClusterRole | v1.ClusterRoleBinding) -> bool:
    return obj.metadata.annotations.get(AUTOUPDATE, "true") != "false"


def _missing(have: Sequence[Message], want: Sequence[Message]) -> list[Message]:
    present = {m.SerializeToString(deterministic=True) for m in have}
    return [m for m in want if m.SerializeToString(deterministic=True) not in present]


def reconcile_role(current: v1.ClusterRole, wanted: v1.ClusterRole) -> v1.ClusterRole | None:
    """The role with the bootstrap rules (and aggregation selectors) it lacks; None when it
    has them all or its administrators turned autoupdate off."""
    if not _autoupdate(current):
        return None
    rules = _missing(current.rules, wanted.rules)
    selectors = _missing(current.aggregation_rule.cluster_role_selectors,
                         wanted.aggregation_rule.cluster_role_selectors)
    if not rules and not selectors:
        return None
    updated = v1.ClusterRole()
    updated.CopyFrom(current)
    updated.rules.extend(rules)  # type: ignore[arg-type]
    updated.aggregation_rule.cluster_role_selectors.extend(selectors)  # type: ignore[arg-type]
    return updated


def reconcile_binding(current: v1.ClusterRoleBinding, wanted: v1.ClusterRoleBinding
                      ) -> v1.ClusterRoleBinding | None:
    """The binding with the subjects it lacks; None when complete or not auto-updated. A
    binding whose roleRef differs is left alone (roleRef cannot change) and logged."""
    if not _autoupdate(current):
        return None
    if current.role_ref != wanted.role_ref:
        log.warning("bootstrap binding refers to another role; leaving it",
                    binding=current.metadata.name, role=current.role_ref.name,
                    bootstrap_role=wanted.role_ref.name)
        return None
    subjects = _missing(current.subjects, wanted.subjects)
    if not subjects:
        return None
    updated = v1.ClusterRoleBinding()
    updated.CopyFrom(current)
    updated.subjects.extend(subjects)  # type: ignore[arg-type]
    return updated


async def reconcile(api: Api, attempts: int = 5) -> None:
    """Creates the bootstrap ClusterRoles and ClusterRoleBindings that are missing and adds
    what the auto-updated ones lack. Several API servers starting at once are fine: a lost
    race on create or update is retried from what the winner wrote."""
    done: list[str] = []
    for role in cluster_roles():
        done.append(await _reconcile_one(api, CLUSTER_ROLES, role, attempts))
    for binding in cluster_role_bindings():
        done.append(await _reconcile_one(api, CLUSTER_ROLE_BINDINGS, binding, attempts))
    log.info("bootstrap RBAC policy reconciled", created=done.count("created"),
             updated=done.count("updated"), unchanged=done.count("unchanged"))


async def _reconcile_one(api: Api, rtype: ResourceType,
                         wanted: v1.ClusterRole | v1.ClusterRoleBinding, attempts: int) -> str:
    """Reconciles one object; says whether it was "created", "updated" or "unchanged"."""
    name = wanted.metadata.name
    for _ in range(attempts):
        try:
            current = await api.get(rtype, "", name)
        except NotFound:
            try:
                await api.create(rtype, "", m.copy(wanted))
                return "created"
            except AlreadyExists:
                continue
        if isinstance(current, v1.ClusterRole) and isinstance(wanted, v1.ClusterRole):
            updated: Message | None = reconcile_role(current, wanted)
        elif isinstance(current, v1.ClusterRoleBinding) and isinstance(
                wanted, v1.ClusterRoleBinding):
            updated = reconcile_binding(current, wanted)
        else:
            raise TypeError(f"cannot reconcile a {type(current).__name__}")
        if updated is None:
            return "unchanged"
        try:
            await api.update(rtype, "", updated)
            log.info("updated bootstrap RBAC object", kind=rtype.kind, name=name)
            return "updated"
        except Conflict:
            continue
    raise Conflict(f"could not reconcile {rtype.plural} {name!r}: it kept changing")
