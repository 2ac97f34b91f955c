"""The scheduler's view of the cluster: nodes and the pods on each, including assumed pods.

When the scheduler picks a node it *assumes* the pod there at once, before the bind reaches
the API server and long before the informer reports it, so the next pod's filters already
see the node's reduced room: two pods are never placed on a node's last free slot. The
informer's report of the bound pod confirms the assumption. A failed bind forgets it; an
assumption the informer never confirms (the pod vanished meanwhile) expires ``ttl`` seconds
after its bind finished (upstream's cache.go).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from protos.v1 import objects_pb2 as v1
from scheduler.framework import NodeInfo, PodInfo

log = structlog.get_logger(__name__)


@dataclass
class _PodState:
    info: PodInfo
    node_name: str
    assumed: bool = False
    binding_finished: bool = False
    deadline: float | None = None


class SchedulerCache:
    def __init__(
        self,
        *,
        assumed_pod_ttl: float = 30.0,
        make_pod_info: Callable[[v1.Pod], PodInfo] = PodInfo.of,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assumed_pod_ttl = assumed_pod_ttl
        self._make_pod_info = make_pod_info
        self._clock = clock
        self.nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, _PodState] = {}
        self._assumed: set[str] = set()
        """The uids of assumed pods (the expiry sweep looks at these alone)."""
        self._node_list: list[NodeInfo] | None = None

    # ---------------------------------------------------------------- nodes

    def add_node(self, node: v1.Node) -> NodeInfo:
        info = self.nodes.get(node.metadata.name)
        if info is None:
            info = self.nodes[node.metadata.name] = NodeInfo()
        info.set_node(node)
        self._node_list = None
        return info

    update_node = add_node

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.pods:
            # Its pods still hold their resources until they are deleted themselves.
            info.clear_node()
        else:
            del self.nodes[name]
        self._node_list = None

    def node_infos(self) -> list[NodeInfo]:
        """The nodes pods may be placed on, in a stable order."""
        if self._node_list is None:
            self._node_list = [n for n in self.nodes.values() if n.node is not None]
        return self._node_list

    # ---------------------------------------------------------------- pods

    def _add_to_node(self, info: PodInfo, node_name: str) -> None:
        node = self.nodes.get(node_name)
        if node is None:
            node = self.nodes[node_name] = NodeInfo()  # pods may arrive before their node
        node.add_pod(info)

    def _remove_from_node(self, uid: str, node_name: str) -> None:
        node = self.nodes.get(node_name)
        if node is None:
            return
        node.remove_pod(uid)
        if node.node is None and not node.pods:
            del self.nodes[node_name]

    def assume_pod(self, info: PodInfo, node_name: str) -> PodInfo:
        """Places the pod on the node in the cache; returns the assumed pod's info."""
        if info.uid in self._pods:
            raise ValueError(f"pod {info.key} is already in the cache")
        pod = v1.Pod()
        pod.CopyFrom(info.pod)
        pod.spec.node_name = node_name
        # The requests and ports do not change with the node: keep the computed ones.
        assumed = info.with_pod(pod)
        self._pods[info.uid] = _PodState(assumed, node_name, assumed=True)
        self._assumed.add(info.uid)
        self._add_to_node(assumed, node_name)
        return assumed

    def finish_binding(self, uid: str) -> None:
        """The bind call returned: the assumption now expires if never confirmed."""
        state = self._pods.get(uid)
        if state is not None and state.assumed:
            state.binding_finished = True
            state.deadline = self._clock() + self.assumed_pod_ttl

    def forget_pod(self, uid: str) -> None:
        """The bind failed: free what the assumed pod held."""
        state = self._pods.get(uid)
        if state is not None and state.assumed:
            del self._pods[uid]
            self._assumed.discard(uid)
            self._remove_from_node(uid, state.node_name)

    def is_assumed(self, uid: str) -> bool:
        return uid in self._assumed

    def add_pod(self, pod: v1.Pod) -> None:
        """An assigned pod as the API server reports it (confirms an assumed one)."""
        uid = pod.metadata.uid
        node_name = pod.spec.node_name
        state = self._pods.get(uid)
        if state is not None and state.node_name == node_name and state.info.pod.spec == pod.spec:
            # Most updates of a placed pod are status changes: what the pod holds on its
            # node stays the same, so keep the computed facts and only swap the object.
            info = state.info.with_pod(pod)
            self._pods[uid] = _PodState(info, node_name)
            self._assumed.discard(uid)
            node = self.nodes.get(node_name)
            if node is not None and uid in node.pods:
                node.pods[uid] = info
                return
            self._add_to_node(info, node_name)
            return
        if state is not None:
            self._assumed.discard(uid)
            self._remove_from_node(uid, state.node_name)
        info = self._make_pod_info(pod)
        self._pods[uid] = _PodState(info, node_name)
        self._add_to_node(info, node_name)

    update_pod = add_pod

    def remove_pod(self, pod: v1.Pod) -> None:
        uid = pod.metadata.uid
        state = self._pods.pop(uid, None)
        if state is not None:
            self._assumed.discard(uid)
            self._remove_from_node(uid, state.node_name)

    def cleanup_expired_assumed_pods(self) -> list[str]:
        now = self._clock()
        expired = []
        for uid in self._assumed:
            s = self._pods[uid]
            if s.binding_finished and s.deadline is not None and s.deadline < now:
                expired.append(uid)
        for uid in expired:
            state = self._pods.pop(uid)
            self._assumed.discard(uid)
            log.warning("assumed pod expired", pod=state.info.key, node=state.node_name)
            self._remove_from_node(uid, state.node_name)
        return expired

    def pod_count(self) -> int:
        return len(self._pods)

    def assumed_count(self) -> int:
        return len(self._assumed)
