"""Field selectors (Kubernetes' pkg/fields) and the fields each kind lets you select on.

``metadata.name=x,spec.nodeName!=,status.phase=Running``: a conjunction of ``=``/``==``/``!=``
terms; values may escape ``\\``, ``,`` and ``=`` with a backslash. Values are read from the
proto the way Kubernetes' ToSelectableFields renders them (bools as "true"/"false"); each kind's
strategy (kubelite.api.strategies) names its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from kubelite.api import registry

_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def supported_fields(kind: str) -> set[str]:
    """The field labels a kind can be selected on: metadata.name/namespace for every kind, and
    what its strategy adds."""
    try:
        rtype = registry.by_kind(kind)
    except registry.UnknownResource:
        return set(_META_FIELDS)
    return set(_META_FIELDS | rtype.strategy.fields(rtype.new()).keys())


def object_fields(obj: Message) -> dict[str, str]:
    """The selectable fields of an object and their values, rendered as Kubernetes does."""
    meta = getattr(obj, "metadata", None)
    fields = {
        "metadata.name": meta.name if meta is not None else "",
        "metadata.namespace": meta.namespace if meta is not None else "",
    }
    strategy = registry.strategy_for(type(obj))
    if strategy is not None:
        fields.update(strategy.fields(obj))
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
