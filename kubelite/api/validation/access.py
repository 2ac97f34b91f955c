"""The access and policy kinds: RBAC roles and bindings (upstream's pkg/apis/rbac/validation),
ResourceQuota and LimitRange (core validation) and CertificateSigningRequest
(pkg/apis/certificates/validation), with their update rules."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from kubelite.api.field_errors import FieldPath
from kubelite.api.labels import (
    is_qualified_name,
    selector_from_label_selector,
    validate_label_selector,
)
from kubelite.api.names import (
    DNS1123_LABEL_MAX_LENGTH,
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    is_dns1123_label,
    is_dns1123_subdomain,
    name_is_dns_subdomain,
)
from kubelite.api.quantity import Quantity, parse_quantity
from kubelite.api.validation.core_pod import validate_quantity_value
from kubelite.api.validation.meta import FIELD_IMMUTABLE, Errors, plain
from protos.v1 import objects_pb2 as v1

RBAC_GROUP = "rbac.authorization.k8s.io"
"""The API group every roleRef names, and User and Group subjects' apiGroup."""

SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


@dataclass(frozen=True)
class _Listed:
    """A list shown as JSON in an error message (``["get","list"]``)."""

    values: tuple[str, ...]

    def __str__(self) -> str:
        return json.dumps(list(self.values))


def listed(values: Iterable[str]) -> object:
    return _Listed(tuple(values))


# ---------------------------------------------------------------------------- RBAC

_PATH_SEGMENT_FORBIDDEN = ("/", "%")


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    """Kubernetes' ValidatePathSegmentName: RBAC names may hold ':' (``system:node``) but never
    a '/' or '%', and are never '.' or '..'."""
    errors = []
    if not prefix and name in (".", ".."):
        errors.append(f"may not be '{name}'")
    errors += [f"may not contain '{c}'" for c in _PATH_SEGMENT_FORBIDDEN if c in name]
    return errors


def validate_policy_rule(rule: v1.PolicyRule, namespaced: bool, path: FieldPath) -> Errors:
    """One rule of a Role (``namespaced``) or ClusterRole: verbs always; either
    nonResourceURLs (ClusterRoles only) or apiGroups and resources."""
    errs: Errors = []
    if not rule.verbs:
        errs.append(path.child("verbs").required("verbs must contain at least one value"))
    if rule.non_resource_urls:
        urls = path.child("nonResourceURLs")
        if namespaced:
            errs.append(urls.invalid(listed(rule.non_resource_urls),
                                     "namespaced rules cannot apply to non-resource URLs"))
        if rule.api_groups or rule.resources or rule.resource_names:
            errs.append(urls.invalid(
                listed(rule.non_resource_urls),
                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not rule.api_groups:
        errs.append(path.child("apiGroups").required(
            "resource rules must supply at least one api group"))
    if not rule.resources:
        errs.append(path.child("resources").required(
            "resource rules must supply at least one resource"))
    return errs


def _validate_rules(rules: Sequence[v1.PolicyRule], namespaced: bool) -> Errors:
    path = FieldPath("rules")
    errs: Errors = []
    for i, rule in enumerate(rules):
        errs.extend(validate_policy_rule(rule, namespaced, path.index(i)))
    return errs


def validate_role(role: v1.Role) -> Errors:
    return _validate_rules(role.rules, namespaced=True)


def validate_cluster_role(role: v1.ClusterRole) -> Errors:
    errs = _validate_rules(role.rules, namespaced=False)
    if role.HasField("aggregation_rule"):
        path = FieldPath("aggregationRule").child("clusterRoleSelectors")
        selectors = role.aggregation_rule.cluster_role_selectors
        if not selectors:
            errs.append(path.required(
                "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, selector in enumerate(selectors):
            errs.extend(validate_label_selector(selector, path.index(i)))
            try:
                selector_from_label_selector(selector)
            except ValueError:
                errs.append(path.index(i).invalid(plain(selector), "invalid label selector."))
    return errs


def validate_subject(subject: v1.Subject, namespaced: bool, path: FieldPath) -> Errors:
    """A binding's subject (ValidateRoleBindingSubject): ServiceAccounts have no apiGroup and,
    in a ClusterRoleBinding, need their namespace; Users and Groups are RBAC's."""
    errs: Errors = []
    if not subject.name:
        errs.append(path.child("name").required())
    group = path.child("apiGroup")
    if subject.kind == "ServiceAccount":
        if subject.name:
            errs.extend(path.child("name").invalid(subject.name, m)
                        for m in name_is_dns_subdomain(subject.name, False))
        if subject.api_group:
            errs.append(group.not_supported(subject.api_group, [""]))
        if not namespaced and not subject.namespace:
            errs.append(path.child("namespace").required())
    elif subject.kind in ("User", "Group"):
        if subject.api_group != RBAC_GROUP:
            errs.append(group.not_supported(subject.api_group, [RBAC_GROUP]))
    else:
        errs.append(path.child("kind").not_supported(subject.kind, list(SUBJECT_KINDS)))
    return errs


def validate_binding(binding: v1.RoleBinding | v1.ClusterRoleBinding) -> Errors:
    """A RoleBinding (roleRef a Role or ClusterRole) or a ClusterRoleBinding (a ClusterRole)."""
    namespaced = isinstance(binding, v1.RoleBinding)
    ref, path = binding.role_ref, FieldPath("roleRef")
    errs: Errors = []
    if ref.api_group != RBAC_GROUP:
        errs.append(path.child("apiGroup").not_supported(ref.api_group, [RBAC_GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.kind not in kinds:
        errs.append(path.child("kind").not_supported(ref.kind, kinds))
    if not ref.name:
        errs.append(path.child("name").required())
    else:
        errs.extend(path.child("name").invalid(ref.name, m)
                    for m in name_is_path_segment(ref.name, False))
    subjects = FieldPath("subjects")
    for i, subject in enumerate(binding.subjects):
        errs.extend(validate_subject(subject, namespaced, subjects.index(i)))
    return errs


def validate_binding_update(new: v1.RoleBinding | v1.ClusterRoleBinding,
                            old: v1.RoleBinding | v1.ClusterRoleBinding) -> Errors:
    """A binding's role is fixed: binding another role is a new binding (and what may be bound
    is checked when a binding is created)."""
    errs = validate_binding(new)
    if new.role_ref != old.role_ref:
        errs.append(FieldPath("roleRef").invalid(plain(new.role_ref), "cannot change roleRef"))
    return errs


# ---------------------------------------------------------------------------- resource names

_STANDARD_RESOURCES = frozenset({
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps",
    "persistentvolumeclaims", "storage", "requests.storage", "services.nodeports",
    "services.loadbalancers",
})

STANDARD_QUOTA_RESOURCES = frozenset({
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods", "resourcequotas", "services", "replicationcontrollers", "secrets",
    "persistentvolumeclaims", "configmaps", "services.nodeports", "services.loadbalancers",
})
"""What a quota may limit besides hugepages, fully qualified names (``count/<resource>``,
``requests.example.com/gpu``)."""

_INTEGER_RESOURCES = frozenset({
    "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps",
    "persistentvolumeclaims", "services.nodeports", "services.loadbalancers",
})

_STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})

INVALID_QUOTA_RESOURCE = "must be a standard resource for quota"
NOT_INTEGER = "must be an integer"


def _is_quota_hugepages(name: str) -> bool:
    return name.startswith(("hugepages-", "requests.hugepages-"))


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not is_qualified_name("requests." + name)


def validate_resource_name(name: str, path: FieldPath) -> Errors:
    """A compute resource's name: a standard one or fully qualified (validateResourceName)."""
    msgs = is_qualified_name(name)
    if msgs:
        return [path.invalid(name, m) for m in msgs]
    if "/" not in name and name not in _STANDARD_RESOURCES and not _is_quota_hugepages(name):
        return [path.invalid(name, "must be a standard resource type or fully qualified")]
    return []


def validate_quota_resource_name(name: str, path: FieldPath) -> Errors:
    errs = validate_resource_name(name, path)
    if "/" not in name and name not in STANDARD_QUOTA_RESOURCES and not _is_quota_hugepages(name):
        errs.append(path.invalid(name, INVALID_QUOTA_RESOURCE))
    return errs


def _validate_container_resource_name(name: str, path: FieldPath) -> Errors:
    errs = validate_resource_name(name, path)
    if "/" not in name:
        if name not in _STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.append(path.invalid(name, "must be a standard resource for containers"))
    elif not _is_native(name) and not _is_extended(name):
        errs.append(path.invalid(name, "doesn't follow extended resource name standard"))
    return errs


def _validate_quota_amounts(amounts: Mapping[str, str], path: FieldPath) -> Errors:
    """Names a quota may limit, each with a valid non-negative quantity (whole numbers for
    object counts)."""
    errs: Errors = []
    for name in sorted(amounts):
        p = path.key(name)
        errs.extend(validate_quota_resource_name(name, p))
        q, q_errs = validate_quantity_value(name, amounts[name], p)
        errs.extend(q_errs)
        if q is not None and not q_errs and name in _INTEGER_RESOURCES and (
            q.amount.denominator != 1
        ):
            errs.append(p.invalid(str(q), NOT_INTEGER))
    return errs


# ---------------------------------------------------------------------------- ResourceQuota

QUOTA_SCOPES = ("BestEffort", "CrossNamespacePodAffinity", "NotBestEffort", "NotTerminating",
                "PriorityClass", "Terminating")

_POD_COMPUTE_RESOURCES = frozenset({
    "cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory",
})


def _scope_applies_to(scope: str, resource: str) -> bool:
    """IsResourceQuotaScopeValidForResource: scopes select pods, so they limit only pods and
    their compute resources (BestEffort pods have none: only their count)."""
    if scope == "BestEffort":
        return resource == "pods"
    if scope in QUOTA_SCOPES:
        return resource == "pods" or resource in _POD_COMPUTE_RESOURCES
    return True


def _validate_scopes(spec: v1.ResourceQuotaSpec, path: FieldPath) -> Errors:
    errs: Errors = []
    scopes = list(spec.scopes)
    if not scopes:
        return errs
    shown = listed(scopes)
    for scope in scopes:
        if scope not in QUOTA_SCOPES:
            errs.append(path.invalid(shown, "unsupported scope"))
        for resource in sorted(spec.hard):
            if (resource in STANDARD_QUOTA_RESOURCES or _is_quota_hugepages(resource)) and (
                not _scope_applies_to(scope, resource)
            ):
                errs.append(path.invalid(shown, "unsupported scope applied to resource"))
    for pair in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
        if set(pair) <= set(scopes):
            errs.append(path.invalid(shown, "conflicting scopes"))
    return errs


def validate_resource_quota(quota: v1.ResourceQuota) -> Errors:
    spec = FieldPath("spec")
    status = FieldPath("status")
    errs = _validate_quota_amounts(quota.spec.hard, spec.child("hard"))
    errs.extend(_validate_scopes(quota.spec, spec.child("scopes")))
    errs.extend(_validate_quota_amounts(quota.status.hard, status.child("hard")))
    errs.extend(_validate_quota_amounts(quota.status.used, status.child("used")))
    return errs


def validate_resource_quota_update(new: v1.ResourceQuota, old: v1.ResourceQuota) -> Errors:
    """Scopes stay as created: the usage counted under them would be wrong otherwise."""
    errs = validate_resource_quota(new)
    if set(new.spec.scopes) != set(old.spec.scopes):
        errs.append(FieldPath("spec").child("scopes").invalid(listed(new.spec.scopes),
                                                              FIELD_IMMUTABLE))
    return errs


# ---------------------------------------------------------------------------- LimitRange

LIMIT_TYPES = ("Container", "PersistentVolumeClaim", "Pod")


def _validate_limit_type(value: str, path: FieldPath) -> Errors:
    msgs = is_qualified_name(value)
    if msgs:
        return [path.invalid(value, m) for m in msgs]
    if "/" not in value and value not in LIMIT_TYPES:
        return [path.invalid(value, "must be a standard limit type or fully qualified")]
    return []


def _limit_amounts(item: v1.LimitRangeItem, attr: str, json_name: str, path: FieldPath
                   ) -> tuple[dict[str, Quantity], Errors]:
    """The parsed quantities of one of an item's maps, and what is wrong with its names and
    values."""
    amounts: Mapping[str, str] = getattr(item, attr)
    parsed: dict[str, Quantity] = {}
    errs: Errors = []
    for name in sorted(amounts):
        p = path.child(json_name).key(name)
        if item.type in ("Pod", "Container"):
            errs.extend(_validate_container_resource_name(name, p))
        else:
            errs.extend(validate_resource_name(name, p))
        try:
            parsed[name] = parse_quantity(amounts[name])
        except ValueError as e:
            errs.append(p.invalid(amounts[name], str(e)))
    return parsed, errs


def _validate_limit_item(item: v1.LimitRangeItem, path: FieldPath) -> Errors:
    errs = _validate_limit_type(item.type, path.child("type"))
    maxes, e = _limit_amounts(item, "max", "max", path)
    errs += e
    mins, e = _limit_amounts(item, "min", "min", path)
    errs += e
    defaults: dict[str, Quantity] = {}
    requests: dict[str, Quantity] = {}
    if item.type == "Pod":
        for json_name, amounts in (("default", item.default),
                                   ("defaultRequest", item.default_request)):
            if amounts:
                errs.append(path.child(json_name).forbidden(
                    "may not be specified when `type` is 'Pod'"))
    else:
        defaults, e = _limit_amounts(item, "default", "default", path)
        errs += e
        requests, e = _limit_amounts(item, "default_request", "defaultRequest", path)
        errs += e
    if item.type == "PersistentVolumeClaim" and "storage" not in item.min and (
        "storage" not in item.max
    ):
        errs.append(path.child("limits").required(
            "either minimum or maximum storage value is required, but neither was provided"))
    ratios, e = _limit_amounts(item, "max_limit_request_ratio", "maxLimitRequestRatio", path)
    errs += e
    for name in sorted({*maxes, *mins, *defaults, *requests, *ratios}):
        errs.extend(_compare_limits(name, mins.get(name), maxes.get(name), defaults.get(name),
                                    requests.get(name), ratios.get(name), path))
    return errs


def _compare_limits(name: str, lo: Quantity | None, hi: Quantity | None,
                    default: Quantity | None, request: Quantity | None, ratio: Quantity | None,
                    path: FieldPath) -> Errors:
    """min <= defaultRequest <= default <= max, and a max limit/request ratio of at least 1
    that max/min allows, as ValidateLimitRange compares them."""
    errs: Errors = []
    # A conflict with max is reported at the other field, as upstream does.
    at_min = path.child("min").key(name)
    at_default = path.child("default").key(name)
    at_request = path.child("defaultRequest").key(name)
    at_ratio = path.child("maxLimitRequestRatio").key(name)
    if lo is not None and hi is not None and lo > hi:
        errs.append(at_min.invalid(str(lo), f"min value {lo} is greater than max value {hi}"))
    if request is not None and lo is not None and lo > request:
        errs.append(at_request.invalid(
            str(request), f"min value {lo} is greater than default request value {request}"))
    if request is not None and hi is not None and request > hi:
        errs.append(at_request.invalid(
            str(request), f"default request value {request} is greater than max value {hi}"))
    if request is not None and default is not None and request > default:
        errs.append(at_request.invalid(
            str(request),
            f"default request value {request} is greater than default limit value {default}"))
    if default is not None and lo is not None and lo > default:
        errs.append(at_default.invalid(
            str(lo), f"min value {lo} is greater than default value {default}"))
    if default is not None and hi is not None and default > hi:
        errs.append(at_default.invalid(
            str(hi), f"default value {default} is greater than max value {hi}"))
    if ratio is not None and ratio.amount < 1:
        errs.append(at_ratio.invalid(str(ratio), f"ratio {ratio} is less than 1"))
    if ratio is not None and lo is not None and hi is not None and lo.amount != 0:
        limit = float(hi.amount / lo.amount)
        if float(ratio.amount) > limit:
            errs.append(at_ratio.invalid(
                str(ratio), f"ratio {ratio} is greater than max/min = {limit:f}"))
    # Resources that cannot be overcommitted (extended resources, hugepages) are requested
    # exactly as limited.
    overcommit = _is_native(name) and not name.startswith("hugepages-")
    if not overcommit and default is not None and request is not None and default != request:
        errs.append(at_request.invalid(
            str(request),
            f"default value {default} must equal to defaultRequest value {request} in {name}"))
    return errs


def validate_limit_range(limit_range: v1.LimitRange) -> Errors:
    path = FieldPath("spec").child("limits")
    errs: Errors = []
    seen: set[str] = set()
    for i, item in enumerate(limit_range.spec.limits):
        p = path.index(i)
        errs.extend(_validate_limit_item(item, p))
        if item.type in seen:
            errs.append(p.child("type").duplicate(item.type))
        seen.add(item.type)
    return errs


# ---------------------------------------------------------------------------- certificates

KEY_USAGES = (
    "any", "cert sign", "client auth", "code signing", "content commitment", "crl sign",
    "data encipherment", "decipher only", "digital signature", "email protection",
    "encipher only", "ipsec end system", "ipsec tunnel", "ipsec user", "key agreement",
    "key encipherment", "microsoft sgc", "netscape sgc", "ocsp signing", "s/mime",
    "server auth", "signing", "timestamping",
)
"""Every usage a CertificateSigningRequest may ask for (certificates.k8s.io/v1 KeyUsage)."""

LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
MIN_EXPIRATION_SECONDS = 600
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
_TRUE_ONLY_CONDITIONS = (APPROVED, DENIED, FAILED)
"""Condition types whose status can only be True where they appear."""

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _pem_blocks(data: bytes) -> list[tuple[str, bool, bytes | None]]:
    """(type, has headers, DER or None when the body is not base64) of each PEM block."""
    blocks = []
    for match in _PEM_BLOCK.finditer(data):
        body = match.group(2)
        lines = body.splitlines()
        headers = bool(lines) and b":" in lines[0]
        try:
            der: bytes | None = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            der = None
        blocks.append((match.group(1).decode("ascii", "replace"), headers, der))
    return blocks


def request_error(request: bytes) -> str | None:
    """What makes ``request`` no PEM PKCS#10 request with a valid signature, or None."""
    blocks = _pem_blocks(request)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        return "PEM block type must be CERTIFICATE REQUEST"
    der = blocks[0][2]
    if der is None:
        return "the CERTIFICATE REQUEST block is not base64"
    try:
        csr = x509.load_der_x509_csr(der)
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as e:
        return f"the CERTIFICATE REQUEST does not parse: {e}"
    return None if valid else "the request's signature does not verify"


def certificate_error(data: bytes) -> str | None:
    """What makes ``data`` (a CSR's issued certificate, when set) no chain of PEM
    certificates, or None."""
    if not data:
        return None
    blocks = _pem_blocks(data)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for type_, headers, der in blocks:
        if type_ != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{type_}"'
        if headers:
            return "no PEM block headers are permitted"
        if der is None:
            return "a CERTIFICATE block is not base64"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as e:
            return f"a CERTIFICATE does not parse: {e}"
    return None


def validate_signer_name(name: str, path: FieldPath) -> Errors:
    """ValidateSignerName: ``<domain>/<path>``, a domain of at least two DNS labels and a path
    of DNS subdomains joined by dots (``kubernetes.io/kube-apiserver-client``)."""
    if not name:
        return [path.required()]
    segments = name.split("/")
    if len(segments) != 2:
        return [path.invalid(
            name, "must be a fully qualified domain and path of the form"
                  " 'example.com/signer-name'")]
    domain, rest = segments
    errs: Errors = []
    if len(domain) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(path.too_long(domain, DNS1123_SUBDOMAIN_MAX_LENGTH))
    labels = domain.split(".")
    for label in labels:
        msgs = is_dns1123_label(label)
        if msgs:
            errs.extend(path.invalid(domain, f'validating label "{label}": {m}') for m in msgs)
            break
    if len(labels) < 2:
        errs.append(path.invalid(
            domain, "should be a domain with at least two segments separated by dots"))
    for component in rest.split("."):
        msgs = is_dns1123_subdomain(component)
        if msgs:
            errs.extend(path.invalid(rest, f'validating component "{component}": {m}')
                        for m in msgs)
            break
    longest = DNS1123_SUBDOMAIN_MAX_LENGTH + (
        DNS1123_SUBDOMAIN_MAX_LENGTH + DNS1123_LABEL_MAX_LENGTH + 1) + 1
    if len(name) > longest:
        errs.append(path.too_long(name, longest))
    return errs


def _validate_conditions(csr: v1.CertificateSigningRequest) -> Errors:
    path = FieldPath("status").child("conditions")
    errs: Errors = []
    seen: set[str] = set()
    approved = denied = False
    for i, condition in enumerate(csr.status.conditions):
        p = path.index(i)
        if not condition.type:
            errs.append(p.child("type").required())
        allowed = ["True"] if condition.type in _TRUE_ONLY_CONDITIONS else [
            "False", "True", "Unknown"]
        if not condition.status:
            errs.append(p.child("status").required())
        elif condition.status not in allowed:
            errs.append(p.child("status").not_supported(condition.status, allowed))
        if condition.type == APPROVED:
            approved = True
            if denied:
                errs.append(p.child("type").invalid(
                    condition.type, "Approved and Denied conditions are mutually exclusive"))
        elif condition.type == DENIED:
            denied = True
            if approved:
                errs.append(p.child("type").invalid(
                    condition.type, "Approved and Denied conditions are mutually exclusive"))
        if condition.type in seen:
            errs.append(p.child("type").duplicate(condition.type))
        seen.add(condition.type)
    return errs


def validate_csr(csr: v1.CertificateSigningRequest) -> Errors:
    spec = csr.spec
    path = FieldPath("spec")
    errs: Errors = []
    problem = request_error(spec.request)
    if problem is not None:
        errs.append(path.child("request").invalid("<request data>", problem))
    usages = path.child("usages")
    if not spec.usages:
        errs.append(usages.required())
    seen: set[str] = set()
    for i, usage in enumerate(spec.usages):
        if usage not in KEY_USAGES:
            errs.append(usages.index(i).not_supported(usage, list(KEY_USAGES)))
        if usage in seen:
            errs.append(usages.index(i).duplicate(usage))
        seen.add(usage)
    signer = path.child("signerName")
    if spec.signer_name == LEGACY_UNKNOWN_SIGNER:
        errs.append(signer.invalid(spec.signer_name,
                                   "the legacy signerName is not allowed via this API version"))
    else:
        errs.extend(validate_signer_name(spec.signer_name, signer))
    if spec.HasField("expiration_seconds") and spec.expiration_seconds < MIN_EXPIRATION_SECONDS:
        errs.append(path.child("expirationSeconds").invalid(
            spec.expiration_seconds,
            "may not specify a duration less than 600 seconds (10 minutes)"))
    errs.extend(_validate_conditions(csr))
    problem = certificate_error(csr.status.certificate)
    if problem is not None:
        errs.append(FieldPath("status").child("certificate").invalid(
            "<certificate data>", problem))
    return errs


def _conditions_of(csr: v1.CertificateSigningRequest, type_: str
                   ) -> list[v1.CertificateSigningRequestCondition]:
    return [c for c in csr.status.conditions if c.type == type_]


def validate_csr_update(new: v1.CertificateSigningRequest,
                        old: v1.CertificateSigningRequest) -> Errors:
    """An update through the status: approval and denial, failure, the issued certificate.
    What is decided stays: no Approved, Denied or Failed condition goes, and a certificate
    once issued is never replaced."""
    errs = validate_csr(new)
    conditions = FieldPath("status").child("conditions")
    for type_ in (APPROVED, DENIED, FAILED):
        if len(_conditions_of(new, type_)) < len(_conditions_of(old, type_)):
            errs.append(conditions.forbidden(
                f'updates may not remove a condition of type "{type_}"'))
    if new.status.certificate != old.status.certificate and old.status.certificate:
        errs.append(FieldPath("status").child("certificate").forbidden(
            "updates may not modify existing certificate content"))
    return errs
