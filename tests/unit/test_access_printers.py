"""klctl get and describe of the access and policy kinds: kubectl's columns and describers."""

from __future__ import annotations

import datetime as dt
import re

from google.protobuf.message import Message

from kubelite.api.registry import by_kind
from kubelite.cli.printers.describe import describe, policy_rule_rows
from kubelite.cli.printers.tables import Table
from protos.v1 import objects_pb2 as v1

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
CREATED = "2026-01-02T02:04:05Z"  # an hour before NOW


def _table(kind: str, *objects: Message, wide: bool = False) -> list[str]:
    return [line.rstrip() for line in
            Table(by_kind(kind), wide=wide).render(objects, NOW)]


def _cells(line: str) -> list[str]:
    return re.split(r"\s{3,}", line)


def _meta(name: str, namespace: str = "") -> v1.ObjectMeta:
    return v1.ObjectMeta(name=name, namespace=namespace, creation_timestamp=CREATED)


def test_service_accounts() -> None:
    sa = v1.ServiceAccount(metadata=_meta("builder", "default"))
    sa.secrets.add(name="builder-token")
    assert _table("ServiceAccount", sa) == [
        "NAME      SECRETS   AGE",
        "builder   1         60m",
    ]


def test_roles_and_limit_ranges_show_when_they_were_created() -> None:
    for kind, message in (("Role", v1.Role), ("ClusterRole", v1.ClusterRole),
                          ("LimitRange", v1.LimitRange)):
        obj = message(metadata=_meta("pod-reader"))
        assert _table(kind, obj) == [
            "NAME         CREATED AT",
            "pod-reader   2026-01-02T02:04:05Z",
        ], kind


def _binding() -> v1.RoleBinding:
    binding = v1.RoleBinding(metadata=_meta("read-pods", "default"))
    binding.role_ref.CopyFrom(v1.RoleRef(api_group="rbac.authorization.k8s.io",
                                         kind="ClusterRole", name="view"))
    binding.subjects.extend([
        v1.Subject(kind="User", name="jane"),
        v1.Subject(kind="Group", name="devs"),
        v1.Subject(kind="User", name="joe"),
        v1.Subject(kind="ServiceAccount", name="ci", namespace="build"),
    ])
    return binding


def test_bindings_and_their_subjects_wide() -> None:
    assert _table("RoleBinding", _binding()) == [
        "NAME        ROLE               AGE",
        "read-pods   ClusterRole/view   60m",
    ]
    assert _table("RoleBinding", _binding(), wide=True) == [
        "NAME        ROLE               AGE   USERS       GROUPS   SERVICEACCOUNTS",
        "read-pods   ClusterRole/view   60m   jane, joe   devs     build/ci",
    ]
    cluster = v1.ClusterRoleBinding(metadata=_meta("cluster-admin"))
    cluster.role_ref.CopyFrom(v1.RoleRef(kind="ClusterRole", name="cluster-admin"))
    cluster.subjects.add(kind="Group", name="system:masters")
    assert _table("ClusterRoleBinding", cluster, wide=True)[1].split() == [
        "cluster-admin", "ClusterRole/cluster-admin", "60m", "system:masters"]


def test_resource_quotas_show_used_of_hard() -> None:
    quota = v1.ResourceQuota(metadata=_meta("compute", "default"))
    quota.spec.hard.update({"pods": "5"})
    quota.status.hard.update({"pods": "5", "requests.cpu": "1", "requests.memory": "1.5Gi",
                              "limits.cpu": "2", "limits.memory": "2Gi"})
    quota.status.used.update({"pods": "2", "requests.cpu": "0.5", "limits.cpu": "1"})
    assert [_cells(line) for line in _table("ResourceQuota", quota)] == [
        ["NAME", "AGE", "REQUEST", "LIMIT"],
        ["compute", "60m", "pods: 2/5, requests.cpu: 500m/1, requests.memory: 0/1536Mi",
         "limits.cpu: 1/2, limits.memory: 0/2Gi"],
    ]


def _csr(*conditions: str) -> v1.CertificateSigningRequest:
    csr = v1.CertificateSigningRequest(metadata=_meta("node-csr-x1"))
    csr.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet"
    csr.spec.username = "system:bootstrap:abcdef"
    for type_ in conditions:
        csr.status.conditions.add(type=type_, status="True")
    return csr


def test_certificate_signing_requests() -> None:
    issued = _csr("Approved")
    issued.metadata.name = "csr-issued"
    issued.status.certificate = b"-----BEGIN CERTIFICATE-----"
    issued.spec.expiration_seconds = 86400
    assert _table("CertificateSigningRequest", _csr(), issued) == [
        "NAME          AGE   SIGNERNAME                                    REQUESTOR"
        "                 REQUESTEDDURATION   CONDITION",
        "node-csr-x1   60m   kubernetes.io/kube-apiserver-client-kubelet   system:bootstrap:abcdef"
        "   <none>              Pending",
        "csr-issued    60m   kubernetes.io/kube-apiserver-client-kubelet   system:bootstrap:abcdef"
        "   24h                 Approved,Issued",
    ]
    conditions = [_table("CertificateSigningRequest", _csr(*c))[1].split()[-1] for c in (
        ("Denied",), ("Approved", "Failed"), ("Approved", "Denied"))]
    assert conditions == ["Denied", "Approved,Failed", "Denied"]


def test_policy_rules_break_down_and_compact_as_kubectl() -> None:
    rules = [
        v1.PolicyRule(verbs=["get", "watch", "list"], api_groups=["", "apps"],
                      resources=["pods", "deployments/scale"]),
        v1.PolicyRule(verbs=["get"], api_groups=[""], resources=["configmaps"],
                      resource_names=["kube-root-ca.crt", "settings"]),
        v1.PolicyRule(verbs=["get", "post"], non_resource_urls=["/healthz"]),
    ]
    # Ordered by the Go text of each rule, which starts with its verbs.
    assert policy_rule_rows(rules) == [
        ("deployments/scale", "[]", "[]", "[get watch list]"),
        ("pods", "[]", "[]", "[get watch list]"),
        ("deployments.apps/scale", "[]", "[]", "[get watch list]"),
        ("pods.apps", "[]", "[]", "[get watch list]"),
        ("", "[/healthz]", "[]", "[get]"),
        ("configmaps", "[]", "[kube-root-ca.crt]", "[get]"),
        ("configmaps", "[]", "[settings]", "[get]"),
        ("", "[/healthz]", "[]", "[post]"),
    ]


def test_describe_role() -> None:
    role = v1.ClusterRole(metadata=_meta("pod-reader"))
    role.metadata.labels["team"] = "ops"
    role.rules.add(verbs=["get", "list"], api_groups=[""], resources=["pods", "pods/log"])
    text = describe(by_kind("ClusterRole"), role, [], NOW)
    assert text == (
        "Name:         pod-reader\n"
        "Labels:       team=ops\n"
        "Annotations:  <none>\n"
        "PolicyRule:\n"
        "  Resources  Non-Resource URLs  Resource Names  Verbs\n"
        "  ---------  -----------------  --------------  -----\n"
        "  pods/log   []                 []              [get list]\n"
        "  pods       []                 []              [get list]\n"
    )


def test_describe_binding() -> None:
    text = describe(by_kind("RoleBinding"), _binding(), [], NOW)
    assert text == (
        "Name:         read-pods\n"
        "Labels:       <none>\n"
        "Annotations:  <none>\n"
        "Role:\n"
        "  Kind:  ClusterRole\n"
        "  Name:  view\n"
        "Subjects:\n"
        "  Kind            Name  Namespace\n"
        "  ----            ----  ---------\n"
        "  User            jane  \n"
        "  Group           devs  \n"
        "  User            joe   \n"
        "  ServiceAccount  ci    build\n"
    )


def test_describe_quota() -> None:
    quota = v1.ResourceQuota(metadata=_meta("compute", "default"))
    quota.spec.scopes.extend(["NotTerminating", "BestEffort"])
    quota.status.hard.update({"pods": "5", "memory": "1Gi", "cpu": "2"})
    quota.status.used.update({"pods": "1", "memory": "500M"})
    text = describe(by_kind("ResourceQuota"), quota, [], NOW)
    assert text == (
        "Name:       compute\n"
        "Namespace:  default\n"
        "Scopes:     BestEffort, NotTerminating\n"
        "* Matches all pods that do not have resource requirements set. These pods have a best"
        " effort quality of service.\n"
        "* Matches all pods that do not have an active deadline. These pods usually include long"
        " running pods whose container command is not expected to terminate.\n"
        "Resource  Used       Hard\n"
        "--------  ----       ----\n"
        "cpu       0          2\n"
        "memory    500000000  1Gi\n"
        "pods      1          5\n"
    )
