"""Field selectors (Kubernetes' pkg/fields) and the fields each kind lets you select on.

``metadata.name=x,spec.nodeName!=,status.phase=Running``: a conjunction of ``=``/``==``/``!=``
terms; values may escape ``\\``, ``,`` and ``=`` with a backslash. Values are read from the
proto the way Kubernetes' ToSelectableFields renders them (bools as "true"/"false").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from protos.v1 import objects_pb2 as v1


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _pod_fields(pod: v1.Pod) -> dict[str, str]:
    return {
        "spec.nodeName": pod.spec.node_name,
        "spec.restartPolicy": pod.spec.restart_policy,
        "spec.schedulerName": pod.spec.scheduler_name,
        "spec.serviceAccountName": pod.spec.service_account_name,
        "spec.hostNetwork": _bool(pod.spec.host_network),
        "status.phase": pod.status.phase,
        "status.podIP": pod.status.pod_ip,
        "status.nominatedNodeName": pod.status.nominated_node_name,
    }


def _event_fields(ev: v1.Event) -> dict[str, str]:
    ref = ev.involved_object
    return {
        "involvedObject.kind": ref.kind,
        "involvedObject.namespace": ref.namespace,
        "involvedObject.name": ref.name,
        "involvedObject.uid": ref.uid,
        "involvedObject.apiVersion": ref.api_version,
        "involvedObject.resourceVersion": ref.resource_version,
        "involvedObject.fieldPath": ref.field_path,
        "reason": ev.reason,
        "reportingComponent": ev.reporting_component,
        "source": ev.source.component,
        "type": ev.type,
    }


def _kind_fields(obj: Message) -> dict[str, str]:
    if isinstance(obj, v1.Pod):
        return _pod_fields(obj)
    if isinstance(obj, v1.Event):
        return _event_fields(obj)
    if isinstance(obj, v1.Node):
        return {"spec.unschedulable": _bool(obj.spec.unschedulable)}
    if isinstance(obj, v1.Secret):
        return {"type": obj.type}
    if isinstance(obj, v1.Job):
        return {"status.successful": str(obj.status.succeeded)}
    if isinstance(obj, v1.Namespace):
        return {"status.phase": obj.status.phase}
    if isinstance(obj, v1.ReplicaSet):
        return {"status.replicas": str(obj.status.replicas)}
    if isinstance(obj, v1.Service):
        return {"spec.clusterIP": obj.spec.cluster_ip, "spec.type": obj.spec.type}
    return {}


_KIND_FIELD_NAMES: dict[str, frozenset[str]] = {
    "Pod": frozenset(_pod_fields(v1.Pod())),
    "Event": frozenset(_event_fields(v1.Event())),
    "Node": frozenset({"spec.unschedulable"}),
    "Secret": frozenset({"type"}),
    "Job": frozenset({"status.successful"}),
    "Namespace": frozenset({"status.phase"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "Service": frozenset({"spec.clusterIP", "spec.type"}),
}

_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def supported_fields(kind: str) -> set[str]:
    """The field labels a kind can be selected on (metadata.name/namespace for every kind)."""
    return set(_META_FIELDS | _KIND_FIELD_NAMES.get(kind, frozenset()))


def object_fields(obj: Message) -> dict[str, str]:
    """The selectable fields of an object and their values, rendered as Kubernetes does."""
    meta = getattr(obj, "metadata", None)
    fields = {
        "metadata.name": meta.name if meta is not None else "",
        "metadata.namespace": meta.namespace if meta is not None else "",
    }
    fields.update(_kind_fields(obj))
    return fields


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str
    """``=`` or ``!=`` (``==`` is stored as ``=``)."""
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have == self.value if self.operator == "=" else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field terms; no terms selects everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def everything(cls) -> FieldSelector:
        return cls()

    @classmethod
    def one_term_equal(cls, field: str, value: str) -> FieldSelector:
        return cls((FieldRequirement(field, "=", value),))

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Message) -> bool:
        if not self.requirements:
            return True
        return self.matches_fields(object_fields(obj))

    def matches_fields(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def required_value(self, field: str) -> str | None:
        """The value a ``field=value`` term pins, if any (RequiresExactMatch, for indexes)."""
        for r in self.requirements:
            if r.field == field and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_value(value: str) -> str:
    """Undo escape_value; raises ValueError on a bad escape or an unescaped ',' / '='."""
    out: list[str] = []
    in_slash = False
    for ch in value:
        if in_slash:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character: {ch}")
        else:
            out.append(ch)
    if in_slash:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, ch in enumerate(text):
        if in_slash:
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator occurrence splits; the left side has no escaping.
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def parse_field_selector(text: str, kind: str | None = None) -> FieldSelector:
    """Parse a field selector; with ``kind``, reject fields that kind cannot select on.

    Raises ValueError with Kubernetes' messages ("field label not supported: spec.foo").
    """
    if not text:
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        field = lhs.strip()
        if kind is not None and field not in supported_fields(kind):
            raise ValueError(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, "!=" if op == "!=" else "=", unescape_value(rhs)))
    return FieldSelector(tuple(reqs))
