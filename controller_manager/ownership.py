"""Ownership between controllers and what they control: Kubernetes' ControllerRefManager
(claim: adopt matching orphans, release what stopped matching) and the routing of an owned
object's events to the owners that must hear of them (resolveControllerRef and the
get<Owner>s-for-<object> lookups of the ReplicaSet and Deployment controllers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import NotFound
from kubelite.api.labels import Selector, selector_from_label_selector
from kubelite.client.client import ApiClient
from kubelite.client.informer import Store
from protos.v1 import objects_pb2 as v1

OwnerT = TypeVar("OwnerT", bound=Message)

# ---------------------------------------------------------------- event routing


def resolve_controller_ref(store: Store[OwnerT], namespace: str, ref: v1.OwnerReference | None,
                           kind: str) -> OwnerT | None:
    """The cached owner ``ref`` points at, if it is of ``kind`` and still the object the
    reference names (same uid), as upstream's resolveControllerRef."""
    if ref is None or ref.kind != kind:
        return None
    owner = store.get_by_name(namespace, ref.name)
    return owner if owner is not None and m.meta(owner).uid == ref.uid else None


def selecting_owners(store: Store[OwnerT], obj: Message) -> list[OwnerT]:
    """The owners in ``obj``'s namespace whose selector (valid and not empty) takes ``obj``'s
    labels: those that may adopt it while it is an orphan."""
    result = []
    obj_meta = m.meta(obj)
    labels = dict(obj_meta.labels)
    for owner in store.by_index("namespace", obj_meta.namespace):
        try:
            selector = selector_from_label_selector(owner.spec.selector)  # type: ignore[attr-defined]
        except ValueError:
            continue
        if not selector.empty() and selector.matches(labels):
            result.append(owner)
    return result


def owners_to_sync_on_add(store: Store[OwnerT], kind: str, obj: Message) -> list[OwnerT]:
    """Who hears of a new owned object: its controller if it has one, else (an orphan) every
    owner that may adopt it."""
    ref = m.controller_of(obj)
    if ref is not None:
        owner = resolve_controller_ref(store, m.meta(obj).namespace, ref, kind)
        return [owner] if owner is not None else []
    return selecting_owners(store, obj)


def owners_to_sync_on_update(store: Store[OwnerT], kind: str, old: Message,
                             new: Message) -> list[OwnerT]:
    """Who hears of an owned object's update: its previous controller when the controller
    reference changed, its controller if it has one, else (an orphan whose labels or
    reference changed) every owner that may now adopt it."""
    result: list[OwnerT] = []
    old_ref, new_ref = m.controller_of(old), m.controller_of(new)
    ref_changed = (old_ref.uid if old_ref else None) != (new_ref.uid if new_ref else None)
    if ref_changed and old_ref is not None:
        owner = resolve_controller_ref(store, m.meta(old).namespace, old_ref, kind)
        if owner is not None:
            result.append(owner)
    if new_ref is not None:
        owner = resolve_controller_ref(store, m.meta(new).namespace, new_ref, kind)
        if owner is not None:
            result.append(owner)
        return result
    if ref_changed or m.meta(old).labels != m.meta(new).labels:
        result.extend(selecting_owners(store, new))
    return result


# ---------------------------------------------------------------- claiming


def _refs_json(refs: Iterable[v1.OwnerReference]) -> list[dict[str, object]]:
    result: list[dict[str, object]] = []
    for ref in refs:
        item: dict[str, object] = {"apiVersion": ref.api_version, "kind": ref.kind,
                                   "name": ref.name, "uid": ref.uid}
        if ref.HasField("controller"):
            item["controller"] = ref.controller
        if ref.HasField("block_owner_deletion"):
            item["blockOwnerDeletion"] = ref.block_owner_deletion
        result.append(item)
    return result


async def adopt(client: ApiClient, owner: Message, obj: Message) -> Message:
    """Adds ``owner`` as controller of ``obj``; the resourceVersion guards the list patch
    (a merge patch replaces the whole list)."""
    meta = m.meta(obj)
    refs = [*meta.owner_references, m.controller_reference(owner)]
    patch = {"metadata": {"ownerReferences": _refs_json(refs),
                          "resourceVersion": meta.resource_version}}
    return await client.patch(type(obj), meta.name, patch, meta.namespace)


async def release(client: ApiClient, owner: Message, obj: Message) -> Message | None:
    """Removes ``owner``'s reference from ``obj``; None if ``obj`` is gone."""
    meta = m.meta(obj)
    owner_uid = m.meta(owner).uid
    refs = [r for r in meta.owner_references if r.uid != owner_uid]
    patch = {"metadata": {"ownerReferences": _refs_json(refs),
                          "resourceVersion": meta.resource_version}}
    try:
        return await client.patch(type(obj), meta.name, patch, meta.namespace)
    except NotFound:
        return None


async def claim(
    client: ApiClient,
    owner: Message,
    selector: Selector,
    candidates: Sequence[Message],
    can_adopt: Callable[[], Awaitable[bool]],
) -> list[Message]:
    """Kubernetes' ControllerRefManager: what ``owner`` controls among ``candidates``.

    Owned objects that still match are kept, owned ones that stopped matching are released
    (unless the owner is being deleted), matching orphans are adopted once ``can_adopt``
    confirms, from a fresh read, that the owner is still there and not being deleted.
    """
    owner_meta = m.meta(owner)
    owner_deleting = bool(owner_meta.deletion_timestamp)
    claimed: list[Message] = []
    adoption_checked: bool | None = None
    for obj in candidates:
        meta = m.meta(obj)
        ref = m.controller_of(obj)
        matches = selector.matches(dict(meta.labels))
        if ref is not None:
            if ref.uid != owner_meta.uid:
                continue
            if matches:
                claimed.append(obj)
            elif not owner_deleting:
                await release(client, owner, obj)
            continue
        if owner_deleting or not matches or meta.deletion_timestamp:
            continue
        if adoption_checked is None:
            adoption_checked = await can_adopt()
        if not adoption_checked:
            continue
        try:
            claimed.append(await adopt(client, owner, obj))
        except NotFound:
            continue
    return claimed


def fresh_owner_check(client: ApiClient, owner: Message) -> Callable[[], Awaitable[bool]]:
    """``can_adopt`` for claim(): the owner, read past the cache, is the same and alive."""

    async def check() -> bool:
        meta = m.meta(owner)
        try:
            fresh = await client.get(type(owner), meta.name, meta.namespace)
        except NotFound:
            return False
        fresh_meta = m.meta(fresh)
        return bool(fresh_meta.uid == meta.uid and not fresh_meta.deletion_timestamp)

    return check
