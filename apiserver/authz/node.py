"""The Node authorizer: what a kubelet (user ``system:node:N`` in ``system:nodes``) may do.

Upstream's rules (plugin/pkg/auth/authorizer/node), with the own-object checks of
NodeRestriction made here too wherever the request names the object: a kubelet reads Nodes,
Pods, Services and Endpoints; writes its own Node and its status, its Lease in
kube-node-lease, the status of pods bound to it, deletes pods bound to it; creates Events,
CertificateSigningRequests and access reviews; and reads only the Secrets, ConfigMaps and
PersistentVolumeClaims, and asks tokens only for the ServiceAccounts, that pods bound to it use.

Which objects a node's pods use is a graph kept in memory from the pods' watch (``NodeGraph``):
pod -> node, and secret/configmap/claim/serviceaccount -> the nodes whose pods name them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from apiserver.authz.attributes import NO_OPINION, Attributes, Decision, Verdict
from kubelite.auth.user import NODES
from protos.v1 import objects_pb2 as v1

NODE_LEASE_NAMESPACE = "kube-node-lease"
READ = frozenset({"get", "list", "watch"})
WRITE = frozenset({"update", "patch"})

Reference = tuple[str, str]
"""(resource, name) of an object in the pod's namespace."""


def _container_references(container: v1.Container) -> Iterator[Reference]:
    for env in container.env:
        source = env.value_from
        if source.secret_key_ref.name:
            yield "secrets", source.secret_key_ref.name
        if source.config_map_key_ref.name:
            yield "configmaps", source.config_map_key_ref.name
    for env_from in container.env_from:
        if env_from.secret_ref.name:
            yield "secrets", env_from.secret_ref.name
        if env_from.config_map_ref.name:
            yield "configmaps", env_from.config_map_ref.name


def pod_references(pod: v1.Pod) -> frozenset[Reference]:
    """Every object a pod uses that its node may then read: Secrets and ConfigMaps of volumes
    (projected ones too), env and envFrom, image pull Secrets, PersistentVolumeClaims, and its
    ServiceAccount (for tokens)."""
    spec = pod.spec
    refs: set[Reference] = set()
    account = spec.service_account_name or spec.service_account
    if account:
        refs.add(("serviceaccounts", account))
    for secret in spec.image_pull_secrets:
        if secret.name:
            refs.add(("secrets", secret.name))
    for volume in spec.volumes:
        if volume.secret.secret_name:
            refs.add(("secrets", volume.secret.secret_name))
        if volume.config_map.name:
            refs.add(("configmaps", volume.config_map.name))
        if volume.persistent_volume_claim.claim_name:
            refs.add(("persistentvolumeclaims", volume.persistent_volume_claim.claim_name))
        for source in volume.projected.sources:
            if source.secret.name:
                refs.add(("secrets", source.secret.name))
            if source.config_map.name:
                refs.add(("configmaps", source.config_map.name))
    for container in (*spec.init_containers, *spec.containers):
        refs.update(_container_references(container))
    return frozenset(refs)


@dataclass(frozen=True)
class PodRecord:
    """What the server keeps of a pod: enough for the graph and for token binding checks."""

    uid: str
    node: str
    deletion_timestamp: str
    references: frozenset[Reference]


class NodeGraph:
    """Pods by node and the objects they use, fed by the pods' watch."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], PodRecord] = {}
        self._uses: Counter[tuple[str, str, str, str]] = Counter()
        """(node, resource, namespace, name) -> how many of the node's pods use it."""

    def reset(self, kind: str) -> None:
        self._pods.clear()
        self._uses.clear()

    def apply(self, kind: str, obj: Message, deleted: bool) -> None:
        if not isinstance(obj, v1.Pod):
            raise TypeError(f"the node graph takes pods, not {type(obj).__name__}")
        key = (obj.metadata.namespace, obj.metadata.name)
        old = self._pods.pop(key, None)
        if old is not None:
            self._count(old, key[0], -1)
        if deleted:
            return
        record = PodRecord(obj.metadata.uid, obj.spec.node_name, obj.metadata.deletion_timestamp,
                           pod_references(obj))
        self._pods[key] = record
        self._count(record, key[0], 1)

    def _count(self, record: PodRecord, namespace: str, delta: int) -> None:
        if not record.node:
            return
        for resource, name in record.references:
            use = (record.node, resource, namespace, name)
            self._uses[use] += delta
            if self._uses[use] <= 0:
                del self._uses[use]

    def pod(self, namespace: str, name: str) -> PodRecord | None:
        return self._pods.get((namespace, name))

    def uses(self, node: str, resource: str, namespace: str, name: str) -> bool:
        """Whether a pod bound to ``node`` uses the object."""
        return (node, resource, namespace, name) in self._uses

    def bound_to(self, namespace: str, name: str, node: str) -> bool:
        pod = self._pods.get((namespace, name))
        return pod is not None and pod.node == node


def _allow(reason: str = "") -> Verdict:
    return Verdict(Decision.ALLOW, reason)


def _no(reason: str) -> Verdict:
    return Verdict(Decision.NO_OPINION, reason)


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def authorize(self, a: Attributes) -> Verdict:
        node = a.user.node_name
        if node is None:
            if NODES in a.user.groups:
                return _no("unknown node: the user is not system:node:<name>")
            return NO_OPINION
        handler = _RULES.get((a.api_group, a.resource))
        if handler is None:
            return NO_OPINION
        return handler(self, node, a)

    def _used_object(self, node: str, a: Attributes) -> Verdict:
        if a.verb != "get" or a.subresource or not a.name:
            return _no("can only get individual resources of this type")
        if self.graph.uses(node, a.resource, a.namespace, a.name):
            return _allow()
        return _no(f"no relationship found between node '{node}' and this object")

    def _service_accounts(self, node: str, a: Attributes) -> Verdict:
        if a.subresource != "token" or a.verb != "create":
            return _no("can only create tokens for individual service accounts")
        if self.graph.uses(node, "serviceaccounts", a.namespace, a.name):
            return _allow()
        return _no(f"no relationship found between node '{node}' and this object")

    def _nodes(self, node: str, a: Attributes) -> Verdict:
        if not a.subresource and (a.verb in READ or a.verb == "create"):
            return _allow()
        if a.subresource not in ("", "status"):
            return NO_OPINION
        if a.verb in WRITE or (a.verb == "delete" and not a.subresource):
            if a.name == node:
                return _allow()
            return _no(f"node '{node}' may only modify its own Node object")
        return NO_OPINION

    def _pods(self, node: str, a: Attributes) -> Verdict:
        if not a.subresource and a.verb in READ:
            return _allow()
        if (a.subresource == "status" and a.verb in WRITE) or (
                not a.subresource and a.verb == "delete"):
            if self.graph.bound_to(a.namespace, a.name, node):
                return _allow()
            return _no(f"node '{node}' may only change pods bound to it")
        return NO_OPINION

    def _leases(self, node: str, a: Attributes) -> Verdict:
        if a.namespace != NODE_LEASE_NAMESPACE or a.subresource:
            return NO_OPINION
        if a.verb == "create" or (a.verb in {"get", "update", "patch", "delete"}
                                  and a.name == node):
            return _allow()
        return _no(f"node '{node}' may only use its own Lease")

    def _read_only(self, node: str, a: Attributes) -> Verdict:
        return _allow() if a.verb in READ and not a.subresource else NO_OPINION

    def _events(self, node: str, a: Attributes) -> Verdict:
        return _allow() if a.verb in {"create", "update", "patch"} else NO_OPINION

    def _csrs(self, node: str, a: Attributes) -> Verdict:
        if not a.subresource and (a.verb in READ or a.verb == "create"):
            return _allow()
        if a.subresource == "selfnodeclient" and a.verb == "create":
            return _allow()
        return NO_OPINION

    def _reviews(self, node: str, a: Attributes) -> Verdict:
        return _allow() if a.verb == "create" else NO_OPINION


_RULES = {
    ("", "secrets"): NodeAuthorizer._used_object,
    ("", "configmaps"): NodeAuthorizer._used_object,
    ("", "persistentvolumeclaims"): NodeAuthorizer._used_object,
    ("", "serviceaccounts"): NodeAuthorizer._service_accounts,
    ("", "nodes"): NodeAuthorizer._nodes,
    ("", "pods"): NodeAuthorizer._pods,
    ("", "services"): NodeAuthorizer._read_only,
    ("", "endpoints"): NodeAuthorizer._read_only,
    ("", "events"): NodeAuthorizer._events,
    ("events.k8s.io", "events"): NodeAuthorizer._events,
    ("coordination.k8s.io", "leases"): NodeAuthorizer._leases,
    ("certificates.k8s.io", "certificatesigningrequests"): NodeAuthorizer._csrs,
    ("authorization.k8s.io", "subjectaccessreviews"): NodeAuthorizer._reviews,
    ("authentication.k8s.io", "tokenreviews"): NodeAuthorizer._reviews,
}
"""(API group, resource) -> the rule a node's request on it is decided by."""
