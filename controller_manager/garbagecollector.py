"""The garbage collector: deletes objects whose owners are gone, and carries out Foreground
and Orphan deletion, as Kubernetes' pkg/controller/garbagecollector.

A graph of owner -> dependents is kept from informers on every kind. Work items are object
uids; ``reconcile(uid)`` is Kubernetes' attemptToDeleteItem plus its orphan worker:

- owner with the ``orphan`` finalizer: drop its ownerReference from every dependent, then
  the finalizer;
- owner with the ``foregroundDeletion`` finalizer: delete its dependents, and drop the
  finalizer once no dependent with blockOwnerDeletion=true remains;
- any object with ownerReferences: if no owner is left alive ("solid"), delete it (in
  Foreground when an owner waits for it and it has dependents of its own, so the chain
  cascades); if some owner lives, only remove the references to dead or waiting owners.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import Message

from controller_manager.context import ControllerContext
from kubelite.api import meta as m
from kubelite.api.errors import Conflict, NotFound
from kubelite.api.registry import RESOURCES, ResourceType, UnknownResource, by_kind, by_message
from kubelite.client.client import ApiClient
from kubelite.client.controller import Controller
from kubelite.client.informer import Informer
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

IGNORED_RESOURCES = frozenset({"events"})
"""Kinds the collector does not watch (upstream's DefaultIgnoredResources): Events are
written by the thousand (one per pod created, scheduled, pulled...) and own nothing, so
watching them would only copy every one into this process."""
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
UPDATE_ATTEMPTS = 5
ABSENT_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Identity:
    rtype: ResourceType
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.rtype.kind} {where} ({self.uid})"


@dataclass(frozen=True)
class GraphNode:
    """What the collector needs of one observed object."""

    identity: Identity
    owners: tuple[v1.OwnerReference, ...]
    deleting: bool
    finalizers: frozenset[str]

    @property
    def deleting_dependents(self) -> bool:
        return self.deleting and FOREGROUND_FINALIZER in self.finalizers

    @property
    def orphaning(self) -> bool:
        return self.deleting and ORPHAN_FINALIZER in self.finalizers

    def ref_to(self, owner_uid: str) -> v1.OwnerReference | None:
        for ref in self.owners:
            if ref.uid == owner_uid:
                return ref
        return None

    @classmethod
    def of(cls, obj: Message) -> GraphNode:
        meta = m.meta(obj)
        rtype = by_message(type(obj))
        return cls(
            Identity(rtype, meta.namespace, meta.name, meta.uid),
            tuple(meta.owner_references),
            bool(meta.deletion_timestamp),
            frozenset(meta.finalizers),
        )


class Graph:
    """Observed objects by uid and, for every uid named as an owner (observed or not), the
    uids of the objects naming it. Pure bookkeeping: each change returns the uids to look at.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, GraphNode] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def dependents(self, uid: str) -> list[GraphNode]:
        return [self.nodes[d] for d in self._dependents.get(uid, ()) if d in self.nodes]

    def blocking_dependents(self, uid: str) -> list[GraphNode]:
        """Dependents whose reference to ``uid`` blocks the owner's foreground deletion."""
        result = []
        for dep in self.dependents(uid):
            ref = dep.ref_to(uid)
            if ref is not None and ref.block_owner_deletion:
                result.append(dep)
        return result

    def observe(self, node: GraphNode) -> set[str]:
        """Adds or updates an object; returns the uids whose processing this may change."""
        uid = node.identity.uid
        old = self.nodes.get(uid)
        self.nodes[uid] = node
        old_owners = {r.uid for r in old.owners} if old else set()
        new_owners = {r.uid for r in node.owners}
        for owner in old_owners - new_owners:
            self._unlink(owner, uid)
        for owner in new_owners:
            self._dependents.setdefault(owner, set()).add(uid)
        touched: set[str] = set()
        if old is None:
            if node.owners or node.deleting:
                touched.add(uid)
        else:
            if old.owners != node.owners:
                touched.add(uid)
                # A removed or unblocked reference may be what a foreground owner waits on.
                touched |= {o for o in old_owners | new_owners if self._waits(o)}
            if (old.deleting, old.finalizers) != (node.deleting, node.finalizers):
                touched.add(uid)
        if node.deleting_dependents and not (old and old.deleting_dependents):
            touched |= self._dependents.get(uid, set())
        return touched

    def forget(self, uid: str) -> set[str]:
        """Removes a deleted object; returns its dependents (now dangling) and the owners
        that wait for it."""
        old = self.nodes.pop(uid, None)
        if old is None:
            return set()
        touched = set(self._dependents.get(uid, ()))
        for ref in old.owners:
            self._unlink(ref.uid, uid)
            if self._waits(ref.uid):
                touched.add(ref.uid)
        return touched

    def _waits(self, uid: str) -> bool:
        owner = self.nodes.get(uid)
        return owner is not None and owner.deleting_dependents

    def _unlink(self, owner: str, dependent: str) -> None:
        deps = self._dependents.get(owner)
        if deps is not None:
            deps.discard(dependent)
            if not deps:
                del self._dependents[owner]


class AbsentOwners:
    """Uids known to be gone (uids are never reused): spares repeated GETs when many
    dependents name the same deleted owner."""

    def __init__(self, size: int = ABSENT_CACHE_SIZE) -> None:
        self.size = size
        self._uids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids

    def add(self, uid: str) -> None:
        self._uids[uid] = None
        self._uids.move_to_end(uid)
        while len(self._uids) > self.size:
            self._uids.popitem(last=False)


@dataclass
class Classified:
    solid: list[v1.OwnerReference] = field(default_factory=list)
    dangling: list[v1.OwnerReference] = field(default_factory=list)
    waiting: list[v1.OwnerReference] = field(default_factory=list)
    """Owners being deleted in Foreground, waiting for their dependents."""


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx.settings.workers, ctx.rate_limit)
        self.client: ApiClient = ctx.client
        self.graph = Graph()
        self.absent = AbsentOwners()
        self.informers: dict[str, Informer[Message]] = {}
        for rtype in (r for r in RESOURCES if r.stored and r.plural not in IGNORED_RESOURCES):
            informer: Informer[Message] = ctx.informers.informer(rtype.message)
            self.informers[rtype.plural] = informer
            informer.add_handlers(
                on_add=self._observe,
                on_update=lambda _old, new: self._observe(new),
                on_delete=self._forget,
            )

    # ------------------------------------------------------------ graph builder

    def _observe(self, obj: Message) -> None:
        self._enqueue(self.graph.observe(GraphNode.of(obj)))

    def _forget(self, obj: Message) -> None:
        self._enqueue(self.graph.forget(m.meta(obj).uid))

    def _enqueue(self, uids: Iterable[str]) -> None:
        for uid in uids:
            self.queue.add(uid)

    def _cached(self, identity: Identity) -> Message | None:
        obj = self.informers[identity.rtype.plural].store.get_by_name(
            identity.namespace, identity.name
        )
        if obj is None or m.meta(obj).uid != identity.uid:
            return None
        return obj

    # ------------------------------------------------------------ processing

    async def reconcile(self, key: str) -> None:
        node = self.graph.nodes.get(key)
        if node is None:
            return  # deleted since; its dependents were enqueued then
        if node.orphaning:
            await self._orphan_dependents(node)
            return
        if node.deleting_dependents:
            await self._process_deleting_dependents(node)
            return
        if node.deleting or not node.owners:
            return  # on its way out: its deletion enqueues its dependents
        refs = await self._classify(node)
        if refs.solid:
            gone = {r.uid for r in [*refs.dangling, *refs.waiting]}
            if gone:
                log.info("removing references to deleted owners", object=str(node.identity),
                         owners=sorted(gone))
                await self._update(node.identity, _drop_owner_refs(gone))
            return
        if refs.waiting and self.graph.dependents(key):
            # Foreground all the way down: this waits for its own dependents first. Break
            # a possible cycle of owners waiting on each other by unblocking our references.
            if any(d.deleting_dependents for d in self.graph.dependents(key)):
                await self._update(node.identity, _unblock_owner_refs)
            await self._delete(node.identity, "Foreground")
            return
        # Honour a policy already chosen for this object; otherwise Background.
        if ORPHAN_FINALIZER in node.finalizers:
            policy = "Orphan"
        elif FOREGROUND_FINALIZER in node.finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        await self._delete(node.identity, policy)

    async def _classify(self, node: GraphNode) -> Classified:
        result = Classified()
        for ref in node.owners:
            state = await self._owner_state(node.identity, ref)
            if state == "dangling":
                result.dangling.append(ref)
            elif state == "waiting":
                result.waiting.append(ref)
            else:
                result.solid.append(ref)
        return result

    async def _owner_state(self, dependent: Identity, ref: v1.OwnerReference) -> str:
        if ref.uid in self.absent:
            return "dangling"
        try:
            rtype = by_kind(ref.kind)
        except UnknownResource:
            # As Kubernetes with an unresolvable kind: never delete on a guess.
            log.warning("owner kind unknown; keeping dependent", object=str(dependent),
                        owner_kind=ref.kind)
            return "solid"
        if rtype.namespaced and not dependent.namespace:
            # A cluster-scoped object cannot be owned by a namespaced one: the ref is void.
            return "dangling"
        namespace = dependent.namespace if rtype.namespaced else ""
        owner = self.graph.nodes.get(ref.uid)
        if owner is not None:
            if owner.identity.namespace != namespace:
                return "dangling"  # owners live in their dependent's namespace, or none
            return "waiting" if owner.deleting_dependents else "solid"
        # The owner may simply not have reached our informer yet: ask the API server.
        try:
            live = await self.client.get(rtype.message, ref.name, namespace)
        except NotFound:
            self.absent.add(ref.uid)
            return "dangling"
        if m.meta(live).uid != ref.uid:
            self.absent.add(ref.uid)
            return "dangling"
        meta = m.meta(live)
        if meta.deletion_timestamp and FOREGROUND_FINALIZER in meta.finalizers:
            return "waiting"
        return "solid"

    async def _process_deleting_dependents(self, node: GraphNode) -> None:
        uid = node.identity.uid
        blocking = self.graph.blocking_dependents(uid)
        if not blocking:
            log.info("dependents gone; finishing foreground deletion", object=str(node.identity))
            await self._update(node.identity, _drop_finalizer(FOREGROUND_FINALIZER))
            return
        for dep in self.graph.dependents(uid):
            if not dep.deleting_dependents:
                self.queue.add(dep.identity.uid)

    async def _orphan_dependents(self, owner: GraphNode) -> None:
        uid = owner.identity.uid
        for dep in self.graph.dependents(uid):
            await self._update(dep.identity, _drop_owner_refs({uid}))
        log.info("orphaned dependents", object=str(owner.identity))
        await self._update(owner.identity, _drop_finalizer(ORPHAN_FINALIZER))

    # ------------------------------------------------------------ writes

    async def _delete(self, identity: Identity, policy: str) -> None:
        log.info("deleting object whose owners are gone", object=str(identity), policy=policy)
        try:
            await self.client.delete(
                identity.rtype.message, identity.name, identity.namespace,
                propagation_policy=policy, uid=identity.uid,
            )
        except NotFound:
            pass
        except Conflict:
            # The uid precondition failed: a new object took the name; ours is gone.
            pass

    async def _update(self, identity: Identity, change: Callable[[Message], bool]) -> None:
        """Read-modify-write of the live object, retried on Conflict; a vanished or
        replaced object is left alone."""
        for _ in range(UPDATE_ATTEMPTS):
            try:
                obj = await self.client.get(identity.rtype.message, identity.name,
                                            identity.namespace)
            except NotFound:
                return
            if m.meta(obj).uid != identity.uid or not change(obj):
                return
            try:
                await self.client.update(obj)
                return
            except NotFound:
                return
            except Conflict:
                continue
        raise Conflict(f"could not update {identity}: kept conflicting")


def _drop_owner_refs(uids: set[str]) -> Callable[[Message], bool]:
    def change(obj: Message) -> bool:
        refs = m.meta(obj).owner_references
        keep = [r for r in refs if r.uid not in uids]
        if len(keep) == len(refs):
            return False
        copies = [m.copy(r) for r in keep]
        del refs[:]
        refs.extend(copies)
        return True

    return change


def _drop_finalizer(name: str) -> Callable[[Message], bool]:
    def change(obj: Message) -> bool:
        finalizers = m.meta(obj).finalizers
        if name not in finalizers:
            return False
        keep = [f for f in finalizers if f != name]
        del finalizers[:]
        finalizers.extend(keep)
        return True

    return change


def _unblock_owner_refs(obj: Message) -> bool:
    changed = False
    for ref in m.meta(obj).owner_references:
        if ref.block_owner_deletion:
            ref.block_owner_deletion = False
            changed = True
    return changed
