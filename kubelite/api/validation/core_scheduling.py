"""Where a pod may run: tolerations, node selector terms, node and pod (anti-)affinity and
topology spread constraints, as core/v1 validates them."""

from __future__ import annotations

from collections.abc import Sequence

from kubelite.api.field_errors import FieldPath
from kubelite.api.labels import (
    is_valid_label_value,
    validate_label_name,
    validate_label_selector,
)
from kubelite.api.names import (
    name_is_dns_label,
)
from kubelite.api.validation.meta import Errors, not_supported
from protos.v1 import objects_pb2 as v1

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_tolerations(tolerations: Sequence[v1.Toleration], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, tol in enumerate(tolerations):
        p = path.index(i)
        if tol.key:
            errs.extend(validate_label_name(tol.key, p.child("key")))
        if not tol.key and tol.operator != "Exists":
            errs.append(
                p.child("operator").invalid(
                    tol.operator,
                    'operator must be Exists when `key` is empty, which means "match all values'
                    ' and all keys"',
                )
            )
        if tol.HasField("toleration_seconds") and tol.effect != "NoExecute":
            errs.append(
                p.child("effect").invalid(
                    tol.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
                )
            )
        if tol.operator in ("Equal", ""):
            msgs = is_valid_label_value(tol.value)
            if msgs:
                errs.append(p.child("operator").invalid(tol.value, ";".join(msgs)))
        elif tol.operator == "Exists":
            if tol.value:
                errs.append(
                    p.child("operator").invalid(
                        tol.value, "value must be empty when `operator` is 'Exists'"
                    )
                )
        else:
            errs.append(p.child("operator").not_supported(tol.operator, ["Equal", "Exists"]))
        if tol.effect and tol.effect not in TAINT_EFFECTS:
            errs.append(p.child("effect").not_supported(tol.effect, list(TAINT_EFFECTS)))
    return errs


def _validate_node_selector_requirement(req: v1.NodeSelectorRequirement, path: FieldPath) -> Errors:
    errs: Errors = []
    if req.operator in ("In", "NotIn"):
        if not req.values:
            errs.append(
                path.child("values").required(
                    "must be specified when `operator` is 'In' or 'NotIn'"
                )
            )
    elif req.operator in ("Exists", "DoesNotExist"):
        if req.values:
            errs.append(
                path.child("values").forbidden(
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
            )
    elif req.operator in ("Gt", "Lt"):
        if len(req.values) != 1:
            errs.append(
                path.child("values").required(
                    "must be specified single value when `operator` is 'Lt' or 'Gt'"
                )
            )
        else:
            try:
                int(req.values[0])
            except ValueError:
                errs.append(
                    path.child("values").index(0).invalid(req.values[0], "must be an integer")
                )
    else:
        errs.append(path.child("operator").invalid(req.operator, "not a valid selector operator"))
    errs.extend(validate_label_name(req.key, path.child("key")))
    return errs


def _validate_node_selector_term(term: v1.NodeSelectorTerm, path: FieldPath) -> Errors:
    errs: Errors = []
    for j, req in enumerate(term.match_expressions):
        errs.extend(
            _validate_node_selector_requirement(req, path.child("matchExpressions").index(j))
        )
    for j, req in enumerate(term.match_fields):
        p = path.child("matchFields").index(j)
        if req.operator not in ("In", "NotIn"):
            errs.append(p.child("operator").invalid(req.operator, "not a valid selector operator"))
        elif len(req.values) != 1:
            errs.append(
                p.child("values").required(
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field"
                    " selector"
                )
            )
        if req.key != "metadata.name":
            errs.append(p.child("key").invalid(req.key, "not a valid field selector key"))
    return errs


def _validate_affinity_term(term: v1.PodAffinityTerm, path: FieldPath) -> Errors:
    errs: Errors = []
    if term.HasField("label_selector"):
        errs.extend(validate_label_selector(term.label_selector, path.child("labelSelector")))
    if term.HasField("namespace_selector"):
        errs.extend(
            validate_label_selector(term.namespace_selector, path.child("namespaceSelector"))
        )
    for i, ns in enumerate(term.namespaces):
        errs.extend(
            path.child("namespaces").index(i).invalid(ns, m) for m in name_is_dns_label(ns, False)
        )
    if not term.topology_key:
        errs.append(path.child("topologyKey").required("can not be empty"))
    else:
        errs.extend(validate_label_name(term.topology_key, path.child("topologyKey")))
    return errs


def _validate_weight(weight: int, path: FieldPath) -> Errors:
    if not 1 <= weight <= 100:
        return [path.invalid(weight, "must be in the range 1-100")]
    return []


def validate_affinity(affinity: v1.Affinity, path: FieldPath) -> Errors:
    errs: Errors = []
    if affinity.HasField("node_affinity"):
        na = affinity.node_affinity
        np = path.child("nodeAffinity")
        if na.HasField("required_during_scheduling_ignored_during_execution"):
            rp = np.child("requiredDuringSchedulingIgnoredDuringExecution")
            terms = na.required_during_scheduling_ignored_during_execution.node_selector_terms
            tp = rp.child("nodeSelectorTerms")
            if not terms:
                errs.append(tp.required("must have at least one node selector term"))
            for i, term in enumerate(terms):
                errs.extend(_validate_node_selector_term(term, tp.index(i)))
        for i, pref in enumerate(na.preferred_during_scheduling_ignored_during_execution):
            pp = np.child("preferredDuringSchedulingIgnoredDuringExecution").index(i)
            errs.extend(_validate_weight(pref.weight, pp.child("weight")))
            errs.extend(_validate_node_selector_term(pref.preference, pp.child("preference")))
    for attr, json_name in (
        ("pod_affinity", "podAffinity"),
        ("pod_anti_affinity", "podAntiAffinity"),
    ):
        if not affinity.HasField(attr):
            continue
        pa: v1.PodAffinity = getattr(affinity, attr)
        pp = path.child(json_name)
        for i, aterm in enumerate(pa.required_during_scheduling_ignored_during_execution):
            errs.extend(
                _validate_affinity_term(
                    aterm, pp.child("requiredDuringSchedulingIgnoredDuringExecution").index(i)
                )
            )
        for i, wterm in enumerate(pa.preferred_during_scheduling_ignored_during_execution):
            wp = pp.child("preferredDuringSchedulingIgnoredDuringExecution").index(i)
            errs.extend(_validate_weight(wterm.weight, wp.child("weight")))
            errs.extend(
                _validate_affinity_term(wterm.pod_affinity_term, wp.child("podAffinityTerm"))
            )
    return errs


def validate_topology_spread(
    constraints: Sequence[v1.TopologySpreadConstraint], path: FieldPath
) -> Errors:
    errs: Errors = []
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(constraints):
        p = path.index(i)
        if c.max_skew <= 0:
            errs.append(p.child("maxSkew").invalid(c.max_skew, "must be greater than zero"))
        if not c.topology_key:
            errs.append(p.child("topologyKey").required("can not be empty"))
        else:
            errs.extend(validate_label_name(c.topology_key, p.child("topologyKey")))
        errs.extend(
            not_supported(
                c.when_unsatisfiable,
                ("DoNotSchedule", "ScheduleAnyway"),
                p.child("whenUnsatisfiable"),
            )
        )
        if c.HasField("min_domains") and c.min_domains <= 0:
            errs.append(p.child("minDomains").invalid(c.min_domains, "must be greater than 0"))
        if c.HasField("label_selector"):
            errs.extend(validate_label_selector(c.label_selector, p.child("labelSelector")))
        key = (c.topology_key, c.when_unsatisfiable)
        if key in seen:
            errs.append(
                p.child("{topologyKey, whenUnsatisfiable}").duplicate(f"{key[0]}, {key[1]}")
            )
        seen.add(key)
    return errs
