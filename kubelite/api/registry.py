"""The kinds the API serves: kind <-> resource name <-> message type, how they are stored, and
each one's strategy (kubelite.api.strategies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kubelite.api.strategies import (
    access,
    apps,
    batch,
    configmap,
    endpoints,
    event,
    lease,
    namespace,
    node,
    persistentvolume,
    persistentvolumeclaim,
    pod,
    secret,
    service,
)
from kubelite.api.strategies.base import Strategy
from protos.v1 import objects_pb2 as v1


@dataclass(frozen=True)
class ResourceType:
    kind: str
    """Kubernetes' kind, e.g. ``Deployment``."""
    plural: str
    """Resource name in URLs and storage keys, e.g. ``deployments``."""
    api_version: str
    """``v1`` for the core group, ``apps/v1`` etc. otherwise."""
    namespaced: bool
    message: type[Message]
    short_names: tuple[str, ...] = ()
    has_status: bool = True
    """Whether the kind has a status written only through the status subresource."""
    strategy: Strategy[Any] = Strategy()
    """How the API defaults, validates, prepares and deletes the kind's objects."""
    stored: bool = True
    """False for kinds whose creates are evaluated and answered, never stored (access
    reviews): they have no storage, no watch cache and no other verb."""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps`` as Kubernetes names a kind in error messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def new(self) -> Message:
        return self.message()

    def decode(self, data: bytes) -> Message:
        msg = self.message()
        msg.ParseFromString(data)
        return msg


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("Namespace", "namespaces", "v1", False, v1.Namespace, ("ns",),
                 strategy=namespace.NamespaceStrategy()),
    ResourceType("Node", "nodes", "v1", False, v1.Node, ("no",), strategy=node.NodeStrategy()),
    ResourceType("PersistentVolume", "persistentvolumes", "v1", False, v1.PersistentVolume,
                 ("pv",), strategy=persistentvolume.PersistentVolumeStrategy()),
    ResourceType("Pod", "pods", "v1", True, v1.Pod, ("po",), strategy=pod.PodStrategy()),
    ResourceType("Service", "services", "v1", True, v1.Service, ("svc",),
                 strategy=service.ServiceStrategy()),
    ResourceType("Endpoints", "endpoints", "v1", True, v1.Endpoints, ("ep",), has_status=False,
                 strategy=endpoints.EndpointsStrategy()),
    ResourceType("ConfigMap", "configmaps", "v1", True, v1.ConfigMap, ("cm",), has_status=False,
                 strategy=configmap.ConfigMapStrategy()),
    ResourceType("Secret", "secrets", "v1", True, v1.Secret, (), has_status=False,
                 strategy=secret.SecretStrategy()),
    ResourceType("Event", "events", "v1", True, v1.Event, ("ev",), has_status=False,
                 strategy=event.EventStrategy()),
    ResourceType("Lease", "leases", "coordination.k8s.io/v1", True, v1.Lease, (),
                 has_status=False, strategy=lease.LeaseStrategy()),
    ResourceType("ReplicaSet", "replicasets", "apps/v1", True, v1.ReplicaSet, ("rs",),
                 strategy=apps.ReplicaSetStrategy()),
    ResourceType("Deployment", "deployments", "apps/v1", True, v1.Deployment, ("deploy",),
                 strategy=apps.DeploymentStrategy()),
    ResourceType("DaemonSet", "daemonsets", "apps/v1", True, v1.DaemonSet, ("ds",),
                 strategy=apps.DaemonSetStrategy()),
    ResourceType("StatefulSet", "statefulsets", "apps/v1", True, v1.StatefulSet, ("sts",),
                 strategy=apps.StatefulSetStrategy()),
    ResourceType("Job", "jobs", "batch/v1", True, v1.Job, strategy=batch.JobStrategy()),
    ResourceType("CronJob", "cronjobs", "batch/v1", True, v1.CronJob, ("cj",),
                 strategy=batch.CronJobStrategy()),
    ResourceType("ServiceAccount", "serviceaccounts", "v1", True, v1.ServiceAccount, ("sa",),
                 has_status=False, strategy=access.ServiceAccountStrategy()),
    ResourceType("ResourceQuota", "resourcequotas", "v1", True, v1.ResourceQuota, ("quota",),
                 strategy=access.ResourceQuotaStrategy()),
    ResourceType("LimitRange", "limitranges", "v1", True, v1.LimitRange, ("limits",),
                 has_status=False, strategy=access.LimitRangeStrategy()),
    ResourceType("Role", "roles", "rbac.authorization.k8s.io/v1", True, v1.Role,
                 has_status=False, strategy=access.RbacStrategy()),
    ResourceType("ClusterRole", "clusterroles", "rbac.authorization.k8s.io/v1", False,
                 v1.ClusterRole, has_status=False, strategy=access.RbacStrategy()),
    ResourceType("RoleBinding", "rolebindings", "rbac.authorization.k8s.io/v1", True,
                 v1.RoleBinding, has_status=False, strategy=access.RbacStrategy()),
    ResourceType("ClusterRoleBinding", "clusterrolebindings", "rbac.authorization.k8s.io/v1",
                 False, v1.ClusterRoleBinding, has_status=False,
                 strategy=access.RbacStrategy()),
    ResourceType("CertificateSigningRequest", "certificatesigningrequests",
                 "certificates.k8s.io/v1", False, v1.CertificateSigningRequest, ("csr",),
                 strategy=access.CertificateSigningRequestStrategy()),
    ResourceType("SubjectAccessReview", "subjectaccessreviews", "authorization.k8s.io/v1",
                 False, v1.SubjectAccessReview, strategy=access.ReviewStrategy(), stored=False),
    ResourceType("SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "authorization.k8s.io/v1", False, v1.SelfSubjectAccessReview,
                 strategy=access.ReviewStrategy(), stored=False),
)
"""Every kind served, with what makes it the kind it is: adding a kind is a line here and its
strategy module (kubelite.api.strategies)."""

EMBEDDED: tuple[ResourceType, ...] = (
    ResourceType("TokenRequest", "tokenrequests", "authentication.k8s.io/v1", True,
                 v1.TokenRequest, strategy=access.ReviewStrategy(), stored=False),
    ResourceType(
        "PersistentVolumeClaim", "persistentvolumeclaims", "v1", True,
        v1.PersistentVolumeClaim, ("pvc",),
        strategy=persistentvolumeclaim.PersistentVolumeClaimStrategy(),
    ),
)
"""Kinds not served, whose objects appear inside served ones (a StatefulSet's
volumeClaimTemplates), where they may carry their apiVersion and kind."""

NOT_SERVED: dict[str, str] = {
    "PersistentVolumeClaim": (
        "PersistentVolumeClaims are not supported: nothing binds claims to PersistentVolumes in"
        " this cluster yet (a StatefulSet's volumeClaimTemplates give its pods emptyDir volumes"
        " instead)"
    ),
    "StorageClass": "StorageClasses are not supported: this cluster provisions no volumes"
                    " (create PersistentVolumes instead)",
}
"""Kubernetes kinds kubelite does not serve yet, with why, for the message refusing them."""

_BY_PLURAL = {r.plural: r for r in RESOURCES}
_BY_KIND = {r.kind: r for r in RESOURCES}
_BY_ALIAS: dict[str, ResourceType] = {}
for _r in RESOURCES:
    for _alias in (_r.plural, _r.singular, *_r.short_names, f"{_r.plural}.{_r.group}"):
        _BY_ALIAS[_alias] = _r


class UnknownResource(LookupError):
    pass


def by_plural(plural: str) -> ResourceType:
    """The resource for a wire/storage name (``pods``); raises UnknownResource."""
    try:
        return _BY_PLURAL[plural]
    except KeyError:
        raise UnknownResource(f'the server does not serve resource "{plural}"') from None


def by_kind(kind: str, api_version: str | None = None) -> ResourceType:
    """The resource for a manifest's kind (and apiVersion, when given)."""
    rtype = _BY_KIND.get(kind)
    if rtype is None:
        reason = NOT_SERVED.get(kind)
        raise UnknownResource(f'no kind "{kind}" is registered' + (f": {reason}" if reason
                                                                    else ""))
    if api_version is not None and api_version != rtype.api_version:
        raise UnknownResource(
            f'no kind "{kind}" is registered for version "{api_version}"'
            f' (it is served as "{rtype.api_version}")'
        )
    return rtype


def by_name(name: str) -> ResourceType:
    """What a user typed on the command line: ``po``, ``pod``, ``pods``, ``Deployment``..."""
    rtype = _BY_ALIAS.get(name.lower())
    if rtype is None:
        raise UnknownResource(f'the server doesn\'t have a resource type "{name}"')
    return rtype


_BY_MESSAGE = {r.message: r for r in RESOURCES}


def by_message(message_type: type[Message]) -> ResourceType:
    """The resource whose objects are ``message_type`` messages."""
    try:
        return _BY_MESSAGE[message_type]
    except KeyError:
        raise UnknownResource(f"{message_type.__name__} is not an API kind") from None


_STRATEGIES = {r.message: r.strategy for r in (*RESOURCES, *EMBEDDED)}


def strategy_for(message_type: type[Message]) -> Strategy[Any] | None:
    """The strategy of the kind (served or embedded) whose objects are ``message_type``
    messages; None for a message that is no kind."""
    return _STRATEGIES.get(message_type)
