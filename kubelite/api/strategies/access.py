"""Kinds of access and policy: ServiceAccounts, RBAC roles and bindings, ResourceQuotas,
LimitRanges, CertificateSigningRequests and the access reviews (pkg/registry/rbac,
core/resourcequota, core/limitrange, certificates/certificates). Their rules are in
kubelite.api.validation.access."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from google.protobuf.message import Message

from kubelite.api.strategies.base import Strategy
from kubelite.auth.user import UserInfo
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors

__all__ = [
    "CertificateSigningRequestStrategy",
    "LimitRangeStrategy",
    "RbacStrategy",
    "ResourceQuotaStrategy",
    "ReviewStrategy",
    "ServiceAccountStrategy",
    "set_requester",
]

Binding = v1.RoleBinding | v1.ClusterRoleBinding


def default_binding(binding: Binding) -> None:
    """SetDefaults_RoleBinding and SetDefaults_Subject: roleRef and User and Group subjects are
    RBAC's API group unless they say otherwise (a ServiceAccount is in the core group)."""
    from kubelite.api.validation.access import RBAC_GROUP
    if not binding.role_ref.api_group:
        binding.role_ref.api_group = RBAC_GROUP
    for subject in binding.subjects:
        if not subject.api_group and subject.kind in ("User", "Group"):
            subject.api_group = RBAC_GROUP


class RbacStrategy(Strategy[Message]):
    """Role, ClusterRole, RoleBinding and ClusterRoleBinding: names are path segments
    (``system:node``), each kind has its own rules, and a binding's roleRef is fixed once
    created."""

    def name_errors(self, name: str, prefix: bool) -> list[str]:
        from kubelite.api.validation.access import name_is_path_segment
        return name_is_path_segment(name, prefix)

    def default(self, obj: Message) -> None:
        if isinstance(obj, v1.RoleBinding | v1.ClusterRoleBinding):
            default_binding(obj)

    def validate(self, obj: Message) -> Errors:
        from kubelite.api.validation.access import (
            validate_binding,
            validate_cluster_role,
            validate_role,
        )
        if isinstance(obj, v1.Role):
            return validate_role(obj)
        if isinstance(obj, v1.ClusterRole):
            return validate_cluster_role(obj)
        if isinstance(obj, v1.RoleBinding | v1.ClusterRoleBinding):
            return validate_binding(obj)
        raise TypeError(f"{type(obj).__name__} is no RBAC kind")

    def validate_update(self, new: Message, old: Message) -> Errors:
        from kubelite.api.validation.access import validate_binding_update
        if isinstance(new, v1.RoleBinding) and isinstance(old, v1.RoleBinding):
            return validate_binding_update(new, old)
        if isinstance(new, v1.ClusterRoleBinding) and isinstance(old, v1.ClusterRoleBinding):
            return validate_binding_update(new, old)
        return self.validate(new)


class ServiceAccountStrategy(Strategy[v1.ServiceAccount]):
    """Nothing beyond the object meta (its name is a DNS subdomain)."""


class ResourceQuotaStrategy(Strategy[v1.ResourceQuota]):
    """Hard limits in the spec; status (hard and used) written by the quota controller and
    admission through the status."""

    quantity_fields = frozenset({
        "kubelite.v1.ResourceQuotaSpec.hard",
        "kubelite.v1.ResourceQuotaStatus.hard",
        "kubelite.v1.ResourceQuotaStatus.used",
    })
    unsupported_fields: ClassVar[dict[str, dict[str, str]]] = {
        "kubelite.v1.ResourceQuotaSpec": {
            "scopeSelector": "scopeSelector is not supported (spec.scopes is)",
        },
    }

    def validate(self, obj: v1.ResourceQuota) -> Errors:
        from kubelite.api.validation.access import validate_resource_quota
        return validate_resource_quota(obj)

    def validate_update(self, new: v1.ResourceQuota, old: v1.ResourceQuota) -> Errors:
        from kubelite.api.validation.access import validate_resource_quota_update
        return validate_resource_quota_update(new, old)


class LimitRangeStrategy(Strategy[v1.LimitRange]):
    quantity_fields = frozenset({
        f"kubelite.v1.LimitRangeItem.{name}"
        for name in ("max", "min", "default", "default_request", "max_limit_request_ratio")
    })

    def validate(self, obj: v1.LimitRange) -> Errors:
        from kubelite.api.validation.access import validate_limit_range
        return validate_limit_range(obj)


def set_requester(csr: v1.CertificateSigningRequest, user: UserInfo | None) -> None:
    """Stamp who asks for the certificate on a CertificateSigningRequest being created, as the
    API server does from the request's user: signers and approvers trust these fields, so what
    the client wrote there is replaced (cleared when the request has no user)."""
    spec = csr.spec
    spec.username, spec.uid = "", ""
    spec.ClearField("groups")
    spec.ClearField("extra")
    if user is None:
        return
    spec.username, spec.uid = user.name, user.uid
    spec.groups.extend(user.groups)
    for key, values in user.extra.items():
        spec.extra[key].items.extend(values)


class CertificateSigningRequestStrategy(Strategy[v1.CertificateSigningRequest]):
    """A request is created without a status (no one creates an approved request); after
    that only its metadata changes through an update, and approval, denial, failure and the
    issued certificate come through the status. Who requested it is stamped by the API server
    (``set_requester``)."""

    def prepare_for_update(self, new: v1.CertificateSigningRequest,
                           old: v1.CertificateSigningRequest) -> None:
        super().prepare_for_update(new, old)
        new.spec.CopyFrom(old.spec)

    def validate(self, obj: v1.CertificateSigningRequest) -> Errors:
        from kubelite.api.validation.access import validate_csr
        return validate_csr(obj)

    def validate_update(self, new: v1.CertificateSigningRequest,
                        old: v1.CertificateSigningRequest) -> Errors:
        from kubelite.api.validation.access import validate_csr_update
        return validate_csr_update(new, old)

    def name_errors(self, name: str, prefix: bool) -> list[str]:
        # Any name that is a path segment: the name is part of the object's storage key.
        from kubelite.api.validation.access import name_is_path_segment
        return name_is_path_segment(name, prefix)


class ReviewStrategy(Strategy[v1.SubjectAccessReview]):
    """Reviews are evaluated, never stored: any name, even none."""

    def name_errors(self, name: str, prefix: bool) -> list[str]:
        return []
