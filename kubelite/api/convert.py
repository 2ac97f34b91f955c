"""The one converter between Kubernetes-shaped dicts (from YAML/JSON) and typed messages.

Driven by the protobuf descriptors rather than ``json_format``: that one stops at the first
problem, cannot name the field path, cannot read ``IntOrString`` as a plain int or string, and
silently turns ``3`` into ``"3"`` for a string field. Here every problem is collected and named
by its JSON path, the way Kubernetes' strict decoding reports it::

    spec.containers[0].imagee: Unknown field: field is not part of the schema
    spec.replicas: Invalid type: "three": expected integer

Decoding rules (Kubernetes' JSON decoding of its Go types):

- only JSON names (``containerPort``), never protobuf names (``container_port``);
- ``null`` is the same as an absent field;
- integers: ``bool`` is not an integer, an integral float (``3.0``) is, strings are not
  coerced; the value must fit the field's width;
- strings: numbers and booleans are rejected (``labels: {version: 1}`` fails in kubectl
  too), except Quantity fields, where Kubernetes accepts a JSON number (``cpu: 1``);
- ``IntOrString`` is a plain int or string; bytes are base64 strings;
- maps need a mapping with string keys, repeated fields a list, messages a mapping.
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from kubelite.api.errors import BadRequest, Invalid, KubeliteError
from kubelite.api.field_errors import ErrorType, FieldError, FieldPath
from kubelite.api.registry import EMBEDDED, RESOURCES, ResourceType, UnknownResource, by_kind

__all__ = [
    "QUANTITY_FIELDS",
    "UNSUPPORTED_FIELDS",
    "ConversionError",
    "from_dict",
    "merge_patch",
    "message_from_dict",
    "message_to_dict",
    "to_dict",
]

_INT_OR_STRING = "kubelite.v1.IntOrString"

QUANTITY_FIELDS: frozenset[str] = frozenset().union(
    *(r.strategy.quantity_fields for r in (*RESOURCES, *EMBEDDED)),
    {
        "kubelite.v1.ResourceRequirements.limits",
        "kubelite.v1.ResourceRequirements.requests",
        "kubelite.v1.VolumeResourceRequirements.limits",
        "kubelite.v1.VolumeResourceRequirements.requests",
        "kubelite.v1.NodeStatus.capacity",
        "kubelite.v1.NodeStatus.allocatable",
        "kubelite.v1.PersistentVolumeClaimStatus.capacity",
        "kubelite.v1.EmptyDirVolumeSource.size_limit",
        "kubelite.v1.ResourceFieldSelector.divisor",
    }
)
"""Full names of the string (or map-of-string) fields that hold Kubernetes Quantities.

The proto cannot say so, and these alone accept a YAML number (``cpu: 1``, ``memory: 0.5``),
as Kubernetes' Quantity does. Add new Quantity fields of shared messages here when they land in
the proto; a kind's own ones its strategy names."""

# Registered kinds nested in other objects (StatefulSet.volumeClaimTemplates) may carry their
# own apiVersion/kind, as Kubernetes' embedded types do; they are checked, then implied.
_NESTED_TYPE_META: dict[str, ResourceType] = {
    r.message.DESCRIPTOR.full_name: r for r in (*RESOURCES, *EMBEDDED)
}

_SUPPORTED_VOLUME_TYPES = "hostPath, emptyDir, configMap, secret, downwardAPI, projected"
_UNSUPPORTED_VOLUME_TYPES = (
    "ephemeral", "csi", "nfs", "iscsi", "fc", "rbd", "cephfs", "glusterfs",
    "cinder", "flexVolume", "flocker", "gitRepo", "gcePersistentDisk", "awsElasticBlockStore",
    "azureDisk", "azureFile", "vsphereVolume", "quobyte", "photonPersistentDisk",
    "portworxVolume", "scaleIO", "storageos", "image",
)

UNSUPPORTED_FIELDS: dict[str, dict[str, str]] = {
    **{name: dict(table) for r in (*RESOURCES, *EMBEDDED)
       for name, table in r.strategy.unsupported_fields.items()},
    "kubelite.v1.Volume": {
        name: f"{name} volumes are not supported (supported volume types:"
              f" {_SUPPORTED_VOLUME_TYPES})"
        for name in _UNSUPPORTED_VOLUME_TYPES
    },
    "kubelite.v1.PodSpec": {
        name: f"{name} is not supported"
        for name in ("ephemeralContainers", "runtimeClassName", "overhead", "os",
                     "hostUsers", "setHostnameAsFQDN", "schedulingGates", "resourceClaims",
                     "resources")
    },
    "kubelite.v1.Container": {
        name: f"{name} is not supported" for name in ("volumeDevices", "resizePolicy")
    },
}
"""Fields Kubernetes has that kubelite does not serve, by message full name and JSON name.

A manifest using one gets ``Unsupported value`` saying so, rather than ``Unknown field``, which
would suggest a typo; a ``null`` value is absent, as for any field. A kind's own messages have
theirs in its strategy."""

_INT_RANGES: dict[int, tuple[int, int, str]] = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1, "a 32-bit integer"),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1, "a 64-bit integer"),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1, "an unsigned 32-bit integer"),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1, "an unsigned 64-bit integer"),
}


class ConversionError(KubeliteError):
    """A manifest does not fit its kind's schema; ``errors`` lists every problem found."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        super().__init__(self.message)

    @property
    def message(self) -> str:
        # Same rendering as Invalid: one error inline, several in brackets.
        return Invalid.from_field_errors(self.kind or "object", self.name, self.errors).message

    def __str__(self) -> str:
        return self.message

    def to_api_error(self) -> BadRequest:
        """Kubernetes answers an undecodable body with 400 BadRequest, causes per field."""
        return BadRequest(self.message, [e.to_json() for e in self.errors])


# ---------------------------------------------------------------------------- dict -> message


def from_dict(
    data: Mapping[str, Any], *, path: FieldPath | None = None
) -> tuple[ResourceType, Message]:
    """The resource type and filled message for a manifest; raises ConversionError."""
    root = path or FieldPath()
    if not isinstance(data, Mapping):
        raise ConversionError("", "", [_type_error(root, data, "object")])
    errors: list[FieldError] = []
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    name = _manifest_name(data)
    for key, value in (("apiVersion", api_version), ("kind", kind)):
        if value is None or value == "":
            errors.append(root.child(key).required())
        elif not isinstance(value, str):
            errors.append(_type_error(root.child(key), value, "string"))
    if errors:
        raise ConversionError(kind if isinstance(kind, str) else "", name, errors)
    assert isinstance(kind, str) and isinstance(api_version, str)
    try:
        rtype = by_kind(kind)
    except UnknownResource as exc:
        raise ConversionError(kind, name, [root.child("kind").invalid(kind, str(exc))]) from None
    try:
        by_kind(kind, api_version)
    except UnknownResource as exc:
        detail = str(exc)
        raise ConversionError(
            kind, name, [root.child("apiVersion").invalid(api_version, detail)]
        ) from None
    msg = rtype.new()
    body = {k: v for k, v in data.items() if k not in ("apiVersion", "kind")}
    _fill(msg, body, root, errors)
    if errors:
        raise ConversionError(kind, name, errors)
    return rtype, msg


def message_from_dict(
    message_type: type[Message], data: Any, path: FieldPath | None = None
) -> Message:
    """A bare message (no apiVersion/kind) from its JSON-shaped dict; raises ConversionError."""
    root = path or FieldPath()
    msg = message_type()
    errors: list[FieldError] = []
    if not isinstance(data, Mapping):
        errors.append(_type_error(root, data, "object"))
    else:
        _fill(msg, data, root, errors)
    if errors:
        name = _manifest_name(data) if isinstance(data, Mapping) else ""
        raise ConversionError(_descriptor(msg).name, name, errors)
    return msg


def _manifest_name(data: Mapping[str, Any]) -> str:
    meta = data.get("metadata")
    if isinstance(meta, Mapping):
        name = meta.get("name") or meta.get("generateName")
        if isinstance(name, str):
            return name
    return ""


def _fill(msg: Message, data: Mapping[str, Any], path: FieldPath, errors: list[FieldError]) -> None:
    plan = _plan(_descriptor(msg))
    for key, value in data.items():
        if not isinstance(key, str):
            errors.append(_type_error(path.key(str(key)), key, "string key"))
            continue
        fpath = path.child(key)
        field = plan.by_json_name.get(key)
        if field is None:
            if plan.type_meta is not None and key in ("apiVersion", "kind"):
                _check_type_meta(plan.type_meta, key, value, fpath, errors)
            elif key in plan.unsupported:
                if value is not None:
                    errors.append(FieldError(ErrorType.NOT_SUPPORTED, str(fpath),
                                             plan.unsupported[key]))
            else:
                errors.append(fpath.unknown())
            continue
        if value is None:
            continue
        if field.shape is _Shape.MAP:
            _fill_map(msg, field, value, fpath, errors)
        elif field.shape is _Shape.LIST:
            _fill_repeated(msg, field, value, fpath, errors)
        elif field.is_message:
            sub = getattr(msg, field.name)
            if _fill_message(sub, field.desc, value, fpath, errors):
                sub.SetInParent()
        else:
            ok, converted = _scalar(field.desc, value, fpath, errors)
            if ok:
                setattr(msg, field.name, converted)


def _check_type_meta(
    rtype: ResourceType, key: str, value: Any, path: FieldPath, errors: list[FieldError]
) -> None:
    expected = rtype.api_version if key == "apiVersion" else rtype.kind
    if value is None:
        return
    if not isinstance(value, str):
        errors.append(_type_error(path, value, "string"))
    elif value != expected:
        errors.append(path.not_supported(value, [expected]))


def _fill_message(
    sub: Message, field: FieldDescriptor, value: Any, path: FieldPath, errors: list[FieldError]
) -> bool:
    """Fills a singular or repeated message element; False when the value had the wrong type."""
    message_type = field.message_type
    assert message_type is not None
    if message_type.full_name == _INT_OR_STRING:
        return _fill_int_or_string(sub, value, path, errors)
    if not isinstance(value, Mapping):
        errors.append(_type_error(path, value, "object"))
        return False
    _fill(sub, value, path, errors)
    return True


def _fill_int_or_string(
    sub: Message, value: Any, path: FieldPath, errors: list[FieldError]
) -> bool:
    if isinstance(value, str):
        sub.str_val = value  # type: ignore[attr-defined]
        return True
    number = _as_int(value)
    if number is None:
        errors.append(_type_error(path, value, "integer or string"))
        return False
    low, high, _ = _INT_RANGES[FieldDescriptor.CPPTYPE_INT32]
    if not low <= number <= high:
        errors.append(path.invalid(value, f"must fit in a 32-bit integer ({low} to {high})"))
        return False
    sub.int_val = number  # type: ignore[attr-defined]
    return True


def _fill_repeated(
    msg: Message, field: _Field, value: Any, path: FieldPath, errors: list[FieldError]
) -> None:
    if not isinstance(value, list):
        errors.append(_type_error(path, value, "array"))
        return
    target = getattr(msg, field.name)
    for i, item in enumerate(value):
        ipath = path.index(i)
        if field.is_message:
            # A null element decodes to the zero element, as in Go; keep the indexes aligned.
            sub = target.add()
            if item is not None:
                _fill_message(sub, field.desc, item, ipath, errors)
        elif item is None:
            target.append(_zero(field.desc))
        else:
            ok, converted = _scalar(field.desc, item, ipath, errors)
            if ok:
                target.append(converted)


def _fill_map(
    msg: Message, field: _Field, value: Any, path: FieldPath, errors: list[FieldError]
) -> None:
    if not isinstance(value, Mapping):
        errors.append(_type_error(path, value, "object"))
        return
    value_field = field.element
    target = getattr(msg, field.name)
    quantity = field.desc.full_name in QUANTITY_FIELDS
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(_type_error(path.key(str(key)), key, "string key"))
            continue
        kpath = path.key(key)
        if field.is_message:
            sub = target[key]
            if item is not None:
                _fill_message(sub, value_field, item, kpath, errors)
            continue
        if item is None:
            target[key] = _zero(value_field)
            continue
        if quantity:
            ok, converted = _quantity(item, kpath, errors)
        else:
            ok, converted = _scalar(value_field, item, kpath, errors)
        if ok:
            target[key] = converted


def _scalar(
    field: FieldDescriptor, value: Any, path: FieldPath, errors: list[FieldError]
) -> tuple[bool, Any]:
    """The Python value for a scalar field, or (False, None) after recording the error."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return _bytes(value, path, errors)
        if isinstance(value, str):
            return True, value
        if field.full_name in QUANTITY_FIELDS:
            return _quantity(value, path, errors)
        errors.append(_type_error(path, value, "string"))
        return False, None
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        if isinstance(value, bool):
            return True, value
        errors.append(_type_error(path, value, "boolean"))
        return False, None
    if cpp in _INT_RANGES:
        number = _as_int(value)
        if number is None:
            errors.append(_type_error(path, value, "integer"))
            return False, None
        low, high, what = _INT_RANGES[cpp]
        if not low <= number <= high:
            errors.append(path.invalid(value, f"must fit in {what} ({low} to {high})"))
            return False, None
        return True, number
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        errors.append(_type_error(path, value, "number"))
        return False, None
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        enum_type = field.enum_type
        assert enum_type is not None
        if isinstance(value, str) and value in enum_type.values_by_name:
            return True, enum_type.values_by_name[value].number
        supported = list(enum_type.values_by_name)
        errors.append(path.not_supported(value, supported))
        return False, None
    raise TypeError(f"unsupported field type {field.full_name}")  # pragma: no cover


def _as_int(value: Any) -> int | None:
    """An int for an int or an integral float; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _quantity(value: Any, path: FieldPath, errors: list[FieldError]) -> tuple[bool, Any]:
    # Syntax is checked by validation (kubelite.api quantities); here only the JSON type.
    if isinstance(value, str):
        return True, value
    if isinstance(value, int) and not isinstance(value, bool):
        return True, str(value)
    if isinstance(value, float) and math.isfinite(value):
        # As Go formats a JSON number: integral values without ".0", others shortest-exact.
        if value.is_integer() and abs(value) < 1e21:
            return True, str(int(value))
        return True, repr(value)
    errors.append(_type_error(path, value, "quantity (string or number)"))
    return False, None


def _bytes(value: Any, path: FieldPath, errors: list[FieldError]) -> tuple[bool, Any]:
    if not isinstance(value, str):
        errors.append(_type_error(path, value, "base64-encoded string"))
        return False, None
    # Go's StdEncoding skips line breaks and insists on padding and the standard alphabet.
    text = value.replace("\r", "").replace("\n", "")
    try:
        return True, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        # No value in the message: this is often a Secret.
        errors.append(FieldError(ErrorType.INVALID, str(path), f"illegal base64 data: {exc}"))
        return False, None


def _zero(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b""
    return {
        FieldDescriptor.CPPTYPE_STRING: "",
        FieldDescriptor.CPPTYPE_BOOL: False,
        FieldDescriptor.CPPTYPE_DOUBLE: 0.0,
        FieldDescriptor.CPPTYPE_FLOAT: 0.0,
    }.get(field.cpp_type, 0)


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "object"),
    (list, "array"),
)


def _type_error(path: FieldPath, value: Any, expected: str) -> FieldError:
    # Scalars are shown as Kubernetes shows them; objects and arrays by their JSON type.
    if isinstance(value, (bool, int, float, str)):
        return path.type_invalid(value, f"expected {expected}")
    got = next((name for cls, name in _JSON_TYPES if isinstance(value, cls)), type(value).__name__)
    return FieldError(ErrorType.TYPE_INVALID, str(path), f"expected {expected}, got {got}")


class _Shape(enum.Enum):
    SINGLE = "single"
    LIST = "list"
    MAP = "map"


@dataclass(frozen=True)
class _Field:
    """What the converter needs to know about one field, worked out once per message type."""

    desc: FieldDescriptor
    name: str
    json_name: str
    shape: _Shape
    element: FieldDescriptor
    """The field itself, or a map's value field: what each element converts as."""
    is_message: bool
    """Whether ``element`` is a message (IntOrString included)."""
    int_or_string: bool
    presence: bool


@dataclass(frozen=True)
class _Plan:
    fields: tuple[_Field, ...]
    """In proto declaration order, which is Kubernetes' order for our types."""
    by_json_name: dict[str, _Field]
    by_number: dict[int, _Field]
    type_meta: ResourceType | None
    """The registered kind, when this message is one and may carry apiVersion/kind."""
    unsupported: dict[str, str]
    """Kubernetes' fields this message lacks, by JSON name, with why (UNSUPPORTED_FIELDS)."""


_PLANS: dict[str, _Plan] = {}


def _descriptor(msg: Message) -> Descriptor:
    return cast(Descriptor, msg.DESCRIPTOR)


def _plan(descriptor: Descriptor) -> _Plan:
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        fields = tuple(_field_info(f) for f in descriptor.fields)
        plan = _Plan(
            fields,
            {f.json_name: f for f in fields},
            {f.desc.number: f for f in fields},
            _NESTED_TYPE_META.get(descriptor.full_name),
            UNSUPPORTED_FIELDS.get(descriptor.full_name, {}),
        )
        _PLANS[descriptor.full_name] = plan
    return plan


def _field_info(desc: FieldDescriptor) -> _Field:
    message_type = desc.message_type
    shape = _Shape.LIST if desc.is_repeated else _Shape.SINGLE
    element = desc
    if desc.is_repeated and message_type is not None and message_type.GetOptions().map_entry:
        shape = _Shape.MAP
        element = message_type.fields_by_name["value"]
    element_type = element.message_type
    return _Field(
        desc=desc,
        name=desc.name,
        json_name=desc.json_name,
        shape=shape,
        element=element,
        is_message=element_type is not None,
        int_or_string=element_type is not None and element_type.full_name == _INT_OR_STRING,
        presence=desc.has_presence,
    )


# ---------------------------------------------------------------------------- message -> dict


def to_dict(rtype: ResourceType, msg: Message) -> dict[str, Any]:
    """The Kubernetes-shaped dict: apiVersion, kind, metadata, then the rest in proto order."""
    out: dict[str, Any] = {"apiVersion": rtype.api_version, "kind": rtype.kind}
    out.update(message_to_dict(msg))
    return out


_ALWAYS_EMITTED: dict[str, tuple[str, ...]] = {
    "kubelite.v1.ContainerStatus": ("ready", "restart_count"),
    "kubelite.v1.ContainerStateTerminated": ("exit_code",),
    "kubelite.v1.ContainerPort": ("container_port",),
    "kubelite.v1.ServicePort": ("port",),
    "kubelite.v1.EndpointPort": ("port",),
    "kubelite.v1.ReplicaSetStatus": ("replicas",),
    "kubelite.v1.StatefulSetStatus": ("replicas", "available_replicas"),
    "kubelite.v1.DaemonSetStatus": ("current_number_scheduled", "number_misscheduled",
                                    "desired_number_scheduled", "number_ready"),
}


def message_to_dict(msg: Message) -> dict[str, Any]:
    """A message as JSON-shaped data, omitting what Kubernetes' ``omitempty`` omits.

    Zero scalars without presence, empty lists and empty maps are left out; ``optional``
    scalars that are set are kept even when zero (``replicas: 0``); message fields are kept
    when set even if empty, since ``emptyDir: {}`` means something.
    """
    out: dict[str, Any] = {}
    by_number = _plan(_descriptor(msg)).by_number
    always = _ALWAYS_EMITTED.get(msg.DESCRIPTOR.full_name)
    if always:
        # Fields Kubernetes serialises without omitempty: they appear even when zero.
        for name in always:
            desc = msg.DESCRIPTOR.fields_by_name[name]
            out[by_number[desc.number].json_name] = getattr(msg, name)
    # ListFields gives exactly the set fields (present, non-zero, non-empty), by number.
    for desc, value in msg.ListFields():
        field = by_number[desc.number]
        if field.shape is _Shape.MAP:
            # Sorted like Go's encoding/json; protobuf maps have no order of their own.
            out[field.json_name] = {k: _element_to_json(field, value[k]) for k in sorted(value)}
        elif field.shape is _Shape.LIST:
            out[field.json_name] = [_element_to_json(field, item) for item in value]
        elif not (field.int_or_string and value.WhichOneof("value") is None):
            out[field.json_name] = _element_to_json(field, value)
    return out


def _element_to_json(field: _Field, value: Any) -> Any:
    if field.int_or_string:
        which = value.WhichOneof("value")
        return getattr(value, which) if which is not None else 0
    if field.is_message:
        return message_to_dict(value)
    element = field.element
    if element.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if element.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        enum_type = element.enum_type
        enum_value = enum_type.values_by_number.get(value) if enum_type is not None else None
        return enum_value.name if enum_value is not None else value
    return value


# ---------------------------------------------------------------------------- merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null deletes, objects merge, anything else replaces.

    Pure: neither input is changed and the result shares no containers with them.
    """
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    base: Mapping[Any, Any] = target if isinstance(target, Mapping) else {}
    result: dict[Any, Any] = {}
    for key, value in base.items():
        if key not in patch:
            result[key] = copy.deepcopy(value)
        elif patch[key] is not None:
            result[key] = merge_patch(value, patch[key])
    for key, value in patch.items():
        if key not in base and value is not None:
            # Recursing on nothing drops nested nulls: {"a": {"b": null}} adds {"a": {}}.
            result[key] = merge_patch(None, value)
    return result
