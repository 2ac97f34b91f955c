"""The API's three patch types: decoding a patch document and applying it to an object.

- strategic merge patch (``strategic``, application/strategic-merge-patch+json): kubectl's
  default for built-in kinds; lists such as containers merge by their merge key
  (kubelite.api.strategic_merge);
- JSON merge patch (``merge``, application/merge-patch+json, RFC 7386): objects merge, null
  deletes, lists are replaced whole;
- JSON patch (``json``, application/json-patch+json, RFC 6902): a list of operations (add,
  remove, replace, move, copy, test) applied in order.

A patch that is malformed (not JSON, the wrong shape, an unknown directive or operation) is a
BadRequest; a JSON patch whose operations do not apply to the object (a failed ``test``, a
missing path) is Invalid (422), as in Kubernetes. Documents nested deeper than
``strategic_merge.MAX_DEPTH`` are refused before anything walks them.
"""

from __future__ import annotations

import copy
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer
from google.protobuf.message import Message

from kubelite.api import convert, strategic_merge
from kubelite.api.errors import BadRequest, Invalid

__all__ = ["MAX_JSON_PATCH_OPERATIONS", "Patch", "PatchType", "decode", "patch_type"]

MAX_JSON_PATCH_OPERATIONS = 10_000
"""The most operations one JSON patch may hold (Kubernetes' maxJSONPatchOperations)."""


class PatchType(enum.Enum):
    STRATEGIC = "strategic merge patch"
    MERGE = "merge patch"
    JSON = "JSON patch"


_NAMES: dict[str, PatchType] = {
    "strategic": PatchType.STRATEGIC,
    "application/strategic-merge-patch+json": PatchType.STRATEGIC,
    "merge": PatchType.MERGE,
    "application/merge-patch+json": PatchType.MERGE,
    "": PatchType.MERGE,  # what requests that predate the other types send
    "json": PatchType.JSON,
    "application/json-patch+json": PatchType.JSON,
}


def patch_type(name: str) -> PatchType:
    """The patch type a request names, by short name or media type."""
    kind = _NAMES.get(name)
    if kind is None:
        raise BadRequest(
            f"patch type {json.dumps(name)} is not supported: use \"strategic\""
            ' (application/strategic-merge-patch+json), "merge" (application/merge-patch+json)'
            ' or "json" (application/json-patch+json)'
        )
    return kind


@dataclass(frozen=True)
class Patch:
    """A decoded patch, ready to apply to any number of objects (every retry re-applies it)."""

    kind: PatchType
    document: Any
    """The patch object for the merge patches; for a JSON patch, its checked operations."""

    def apply(self, original: Mapping[str, Any], message: type[Message]) -> dict[str, Any]:
        """``original`` (Kubernetes-shaped, of type ``message``) patched; pure."""
        if self.kind is PatchType.STRATEGIC:
            return strategic_merge.apply_patch(original, self.document, message)
        if self.kind is PatchType.MERGE:
            merged: dict[str, Any] = convert.merge_patch(original, self.document)
            return merged
        return _apply_operations(original, self.document)


def decode(data: bytes, kind: PatchType) -> Patch:
    """Parses and checks a patch document of type ``kind``; raises BadRequest naming the
    problem."""
    try:
        document = json.loads(data)
    except RecursionError:
        raise BadRequest(
            f"the patch nests objects and lists more than {strategic_merge.MAX_DEPTH} levels"
            " deep"
        ) from None
    except ValueError as e:
        raise BadRequest(f"patch is not valid JSON: {e}") from None
    strategic_merge.check_depth(document)
    if kind is PatchType.JSON:
        if not isinstance(document, list):
            raise BadRequest(
                'a JSON patch must be a list of operations, such as [{"op": "replace",'
                ' "path": "/spec/replicas", "value": 3}]'
            )
        if len(document) > MAX_JSON_PATCH_OPERATIONS:
            raise BadRequest(f"the JSON patch has {len(document)} operations: at most"
                             f" {MAX_JSON_PATCH_OPERATIONS} are allowed")
        for index, op in enumerate(document):
            _operation(index, op)
        return Patch(kind, document)
    if not isinstance(document, dict):
        raise BadRequest(f"a {kind.value} must be a JSON object")
    return Patch(kind, document)


def _describe(index: int, op: Any) -> str:
    if isinstance(op, dict) and isinstance(op.get("op"), str) and isinstance(
            op.get("path"), str):
        return f"JSON patch operation {index} ({op['op']} {op['path']})"
    return f"JSON patch operation {index}"


def _operation(index: int, op: Any) -> jsonpatch.JsonPatch:
    if not isinstance(op, dict):
        raise BadRequest(f"{_describe(index, op)}: an operation must be an object with"
                         ' "op" and "path"')
    try:
        return jsonpatch.JsonPatch([op])
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise BadRequest(f"{_describe(index, op)}: {e}") from None


def _apply_operations(original: Mapping[str, Any], operations: list[Any]) -> dict[str, Any]:
    document: Any = copy.deepcopy(dict(original))
    for index, op in enumerate(operations):
        described = _describe(index, op)
        # A copy per application: the values an operation adds must not be shared with the
        # object, which later operations change, nor with the next retry's application.
        operation = _operation(index, copy.deepcopy(op))
        try:
            document = operation.apply(document, in_place=True)
        except jsonpatch.InvalidJsonPatch as e:
            raise BadRequest(f"{described}: {e}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
            raise Invalid(f"{described} does not apply: {e}") from None
    if not isinstance(document, dict):
        raise Invalid("the JSON patch turns the object into"
                      f" {type(document).__name__}: the result must be an object")
    return document
