"""Reading manifest files the way kubectl does: multi-document YAML or JSON, Lists expanded.

YAML semantics are PyYAML's ``safe_load`` (YAML 1.1, as Go's yaml.v2 behind kubectl), so
unquoted ``yes``/``no``/``on``/``off`` are booleans and ``0644`` is octal; the converter then
rejects a boolean or number given for a string field, as kubectl does ("cannot unmarshal
bool into ... of type string") -- quote such values. Differences from plain ``safe_load``,
each to match what Kubernetes reads:

- timestamps stay strings (yaml.v2 keeps ``2024-01-01T00:00:00Z`` a string when decoding
  into untyped data), so ``creationTimestamp`` is not a ``datetime``;
- no base-60 numbers: ``1:30`` is the string "1:30", not 90;
- ``=`` is a plain string, not YAML 1.1's value key;
- a mapping that repeats a key is an error, as in kubectl, not a silent "last one wins".
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from kubelite.api.errors import KubeliteError

__all__ = ["MANIFEST_EXTENSIONS", "ManifestError", "load_documents", "load_paths"]

MANIFEST_EXTENSIONS = (".yaml", ".yml", ".json")
"""Files picked up from a directory; a file named explicitly is read whatever its name."""

STDIN_SOURCE = "STDIN"
"""How errors name standard input ("-"), as kubectl does."""


class ManifestError(KubeliteError):
    """A manifest source could not be read or parsed."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        verb: str = "parsing",
    ) -> None:
        self.source = source
        self.line = line
        """1-based line of the problem, when known."""
        self.column = column
        """1-based column of the problem, when known."""
        self.message = message if line is None else f"line {line}, column {column}: {message}"
        self.verb = verb
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"error {self.verb} {self.source}: {self.message}"


# ---------------------------------------------------------------------------- YAML loader

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.VERBOSE,
)
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)
_REPLACED = {"tag:yaml.org,2002:int": _INT, "tag:yaml.org,2002:float": _FLOAT}
_DROPPED = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """safe_load with the differences listed in the module docstring."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            first = seen.setdefault(key, key_node)
            if first is not key_node:
                line, column = first.start_mark.line + 1, first.start_mark.column + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"mapping key {key!r} already defined at line {line}, column {column}",
                    key_node.start_mark,
                )
        result: dict[Any, Any] = super().construct_mapping(node, deep)
        return result


_Loader.yaml_implicit_resolvers = {
    first: [(tag, _REPLACED.get(tag, regexp)) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


# ---------------------------------------------------------------------------- documents


def load_documents(text: str, source: str) -> list[dict[str, Any]]:
    """The objects in a YAML or JSON text, empty documents skipped, Lists expanded.

    Raises ManifestError naming ``source`` and the line/column for text that does not parse
    or a document that is not a mapping.
    """
    out: list[dict[str, Any]] = []
    for number, (data, line, column) in enumerate(_documents(text, source), start=1):
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ManifestError(
                source,
                f"document {number} is {_describe(data)}, not a mapping"
                " (an object with apiVersion and kind)",
                line=line,
                column=column,
            )
        _expand(data, source, out, line, column)
    return out


def _expand(
    data: dict[str, Any], source: str, out: list[dict[str, Any]], line: int, column: int
) -> None:
    # kubectl flattens any list object (kind: List, PodList...) that carries items.
    kind = data.get("kind")
    items = data.get("items")
    if not (isinstance(kind, str) and kind.endswith("List") and "items" in data):
        out.append(data)
        return
    if items is None:
        return
    if not isinstance(items, list):
        raise ManifestError(
            source,
            f"items of a {kind} must be a list, not {_describe(items)}",
            line=line,
            column=column,
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ManifestError(
                source,
                f"items[{i}] of a {kind} is {_describe(item)}, not a mapping",
                line=line,
                column=column,
            )
        _expand(item, source, out, line, column)


def _documents(text: str, source: str) -> Iterator[tuple[Any, int, int]]:
    """(data, line, column) per document; JSON first when the text looks like JSON."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            yield from _json_documents(text)
            return
        except json.JSONDecodeError as json_error:
            # Flow-style YAML also starts with a brace; only fall back if YAML reads it.
            try:
                docs = list(_yaml_documents(text, source))
            except ManifestError:
                raise ManifestError(
                    source, json_error.msg, line=json_error.lineno, column=json_error.colno
                ) from None
            yield from docs
            return
    yield from _yaml_documents(text, source)


def _json_documents(text: str) -> Iterator[tuple[Any, int, int]]:
    # A stream of concatenated JSON values, as kubectl's YAMLOrJSONDecoder accepts.
    decoder = json.JSONDecoder()
    docs: list[tuple[Any, int, int]] = []
    pos = 0
    ws = re.compile(r"\s*")
    end = ws.match(text, pos)
    pos = end.end() if end else pos
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        value, pos = decoder.raw_decode(text, pos)
        docs.append((value, line, column))
        end = ws.match(text, pos)
        pos = end.end() if end else pos
    yield from docs


def _yaml_documents(text: str, source: str) -> Iterator[tuple[Any, int, int]]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            mark = node.start_mark
            yield loader.construct_document(node), mark.line + 1, mark.column + 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if mark is None:
            raise ManifestError(source, problem) from exc
        raise ManifestError(source, problem, line=mark.line + 1, column=mark.column + 1) from exc
    except yaml.YAMLError as exc:
        raise ManifestError(source, str(exc)) from exc
    finally:
        loader.dispose()


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------- paths


def load_paths(paths: Sequence[str], recursive: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """(source, object) for every object in files, directories and "-" (stdin), in order.

    A directory contributes its *.yaml, *.yml and *.json files sorted by name (and, with
    ``recursive``, its subdirectories' in the same walk order as kubectl's ``-R``).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        if path == "-":
            text = sys.stdin.read()
            out.extend((STDIN_SOURCE, doc) for doc in load_documents(text, STDIN_SOURCE))
            continue
        for file in _files(path, recursive):
            out.extend((file, doc) for doc in load_documents(_read(file), file))
    return out


def _files(path: str, recursive: bool) -> list[str]:
    if os.path.isdir(path):
        return _walk(path, recursive)
    if not os.path.exists(path):
        raise ManifestError(path, "the path does not exist", verb="reading")
    return [path]


def _walk(directory: str, recursive: bool) -> list[str]:
    found: list[str] = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ManifestError(directory, exc.strerror or str(exc), verb="reading") from exc
    for name in names:
        full = os.path.join(directory, name)
        if os.path.isdir(full):
            if recursive:
                found.extend(_walk(full, recursive))
        elif name.endswith(MANIFEST_EXTENSIONS):
            found.append(full)
    return found


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ManifestError(path, exc.strerror or str(exc), verb="reading") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
