"""Object metadata (apimachinery's ValidateObjectMeta and ValidateObjectMetaUpdate) and the
small helpers every API group's validation shares: error wordings, immutability, non-negative
numbers, DNS names, enumerations, printable values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message

from kubelite.api.field_errors import FieldError, FieldPath
from kubelite.api.labels import (
    is_qualified_name,
    validate_labels,
)
from kubelite.api.names import (
    NameValidator,
    is_dns1123_label,
    is_dns1123_subdomain,
    name_is_dns_label,
)
from protos.v1 import objects_pb2 as v1

IS_NEGATIVE_ERROR = "must be greater than or equal to 0"


FIELD_IMMUTABLE = "field is immutable"


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


MAX_UINT32 = 2**32 - 1


Errors = list[FieldError]


def nonnegative(value: int, path: FieldPath) -> Errors:
    return [path.invalid(value, IS_NEGATIVE_ERROR)] if value < 0 else []


def immutable(new: object, old: object, path: FieldPath) -> Errors:
    return [path.invalid(plain(new), FIELD_IMMUTABLE)] if new != old else []


@dataclass(frozen=True)
class _Rendered:
    """A structured value shown as JSON in an error message (not re-quoted as a string)."""

    text: str

    def __str__(self) -> str:
        return self.text


def plain(value: object) -> object:
    """A printable form of a proto value for error messages."""
    if isinstance(value, Message):
        return _Rendered(json.dumps(json_format.MessageToDict(value), sort_keys=True))
    if isinstance(value, Mapping):
        return _Rendered(json.dumps(dict(value), sort_keys=True))
    return value


def int_or_string(value: v1.IntOrString) -> int | str | None:
    which = value.WhichOneof("value")
    if which == "int_val":
        return int(value.int_val)
    if which == "str_val":
        return str(value.str_val)
    return None


def dns_label(value: str, path: FieldPath) -> Errors:
    return [path.invalid(value, m) for m in is_dns1123_label(value)]


def dns_subdomain(value: str, path: FieldPath) -> Errors:
    return [path.invalid(value, m) for m in is_dns1123_subdomain(value)]


def not_supported(value: str, allowed: Sequence[str], path: FieldPath) -> Errors:
    if not value:
        return [path.required()]
    if value not in allowed:
        return [path.not_supported(value, list(allowed))]
    return []


def validate_annotations(annotations: Mapping[str, str], path: FieldPath) -> Errors:
    errs: Errors = []
    total = 0
    for key in sorted(annotations):
        # Annotation keys are qualified names, but case does not matter.
        errs.extend(path.invalid(key, m) for m in is_qualified_name(key.lower()))
        total += len(key) + len(annotations[key])
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(path.too_long("", TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _validate_owner_references(refs: Iterable[v1.OwnerReference], path: FieldPath) -> Errors:
    errs: Errors = []
    controllers: list[str] = []
    for i, ref in enumerate(refs):
        p = path.index(i)
        version = ref.api_version.rpartition("/")[2]
        if not version:
            errs.append(p.child("apiVersion").invalid(ref.api_version, "version must not be empty"))
        if not ref.kind:
            errs.append(p.child("kind").invalid(ref.kind, "kind must not be empty"))
        if not ref.name:
            errs.append(p.child("name").invalid(ref.name, "name must not be empty"))
        if not ref.uid:
            errs.append(p.child("uid").invalid(ref.uid, "uid must not be empty"))
        if ref.controller:
            controllers.append(f"{ref.kind}/{ref.name}")
    if len(controllers) > 1:
        errs.append(
            path.invalid(
                ", ".join(controllers),
                'Only one reference can have Controller set to true. Found "true" in'
                f" references for {' and '.join(controllers)}",
            )
        )
    return errs


def _validate_finalizers(finalizers: Sequence[str], path: FieldPath) -> Errors:
    errs: Errors = []
    for i, name in enumerate(finalizers):
        errs.extend(path.index(i).invalid(name, m) for m in is_qualified_name(name))
    if "orphan" in finalizers and "foregroundDeletion" in finalizers:
        errs.append(
            path.invalid(
                list(finalizers), "finalizer orphan and foregroundDeletion cannot be both set"
            )
        )
    return errs


def validate_object_meta(
    meta: v1.ObjectMeta, namespaced: bool, name_fn: NameValidator, path: FieldPath
) -> Errors:
    """apimachinery ValidateObjectMeta. A name is required unless generateName is set (the API
    server fills the name from it)."""
    errs: Errors = []
    if meta.generate_name:
        errs.extend(
            path.child("generateName").invalid(meta.generate_name, m)
            for m in name_fn(meta.generate_name, True)
        )
    if meta.name:
        errs.extend(path.child("name").invalid(meta.name, m) for m in name_fn(meta.name, False))
    elif not meta.generate_name:
        errs.append(path.child("name").required("name or generateName is required"))
    if namespaced:
        if not meta.namespace:
            errs.append(path.child("namespace").required())
        else:
            errs.extend(
                path.child("namespace").invalid(meta.namespace, m)
                for m in name_is_dns_label(meta.namespace, False)
            )
    elif meta.namespace:
        errs.append(path.child("namespace").forbidden("not allowed on this type"))
    # Every create and update comes here: what is empty has nothing to check.
    if meta.generation < 0:
        errs.extend(nonnegative(meta.generation, path.child("generation")))
    if meta.labels:
        errs.extend(validate_labels(dict(meta.labels), path.child("labels")))
    if meta.annotations:
        errs.extend(validate_annotations(dict(meta.annotations), path.child("annotations")))
    if meta.owner_references:
        errs.extend(
            _validate_owner_references(meta.owner_references, path.child("ownerReferences")))
    if meta.finalizers:
        errs.extend(_validate_finalizers(list(meta.finalizers), path.child("finalizers")))
    return errs


def validate_object_meta_update(new: v1.ObjectMeta, old: v1.ObjectMeta, path: FieldPath) -> Errors:
    errs: Errors = []
    errs.extend(immutable(new.name, old.name, path.child("name")))
    errs.extend(immutable(new.namespace, old.namespace, path.child("namespace")))
    errs.extend(immutable(new.uid, old.uid, path.child("uid")))
    errs.extend(
        immutable(new.creation_timestamp, old.creation_timestamp, path.child("creationTimestamp"))
    )
    if old.deletion_timestamp:
        added = sorted(set(new.finalizers) - set(old.finalizers))
        if added:
            errs.append(
                path.child("finalizers").forbidden(
                    "no new finalizers can be added if the object is being deleted, found new"
                    f" finalizers {json.dumps(added)}"
                )
            )
    return errs


def copy_field(dst: Message, src: Message, attr: str) -> None:
    """Make ``dst.attr`` what ``src.attr`` is, presence included."""
    fd = src.DESCRIPTOR.fields_by_name[attr]
    if fd.message_type is not None or fd.has_presence:
        if not src.HasField(attr):
            dst.ClearField(attr)
        elif fd.message_type is not None:
            getattr(dst, attr).CopyFrom(getattr(src, attr))
        else:
            setattr(dst, attr, getattr(src, attr))
    else:
        setattr(dst, attr, getattr(src, attr))
