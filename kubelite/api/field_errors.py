"""Field-level validation errors, shaped like Kubernetes' ``field.Error``.

An error names the field by its JSON path (``spec.containers[0].ports[1].containerPort``),
the rule that failed (its type and detail) and the offending value, and renders as Kubernetes
renders it: ``spec.replicas: Invalid value: -1: must be greater than or equal to 0``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any


class ErrorType(enum.Enum):
    REQUIRED = "Required value"
    INVALID = "Invalid value"
    NOT_SUPPORTED = "Unsupported value"
    DUPLICATE = "Duplicate value"
    FORBIDDEN = "Forbidden"
    TOO_LONG = "Too long"
    TOO_MANY = "Too many"
    NOT_FOUND = "Not found"
    TYPE_INVALID = "Invalid type"
    UNKNOWN_FIELD = "Unknown field"


_NO_VALUE: Any = object()


@dataclass(frozen=True)
class FieldError:
    """One failed rule on one field."""

    type: ErrorType
    field: str
    """JSON path of the field, e.g. ``metadata.labels[app]`` or ``spec.template.spec``."""
    detail: str = ""
    """What the rule requires, in Kubernetes' wording where it has one."""
    value: Any = _NO_VALUE
    """The rejected value; omitted from the message for Required/Forbidden/Unknown."""

    def __str__(self) -> str:
        text = f"{self.field}: {self.type.value}"
        if self.value is not _NO_VALUE and self.type not in (
            ErrorType.REQUIRED,
            ErrorType.FORBIDDEN,
            ErrorType.TOO_LONG,
            ErrorType.UNKNOWN_FIELD,
        ):
            text += f": {_render_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def to_json(self) -> dict[str, str]:
        # As Kubernetes' StatusCause: the field apart, the message without it (clients
        # print "field: message").
        text = str(self)
        message = text.removeprefix(f"{self.field}: ") if self.field else text
        return {"reason": _REASONS[self.type], "field": self.field, "message": message}


_REASONS = {
    ErrorType.REQUIRED: "FieldValueRequired",
    ErrorType.INVALID: "FieldValueInvalid",
    ErrorType.NOT_SUPPORTED: "FieldValueNotSupported",
    ErrorType.DUPLICATE: "FieldValueDuplicate",
    ErrorType.FORBIDDEN: "FieldValueForbidden",
    ErrorType.TOO_LONG: "FieldValueTooLong",
    ErrorType.TOO_MANY: "FieldValueTooMany",
    ErrorType.NOT_FOUND: "FieldValueNotFound",
    ErrorType.TYPE_INVALID: "FieldValueTypeInvalid",
    ErrorType.UNKNOWN_FIELD: "FieldValueUnknown",
}


def _render_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


class FieldPath:
    """Builds JSON paths: ``FieldPath("spec").child("containers").index(0).key("cpu")``."""

    __slots__ = ("_path",)

    def __init__(self, path: str = "") -> None:
        self._path = path

    def child(self, *names: str) -> FieldPath:
        path = self._path
        for name in names:
            path = f"{path}.{name}" if path else name
        return FieldPath(path)

    def index(self, i: int) -> FieldPath:
        return FieldPath(f"{self._path}[{i}]")

    def key(self, k: str) -> FieldPath:
        return FieldPath(f"{self._path}[{k}]")

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"FieldPath({self._path!r})"

    # Constructors for each error type, so call sites read like Kubernetes' validation code.
    def required(self, detail: str = "") -> FieldError:
        return FieldError(ErrorType.REQUIRED, self._path, detail)

    def invalid(self, value: Any, detail: str) -> FieldError:
        return FieldError(ErrorType.INVALID, self._path, detail, value)

    def not_supported(self, value: Any, supported: list[str]) -> FieldError:
        detail = "supported values: " + ", ".join(json.dumps(s) for s in supported)
        return FieldError(ErrorType.NOT_SUPPORTED, self._path, detail, value)

    def duplicate(self, value: Any) -> FieldError:
        return FieldError(ErrorType.DUPLICATE, self._path, "", value)

    def forbidden(self, detail: str) -> FieldError:
        return FieldError(ErrorType.FORBIDDEN, self._path, detail)

    def too_long(self, value: Any, max_length: int) -> FieldError:
        detail = f"may not be more than {max_length} bytes"
        return FieldError(ErrorType.TOO_LONG, self._path, detail, value)

    def not_found(self, value: Any, detail: str = "") -> FieldError:
        return FieldError(ErrorType.NOT_FOUND, self._path, detail, value)

    def type_invalid(self, value: Any, detail: str) -> FieldError:
        return FieldError(ErrorType.TYPE_INVALID, self._path, detail, value)

    def unknown(self) -> FieldError:
        return FieldError(ErrorType.UNKNOWN_FIELD, self._path, "field is not part of the schema")
