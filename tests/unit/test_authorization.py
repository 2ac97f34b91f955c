"""Authorization decided from memory: RBAC rule matching (verbs, groups, resources and
subresources, resourceNames, namespaces, wildcards, aggregation), the Node authorizer's graph,
the chain and Kubernetes' Forbidden message, impersonation and access reviews."""

from __future__ import annotations

import pytest

from apiserver.admission.plugin import Attributes as AdmissionAttributes
from apiserver.authz import bootstrap_policy, impersonation, review
from apiserver.authz.attributes import Attributes, Chain, PrivilegedGroups
from apiserver.authz.escalation import EscalationCheck, uncovered
from apiserver.authz.node import NodeAuthorizer, NodeGraph, pod_references
from apiserver.authz.rbac import RbacAuthorizer, RbacIndex, rules_of
from kubelite.api.errors import BadRequest, Forbidden, Invalid
from kubelite.api.registry import by_kind
from kubelite.auth.user import ALL_AUTHENTICATED, UserInfo
from protos.v1 import objects_pb2 as v1

ALICE = UserInfo("alice", groups=("devs", ALL_AUTHENTICATED))
BOB = UserInfo("bob", groups=(ALL_AUTHENTICATED,))
NODE_A = UserInfo("system:node:a", groups=("system:nodes", ALL_AUTHENTICATED))


def rule(verbs: list[str], groups: list[str], resources: list[str],
         names: list[str] | None = None) -> v1.PolicyRule:
    return v1.PolicyRule(verbs=verbs, api_groups=groups, resources=resources,
                         resource_names=names or [])


def subject(kind: str, name: str, namespace: str = "") -> v1.Subject:
    return v1.Subject(kind=kind, name=name, namespace=namespace,
                      api_group="" if kind == "ServiceAccount" else "rbac.authorization.k8s.io")


def role(namespace: str, name: str, *rules: v1.PolicyRule) -> v1.Role:
    return v1.Role(metadata=v1.ObjectMeta(namespace=namespace, name=name), rules=rules)


def cluster_role(name: str, *rules: v1.PolicyRule, labels: dict[str, str] | None = None,
                 aggregate: dict[str, str] | None = None) -> v1.ClusterRole:
    obj = v1.ClusterRole(metadata=v1.ObjectMeta(name=name, labels=labels or {}), rules=rules)
    if aggregate is not None:
        obj.aggregation_rule.cluster_role_selectors.add(match_labels=aggregate)
    return obj


def role_binding(namespace: str, name: str, kind: str, role_name: str,
                 *subjects: v1.Subject) -> v1.RoleBinding:
    return v1.RoleBinding(metadata=v1.ObjectMeta(namespace=namespace, name=name),
                          subjects=subjects,
                          role_ref=v1.RoleRef(api_group="rbac.authorization.k8s.io", kind=kind,
                                              name=role_name))


def cluster_binding(name: str, role_name: str, *subjects: v1.Subject) -> v1.ClusterRoleBinding:
    return v1.ClusterRoleBinding(metadata=v1.ObjectMeta(name=name), subjects=subjects,
                                 role_ref=v1.RoleRef(api_group="rbac.authorization.k8s.io",
                                                     kind="ClusterRole", name=role_name))


def index_of(*objects: object) -> RbacIndex:
    index = RbacIndex()
    for obj in objects:
        index.apply(type(obj).__name__, obj, False)  # type: ignore[arg-type]
    return index


def allowed(index: RbacIndex, user: UserInfo, verb: str, resource: str, *,
            namespace: str = "", name: str = "", group: str = "", sub: str = "") -> bool:
    return RbacAuthorizer(index).authorize(Attributes(
        user, verb, resource, group, sub, namespace, name)).allowed


def test_a_role_binding_grants_its_rules_in_its_namespace_only() -> None:
    index = index_of(role("a", "reader", rule(["get", "list"], [""], ["pods"])),
                     role_binding("a", "read", "Role", "reader", subject("User", "alice")))
    assert allowed(index, ALICE, "list", "pods", namespace="a")
    assert allowed(index, ALICE, "get", "pods", namespace="a", name="web")
    assert not allowed(index, ALICE, "list", "pods", namespace="b")
    assert not allowed(index, ALICE, "list", "pods")  # all namespaces
    assert not allowed(index, ALICE, "delete", "pods", namespace="a", name="web")
    assert not allowed(index, ALICE, "get", "secrets", namespace="a", name="s")
    assert not allowed(index, BOB, "list", "pods", namespace="a")


def test_verbs_groups_and_resources_match_exactly_or_by_wildcard() -> None:
    index = index_of(
        cluster_role("deployer", rule(["*"], ["apps"], ["deployments"]),
                     rule(["get"], ["*"], ["*"])),
        cluster_binding("deployers", "deployer", subject("Group", "devs")),
    )
    assert allowed(index, ALICE, "delete", "deployments", group="apps", namespace="x")
    assert not allowed(index, ALICE, "delete", "deployments", group="extensions",
                       namespace="x")
    assert not allowed(index, ALICE, "delete", "replicasets", group="apps", namespace="x")
    assert allowed(index, ALICE, "get", "anything", group="any.group", name="n")
    assert allowed(index, ALICE, "get", "pods", sub="log", namespace="x", name="n")
    assert not allowed(index, ALICE, "list", "pods", namespace="x")


def test_subresources_match_only_when_named() -> None:
    index = index_of(
        cluster_role("pods-only", rule(["get", "create"], [""], ["pods"])),
        cluster_role("logs", rule(["get"], [""], ["pods/log"])),
        cluster_role("statuses", rule(["update"], ["*"], ["*/status"])),
        cluster_binding("b1", "pods-only", subject("User", "alice")),
        cluster_binding("b2", "logs", subject("User", "bob")),
        cluster_binding("b3", "statuses", subject("User", "bob")),
    )
    assert allowed(index, ALICE, "get", "pods", namespace="n", name="p")
    assert not allowed(index, ALICE, "get", "pods", sub="log", namespace="n", name="p")
    assert not allowed(index, ALICE, "create", "pods", sub="exec", namespace="n", name="p")
    assert allowed(index, BOB, "get", "pods", sub="log", namespace="n", name="p")
    assert not allowed(index, BOB, "get", "pods", namespace="n", name="p")
    assert allowed(index, BOB, "update", "deployments", group="apps", sub="status",
                   namespace="n", name="d")
    assert not allowed(index, BOB, "update", "deployments", group="apps", namespace="n",
                       name="d")


def test_resource_names_limit_to_those_objects_and_never_match_lists() -> None:
    index = index_of(
        cluster_role("one-cm", rule(["get", "list", "update"], [""], ["configmaps"],
                                    ["settings"])),
        cluster_binding("b", "one-cm", subject("User", "alice")),
    )
    assert allowed(index, ALICE, "get", "configmaps", namespace="n", name="settings")
    assert allowed(index, ALICE, "update", "configmaps", namespace="n", name="settings")
    assert not allowed(index, ALICE, "get", "configmaps", namespace="n", name="other")
    assert not allowed(index, ALICE, "list", "configmaps", namespace="n")


def test_role_binding_to_a_cluster_role_grants_it_in_the_binding_namespace() -> None:
    index = index_of(cluster_role("reader", rule(["list"], [""], ["pods"])),
                     role_binding("a", "read", "ClusterRole", "reader", subject("Group", "devs")))
    assert allowed(index, ALICE, "list", "pods", namespace="a")
    assert not allowed(index, ALICE, "list", "pods", namespace="b")


def test_service_account_subjects_default_to_the_binding_namespace() -> None:
    robot = UserInfo("system:serviceaccount:a:robot",
                     groups=("system:serviceaccounts", "system:serviceaccounts:a"))
    index = index_of(cluster_role("reader", rule(["list"], [""], ["pods"])),
                     role_binding("a", "r", "ClusterRole", "reader",
                                  subject("ServiceAccount", "robot")),
                     cluster_binding("c", "reader", subject("ServiceAccount", "robot", "b")))
    assert allowed(index, robot, "list", "pods", namespace="a")
    assert not allowed(index, robot, "list", "pods", namespace="c")
    other = UserInfo("system:serviceaccount:b:robot")
    assert allowed(index, other, "list", "pods", namespace="c")


def test_changes_and_deletes_take_effect() -> None:
    binding = role_binding("a", "read", "Role", "reader", subject("User", "alice"))
    reader = role("a", "reader", rule(["get"], [""], ["pods"]))
    index = index_of(reader, binding)
    assert allowed(index, ALICE, "get", "pods", namespace="a", name="p")
    binding.subjects[0].name = "bob"
    index.apply("RoleBinding", binding, False)
    assert not allowed(index, ALICE, "get", "pods", namespace="a", name="p")
    assert allowed(index, BOB, "get", "pods", namespace="a", name="p")
    index.apply("Role", reader, True)
    assert not allowed(index, BOB, "get", "pods", namespace="a", name="p")
    index.apply("Role", reader, False)
    index.apply("RoleBinding", binding, True)
    assert not allowed(index, BOB, "get", "pods", namespace="a", name="p")
    index.apply("RoleBinding", binding, False)
    index.reset("RoleBinding")
    assert not allowed(index, BOB, "get", "pods", namespace="a", name="p")



def _reason(index: RbacIndex, user: UserInfo, verb: str, resource: str, *,
            namespace: str = "", name: str = "") -> str:
    return RbacAuthorizer(index).authorize(Attributes(
        user, verb, resource, namespace=namespace, name=name)).reason


def test_remembered_decisions_are_forgotten_when_rbac_changes() -> None:
    reader = cluster_role("reader", rule(["get", "list"], [""], ["pods"]))
    binding = role_binding("a", "read", "ClusterRole", "reader", subject("User", "alice"))
    index = index_of(reader, binding)
    for _ in range(2):  # the second answer is the remembered one
        assert allowed(index, ALICE, "list", "pods", namespace="a")
        assert allowed(index, ALICE, "get", "pods", namespace="a", name="p")
    assert not allowed(index, BOB, "list", "pods", namespace="a")
    assert not allowed(index, ALICE, "list", "pods", namespace="b")
    assert not allowed(index, UserInfo("alice", groups=("ops",)), "get", "pods",
                       namespace="b", name="p")
    del reader.rules[:]
    reader.rules.append(rule(["list"], [""], ["pods"]))
    index.apply("ClusterRole", reader, False)
    assert not allowed(index, ALICE, "get", "pods", namespace="a", name="p")
    assert allowed(index, ALICE, "list", "pods", namespace="a")
    index.reset("ClusterRole")
    assert not allowed(index, ALICE, "list", "pods", namespace="a")


def test_names_limited_rules_keep_their_say_beside_remembered_decisions() -> None:
    # "settings" is allowed by the binding limited to it, which comes first; other names by
    # the general one: each keeps its reason however the requests are ordered.
    index = index_of(
        cluster_role("one-cm", rule(["get"], [""], ["configmaps"], ["settings"])),
        cluster_role("all-cm", rule(["get"], [""], ["configmaps"])),
        cluster_binding("a-one", "one-cm", subject("User", "alice")),
        cluster_binding("b-all", "all-cm", subject("User", "alice")),
    )
    named = 'RBAC: allowed by ClusterRoleBinding "a-one" of ClusterRole "one-cm"'
    general = 'RBAC: allowed by ClusterRoleBinding "b-all" of ClusterRole "all-cm"'
    for _ in range(2):
        assert _reason(index, ALICE, "get", "configmaps", namespace="n",
                       name="other") == general
        assert _reason(index, ALICE, "get", "configmaps", namespace="n",
                       name="settings") == named


def test_the_remembered_decisions_are_bounded() -> None:
    index = index_of(cluster_role("reader", rule(["get"], [""], ["pods"])),
                     cluster_binding("read", "reader", subject("Group", "devs")))
    index.decision_cache_size = 3
    for n in range(10):
        assert allowed(index, ALICE, "get", "pods", namespace=f"n{n}", name="p")
        assert len(index._allowed) <= 3


def test_aggregated_cluster_roles_take_the_rules_of_the_roles_they_select() -> None:
    index = index_of(
        cluster_role("view", aggregate={"agg/view": "true"}, labels={"agg/edit": "true"}),
        cluster_role("edit", aggregate={"agg/edit": "true"}),
        cluster_role("pods-view", rule(["get"], [""], ["pods"]), labels={"agg/view": "true"}),
        cluster_role("pods-edit", rule(["delete"], [""], ["pods"]), labels={"agg/edit": "true"}),
        cluster_binding("b", "edit", subject("User", "alice")),
        cluster_binding("c", "view", subject("User", "bob")),
    )
    assert allowed(index, ALICE, "delete", "pods", namespace="n", name="p")
    assert allowed(index, ALICE, "get", "pods", namespace="n", name="p")  # through view
    assert allowed(index, BOB, "get", "pods", namespace="n", name="p")
    assert not allowed(index, BOB, "delete", "pods", namespace="n", name="p")
    index.apply("ClusterRole", cluster_role(
        "crd-view", rule(["list"], ["example.com"], ["widgets"]),
        labels={"agg/view": "true"}), False)
    assert allowed(index, ALICE, "list", "widgets", group="example.com", namespace="n")


def test_the_bootstrap_roles_grant_what_view_edit_and_admin_mean() -> None:
    index = index_of(*bootstrap_policy.cluster_roles(), *bootstrap_policy.cluster_role_bindings(),
                     role_binding("a", "viewers", "ClusterRole", "view", subject("User", "alice")),
                     role_binding("a", "editors", "ClusterRole", "edit", subject("User", "bob")))
    assert allowed(index, ALICE, "list", "pods", namespace="a")
    assert allowed(index, ALICE, "get", "pods", sub="log", namespace="a", name="p")
    assert allowed(index, ALICE, "watch", "deployments", group="apps", namespace="a")
    assert not allowed(index, ALICE, "get", "secrets", namespace="a", name="s")
    assert not allowed(index, ALICE, "create", "pods", sub="exec", namespace="a", name="p")
    assert not allowed(index, ALICE, "list", "pods", namespace="b")
    assert allowed(index, BOB, "create", "pods", sub="exec", namespace="a", name="p")
    assert allowed(index, BOB, "get", "secrets", namespace="a", name="s")
    assert allowed(index, BOB, "list", "pods", namespace="a")  # view's, aggregated into edit
    assert not allowed(index, BOB, "create", "rolebindings", group="rbac.authorization.k8s.io",
                       namespace="a")
    someone = UserInfo("x", groups=(ALL_AUTHENTICATED,))
    assert allowed(index, someone, "create", "selfsubjectaccessreviews",
                   group="authorization.k8s.io")
    scheduler = UserInfo("system:kube-scheduler", groups=(ALL_AUTHENTICATED,))
    assert allowed(index, scheduler, "create", "pods", sub="binding", namespace="a", name="p")
    assert allowed(index, scheduler, "update", "leases", group="coordination.k8s.io",
                   namespace="kube-system", name="kube-scheduler")
    assert not allowed(index, scheduler, "update", "leases", group="coordination.k8s.io",
                       namespace="kube-system", name="kube-controller-manager")
    assert not allowed(index, scheduler, "get", "secrets", namespace="a", name="s")
    bootstrapper = UserInfo("system:bootstrap:abcdef",
                            groups=("system:bootstrappers", ALL_AUTHENTICATED))
    assert allowed(index, bootstrapper, "create", "certificatesigningrequests",
                   group="certificates.k8s.io")
    assert not allowed(index, bootstrapper, "list", "pods")
    # Cluster DNS brings its own role with its addon (deploy/addons/dns.yaml), as CoreDNS does.
    dns = UserInfo("system:serviceaccount:kube-system:kube-dns")
    assert not allowed(index, dns, "watch", "endpoints")


def test_forbidden_speaks_kubernetes() -> None:
    chain = Chain([PrivilegedGroups(), RbacAuthorizer(RbacIndex())])
    with pytest.raises(Forbidden) as caught:
        chain.check(Attributes(BOB, "list", "pods", namespace="b"))
    assert caught.value.message == ('pods is forbidden: User "bob" cannot list resource "pods"'
                                    ' in API group "" in the namespace "b"')
    with pytest.raises(Forbidden) as caught:
        chain.check(Attributes(BOB, "create", "pods", subresource="exec", namespace="b",
                               name="web"))
    assert caught.value.message == ('pods "web" is forbidden: User "bob" cannot create'
                                    ' resource "pods/exec" in API group "" in the namespace'
                                    ' "b"')
    with pytest.raises(Forbidden) as caught:
        chain.check(Attributes(BOB, "get", "deployments", "apps", name="d"))
    assert caught.value.message == ('deployments.apps "d" is forbidden: User "bob" cannot get'
                                    ' resource "deployments" in API group "apps" at the'
                                    ' cluster scope')
    admin = UserInfo("kubernetes-admin", groups=("system:masters",))
    chain.check(Attributes(admin, "delete", "nodes", name="n"))


# ------------------------------------------------------------------ the Node authorizer


def pod(namespace: str, name: str, node: str, **refs: str) -> v1.Pod:
    obj = v1.Pod(metadata=v1.ObjectMeta(namespace=namespace, name=name, uid=f"uid-{name}"))
    obj.spec.node_name = node
    obj.spec.service_account_name = refs.get("sa", "default")
    container = obj.spec.containers.add(name="c")
    if "env_secret" in refs:
        container.env.add(name="X").value_from.secret_key_ref.name = refs["env_secret"]
    if "env_from_cm" in refs:
        container.env_from.add().config_map_ref.name = refs["env_from_cm"]
    if "volume_secret" in refs:
        obj.spec.volumes.add(name="v").secret.secret_name = refs["volume_secret"]
    if "projected_cm" in refs:
        obj.spec.volumes.add(name="p").projected.sources.add().config_map.name = (
            refs["projected_cm"])
    if "claim" in refs:
        obj.spec.volumes.add(name="c").persistent_volume_claim.claim_name = refs["claim"]
    if "pull" in refs:
        obj.spec.image_pull_secrets.add(name=refs["pull"])
    return obj


def test_pod_references_cover_volumes_env_and_pull_secrets() -> None:
    refs = pod("n", "p", "a", env_secret="s1", env_from_cm="c1", volume_secret="s2",
               projected_cm="c2", claim="data", pull="reg", sa="robot")
    assert pod_references(refs) == {
        ("secrets", "s1"), ("secrets", "s2"), ("secrets", "reg"), ("configmaps", "c1"),
        ("configmaps", "c2"), ("persistentvolumeclaims", "data"),
        ("serviceaccounts", "robot")}


def node_allowed(graph: NodeGraph, verb: str, resource: str, *, namespace: str = "",
                 name: str = "", group: str = "", sub: str = "",
                 user: UserInfo = NODE_A) -> bool:
    return NodeAuthorizer(graph).authorize(Attributes(
        user, verb, resource, group, sub, namespace, name)).allowed


def test_a_node_reads_only_what_its_pods_use() -> None:
    graph = NodeGraph()
    graph.apply("Pod", pod("n", "mine", "a", volume_secret="mine-secret", env_from_cm="cfg",
                           sa="robot"), False)
    graph.apply("Pod", pod("n", "theirs", "b", volume_secret="their-secret"), False)
    graph.apply("Pod", pod("n", "pending", "", volume_secret="pending-secret"), False)
    assert node_allowed(graph, "get", "secrets", namespace="n", name="mine-secret")
    assert node_allowed(graph, "get", "configmaps", namespace="n", name="cfg")
    assert not node_allowed(graph, "get", "secrets", namespace="n", name="their-secret")
    assert not node_allowed(graph, "get", "secrets", namespace="n", name="pending-secret")
    assert not node_allowed(graph, "get", "secrets", namespace="other", name="mine-secret")
    assert not node_allowed(graph, "list", "secrets", namespace="n")
    assert node_allowed(graph, "create", "serviceaccounts", sub="token", namespace="n",
                        name="robot")
    assert not node_allowed(graph, "create", "serviceaccounts", sub="token", namespace="n",
                            name="default")
    verdict = NodeAuthorizer(graph).authorize(Attributes(NODE_A, "get", "secrets",
                                                         namespace="n", name="their-secret"))
    assert verdict.reason == "no relationship found between node 'a' and this object"


def test_the_graph_follows_pods_moving_changing_and_going() -> None:
    graph = NodeGraph()
    shared = pod("n", "one", "a", volume_secret="s")
    graph.apply("Pod", shared, False)
    graph.apply("Pod", pod("n", "two", "a", volume_secret="s"), False)
    graph.apply("Pod", shared, True)
    assert node_allowed(graph, "get", "secrets", namespace="n", name="s")  # two still uses it
    graph.apply("Pod", pod("n", "two", "a", volume_secret="t"), False)
    assert not node_allowed(graph, "get", "secrets", namespace="n", name="s")
    assert node_allowed(graph, "get", "secrets", namespace="n", name="t")
    graph.reset("Pod")
    assert not node_allowed(graph, "get", "secrets", namespace="n", name="t")
    assert graph.pod("n", "two") is None


def test_a_node_writes_only_its_own_node_lease_and_pods() -> None:
    graph = NodeGraph()
    graph.apply("Pod", pod("n", "mine", "a"), False)
    graph.apply("Pod", pod("n", "theirs", "b"), False)
    assert node_allowed(graph, "get", "nodes", name="b")
    assert node_allowed(graph, "list", "nodes")
    assert node_allowed(graph, "create", "nodes")
    assert node_allowed(graph, "update", "nodes", name="a")
    assert node_allowed(graph, "patch", "nodes", sub="status", name="a")
    assert not node_allowed(graph, "update", "nodes", name="b")
    assert not node_allowed(graph, "update", "nodes", sub="status", name="b")
    assert not node_allowed(graph, "delete", "nodes", name="b")
    assert node_allowed(graph, "watch", "pods")  # the kubelet's spec.nodeName=a watch
    assert node_allowed(graph, "update", "pods", sub="status", namespace="n", name="mine")
    assert not node_allowed(graph, "update", "pods", sub="status", namespace="n",
                            name="theirs")
    assert node_allowed(graph, "delete", "pods", namespace="n", name="mine")
    assert not node_allowed(graph, "delete", "pods", namespace="n", name="theirs")
    assert not node_allowed(graph, "create", "pods", namespace="n")
    lease_group, lease_ns = "coordination.k8s.io", "kube-node-lease"
    assert node_allowed(graph, "update", "leases", name="a", group=lease_group,
                        namespace=lease_ns)
    assert node_allowed(graph, "create", "leases", group=lease_group, namespace=lease_ns)
    assert not node_allowed(graph, "update", "leases", name="b", group=lease_group,
                            namespace=lease_ns)
    assert not node_allowed(graph, "update", "leases", group="coordination.k8s.io",
                            namespace="kube-system", name="a")
    assert node_allowed(graph, "create", "events", namespace="n")
    assert node_allowed(graph, "list", "services")
    assert not node_allowed(graph, "delete", "services", namespace="n", name="s")
    assert node_allowed(graph, "create", "certificatesigningrequests",
                        group="certificates.k8s.io")


def test_the_node_authorizer_has_no_opinion_on_other_users() -> None:
    graph = NodeGraph()
    graph.apply("Pod", pod("n", "mine", "a", volume_secret="s"), False)
    assert not node_allowed(graph, "get", "secrets", namespace="n", name="s", user=ALICE)
    not_named = UserInfo("kubelet", groups=("system:nodes",))
    assert not node_allowed(graph, "get", "nodes", name="a", user=not_named)
    impostor = UserInfo("system:node:a", groups=(ALL_AUTHENTICATED,))
    assert not node_allowed(graph, "get", "nodes", name="a", user=impostor)


# ------------------------------------------------------------------ impersonation, reviews


def test_impersonation_needs_the_impersonate_verb() -> None:
    index = index_of(
        cluster_role("impersonator", rule(["impersonate"], [""], ["users"], ["alice"]),
                     rule(["impersonate"], [""], ["groups"], ["devs"])),
        cluster_binding("b", "impersonator", subject("User", "bob")),
    )
    chain = Chain([PrivilegedGroups(), RbacAuthorizer(index)])
    assert impersonation.impersonate(BOB, [], chain) is BOB
    acting = impersonation.impersonate(BOB, [("impersonate-user", "alice"),
                                             ("impersonate-group", "devs")], chain)
    assert acting == UserInfo("alice", groups=("devs", ALL_AUTHENTICATED))
    with pytest.raises(Forbidden) as caught:
        impersonation.impersonate(BOB, [("impersonate-user", "carol")], chain)
    assert caught.value.message == ('users "carol" is forbidden: User "bob" cannot impersonate'
                                    ' resource "users" in API group "" at the cluster scope')
    with pytest.raises(Forbidden):
        impersonation.impersonate(BOB, [("impersonate-user", "alice"),
                                        ("impersonate-group", "system:masters")], chain)
    with pytest.raises(Forbidden):
        impersonation.impersonate(ALICE, [("impersonate-user", "alice")], chain)
    with pytest.raises(BadRequest):
        impersonation.impersonate(BOB, [("impersonate-group", "devs")], chain)


def test_impersonating_a_service_account_checks_it_and_gives_its_groups() -> None:
    admin = UserInfo("root", groups=("system:masters",))
    chain = Chain([PrivilegedGroups()])
    acting = impersonation.impersonate(
        admin, [("impersonate-user", "system:serviceaccount:ns:robot")], chain)
    assert acting.groups == ("system:serviceaccounts", "system:serviceaccounts:ns",
                             ALL_AUTHENTICATED)


def test_access_reviews_answer_with_the_authorizers() -> None:
    index = index_of(role("a", "reader", rule(["get"], [""], ["pods"])),
                     role_binding("a", "read", "Role", "reader", subject("User", "alice")))
    chain = Chain([PrivilegedGroups(), RbacAuthorizer(index)])
    asked = v1.SubjectAccessReview()
    asked.spec.user = "alice"
    asked.spec.resource_attributes.CopyFrom(v1.ResourceAttributes(
        namespace="a", verb="get", resource="pods", name="p"))
    answered = review.subject_access_review(asked, chain)
    assert answered.status.allowed
    assert 'RoleBinding "read"' in answered.status.reason
    asked.spec.resource_attributes.namespace = "b"
    assert not review.subject_access_review(asked, chain).status.allowed
    mine = v1.SelfSubjectAccessReview()
    mine.spec.resource_attributes.CopyFrom(v1.ResourceAttributes(namespace="a", verb="get",
                                                                 resource="pods"))
    assert review.self_subject_access_review(mine, ALICE, chain).status.allowed
    assert not review.self_subject_access_review(mine, BOB, chain).status.allowed
    assert review.self_subject_access_review(mine, None, None).status.allowed
    with pytest.raises(Invalid, match="at least one of user or group"):
        review.subject_access_review(v1.SubjectAccessReview(spec=v1.SubjectAccessReviewSpec(
            resource_attributes=v1.ResourceAttributes(verb="get", resource="pods"))), chain)
    with pytest.raises(Invalid, match="resourceAttributes"):
        review.self_subject_access_review(v1.SelfSubjectAccessReview(), ALICE, chain)


def test_bootstrap_reconciliation_adds_what_is_missing_unless_told_not_to() -> None:
    wanted = {r.metadata.name: r for r in bootstrap_policy.cluster_roles()}["view"]
    current = v1.ClusterRole()
    current.CopyFrom(wanted)
    current.aggregation_rule.Clear()
    updated = bootstrap_policy.reconcile_role(current, wanted)
    assert updated is not None
    assert updated.aggregation_rule == wanted.aggregation_rule
    assert bootstrap_policy.reconcile_role(updated, wanted) is None
    current.metadata.annotations[bootstrap_policy.AUTOUPDATE] = "false"
    assert bootstrap_policy.reconcile_role(current, wanted) is None
    binding = {b.metadata.name: b for b in bootstrap_policy.cluster_role_bindings()}[
        "cluster-admin"]
    emptied = v1.ClusterRoleBinding()
    emptied.CopyFrom(binding)
    del emptied.subjects[:]
    emptied.subjects.add(kind="User", name="me")
    fixed = bootstrap_policy.reconcile_binding(emptied, binding)
    assert fixed is not None
    assert [s.name for s in fixed.subjects] == ["me", "system:masters"]


# ------------------------------------------------------------------ escalation prevention


def test_uncovered_permissions_follow_wildcards_and_names() -> None:
    owner = rules_of([rule(["get", "list"], [""], ["pods", "pods/log"]),
                      rule(["update"], ["*"], ["*/status"]),
                      rule(["get"], [""], ["configmaps"], ["settings"])])
    assert uncovered(owner, rules_of([rule(["get"], [""], ["pods"])])) == []
    assert uncovered(owner, rules_of([rule(["update"], ["apps"], ["deployments/status"])])) == []
    assert uncovered(owner, rules_of([rule(["get"], [""], ["configmaps"], ["settings"])])) == []
    assert uncovered(owner, rules_of([rule(["get"], [""], ["configmaps"])])) == [
        ("get", "", "configmaps", "")]
    assert uncovered(owner, rules_of([rule(["*"], [""], ["pods"])])) == [("*", "", "pods", "")]
    assert uncovered(owner, rules_of([rule(["get"], ["*"], ["pods"])])) == [("get", "*", "pods",
                                                                             "")]
    assert uncovered(owner, rules_of([rule(["delete"], [""], ["pods"])])) == [
        ("delete", "", "pods", "")]
    everything = rules_of([rule(["*"], ["*"], ["*"])])
    assert uncovered(everything, rules_of([rule(["*"], ["*"], ["*"], ["x"])])) == []


async def test_roles_and_bindings_grant_only_what_their_author_holds() -> None:
    index = index_of(*bootstrap_policy.cluster_roles(), *bootstrap_policy.cluster_role_bindings(),
                     role_binding("a", "alice-admin", "ClusterRole", "admin",
                                  subject("User", "alice")))
    chain = Chain([PrivilegedGroups(), RbacAuthorizer(index)])
    check = EscalationCheck(index, chain)

    async def write(obj: v1.Role | v1.ClusterRole | v1.RoleBinding, user: UserInfo = ALICE
                    ) -> None:
        await check.validate(AdmissionAttributes(
            "CREATE", by_kind(type(obj).__name__), obj.metadata.namespace, obj.metadata.name,
            obj, user=user))

    await write(role("a", "secret-reader", rule(["get"], [""], ["secrets"])))
    await write(role_binding("a", "bob-views", "ClusterRole", "view", subject("User", "bob")))
    with pytest.raises(Forbidden) as caught:
        await write(role("a", "god", rule(["*"], ["*"], ["*"])))
    assert caught.value.message.startswith(
        'roles.rbac.authorization.k8s.io "god" is forbidden: user "alice" (groups=["devs"'
        ' "system:authenticated"]) is attempting to grant RBAC permissions not currently'
        ' held: {APIGroups:["*"], Resources:["*"], Verbs:["*"]}')
    with pytest.raises(Forbidden):
        await write(role("b", "secret-reader", rule(["get"], [""], ["secrets"])))
    with pytest.raises(Forbidden):
        await write(role_binding("a", "bob-rules", "ClusterRole", "cluster-admin",
                                 subject("User", "bob")))
    with pytest.raises(Forbidden, match="does not exist"):
        await write(role_binding("a", "bob-x", "Role", "missing", subject("User", "bob")))
    with pytest.raises(Forbidden):
        await write(cluster_role("pod-reader", rule(["get"], [""], ["pods"])))
    admin = UserInfo("root", groups=("system:masters",))
    await write(role("a", "god", rule(["*"], ["*"], ["*"])), admin)
    index.apply("ClusterRole", cluster_role("binder", rule(["bind"], ["rbac.authorization.k8s.io"],
                                                           ["clusterroles"], ["cluster-admin"])),
                False)
    index.apply("RoleBinding", role_binding("a", "alice-binds", "ClusterRole", "binder",
                                            subject("User", "alice")), False)
    await write(role_binding("a", "bob-rules", "ClusterRole", "cluster-admin",
                             subject("User", "bob")))
