"""Helpers over ObjectMeta and the conventions every kind shares (times, names, conditions)."""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from typing import Any, TypeVar

from google.protobuf.message import Message

from protos.v1 import objects_pb2 as v1

# Kubernetes' alphabet for generated names: no vowels, no confusable characters.
M = TypeVar("M", bound=Message)

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX_LENGTH = 5


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def format_time(t: dt.datetime) -> str:
    """RFC 3339 with second precision, as Kubernetes' metav1.Time."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: dt.datetime) -> str:
    """RFC 3339 with microseconds, as Kubernetes' metav1.MicroTime (leases, events)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


_second_text: tuple[int, str] = (-1, "")
"""The last second ``now_rfc3339`` formatted, and its text (many objects share a second)."""


def now_rfc3339() -> str:
    global _second_text
    second = int(time.time())
    if _second_text[0] != second:
        _second_text = (second, format_time(dt.datetime.fromtimestamp(second, dt.UTC)))
    return _second_text[1]


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(GENERATED_SUFFIX_LENGTH))
    return prefix + suffix


def meta(obj: Message) -> Any:
    """The object's ObjectMeta (every kind has one)."""
    return obj.metadata  # type: ignore[attr-defined]


def key_of(obj: Message) -> str:
    """``namespace/name``, or ``name`` for cluster-scoped objects: the work queue key."""
    m = meta(obj)
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


def copy(obj: M) -> M:
    """A deep copy: cached objects are shared and must not be changed in place."""
    duplicate = type(obj)()
    duplicate.CopyFrom(obj)
    return duplicate


def is_controlled_by(obj: Message, owner: Message) -> bool:
    owner_uid = meta(owner).uid
    return any(ref.uid == owner_uid and ref.controller for ref in meta(obj).owner_references)


def controller_of(obj: Message) -> Any | None:
    for ref in meta(obj).owner_references:
        if ref.controller:
            return ref
    return None


def controller_reference(owner: Message) -> v1.OwnerReference:
    """The ownerReference a controller puts on what it creates or adopts: its own apiVersion,
    kind, name and uid, with controller and blockOwnerDeletion set."""
    # The registry holds the kinds' strategies, which use this module: imported when needed.
    from kubelite.api.registry import by_message

    rtype = by_message(type(owner))
    owner_meta = meta(owner)
    return v1.OwnerReference(api_version=rtype.api_version, kind=rtype.kind,
                             name=owner_meta.name, uid=owner_meta.uid, controller=True,
                             block_owner_deletion=True)


def controller_key(obj: Message, kind: str) -> str | None:
    """The work-queue key of the object's controller if it is of ``kind`` (it lives in the
    object's namespace), None when the object has no controller of that kind."""
    ref = controller_of(obj)
    if ref is None or ref.kind != kind:
        return None
    namespace = meta(obj).namespace
    return f"{namespace}/{ref.name}" if namespace else str(ref.name)
