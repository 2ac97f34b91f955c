"""Kinds of access and policy: ServiceAccounts, RBAC roles and bindings, ResourceQuotas,
LimitRanges, CertificateSigningRequests and the access reviews."""

from __future__ import annotations

from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1

_PATH_SEGMENT_FORBIDDEN = ("/", "%")


def name_is_path_segment(name: str, prefix: bool) -> list[str]:
    """Kubernetes' ValidatePathSegmentName: RBAC names may hold ':' (``system:node``) but never
    a '/' or '%', and are never '.' or '..'."""
    errors = []
    if not prefix and name in (".", ".."):
        errors.append(f"may not be '{name}'")
    errors += [f"may not contain '{c}'" for c in _PATH_SEGMENT_FORBIDDEN if c in name]
    return errors


class RbacStrategy(Strategy[v1.Role]):
    def name_errors(self, name: str, prefix: bool) -> list[str]:
        return name_is_path_segment(name, prefix)


class ServiceAccountStrategy(Strategy[v1.ServiceAccount]):
    pass


class ResourceQuotaStrategy(Strategy[v1.ResourceQuota]):
    pass


class LimitRangeStrategy(Strategy[v1.LimitRange]):
    pass


class CertificateSigningRequestStrategy(Strategy[v1.CertificateSigningRequest]):
    pass


class ReviewStrategy(Strategy[v1.SubjectAccessReview]):
    """Reviews are evaluated, never stored: any name, even none."""

    def name_errors(self, name: str, prefix: bool) -> list[str]:
        return []
