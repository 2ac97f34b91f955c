"""Scheduling predicates shared by the scheduler and the controllers that place pods
themselves (the DaemonSet controller): taints and tolerations, node selectors and required
node affinity, as upstream's component-helpers/scheduling/corev1 and Toleration methods."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from protos.v1 import objects_pb2 as v1


def tolerates(toleration: v1.Toleration, taint: v1.Taint) -> bool:
    """Upstream's Toleration.ToleratesTaint: an empty effect matches every effect, an empty
    key with Exists every key; operator "" means Equal."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return toleration.operator == "Exists"


def tolerated(tolerations: Iterable[v1.Toleration], taint: v1.Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def find_untolerated_taint(taints: Iterable[v1.Taint], tolerations: Iterable[v1.Toleration],
                           effects: Collection[str]) -> v1.Taint | None:
    """The first taint with one of ``effects`` that no toleration tolerates (upstream's
    FindMatchingUntoleratedTaint with an effect filter), None when all are tolerated."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.effect in effects and not tolerated(tolerations, taint):
            return taint
    return None


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


def field_matches(req: v1.NodeSelectorRequirement, node: v1.Node) -> bool:
    """One matchFields entry: only metadata.name is a node field, with In and NotIn."""
    if req.key != "metadata.name" or req.operator not in ("In", "NotIn"):
        return False
    return requirement_matches(req, {"metadata.name": node.metadata.name})


def term_matches(term: v1.NodeSelectorTerm, node: v1.Node) -> bool:
    """A term's expressions and fields are ANDed; an empty term matches nothing."""
    if not term.match_expressions and not term.match_fields:
        return False
    labels = node.metadata.labels
    return all(requirement_matches(r, labels) for r in term.match_expressions) and all(
        field_matches(r, node) for r in term.match_fields
    )


def any_term_matches(terms: Iterable[v1.NodeSelectorTerm], node: v1.Node) -> bool:
    """Terms are ORed (a NodeSelector)."""
    return any(term_matches(t, node) for t in terms)


def required_node_affinity_matches(spec: v1.PodSpec, node: v1.Node) -> bool:
    """The pod's nodeSelector and required node affinity terms, as upstream's
    GetRequiredNodeAffinity(pod).Match."""
    labels = node.metadata.labels
    for key, value in spec.node_selector.items():
        if labels.get(key) != value:
            return False
    affinity = spec.affinity
    if affinity.HasField("node_affinity") and affinity.node_affinity.HasField(
        "required_during_scheduling_ignored_during_execution"
    ):
        terms = affinity.node_affinity.required_during_scheduling_ignored_during_execution
        return any_term_matches(terms.node_selector_terms, node)
    return True
