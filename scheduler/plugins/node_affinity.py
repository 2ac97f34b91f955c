"""NodeAffinity: spec.nodeSelector and required node affinity filter nodes; preferred terms
score them by the summed weights of the terms a node matches (upstream's NodeAffinity)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from protos.v1 import objects_pb2 as v1
from scheduler.framework import (
    SUCCESS,
    ClusterEvent,
    NodeInfo,
    PodInfo,
    Status,
    default_normalize_score,
)

ERR_REASON_POD = "node(s) didn't match Pod's node affinity/selector"


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def requirement_matches(req: v1.NodeSelectorRequirement, labels: Mapping[str, str]) -> bool:
    """One matchExpressions entry against a node's labels (In, NotIn, Exists, DoesNotExist,
    Gt, Lt); an unknown operator or a malformed Gt/Lt matches nothing."""
    op = req.operator
    present = req.key in labels
    value = labels.get(req.key, "")
    if op == "In":
        return present and value in req.values
    if op == "NotIn":
        return not present or value not in req.values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(req.values) != 1:
            return False
        have, bound = _as_int(value), _as_int(req.values[0])
        if have is None or bound is None:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def _field_matches(req: v1.NodeSelectorRequirement, node: v1.Node) -> bool:
    # Only metadata.name is a supported node field, with In and NotIn.
    if req.key != "metadata.name" or req.operator not in ("In", "NotIn"):
        return False
    return requirement_matches(req, {"metadata.name": node.metadata.name})


def term_matches(term: v1.NodeSelectorTerm, node: v1.Node) -> bool:
    """A term's expressions and fields are ANDed; an empty term matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    labels = node.metadata.labels
    return all(requirement_matches(r, labels) for r in term.match_expressions) and all(
        _field_matches(r, node) for r in term.match_fields
    )


def any_term_matches(terms: Iterable[v1.NodeSelectorTerm], node: v1.Node) -> bool:
    return any(term_matches(t, node) for t in terms)


def required_node_affinity_matches(pod: v1.Pod, node: v1.Node) -> bool:
    """nodeSelector and every required term as upstream's GetRequiredNodeAffinity.Match."""
    labels = node.metadata.labels
    for key, value in pod.spec.node_selector.items():
        if labels.get(key) != value:
            return False
    affinity = pod.spec.affinity
    if affinity.HasField("node_affinity") and affinity.node_affinity.HasField(
        "required_during_scheduling_ignored_during_execution"
    ):
        terms = affinity.node_affinity.required_during_scheduling_ignored_during_execution
        return any_term_matches(terms.node_selector_terms, node)
    return True


class NodeAffinity:
    name: ClassVar[str] = "NodeAffinity"
    events: ClassVar[frozenset[ClusterEvent]] = frozenset(
        {ClusterEvent.NODE_ADD, ClusterEvent.NODE_UPDATE}
    )

    def filter(self, pod: PodInfo, node_info: NodeInfo) -> Status:
        node = node_info.node
        if node is None or not required_node_affinity_matches(pod.pod, node):
            return Status.unresolvable(ERR_REASON_POD)
        return SUCCESS

    def score(self, pod: PodInfo, node_info: NodeInfo) -> int:
        node = node_info.node
        if node is None:
            return 0
        affinity = pod.pod.spec.affinity.node_affinity
        preferred = affinity.preferred_during_scheduling_ignored_during_execution
        return sum(
            term.weight for term in preferred
            if term.weight and term_matches(term.preference, node)
        )

    def normalize_scores(self, pod: PodInfo, scores: list[int]) -> None:
        default_normalize_score(scores, reverse=False)
