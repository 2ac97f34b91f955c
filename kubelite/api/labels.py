"""Label keys and values, and label selectors (Kubernetes' pkg/labels and metav1 helpers).

A Selector is a conjunction of requirements, parsed from the string syntax
(``a=b,c!=d,e in (x,y),f notin (z),g,!h``, also ``==``, ``>`` and ``<``) or built from a
LabelSelector message (matchLabels + matchExpressions).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.api.names import empty_error, is_dns1123_subdomain, max_len_error, regex_error
from protos.v1 import objects_pb2 as v1

QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63

_QNAME_CHAR = "[A-Za-z0-9]"
_QNAME_EXT_CHAR = "[-A-Za-z0-9_.]"
_QUALIFIED_NAME_FMT = "(" + _QNAME_CHAR + _QNAME_EXT_CHAR + "*)?" + _QNAME_CHAR
_QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
    " alphanumeric character"
)
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or"
    " '.', and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)


def is_qualified_name(value: str) -> list[str]:
    """Messages for a label key / annotation key / resource name: ``[prefix/]name``."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_ERR, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_NAME_ERR, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_key(key: str) -> list[str]:
    return is_qualified_name(key)


def is_valid_label_value(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def validate_label_name(name: str, path: FieldPath) -> list[FieldError]:
    return [path.invalid(name, m) for m in is_qualified_name(name)]


def validate_labels(labels: Mapping[str, str], path: FieldPath) -> list[FieldError]:
    """metav1 ValidateLabels: errors are reported at the map's path, as Kubernetes does."""
    errs: list[FieldError] = []
    for key in sorted(labels):
        errs.extend(validate_label_name(key, path))
        errs.extend(path.invalid(labels[key], m) for m in is_valid_label_value(labels[key]))
    return errs


# ---------------------------------------------------------------- selectors


class Operator(enum.Enum):
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    """Sorted and de-duplicated; one value for =, ==, !=, gt, lt; none for exists/!."""

    @classmethod
    def new(cls, key: str, operator: Operator, values: Iterable[str] = ()) -> Requirement:
        """Validated constructor (labels.NewRequirement); raises ValueError."""
        vals = sorted(set(values))
        key_errs = is_qualified_name(key)
        if key_errs:
            raise ValueError(f'invalid label key "{key}": {"; ".join(key_errs)}')
        if operator in (Operator.IN, Operator.NOT_IN):
            if not vals:
                raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                raise ValueError("exact-match compatibility requires one single value")
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                raise ValueError("values set must be empty for exists and does not exist")
        else:
            if len(vals) != 1:
                raise ValueError("for 'Gt', 'Lt' operators, exactly one value is required")
            try:
                int(vals[0])
            except ValueError:
                raise ValueError(
                    f"for 'Gt', 'Lt' operators, the value must be an integer: {vals[0]}"
                ) from None
        if operator not in (Operator.GREATER_THAN, Operator.LESS_THAN):
            for val in vals:
                msgs = is_valid_label_value(val)
                if msgs:
                    raise ValueError(
                        f'invalid label value: "{val}": at key: "{key}": {"; ".join(msgs)}'
                    )
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        if not present:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(self.values)})"
        if op is Operator.GREATER_THAN:
            return f"{self.key}>{self.values[0]}"
        if op is Operator.LESS_THAN:
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op.value}{self.values[0]}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements. ``nothing`` matches no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def everything(cls) -> Selector:
        return cls()

    @classmethod
    def match_nothing(cls) -> Selector:
        return cls(nothing=True)

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> Selector:
        """Equality on every pair (labels.SelectorFromSet)."""
        reqs = [Requirement.new(k, Operator.EQUALS, [v]) for k, v in labels.items()]
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    def add(self, *requirements: Requirement) -> Selector:
        reqs = sorted((*self.requirements, *requirements), key=lambda r: r.key)
        return Selector(tuple(reqs), self.nothing)

    def required_value(self, key: str) -> str | None:
        """The value an exact-match requirement pins ``key`` to, if any (for indexes)."""
        for r in self.requirements:
            if r.key == key and r.operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS):
                return r.values[0]
            if r.key == key and r.operator is Operator.IN and len(r.values) == 1:
                return r.values[0]
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# Lexer for the string syntax: identifiers are runs of anything but whitespace and the
# special characters, as in Kubernetes' labels lexer.
_SPECIAL = "=!(),<>"
_TOKEN_RE = re.compile(r"\s*(!=|==|[=!(),<>]|[^\s=!(),<>]+)")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN_RE.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-blank character
            raise ValueError(f"unable to parse selector {text!r} at {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _is_identifier(token: str | None) -> bool:
    return token is not None and token[0] not in _SPECIAL


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def fail(self, found: str | None, expected: str) -> ValueError:
        shown = "" if found is None else found
        return ValueError(
            f"unable to parse requirement: found '{shown}', expected: {expected}"
            f" (in selector {self.text!r})"
        )

    def parse(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek() is None:
            return Selector()
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok is None:
                break
            if tok != ",":
                raise self.fail(tok, "','")
            if self.peek() is None:
                raise self.fail(None, "identifier after ','")
        return Selector(tuple(sorted(reqs, key=lambda r: r.key)))

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            if not _is_identifier(key) or key in ("in", "notin"):
                raise self.fail(key, "identifier after '!'")
            assert key is not None
            return self.build(key, Operator.DOES_NOT_EXIST, [])
        if not _is_identifier(tok) or tok in ("in", "notin"):
            raise self.fail(tok, "'!' or identifier")
        assert tok is not None
        key = tok
        nxt = self.peek()
        if nxt is None or nxt == ",":
            return self.build(key, Operator.EXISTS, [])
        self.take()
        ops = {
            "=": Operator.EQUALS,
            "==": Operator.DOUBLE_EQUALS,
            "!=": Operator.NOT_EQUALS,
            ">": Operator.GREATER_THAN,
            "<": Operator.LESS_THAN,
        }
        if nxt in ops:
            value = self.peek()
            if value is None or value == ",":
                if ops[nxt] in (Operator.GREATER_THAN, Operator.LESS_THAN):
                    raise self.fail(value, "integer value")
                return self.build(key, ops[nxt], [""])  # `a=` matches an empty value
            if not _is_identifier(value):
                raise self.fail(value, "identifier")
            self.take()
            assert value is not None
            return self.build(key, ops[nxt], [value])
        if nxt in ("in", "notin"):
            op = Operator.IN if nxt == "in" else Operator.NOT_IN
            return self.build(key, op, self.value_set())
        raise self.fail(nxt, "'=', '!=', '==', 'in', 'notin'")

    def value_set(self) -> list[str]:
        tok = self.take()
        if tok != "(":
            raise self.fail(tok, "'('")
        values: list[str] = []
        expect_value = True
        while True:
            tok = self.take()
            if tok is None:
                raise self.fail(None, "')'")
            if tok == ")":
                if expect_value:
                    values.append("")  # `in ()` and `in (a,)` hold the empty value
                return values
            if tok == ",":
                if expect_value:
                    values.append("")
                expect_value = True
                continue
            if not _is_identifier(tok) or not expect_value:
                raise self.fail(tok, "',' or ')'")
            values.append(tok)
            expect_value = False

    def build(self, key: str, op: Operator, values: list[str]) -> Requirement:
        try:
            return Requirement.new(key, op, values)
        except ValueError as e:
            raise ValueError(f"{e} (in selector {self.text!r})") from None


def parse_selector(text: str) -> Selector:
    """Parse the label selector string syntax; raises ValueError naming what was wrong."""
    return _Parser(text).parse()


_LABEL_SELECTOR_OPS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def selector_from_label_selector(msg: v1.LabelSelector | None) -> Selector:
    """metav1.LabelSelectorAsSelector: None matches nothing, an empty selector everything.

    Raises ValueError for an invalid operator, key or value.
    """
    if msg is None:
        return Selector.match_nothing()
    if not msg.match_labels and not msg.match_expressions:
        return Selector.everything()
    reqs = [Requirement.new(k, Operator.EQUALS, [v]) for k, v in msg.match_labels.items()]
    for expr in msg.match_expressions:
        op = _LABEL_SELECTOR_OPS.get(expr.operator)
        if op is None:
            raise ValueError(f'"{expr.operator}" is not a valid label selector operator')
        reqs.append(Requirement.new(expr.key, op, list(expr.values)))
    return Selector(tuple(sorted(reqs, key=lambda r: r.key)))


def validate_label_selector(msg: v1.LabelSelector, path: FieldPath) -> list[FieldError]:
    """metav1validation.ValidateLabelSelector."""
    errs = validate_labels(dict(msg.match_labels), path.child("matchLabels"))
    for i, expr in enumerate(msg.match_expressions):
        p = path.child("matchExpressions").index(i)
        if expr.operator in ("In", "NotIn"):
            if not expr.values:
                errs.append(
                    p.child("values").required(
                        "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif expr.operator in ("Exists", "DoesNotExist"):
            if expr.values:
                errs.append(
                    p.child("values").forbidden(
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                )
        else:
            errs.append(p.child("operator").invalid(expr.operator, "not a valid selector operator"))
        errs.extend(validate_label_name(expr.key, p.child("key")))
        for j, val in enumerate(expr.values):
            errs.extend(
                p.child("values").index(j).invalid(val, m) for m in is_valid_label_value(val)
            )
    return errs
