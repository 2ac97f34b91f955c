"""An authenticated user, and the names and groups Kubernetes gives its well-known users."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ALL_AUTHENTICATED = "system:authenticated"
"""Every authenticated user is also in this group."""
ALL_UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"
"""Cluster administrators: everything is allowed (cluster-admin is bound to this group)."""
NODES = "system:nodes"
NODE_USER_PREFIX = "system:node:"
BOOTSTRAPPERS = "system:bootstrappers"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SERVICE_ACCOUNT_USER_PREFIX = "system:serviceaccount:"
KUBE_SCHEDULER = "system:kube-scheduler"
KUBE_CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_PROXY = "system:kube-proxy"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def in_group(self, group: str) -> bool:
        return group in self.groups

    @property
    def node_name(self) -> str | None:
        """The node a kubelet's identity names (``system:node:N`` in ``system:nodes``)."""
        if self.name.startswith(NODE_USER_PREFIX) and NODES in self.groups:
            return self.name.removeprefix(NODE_USER_PREFIX)
        return None

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) of a ServiceAccount's identity."""
        if not self.name.startswith(SERVICE_ACCOUNT_USER_PREFIX):
            return None
        namespace, _, name = self.name.removeprefix(SERVICE_ACCOUNT_USER_PREFIX).partition(":")
        return (namespace, name) if namespace and name else None


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    return UserInfo(
        f"{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}", uid,
        (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", ALL_AUTHENTICATED),
    )


SUPERUSER = UserInfo("system:apiserver", groups=(MASTERS, ALL_AUTHENTICATED))
"""The API server itself (its own writes: bootstrap policy, the kubernetes Service, ...)."""
