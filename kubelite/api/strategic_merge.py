"""Strategic merge patch: Kubernetes' patch for its built-in kinds, and apply's three-way patch.

A JSON merge patch (RFC 7386) replaces a list whole, so a patch naming one container's image
drops every other field of that container and every other container. A strategic merge patch
knows which lists hold elements with an identity (containers by ``name``, container ports by
``containerPort``) and merges those element by element; lists of values marked for merging
(``finalizers``) merge as sets; every other list is replaced, as in a merge patch.

Upstream keeps that knowledge in struct tags of k8s.io/api (``patchStrategy:"merge"
patchMergeKey:"name"``). Here it is one table, ``PATCH_STRATEGIES``, keyed by message type
and JSON field name, so a field merges alike wherever its type appears: a Pod's spec, a
Deployment's template, a CronJob's job template. The walk follows the protobuf descriptors.

Directives, as k8s.io/apimachinery/pkg/util/strategicpatch reads them:

- ``{"$patch": "replace", ...}`` in an object: the object becomes the rest of the patch;
  ``{"$patch": "delete"}``: the object is emptied.
- ``{"name": "x", "$patch": "delete"}`` in a merged list: removes the element named x;
  a ``{"$patch": "replace"}`` element: the list becomes the patch's other elements.
- ``"$retainKeys": [...]`` in an object: fields it does not list are cleared.
- ``"$deleteFromPrimitiveList/<field>": [...]``: removes those values from a merged list of
  values.
- ``"$setElementOrder/<field>": [...]``: the order of a merged list (its merge keys, or its
  values); elements the live object has and the list does not keep their places.

Order of a merged list follows upstream: the elements the patch names in the patch's order,
the others in the live object's order, and an element new to the list goes before the
live elements that the patch does not name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kubelite.api.errors import BadRequest

__all__ = [
    "MAX_DEPTH",
    "PATCH_STRATEGIES",
    "FieldStrategy",
    "PatchError",
    "apply_patch",
    "check_depth",
    "three_way_patch",
]

MAX_DEPTH = 100
"""The deepest nesting of objects and lists a patch or manifest may have. The deepest real
object (a CronJob's pod affinity terms) nests about 16 levels; the bound keeps the recursive
merges far from Python's recursion limit."""

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
SET_ELEMENT_ORDER = "$setElementOrder/"


class PatchError(BadRequest):
    """A strategic merge patch that cannot be applied as written; names the field and rule."""


@dataclass(frozen=True)
class FieldStrategy:
    """How a strategic merge patch treats one field (upstream's patchStrategy tags)."""

    merge: bool = False
    """A list merged element by element (or as a set, for values) instead of replaced."""
    merge_key: str = ""
    """For a merged list of objects, the field that identifies an element."""
    retain_keys: bool = False
    """The object (a merged list's elements) takes ``$retainKeys``; apply sends it."""


_VALUES = FieldStrategy(merge=True)


def _by(key: str, *, retain_keys: bool = False) -> FieldStrategy:
    return FieldStrategy(merge=True, merge_key=key, retain_keys=retain_keys)


PATCH_STRATEGIES: dict[tuple[str, str], FieldStrategy] = {
    # (message type, JSON field name): the tags of the same field in k8s.io/api.
    ("ObjectMeta", "ownerReferences"): _by("uid"),
    ("ObjectMeta", "finalizers"): _VALUES,
    ("PodSpec", "volumes"): _by("name", retain_keys=True),
    ("PodSpec", "initContainers"): _by("name"),
    ("PodSpec", "containers"): _by("name"),
    ("PodSpec", "imagePullSecrets"): _by("name"),
    ("PodSpec", "hostAliases"): _by("ip"),
    ("PodSpec", "topologySpreadConstraints"): _by("topologyKey"),
    # PodSpec.tolerations and readinessGates have no strategy upstream: replaced whole.
    ("Container", "ports"): _by("containerPort"),
    ("Container", "env"): _by("name"),
    ("Container", "volumeMounts"): _by("mountPath"),
    ("PodStatus", "conditions"): _by("type"),
    ("PodStatus", "podIPs"): _by("ip"),
    ("NodeSpec", "podCIDRs"): _VALUES,
    ("NodeStatus", "conditions"): _by("type"),
    ("NodeStatus", "addresses"): _by("type"),
    ("NamespaceStatus", "conditions"): _by("type"),
    ("ServiceSpec", "ports"): _by("port"),
    ("ServiceStatus", "conditions"): _by("type"),
    ("DeploymentSpec", "strategy"): FieldStrategy(retain_keys=True),
    ("DeploymentStatus", "conditions"): _by("type"),
    ("ReplicaSetStatus", "conditions"): _by("type"),
    ("DaemonSetStatus", "conditions"): _by("type"),
    ("StatefulSetStatus", "conditions"): _by("type"),
    ("JobStatus", "conditions"): _by("type"),
}

_Schema = Descriptor | None
_FIELDS: dict[str, dict[str, FieldDescriptor]] = {}
_MISSING: Any = object()


def _child(schema: _Schema, key: str) -> tuple[FieldStrategy | None, _Schema]:
    """The strategy of ``key`` in an object of type ``schema`` and the type of its value."""
    if schema is None:
        return None, None
    fields = _FIELDS.get(schema.full_name)
    if fields is None:
        fields = {f.json_name: f for f in schema.fields}
        _FIELDS[schema.full_name] = fields
    field = fields.get(key)
    if field is None:
        return None, None
    element = field.message_type
    if element is not None and element.GetOptions().map_entry:
        element = None  # maps hold strings here: merged as plain objects
    return PATCH_STRATEGIES.get((schema.name, key)), element


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return path or "the object"


def _too_deep(what: str) -> str:
    return f"{what} nests objects and lists more than {MAX_DEPTH} levels deep"


def check_depth(value: Any, what: str = "the patch") -> None:
    """Refuses a document nested deeper than ``MAX_DEPTH``, without recursing itself."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if level > MAX_DEPTH:
            raise PatchError(_too_deep(what))
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))


def _check_level(depth: int, path: str) -> None:
    if depth > MAX_DEPTH:
        raise PatchError(f"{_where(path)}: {_too_deep('the patch')}")


def _identity(value: Any) -> Hashable:
    """What makes two JSON values the same element (1 and 1.0 are; 1 and true are not)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return ("n", int(value) if value.is_integer() else value)
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True))


def _key_of(merge_key: str) -> Callable[[Any], Hashable]:
    """The identity of a list element: its value, or its merge key's value (an element
    without one is like no other)."""
    if not merge_key:
        return _identity

    def key_of(element: Any) -> Hashable:
        if isinstance(element, dict) and merge_key in element:
            return _identity(element[merge_key])
        return ("no merge key", id(element))

    return key_of


# ---------------------------------------------------------------------------- apply


def _schema(message: type[Message]) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)


def apply_patch(
    original: Mapping[str, Any], patch: Mapping[str, Any], message: type[Message]
) -> dict[str, Any]:
    """``original`` (a Kubernetes-shaped object of type ``message``) with ``patch`` applied.

    Pure: neither input is changed and the result shares nothing with them. A patch that
    cannot be applied raises ``PatchError`` (a BadRequest) naming the field and the rule.
    """
    check_depth(patch)
    return _merge_map(copy.deepcopy(dict(original)), copy.deepcopy(dict(patch)),
                      _schema(message), "", 1)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: _Schema, path: str,
               depth: int) -> dict[str, Any]:
    """Merges ``patch`` into ``original``; both are private copies and may be changed."""
    _check_level(depth, path)
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch, schema, path, depth)
        if directive == "delete":
            return {}
        raise PatchError(
            f"{_where(path)}: unsupported $patch directive {json.dumps(directive)}: supported"
            ' values: "replace", "delete"'
        )
    if RETAIN_KEYS in patch:
        _retain_keys(original, patch, path)
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        _set_element_order(original, patch, key, schema, path, depth)
    for key in [k for k in patch if k.startswith(DELETE_FROM_PRIMITIVE_LIST)]:
        _delete_from_primitive_list(original, key, patch.pop(key), schema, path)
    for key, value in patch.items():
        if key.startswith("$"):
            raise PatchError(
                f"{_where(path)}: unknown directive {json.dumps(key)}: strategic merge patch"
                " knows $patch, $retainKeys, $deleteFromPrimitiveList/<field> and"
                " $setElementOrder/<field>"
            )
        if value is None:
            original.pop(key, None)
            continue
        strategy, child = _child(schema, key)
        here = _join(path, key)
        current = original.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            original[key] = _merge_map(current, value, child, here, depth + 1)
        elif isinstance(value, list) and isinstance(current, list):
            original[key] = _merge_list(current, value, strategy, child, here, depth + 1)
        else:
            original[key] = _fresh(value, strategy, child, here, depth + 1)
    return original


def _fresh(value: Any, strategy: FieldStrategy | None, schema: _Schema, path: str,
           depth: int) -> Any:
    """A patch value for a field the object lacks: merged into nothing, directives resolved."""
    if isinstance(value, dict):
        return _merge_map({}, value, schema, path, depth)
    if isinstance(value, list):
        return _merge_list([], value, strategy, schema, path, depth)
    return value


def _merge_list(original: list[Any], patch: list[Any], strategy: FieldStrategy | None,
                schema: _Schema, path: str, depth: int) -> list[Any]:
    _check_level(depth, path)
    if strategy is None or not strategy.merge:
        return patch
    if not strategy.merge_key:
        return _merge_values(original, patch, path)
    return _merge_objects(original, patch, strategy.merge_key, schema, path, depth)


def _merge_values(original: list[Any], patch: list[Any], path: str) -> list[Any]:
    for i, value in enumerate(patch):
        if isinstance(value, dict | list):
            raise PatchError(
                f"{path}[{i}]: Invalid value: this list merges as a set of values (strings,"
                " numbers), so its elements cannot be objects or lists"
            )
    merged: list[Any] = []
    seen: set[Hashable] = set()
    for value in [*original, *patch]:
        if _identity(value) not in seen:
            seen.add(_identity(value))
            merged.append(value)
    return _normalize_order(merged, patch, original, _identity)


def _merge_objects(original: list[Any], patch: list[Any], merge_key: str, schema: _Schema,
                   path: str, depth: int) -> list[Any]:
    key_of = _key_of(merge_key)
    replace = False
    elements: list[tuple[str, dict[str, Any]]] = []
    for i, element in enumerate(patch):
        here = f"{path}[{i}]"
        if not isinstance(element, dict):
            raise PatchError(
                f"{here}: Invalid value: {json.dumps(element)}: the elements of this list must"
                f' be objects (merged by their merge key "{merge_key}")'
            )
        directive = element.get(DIRECTIVE, _MISSING)
        if directive is _MISSING:
            if merge_key not in element:
                raise PatchError(f'{here}: the element has no merge key "{merge_key}": the'
                                 f' elements of this list are merged by "{merge_key}"')
            elements.append((here, element))
        elif directive == "delete":
            if merge_key not in element:
                raise PatchError(f'{here}: "$patch": "delete" needs the merge key'
                                 f' "{merge_key}" of the element to delete')
            gone = key_of(element)
            original = [o for o in original if key_of(o) != gone]
        elif directive == "replace":
            replace = True
        else:
            raise PatchError(
                f"{here}: unsupported $patch directive {json.dumps(directive)} in a list:"
                ' supported values: "delete", "replace"'
            )
    if replace:
        return [_merge_map({}, e, schema, here, depth + 1) for here, e in elements]
    server = list(original)
    merged = list(original)
    for here, element in elements:
        wanted = key_of(element)
        at = next((j for j, o in enumerate(merged) if key_of(o) == wanted), None)
        if at is None:
            merged.append(_merge_map({}, element, schema, here, depth + 1))
        else:
            merged[at] = _merge_map(merged[at], element, schema, here, depth + 1)
    return _normalize_order(merged, [e for _, e in elements], server, key_of)


def _normalize_order(merged: list[Any], patch: list[Any], server: list[Any],
                     key_of: Callable[[Any], Hashable]) -> list[Any]:
    """Upstream's element order: patch elements in patch order, the rest in server order."""
    in_patch = _first_positions(patch, key_of)
    named = sorted((e for e in merged if key_of(e) in in_patch), key=lambda e: in_patch[key_of(e)])
    others = [e for e in merged if key_of(e) not in in_patch]
    return _interleave(others, named, _first_positions(server, key_of), key_of)


def _first_positions(elements: list[Any], key_of: Callable[[Any], Hashable]) -> dict[Hashable, int]:
    positions: dict[Hashable, int] = {}
    for i, element in enumerate(elements):
        positions.setdefault(key_of(element), i)
    return positions


def _interleave(server_only: list[Any], named: list[Any], server: dict[Hashable, int],
                key_of: Callable[[Any], Hashable]) -> list[Any]:
    """Merges two ordered lists: a server-only element goes first only when the live object
    has it before the next named element (so a new element goes before the rest)."""
    result: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(named):
        if j >= len(named):
            result.append(server_only[i])
            i += 1
        elif i >= len(server_only):
            result.append(named[j])
            j += 1
        else:
            left = server.get(key_of(server_only[i]))
            right = server.get(key_of(named[j]))
            if left is not None and right is not None and left < right:
                result.append(server_only[i])
                i += 1
            else:
                result.append(named[j])
                j += 1
    return result


def _merged_list_strategy(schema: _Schema, path: str, directive: str,
                          field: str) -> tuple[FieldStrategy, _Schema]:
    strategy, child = _child(schema, field)
    if not field or strategy is None or not strategy.merge:
        raise PatchError(
            f"{_where(path)}: {directive}: {json.dumps(field)} is not a list that strategic"
            " merge patch merges"
        )
    return strategy, child


def _delete_from_primitive_list(original: dict[str, Any], key: str, values: Any,
                                schema: _Schema, path: str) -> None:
    field = key[len(DELETE_FROM_PRIMITIVE_LIST):]
    strategy, _ = _merged_list_strategy(schema, path, key, field)
    if strategy.merge_key:
        raise PatchError(f"{_where(path)}: {key}: {json.dumps(field)} is a list of objects;"
                         ' delete its elements with "$patch": "delete"')
    if not isinstance(values, list):
        raise PatchError(f"{_where(path)}: {key}: must be a list of the values to delete")
    current = original.get(field)
    if isinstance(current, list):
        gone = {_identity(v) for v in values}
        original[field] = [v for v in current if _identity(v) not in gone]


def _retain_keys(original: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    keys = patch.pop(RETAIN_KEYS)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PatchError(f"{_where(path)}: {RETAIN_KEYS} must be a list of field names")
    retained = set(keys)
    for key, value in patch.items():
        if value is not None and not key.startswith("$") and key not in retained:
            raise PatchError(
                f"{_where(path)}: {RETAIN_KEYS} does not list {json.dumps(key)}, which the"
                " patch sets: every field the patch sets must be retained"
            )
    for key in [k for k in original if k not in retained]:
        del original[key]


def _set_element_order(original: dict[str, Any], patch: dict[str, Any], key: str,
                       schema: _Schema, path: str, depth: int) -> None:
    field = key[len(SET_ELEMENT_ORDER):]
    order = patch.pop(key)
    strategy, child = _merged_list_strategy(schema, path, key, field)
    merge_key = strategy.merge_key
    key_of = _key_of(merge_key)
    if not isinstance(order, list) or any(
        (not isinstance(e, dict) or merge_key not in e) if merge_key
        else isinstance(e, dict | list)
        for e in order
    ):
        what = f'objects holding the merge key "{merge_key}"' if merge_key else "values"
        raise PatchError(f"{_where(path)}: {key} must be a list of {what}")
    positions = _first_positions(order, key_of)
    listed = list(positions)
    wanted = patch.pop(field, _MISSING)
    if wanted is not _MISSING and not isinstance(wanted, list):
        raise PatchError(f"{_join(path, field)}: must be a list when {key} is given")
    # The patch's elements (deletions aside) must appear in the order list, in its order.
    at = 0
    for element in wanted if isinstance(wanted, list) else ():
        if merge_key and (not isinstance(element, dict) or DIRECTIVE in element
                          or merge_key not in element):
            continue  # deletions; malformed elements fail in the merge with their own error
        identity = key_of(element)
        while at < len(listed) and listed[at] != identity:
            at += 1
        if at == len(listed):
            shown = element.get(merge_key) if merge_key and isinstance(element, dict) \
                else element
            raise PatchError(
                f"{_where(path)}: {key} does not list the element {json.dumps(shown)} of"
                f" {field}, or lists it in another order than the patch"
            )
    current = original.get(field)
    server = current if isinstance(current, list) else []
    here = _join(path, field)
    if wanted is _MISSING:
        if not isinstance(current, list):
            return
        merged = list(current)
    else:
        merged = _merge_list(list(server), wanted, strategy, child, here, depth + 1)
    named = sorted((e for e in merged if key_of(e) in positions),
                   key=lambda e: positions[key_of(e)])
    others = [e for e in merged if key_of(e) not in positions]
    original[field] = _interleave(others, named, _first_positions(server, key_of), key_of)


# ---------------------------------------------------------------------------- three-way


def three_way_patch(original: Mapping[str, Any], modified: Mapping[str, Any],
                    current: Mapping[str, Any], message: type[Message]) -> dict[str, Any]:
    """The strategic merge patch that ``kubectl apply`` sends (CreateThreeWayMergePatch).

    ``original`` is the last applied manifest, ``modified`` the new one, ``current`` the live
    object. The patch sets what ``modified`` has and the live object lacks or has otherwise,
    deletes what the last applied manifest had and ``modified`` dropped, and leaves the rest
    of the live object alone: status, defaults, fields and list elements of other writers.
    Merged lists are diffed by merge key; a list whose merge keys repeat in ``modified`` (two
    ports 53, TCP and UDP) is sent whole with ``$patch: replace``.
    """
    for what, doc in (("the last applied configuration", original),
                      ("the manifest", modified), ("the live object", current)):
        check_depth(doc, what)
    return _diff_map(original, modified, current, _schema(message), "", 1, retain_keys=False)


def _diff_map(original: Mapping[str, Any], modified: Mapping[str, Any],
              current: Mapping[str, Any], schema: _Schema, path: str, depth: int, *,
              retain_keys: bool) -> dict[str, Any]:
    _check_level(depth, path)
    patch: dict[str, Any] = {}
    for key, want in modified.items():
        live = current.get(key)
        if want is None:
            if live is not None:
                patch[key] = None
            continue
        before = original.get(key)
        strategy, child = _child(schema, key)
        here = _join(path, key)
        if isinstance(want, dict) and isinstance(live, dict):
            sub = _diff_map(
                before if isinstance(before, dict) else {}, want, live, child, here, depth + 1,
                retain_keys=strategy is not None and strategy.retain_keys and not strategy.merge,
            )
            if sub:
                patch[key] = sub
        elif (isinstance(want, list) and isinstance(live, list) and strategy is not None
              and strategy.merge):
            patch.update(_diff_list(key, before if isinstance(before, list) else [], want, live,
                                    strategy, child, here, depth + 1))
        elif want != live or type(want) is not type(live):
            patch[key] = copy.deepcopy(want)
    for key in original:
        if key not in modified and current.get(key) is not None:
            patch[key] = None
    others = any(v is not None and k not in modified for k, v in current.items())
    if retain_keys and (patch or others):
        patch[RETAIN_KEYS] = sorted(k for k, v in modified.items() if v is not None)
    return patch


def _diff_list(key: str, original: list[Any], modified: list[Any], current: list[Any],
               strategy: FieldStrategy, schema: _Schema, path: str,
               depth: int) -> dict[str, Any]:
    """The patch entries (the list, its deletions, its order) taking ``current`` to
    ``modified`` for a merged list."""
    _check_level(depth, path)
    merge_key = strategy.merge_key
    if not merge_key:
        return _diff_values(key, original, modified, current)
    key_of = _key_of(merge_key)
    for i, element in enumerate(modified):
        if not isinstance(element, dict) or merge_key not in element:
            raise PatchError(f'{path}[{i}]: the element has no merge key "{merge_key}": the'
                             f' elements of this list are merged by "{merge_key}"')
    wanted = [key_of(e) for e in modified]
    live = [key_of(e) for e in current]
    if len(set(wanted)) < len(wanted) or len(set(live)) < len(live):
        # Merge keys that repeat cannot say which element is which: send the list whole.
        if modified == current:
            return {}
        return {key: [*copy.deepcopy(modified), {DIRECTIVE: "replace"}]}
    live_by = dict(zip(live, current, strict=True))
    before_by = {key_of(e): e for e in original if isinstance(e, dict)}
    items: list[Any] = []
    for i, element in enumerate(modified):
        identity = key_of(element)
        live_element = live_by.get(identity)
        if live_element is None:
            items.append(copy.deepcopy(element))
            continue
        before = before_by.get(identity)
        sub = _diff_map(before if isinstance(before, dict) else {}, element, live_element,
                        schema, f"{path}[{i}]", depth + 1, retain_keys=strategy.retain_keys)
        if sub:
            sub[merge_key] = element[merge_key]
            items.append(sub)
    kept = set(wanted)
    for identity, element in before_by.items():
        if identity not in kept and identity in live_by:
            items.append({merge_key: element[merge_key], DIRECTIVE: "delete"})
    patch: dict[str, Any] = {}
    if items:
        patch[key] = items
    if items or [k for k in live if k in kept] != wanted:
        patch[SET_ELEMENT_ORDER + key] = [{merge_key: e[merge_key]} for e in modified]
    return patch


def _diff_values(key: str, original: list[Any], modified: list[Any],
                 current: list[Any]) -> dict[str, Any]:
    live = {_identity(v) for v in current}
    wanted = {_identity(v) for v in modified}
    additions: list[Any] = []
    for value in modified:
        if _identity(value) not in live and value not in additions:
            additions.append(copy.deepcopy(value))
    deletions = [copy.deepcopy(v) for v in original
                 if _identity(v) not in wanted and _identity(v) in live]
    patch: dict[str, Any] = {}
    if additions:
        patch[key] = additions
    if deletions:
        patch[DELETE_FROM_PRIMITIVE_LIST + key] = deletions
    live_order = [k for k in dict.fromkeys(_identity(v) for v in current) if k in wanted]
    if additions or deletions or live_order != list(dict.fromkeys(
            _identity(v) for v in modified)):
        patch[SET_ELEMENT_ORDER + key] = copy.deepcopy(modified)
    return patch
