"""What the API does with one kind beyond storing it: Kubernetes' per-kind strategy
(pkg/registry/<group>/<kind>/strategy.go).

``Strategy`` is right for a kind with nothing special; a kind's strategy overrides what
differs. The API server calls, on create: ``prepare_for_create``, ``default``, validation
(``validate`` after the object meta), ``complete_create``; on update: ``prepare_for_update``,
``default``, ``bump_generation``, validation (``validate_update``); on delete:
``prepare_for_delete``, ``grace_period`` and ``finalized``. Field selectors read ``fields``;
manifests are read with ``quantity_fields`` and ``unsupported_fields`` (kubelite.api.convert).
What needs the API server's own resources (ClusterIPs, event leases, the namespaces it tracks)
stays in the API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.field_errors import FieldPath
from kubelite.api.names import name_is_dns_subdomain
from protos.v1 import objects_pb2 as v1

if TYPE_CHECKING:
    from kubelite.api.validation.meta import Errors

M = TypeVar("M", bound=Message)

MAX_GRACE_PERIOD_SECONDS = 2**32 - 1
"""The longest grace period a deletion takes (136 years: its deadline stays a date)."""


def has_status(obj: Message) -> bool:
    return "status" in obj.DESCRIPTOR.fields_by_name


def has_spec(obj: Message) -> bool:
    return "spec" in obj.DESCRIPTOR.fields_by_name


def selector_bool(value: bool) -> str:
    """A bool as field selectors see it (ToSelectableFields renders "true"/"false")."""
    return "true" if value else "false"


def _spec_bytes(obj: Message) -> bytes:
    """What decides whether generation moves: everything but metadata and status.

    Deterministic serialization, so maps built in another order compare equal.
    """
    rest = m.copy(obj)
    rest.ClearField("metadata")
    if has_status(rest):
        rest.ClearField("status")
    return rest.SerializeToString(deterministic=True)


class Strategy(Generic[M]):
    """The rules of a kind whose objects are ``M`` messages."""

    quantity_fields: ClassVar[frozenset[str]] = frozenset()
    """Full names of the fields of the kind's own messages that hold Kubernetes Quantities
    (``kubelite.v1.PersistentVolumeSpec.capacity``): the proto cannot say so, and these accept
    a YAML number as Kubernetes' Quantity does."""
    unsupported_fields: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    """Fields Kubernetes has in the kind's own messages that kubelite does not serve, by message
    full name and JSON name, with why: a manifest using one gets ``Unsupported value`` saying
    so, rather than ``Unknown field``."""

    def name_errors(self, name: str, prefix: bool) -> list[str]:
        """What is wrong with ``name`` as the kind's metadata.name (``prefix``: as a
        generateName): a DNS-1123 subdomain unless the kind says otherwise."""
        return name_is_dns_subdomain(name, prefix)

    def default(self, obj: M) -> None:
        """Fill unset fields with Kubernetes' defaults, in place and idempotently."""

    def prepare_for_create(self, obj: M) -> None:
        """Before defaults on create: what a user may not set. The status, written only through
        the status subresource, starts empty."""
        if has_status(obj):
            obj.ClearField("status")

    def complete_create(self, obj: M) -> None:
        """After validation on create: what the server derives from a valid object."""

    def prepare_for_update(self, new: M, old: M) -> None:
        """Before defaults on update: what an update of the object may not change. The status
        stays as stored."""
        if has_status(new):
            new.ClearField("status")
            if old.HasField("status"):
                new.status.CopyFrom(old.status)  # type: ignore[attr-defined]

    def bump_generation(self, new: M, old: M) -> None:
        """After defaults on update: metadata.generation moves when anything but metadata and
        status changes (a kind without a spec keeps generation 0)."""
        if has_spec(new) and _spec_bytes(new) != _spec_bytes(old):
            m.meta(new).generation = m.meta(old).generation + 1

    def validate(self, obj: M) -> Errors:
        """The kind's rules for a new object (the object meta is validated for every kind)."""
        return []

    def validate_update(self, new: M, old: M) -> Errors:
        """The kind's rules for ``old`` becoming ``new``: those of a new object unless the
        kind says otherwise."""
        return self.validate(new)

    def pod_spec(self, obj: M) -> tuple[v1.PodSpec, FieldPath] | None:
        """The pod spec the object carries (its own or its template's) and its path."""
        return None

    def prepare_for_delete(self, obj: M) -> None:
        """When a deletion marks the object (or removes it): what the mark changes."""

    def grace_period(self, obj: M, requested: int | None, default: int) -> int | None:
        """Seconds a deletion of the object waits for its confirmation (Kubernetes'
        CheckGracefulDelete), from what the request asks (``requested``) or ``default``; None
        for a kind without graceful deletion."""
        return None

    def finalized(self, obj: M) -> bool:
        """Whether nothing holds the object's deletion back: no finalizers."""
        return not m.meta(obj).finalizers

    def fields(self, obj: M) -> dict[str, str]:
        """The kind's own selectable fields and their values (every kind has metadata.name and
        metadata.namespace besides); an empty object gives the kind's field labels."""
        return {}
