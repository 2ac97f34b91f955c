"""Access and policy kinds: RBAC roles and bindings, ServiceAccount, ResourceQuota,
LimitRange and CertificateSigningRequest, with upstream's field paths and wording."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.api.convert import ConversionError, from_dict
from kubelite.api.field_errors import ErrorType
from kubelite.api.registry import by_kind
from kubelite.api.strategies.access import set_requester
from kubelite.api.validation import validate
from kubelite.api.validation.access import KEY_USAGES
from kubelite.auth.user import UserInfo
from protos.v1 import objects_pb2 as v1
from tests.unit.validation.support import VALID, At, Expect, defaulted, exactly, only_at

INVALID, REQUIRED, FORBIDDEN = ErrorType.INVALID, ErrorType.REQUIRED, ErrorType.FORBIDDEN
NOT_SUPPORTED, DUPLICATE, TOO_LONG = (
    ErrorType.NOT_SUPPORTED, ErrorType.DUPLICATE, ErrorType.TOO_LONG
)
RBAC = "rbac.authorization.k8s.io"

# ---------------------------------------------------------------- Role, ClusterRole


def _role(kind: type[v1.Role] | type[v1.ClusterRole], *rules: v1.PolicyRule
          ) -> v1.Role | v1.ClusterRole:
    role = kind()
    role.metadata.name = "system:pod-reader"
    if kind is v1.Role:
        role.metadata.namespace = "default"
    role.rules.extend(rules)
    return role


def _rule(verbs: tuple[str, ...] = ("get", "list"), groups: tuple[str, ...] = ("",),
          resources: tuple[str, ...] = ("pods",), names: tuple[str, ...] = (),
          urls: tuple[str, ...] = ()) -> v1.PolicyRule:
    return v1.PolicyRule(verbs=verbs, api_groups=groups, resources=resources,
                         resource_names=names, non_resource_urls=urls)


@pytest.mark.parametrize("kind", [v1.Role, v1.ClusterRole], ids=["Role", "ClusterRole"])
@pytest.mark.parametrize(("rule", "expect"), [
    pytest.param(_rule(), VALID, id="valid"),
    pytest.param(_rule(resources=("pods/log", "*"), names=("web",)), VALID, id="subresources"),
    pytest.param(_rule(verbs=()), exactly((REQUIRED, "rules[0].verbs"), at=(
        At("rules[0].verbs", text="rules[0].verbs: Required value: verbs must contain at least"
           " one value"),)), id="no-verbs"),
    pytest.param(_rule(groups=()), exactly((REQUIRED, "rules[0].apiGroups"), at=(
        At("rules[0].apiGroups", detail="resource rules must supply at least one api group"),
    )), id="no-api-groups"),
    pytest.param(_rule(resources=()), exactly((REQUIRED, "rules[0].resources"), at=(
        At("rules[0].resources", detail="resource rules must supply at least one resource"),
    )), id="no-resources"),
])
def test_policy_rules(kind: type[v1.Role] | type[v1.ClusterRole], rule: v1.PolicyRule,
                      expect: Expect) -> None:
    expect.check(validate(_role(kind, rule)))


def test_non_resource_urls_only_in_cluster_roles_and_alone() -> None:
    urls = _rule(verbs=("get",), groups=(), resources=(), urls=("/healthz", "/metrics"))
    assert validate(_role(v1.ClusterRole, urls)) == []
    exactly((INVALID, "rules[0].nonResourceURLs"), at=(At(
        "rules[0].nonResourceURLs",
        text='rules[0].nonResourceURLs: Invalid value: ["/healthz", "/metrics"]: namespaced'
             " rules cannot apply to non-resource URLs"),)).check(
        validate(_role(v1.Role, urls)))
    mixed = _rule(urls=("/healthz",))
    exactly((INVALID, "rules[0].nonResourceURLs"), at=(At(
        "rules[0].nonResourceURLs",
        detail="rules cannot apply to both regular resources and non-resource URLs"),)).check(
        validate(_role(v1.ClusterRole, mixed)))


@pytest.mark.parametrize(("name", "message"), [
    ("system:node", None), ("a/b", "may not contain '/'"), ("50%", "may not contain '%'"),
    ("..", "may not be '..'"),
])
def test_rbac_names_are_path_segments(name: str, message: str | None) -> None:
    role = _role(v1.ClusterRole, _rule())
    role.metadata.name = name
    errs = validate(role)
    if message is None:
        assert errs == []
    else:
        exactly((INVALID, "metadata.name"), at=(At("metadata.name", detail=message),)).check(errs)


def _aggregated(*selectors: v1.LabelSelector) -> v1.ClusterRole:
    role = v1.ClusterRole()
    role.metadata.name = "monitoring"
    role.aggregation_rule.SetInParent()
    role.aggregation_rule.cluster_role_selectors.extend(selectors)
    return role


def test_aggregation_rule_selectors() -> None:
    ok = v1.LabelSelector(match_labels={"rbac.example.com/aggregate-to-monitoring": "true"})
    assert validate(_aggregated(ok)) == []
    exactly((REQUIRED, "aggregationRule.clusterRoleSelectors"), at=(At(
        "aggregationRule.clusterRoleSelectors",
        detail="at least one clusterRoleSelector required if aggregationRule is non-nil"),
    )).check(validate(_aggregated()))
    bad = v1.LabelSelector(match_expressions=[
        v1.LabelSelectorRequirement(key="tier", operator="Near", values=["x"])])
    only_at(At("aggregationRule.clusterRoleSelectors[1].matchExpressions[0].operator",
               INVALID, detail="not a valid selector operator"),
            At("aggregationRule.clusterRoleSelectors[1]", INVALID,
               detail="invalid label selector.")).check(validate(_aggregated(ok, bad)))


# ---------------------------------------------------------------- bindings


def _binding(kind: type[v1.RoleBinding] | type[v1.ClusterRoleBinding] = v1.RoleBinding,
             ref_kind: str = "ClusterRole", *subjects: v1.Subject
             ) -> v1.RoleBinding | v1.ClusterRoleBinding:
    binding = kind()
    binding.metadata.name = "read-pods"
    if kind is v1.RoleBinding:
        binding.metadata.namespace = "default"
    binding.role_ref.kind, binding.role_ref.name = ref_kind, "view"
    binding.subjects.extend(subjects or (v1.Subject(kind="User", name="jane"),))
    return binding


def _defaulted_binding(binding: v1.RoleBinding | v1.ClusterRoleBinding
                       ) -> v1.RoleBinding | v1.ClusterRoleBinding:
    defaulted(binding)
    return binding


def test_binding_defaults_api_groups() -> None:
    binding = _binding(v1.ClusterRoleBinding, "ClusterRole",
                       v1.Subject(kind="User", name="jane"),
                       v1.Subject(kind="Group", name="system:nodes"),
                       v1.Subject(kind="ServiceAccount", name="default", namespace="kube-system"))
    defaulted(binding)
    assert binding.role_ref.api_group == RBAC
    assert [s.api_group for s in binding.subjects] == [RBAC, RBAC, ""]
    assert validate(binding) == []


@pytest.mark.parametrize(("kind", "ref_kind", "subject", "expect"), [
    pytest.param(v1.RoleBinding, "Role", v1.Subject(kind="User", name="jane"), VALID,
                 id="role"),
    pytest.param(v1.RoleBinding, "ClusterRole",
                 v1.Subject(kind="ServiceAccount", name="default"), VALID,
                 id="sa-in-binding-namespace"),
    pytest.param(v1.ClusterRoleBinding, "Role", v1.Subject(kind="User", name="jane"),
                 exactly((NOT_SUPPORTED, "roleRef.kind"), at=(At(
                     "roleRef.kind", text='roleRef.kind: Unsupported value: "Role": supported'
                     ' values: "ClusterRole"'),)),
                 id="cluster-binding-of-role"),
    pytest.param(v1.RoleBinding, "Secret", v1.Subject(kind="User", name="jane"),
                 exactly((NOT_SUPPORTED, "roleRef.kind")), id="ref-kind"),
    pytest.param(v1.ClusterRoleBinding, "ClusterRole",
                 v1.Subject(kind="ServiceAccount", name="default"),
                 exactly((REQUIRED, "subjects[0].namespace")), id="sa-needs-namespace"),
    pytest.param(v1.RoleBinding, "Role",
                 v1.Subject(kind="ServiceAccount", name="Bad_Name", api_group=RBAC),
                 exactly((INVALID, "subjects[0].name"), (NOT_SUPPORTED, "subjects[0].apiGroup"),
                         at=(At("subjects[0].apiGroup", text='subjects[0].apiGroup: Unsupported'
                                ' value: "rbac.authorization.k8s.io": supported values: ""'),)),
                 id="sa-name-and-group"),
    pytest.param(v1.RoleBinding, "Role", v1.Subject(kind="User", name="jane", api_group="v1"),
                 exactly((NOT_SUPPORTED, "subjects[0].apiGroup")), id="user-group"),
    pytest.param(v1.RoleBinding, "Role", v1.Subject(kind="Robot"),
                 exactly((REQUIRED, "subjects[0].name"), (NOT_SUPPORTED, "subjects[0].kind"),
                         at=(At("subjects[0].kind", text='subjects[0].kind: Unsupported value:'
                                ' "Robot": supported values: "ServiceAccount", "User",'
                                ' "Group"'),)),
                 id="kind-and-name"),
])
def test_bindings(kind: type[v1.RoleBinding] | type[v1.ClusterRoleBinding], ref_kind: str,
                  subject: v1.Subject, expect: Expect) -> None:
    expect.check(validate(defaulted(_binding(kind, ref_kind, subject))))


def test_role_ref_is_required_and_rbac() -> None:
    binding = _defaulted_binding(_binding())
    binding.ClearField("role_ref")
    binding.role_ref.api_group = "example.com"
    exactly((NOT_SUPPORTED, "roleRef.apiGroup"), (NOT_SUPPORTED, "roleRef.kind"),
            (REQUIRED, "roleRef.name")).check(validate(binding))
    binding = _defaulted_binding(_binding())
    binding.role_ref.name = "a/b"
    exactly((INVALID, "roleRef.name")).check(validate(binding))


@pytest.mark.parametrize("kind", [v1.RoleBinding, v1.ClusterRoleBinding])
def test_role_ref_cannot_change(kind: type[v1.RoleBinding] | type[v1.ClusterRoleBinding]
                                ) -> None:
    old = _defaulted_binding(_binding(kind))
    new = _defaulted_binding(_binding(kind))
    new.subjects.add(kind="Group", name="devs", api_group=RBAC)
    assert validate(new, old) == []  # subjects may change
    new.role_ref.name = "admin"
    exactly((INVALID, "roleRef"), at=(At(
        "roleRef", text='roleRef: Invalid value: {"apiGroup": "rbac.authorization.k8s.io",'
                        ' "kind": "ClusterRole", "name": "admin"}: cannot change roleRef'),)
            ).check(validate(new, old))


# ---------------------------------------------------------------- ServiceAccount


def test_service_account_is_its_meta() -> None:
    sa = v1.ServiceAccount()
    sa.metadata.name, sa.metadata.namespace = "builder", "default"
    sa.image_pull_secrets.add(name="registry")
    assert validate(sa) == []
    sa.metadata.name = "system:builder"
    exactly((INVALID, "metadata.name")).check(validate(sa))


# ---------------------------------------------------------------- ResourceQuota


def _quota(**hard: str) -> v1.ResourceQuota:
    quota = v1.ResourceQuota()
    quota.metadata.name, quota.metadata.namespace = "compute", "default"
    quota.spec.hard.update(hard)
    return quota


@pytest.mark.parametrize(("hard", "expect"), [
    pytest.param({"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi",
                  "limits.cpu": "2", "limits.memory": "2Gi", "cpu": "500m", "memory": "1Gi",
                  "services": "5", "secrets": "10", "configmaps": "10",
                  "count/deployments.apps": "2", "requests.nvidia.com/gpu": "4",
                  "requests.hugepages-2Mi": "1Gi"}, VALID, id="valid"),
    pytest.param({"pods": "-1"}, exactly((INVALID, "spec.hard[pods]"), at=(At(
        "spec.hard[pods]", text='spec.hard[pods]: Invalid value: "-1": must be greater than or'
                                " equal to 0"),)), id="negative"),
    pytest.param({"pods": "1500m"}, exactly((INVALID, "spec.hard[pods]"), at=(At(
        "spec.hard[pods]", detail="must be an integer"),)), id="fractional-count"),
    pytest.param({"count/pods": "0.5"}, exactly((INVALID, "spec.hard[count/pods]")),
                 id="fractional-object-count"),
    pytest.param({"memory": "lots"}, exactly((INVALID, "spec.hard[memory]"), at=(At(
        "spec.hard[memory]", detail_start="quantities must match the regular expression"),)),
        id="not-a-quantity"),
    pytest.param({"storage": "1Gi"}, exactly((INVALID, "spec.hard[storage]"), at=(At(
        "spec.hard[storage]", detail="must be a standard resource for quota"),)),
        id="not-for-quota"),
    pytest.param({"gpus": "1"}, only_at(
        At("spec.hard[gpus]", detail="must be a standard resource type or fully qualified"),
        count=2), id="unknown-name"),
])
def test_resource_quota_hard(hard: dict[str, str], expect: Expect) -> None:
    expect.check(validate(_quota(**hard)))


@pytest.mark.parametrize(("scopes", "hard", "detail"), [
    (["BestEffort"], {"pods": "5"}, None),
    (["NotTerminating", "PriorityClass"], {"pods": "5", "requests.cpu": "2"}, None),
    (["Sometimes"], {"pods": "5"}, "unsupported scope"),
    (["BestEffort"], {"requests.cpu": "1"}, "unsupported scope applied to resource"),
    (["Terminating"], {"services": "1"}, "unsupported scope applied to resource"),
    (["Terminating", "NotTerminating"], {"pods": "5"}, "conflicting scopes"),
])
def test_resource_quota_scopes(scopes: list[str], hard: dict[str, str], detail: str | None
                               ) -> None:
    quota = _quota(**hard)
    quota.spec.scopes.extend(scopes)
    errs = validate(quota)
    if detail is None:
        assert errs == []
    else:
        exactly((INVALID, "spec.scopes"), at=(At("spec.scopes", detail=detail),)).check(errs)


def test_resource_quota_update_keeps_scopes_and_checks_status() -> None:
    old = _quota(pods="5")
    old.spec.scopes.append("BestEffort")
    new = v1.ResourceQuota()
    new.CopyFrom(old)
    new.spec.hard["pods"] = "10"
    new.status.hard["pods"] = "10"
    new.status.used["pods"] = "3"
    assert validate(new, old) == []
    new.spec.scopes[:] = ["NotBestEffort"]
    new.status.used["pods"] = "-3"
    exactly((INVALID, "spec.scopes"), (INVALID, "status.used[pods]"), at=(
        At("spec.scopes", text='spec.scopes: Invalid value: ["NotBestEffort"]: field is'
                               " immutable"),)).check(validate(new, old))


def test_quota_amounts_load_from_yaml_numbers() -> None:
    _, quota = from_dict({
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "default"},
        "spec": {"hard": {"pods": 10, "requests.cpu": 0.5}},
        "status": {"hard": {"pods": 10}, "used": {"pods": 1}},
    })
    assert isinstance(quota, v1.ResourceQuota)
    assert dict(quota.spec.hard) == {"pods": "10", "requests.cpu": "0.5"}
    assert dict(quota.status.used) == {"pods": "1"}
    with pytest.raises(ConversionError, match="spec.scopeSelector"):
        from_dict({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                   "spec": {"scopeSelector": {"matchExpressions": []}}})


# ---------------------------------------------------------------- LimitRange


def _limits(mutate: Callable[[v1.LimitRangeItem], object], type_: str = "Container"
            ) -> v1.LimitRange:
    lr = v1.LimitRange()
    lr.metadata.name, lr.metadata.namespace = "limits", "default"
    item = lr.spec.limits.add(type=type_)
    mutate(item)
    return lr


def _set(**maps: dict[str, str]) -> Callable[[v1.LimitRangeItem], None]:
    def mutate(item: v1.LimitRangeItem) -> None:
        for name, values in maps.items():
            getattr(item, name).update(values)
    return mutate


_ITEM = "spec.limits[0]"


@pytest.mark.parametrize(("type_", "mutate", "expect"), [
    pytest.param("Container", _set(min={"cpu": "100m"}, default_request={"cpu": "200m"},
                                   default={"cpu": "500m"}, max={"cpu": "1"},
                                   max_limit_request_ratio={"cpu": "4"}), VALID, id="valid"),
    pytest.param("Pod", _set(max={"cpu": "2", "memory": "1Gi"}), VALID, id="pod"),
    pytest.param("PersistentVolumeClaim", _set(min={"storage": "1Gi"}), VALID, id="pvc"),
    pytest.param("example.com/widget", _set(max={"example.com/parts": "3"}), VALID,
                 id="qualified-type"),
    pytest.param("Node", _set(), exactly((INVALID, f"{_ITEM}.type"), at=(At(
        f"{_ITEM}.type", detail="must be a standard limit type or fully qualified"),)),
        id="type"),
    pytest.param("Container", _set(min={"cpu": "2"}, max={"cpu": "1"}),
                 exactly((INVALID, f"{_ITEM}.min[cpu]"), at=(At(
                     f"{_ITEM}.min[cpu]", text=f'{_ITEM}.min[cpu]: Invalid value: "2": min'
                                               " value 2 is greater than max value 1"),)),
                 id="min-over-max"),
    pytest.param("Container", _set(min={"memory": "1Gi"}, default_request={"memory": "512Mi"},
                                   default={"memory": "256Mi"}, max={"memory": "128Mi"}),
                 only_at(At(f"{_ITEM}.defaultRequest[memory]",
                            detail="min value 1Gi is greater than default request value 512Mi"),
                         At(f"{_ITEM}.default[memory]",
                            detail="min value 1Gi is greater than default value 256Mi"),
                         count=6),
                 id="everything-inverted"),
    pytest.param("Container", _set(default_request={"cpu": "2"}, default={"cpu": "1"}),
                 exactly((INVALID, f"{_ITEM}.defaultRequest[cpu]"), at=(At(
                     f"{_ITEM}.defaultRequest[cpu]",
                     detail="default request value 2 is greater than default limit value 1"),)),
                 id="request-over-limit"),
    pytest.param("Container", _set(default={"cpu": "2"}, max={"cpu": "1"}),
                 exactly((INVALID, f"{_ITEM}.default[cpu]"), at=(At(
                     f"{_ITEM}.default[cpu]",
                     text=f'{_ITEM}.default[cpu]: Invalid value: "1": default value 2 is greater'
                          " than max value 1"),)),
                 id="default-over-max"),
    pytest.param("Container", _set(max_limit_request_ratio={"cpu": "500m"}),
                 exactly((INVALID, f"{_ITEM}.maxLimitRequestRatio[cpu]"), at=(At(
                     f"{_ITEM}.maxLimitRequestRatio[cpu]", detail="ratio 500m is less than 1"),)),
                 id="ratio-under-one"),
    pytest.param("Container", _set(min={"cpu": "1"}, max={"cpu": "2"},
                                   max_limit_request_ratio={"cpu": "3"}),
                 exactly((INVALID, f"{_ITEM}.maxLimitRequestRatio[cpu]"), at=(At(
                     f"{_ITEM}.maxLimitRequestRatio[cpu]",
                     detail="ratio 3 is greater than max/min = 2.000000"),)),
                 id="ratio-over-max-min"),
    pytest.param("Container", _set(default={"example.com/gpu": "2"},
                                   default_request={"example.com/gpu": "1"}),
                 exactly((INVALID, f"{_ITEM}.defaultRequest[example.com/gpu]"), at=(At(
                     f"{_ITEM}.defaultRequest[example.com/gpu]",
                     detail="default value 2 must equal to defaultRequest value 1 in"
                            " example.com/gpu"),)),
                 id="extended-no-overcommit"),
    pytest.param("Container", _set(max={"storage": "1Gi", "cpu": "one"}),
                 exactly((INVALID, f"{_ITEM}.max[storage]"), (INVALID, f"{_ITEM}.max[cpu]"),
                         at=(At(f"{_ITEM}.max[storage]",
                                detail="must be a standard resource for containers"),)),
                 id="names-and-quantities"),
    pytest.param("Pod", _set(default={"cpu": "1"}, default_request={"cpu": "1"}),
                 exactly((FORBIDDEN, f"{_ITEM}.default"), (FORBIDDEN, f"{_ITEM}.defaultRequest"),
                         at=(At(f"{_ITEM}.default",
                                detail="may not be specified when `type` is 'Pod'"),)),
                 id="pod-defaults"),
    pytest.param("PersistentVolumeClaim", _set(), exactly((REQUIRED, f"{_ITEM}.limits"), at=(At(
        f"{_ITEM}.limits", detail="either minimum or maximum storage value is required, but"
                                  " neither was provided"),)), id="pvc-needs-storage"),
])
def test_limit_ranges(type_: str, mutate: Callable[[v1.LimitRangeItem], object],
                      expect: Expect) -> None:
    expect.check(validate(_limits(mutate, type_)))


def test_limit_range_types_are_unique() -> None:
    lr = _limits(_set(max={"cpu": "1"}))
    lr.spec.limits.add(type="Container")
    exactly((DUPLICATE, "spec.limits[1].type")).check(validate(lr))


def test_limit_range_quantities_load_from_yaml_numbers() -> None:
    _, lr = from_dict({
        "apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "l", "namespace": "default"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": 2}, "min": {"cpu": 0.1},
                             "maxLimitRequestRatio": {"cpu": 4}}]},
    })
    assert isinstance(lr, v1.LimitRange)
    assert dict(lr.spec.limits[0].min) == {"cpu": "0.1"}
    assert validate(lr) == []


# ---------------------------------------------------------------- CertificateSigningRequest

_KEY = ec.generate_private_key(ec.SECP256R1())


def _pem_csr(cn: str = "system:node:node-1", orgs: tuple[str, ...] = ("system:nodes",)
             ) -> bytes:
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    names += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    return request.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _pem_certificate() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(_KEY.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _csr(mutate: Callable[[v1.CertificateSigningRequestSpec], object] | None = None
         ) -> v1.CertificateSigningRequest:
    csr = v1.CertificateSigningRequest()
    csr.metadata.name = "node-csr-abc"
    csr.spec.request = _pem_csr()
    csr.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet"
    csr.spec.usages.extend(["digital signature", "client auth"])
    if mutate is not None:
        mutate(csr.spec)
    return csr


def _spec(**fields: object) -> Callable[[v1.CertificateSigningRequestSpec], None]:
    def mutate(spec: v1.CertificateSigningRequestSpec) -> None:
        for name, value in fields.items():
            if isinstance(value, list):
                spec.ClearField(name)
                getattr(spec, name).extend(value)
            else:
                setattr(spec, name, value)
    return mutate


def _tampered(spec: v1.CertificateSigningRequestSpec) -> None:
    # Another key's signature over the same subject: parses, does not verify.
    other = ec.generate_private_key(ec.SECP256R1())
    good = x509.load_pem_x509_csr(spec.request)
    forged = x509.CertificateSigningRequestBuilder().subject_name(good.subject).sign(
        other, hashes.SHA256())
    der = bytearray(forged.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # in the signature bits
    body = base64.encodebytes(bytes(der))
    spec.request = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + body
                    + b"-----END CERTIFICATE REQUEST-----\n")


@pytest.mark.parametrize(("mutate", "expect"), [
    pytest.param(None, VALID, id="valid"),
    pytest.param(_spec(signer_name="example.com/team.signer-1", expiration_seconds=600), VALID,
                 id="custom-signer"),
    pytest.param(_spec(request=_pem_certificate()), exactly((INVALID, "spec.request"), at=(At(
        "spec.request", text='spec.request: Invalid value: "<request data>": PEM block type must'
                             " be CERTIFICATE REQUEST"),)), id="not-a-request"),
    pytest.param(_spec(request=b"hello"), exactly((INVALID, "spec.request")), id="no-pem"),
    pytest.param(_spec(request=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                               b"-----END CERTIFICATE REQUEST-----\n"),
                 exactly((INVALID, "spec.request"), at=(At(
                     "spec.request", detail_start="the CERTIFICATE REQUEST does not parse"),)),
                 id="garbage-der"),
    pytest.param(_tampered, exactly((INVALID, "spec.request")), id="bad-signature"),
    pytest.param(_spec(usages=[]), exactly((REQUIRED, "spec.usages")), id="no-usages"),
    pytest.param(_spec(usages=["client auth", "root access", "client auth"]), exactly(
        (NOT_SUPPORTED, "spec.usages[1]"), (DUPLICATE, "spec.usages[2]")), id="usages"),
    pytest.param(_spec(signer_name=""), exactly((REQUIRED, "spec.signerName")), id="no-signer"),
    pytest.param(_spec(signer_name="kubelet"), exactly((INVALID, "spec.signerName"), at=(At(
        "spec.signerName", detail="must be a fully qualified domain and path of the form"
                                  " 'example.com/signer-name'"),)), id="signer-unqualified"),
    pytest.param(_spec(signer_name="localhost/signer"), exactly((INVALID, "spec.signerName"),
        at=(At("spec.signerName", text='spec.signerName: Invalid value: "localhost": should be'
                                       " a domain with at least two segments separated by"
                                       " dots"),)), id="signer-one-label-domain"),
    pytest.param(_spec(signer_name="Example.com/x"), only_at(At(
        "spec.signerName", INVALID, detail_start='validating label "Example": a lowercase RFC'
                                                 " 1123 label"), count=1), id="signer-case"),
    pytest.param(_spec(signer_name="example.com/" + "a" * 600), only_at(
        At("spec.signerName", INVALID), count=2), id="signer-too-long"),
    pytest.param(_spec(signer_name="kubernetes.io/legacy-unknown"), exactly((
        INVALID, "spec.signerName")), id="legacy-signer"),
    pytest.param(_spec(expiration_seconds=599), exactly((INVALID, "spec.expirationSeconds"),
        at=(At("spec.expirationSeconds", text="spec.expirationSeconds: Invalid value: 599: may"
               " not specify a duration less than 600 seconds (10 minutes)"),)),
        id="short-expiration"),
])
def test_certificate_signing_requests(
        mutate: Callable[[v1.CertificateSigningRequestSpec], object] | None, expect: Expect
) -> None:
    expect.check(validate(_csr(mutate)))


def test_signer_name_too_long_messages() -> None:
    errs = validate(_csr(_spec(signer_name="example.com/" + "a" * 600)))
    texts = sorted(str(e) for e in errs)
    assert any("validating component" in t and "must be no more than 253" in t for t in texts)
    assert any(t.endswith("may not be more than 571 bytes") for t in texts)


def _approve(csr: v1.CertificateSigningRequest, type_: str = "Approved",
             status: str = "True") -> v1.CertificateSigningRequest:
    new = v1.CertificateSigningRequest()
    new.CopyFrom(csr)
    new.status.conditions.add(type=type_, status=status, reason="AutoApproved")
    return new


def test_csr_is_created_without_status_and_keeps_its_spec() -> None:
    strategy = by_kind("CertificateSigningRequest").strategy
    csr = _approve(_csr())
    strategy.prepare_for_create(csr)
    assert not csr.HasField("status")
    stored = _csr()
    update = _approve(stored)
    update.spec.signer_name = "example.com/other"
    strategy.prepare_for_update(update, stored)
    assert update.spec == stored.spec
    assert not update.status.conditions


def test_csr_status_updates() -> None:
    pending = _csr()
    approved = _approve(pending)
    assert validate(approved, pending) == []
    issued = v1.CertificateSigningRequest()
    issued.CopyFrom(approved)
    issued.status.certificate = _pem_certificate()
    assert validate(issued, approved) == []

    both = _approve(approved, "Denied")
    exactly((INVALID, "status.conditions[1].type"), at=(At(
        "status.conditions[1].type",
        detail="Approved and Denied conditions are mutually exclusive"),)).check(
        validate(both, approved))
    exactly((NOT_SUPPORTED, "status.conditions[0].status"), at=(At(
        "status.conditions[0].status", text='status.conditions[0].status: Unsupported value:'
                                            ' "False": supported values: "True"'),)).check(
        validate(_approve(pending, status="False"), pending))
    exactly((DUPLICATE, "status.conditions[1].type")).check(
        validate(_approve(approved), approved))
    exactly((REQUIRED, "status.conditions[0].type"), (REQUIRED, "status.conditions[0].status")
            ).check(validate(_approve(pending, "", ""), pending))

    revoked = v1.CertificateSigningRequest()
    revoked.CopyFrom(issued)
    revoked.status.ClearField("conditions")
    exactly((FORBIDDEN, "status.conditions"), at=(At(
        "status.conditions", detail='updates may not remove a condition of type "Approved"'),)
            ).check(validate(revoked, issued))
    replaced = v1.CertificateSigningRequest()
    replaced.CopyFrom(issued)
    replaced.status.certificate = _pem_certificate()
    exactly((FORBIDDEN, "status.certificate"), at=(At(
        "status.certificate", detail="updates may not modify existing certificate content"),)
            ).check(validate(replaced, issued))
    garbage = v1.CertificateSigningRequest()
    garbage.CopyFrom(approved)
    garbage.status.certificate = _pem_csr()
    exactly((INVALID, "status.certificate"), at=(At(
        "status.certificate", text='status.certificate: Invalid value: "<certificate data>":'
                                   ' only CERTIFICATE PEM blocks are allowed, found'
                                   ' "CERTIFICATE REQUEST"'),)).check(validate(garbage, approved))


def test_every_upstream_usage_is_known() -> None:
    assert len(KEY_USAGES) == 23
    assert {"client auth", "server auth", "digital signature", "key encipherment"} <= set(
        KEY_USAGES)


def test_set_requester_replaces_what_the_client_wrote() -> None:
    csr = _csr(_spec(username="system:admin", groups=["system:masters"]))
    csr.spec.extra["scopes"].items.append("all")
    set_requester(csr, UserInfo("system:bootstrap:abcdef", "uid-1",
                                ("system:bootstrappers", "system:authenticated"),
                                {"reason": ("joining",)}))
    assert csr.spec.username == "system:bootstrap:abcdef"
    assert csr.spec.uid == "uid-1"
    assert list(csr.spec.groups) == ["system:bootstrappers", "system:authenticated"]
    assert {k: list(v.items) for k, v in csr.spec.extra.items()} == {"reason": ["joining"]}
    set_requester(csr, None)
    assert not csr.spec.username and not csr.spec.groups and not csr.spec.extra


def test_csr_names_are_path_segments() -> None:
    csr = _csr()
    csr.metadata.name = "csr-system:node:node-1"
    assert validate(csr) == []
    csr.metadata.name = "a/b"
    exactly((INVALID, "metadata.name")).check(validate(csr))
