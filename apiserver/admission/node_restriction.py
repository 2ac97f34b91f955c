"""NodeRestriction admission (plugin/pkg/admission/noderestriction): a kubelet's identity
(``system:node:N`` in ``system:nodes``) writes only what is its own: its Node (and no
restricted labels on it), its Lease in kube-node-lease, the status of the pods bound to it and
their deletion, and tokens of the pods bound to it. It creates no pods (upstream nodes create
only mirror pods; this cluster has none). The Node authorizer decides what else a node may
write (Events, for one); this plugin only narrows writes to the node's own objects."""

from __future__ import annotations

from collections.abc import Iterable

from apiserver.admission.objects import Sources
from apiserver.admission.plugin import CREATE, DELETE, UPDATE, Attributes, Plugin
from kubelite.api import meta as m
from kubelite.api.errors import NotFound
from kubelite.api.registry import by_kind
from protos.v1 import objects_pb2 as v1

NODE_LEASE_NAMESPACE = "kube-node-lease"
NODE_RESTRICTION_LABEL_DOMAIN = "node-restriction.kubernetes.io"
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
})
"""Labels of kubernetes.io's domains a kubelet may set on its Node (kubeletapis)."""
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
PODS = by_kind("Pod")


def _in_domain(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def forbidden_labels(keys: Iterable[str]) -> list[str]:
    """The labels a node may not set: anything under node-restriction.kubernetes.io (for
    workloads to trust), and kubernetes.io/k8s.io labels that are not the kubelet's own."""
    result = set()
    for key in keys:
        domain = key.partition("/")[0] if "/" in key else ""
        restricted = _in_domain(domain, NODE_RESTRICTION_LABEL_DOMAIN)
        kubernetes = _in_domain(domain, "kubernetes.io") or _in_domain(domain, "k8s.io")
        kubelets = key in KUBELET_LABELS or any(
            _in_domain(domain, d) for d in KUBELET_LABEL_DOMAINS
        )
        if restricted or (kubernetes and not kubelets):
            result.add(key)
    return sorted(result)


def modified_labels(new: dict[str, str], old: dict[str, str]) -> set[str]:
    return {k for k in new.keys() | old.keys() if new.get(k) != old.get(k)}


class NodeRestriction(Plugin):
    name = "NodeRestriction"
    needs_user = True

    def __init__(self, sources: Sources) -> None:
        self.storage = sources.storage

    async def admit(self, a: Attributes) -> None:
        node = a.user.node_name if a.user is not None else None
        if node is None:
            return
        kind = a.rtype.kind
        if kind == "Pod":
            self._pod(a, node)
        elif kind == "Node":
            self._node(a, node)
        elif kind == "Lease":
            self._lease(a, node)
        elif kind == "ServiceAccount" and a.subresource == "token":
            await self._token(a, node)

    def _pod(self, a: Attributes, node: str) -> None:
        bound = isinstance(a.old, v1.Pod) and a.old.spec.node_name == node
        if a.subresource == "status":
            if a.operation == UPDATE and not bound:
                raise a.forbidden(
                    f'node "{node}" can only update pod status for pods with spec.nodeName set'
                    " to itself"
                )
            return
        if a.subresource:
            raise a.forbidden(
                f'unexpected pod subresource "{a.subresource}", node "{node}" can only update'
                " pod status"
            )
        if a.operation == CREATE:
            raise a.forbidden(
                f'node "{node}" can not create pods: nodes create only mirror pods, which this'
                " cluster does not have"
            )
        if a.operation == DELETE:
            if not bound:
                raise a.forbidden(
                    f'node "{node}" can only delete pods with spec.nodeName set to itself'
                )
            return
        raise a.forbidden(
            f'unexpected operation "{a.operation}", node "{node}" can only delete pods bound'
            " to it and update their status"
        )

    def _node(self, a: Attributes, node: str) -> None:
        if a.name != node:
            raise a.forbidden(f'node "{node}" is not allowed to modify node "{a.name}"')
        if a.operation == CREATE and isinstance(a.obj, v1.Node):
            bad = forbidden_labels(a.obj.metadata.labels)
            if bad:
                raise a.forbidden(
                    f'node "{node}" is not allowed to set the following labels: {", ".join(bad)}'
                )
        elif a.operation == UPDATE and isinstance(a.obj, v1.Node) and isinstance(a.old, v1.Node):
            bad = forbidden_labels(
                modified_labels(dict(a.obj.metadata.labels), dict(a.old.metadata.labels))
            )
            if bad:
                raise a.forbidden(
                    f'node "{node}" is not allowed to modify labels: {", ".join(bad)}'
                )

    def _lease(self, a: Attributes, node: str) -> None:
        if a.namespace != NODE_LEASE_NAMESPACE:
            raise a.forbidden(
                f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
            )
        if a.name != node:
            raise a.forbidden("can only access node lease with the same name as the requesting"
                              " node")

    async def _token(self, a: Attributes, node: str) -> None:
        if a.operation != CREATE or not isinstance(a.obj, v1.TokenRequest):
            return
        ref = a.obj.spec.bound_object_ref
        if ref.api_version != "v1" or ref.kind != "Pod" or not ref.name:
            raise a.forbidden("node requested token not bound to a pod")
        if not ref.uid:
            raise a.forbidden("node requested token with a pod binding without a uid")
        try:
            pod = await self.storage.get(PODS, a.namespace, ref.name)
        except NotFound:
            raise a.forbidden(f'pods "{ref.name}" not found') from None
        assert isinstance(pod, v1.Pod)
        if m.meta(pod).uid != ref.uid:
            raise a.forbidden(
                f"the UID in the bound object reference ({ref.uid}) does not match the UID in"
                " record. The object might have been deleted and then recreated"
            )
        if pod.spec.node_name != node:
            raise a.forbidden("node requested token bound to a pod scheduled on a different node")
