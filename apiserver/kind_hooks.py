"""What the API server does for a kind with resources of its own, around the kind's strategy
(kubelite.api.strategies): admission that needs the server's settings or state, ClusterIP and
nodePort allocations, event leases. A kind without such needs has no entry in ``Api.hooks``
and gets ``KindHooks``, which does nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from google.protobuf.message import Message

from apiserver.allocator import Held, ServiceAllocator, held_by
from apiserver.event_leases import EventLeases
from apiserver.storage import Storage
from kubelite.api import meta as m
from kubelite.api.errors import AlreadyExists, ApiError, Conflict, Forbidden, Invalid, NotFound
from kubelite.api.registry import ResourceType
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

Store = Callable[[int], Awaitable[Message]]
"""Stores a new object under an etcd lease (0: none), as create's last step."""
Write = Callable[[], Awaitable[Message]]
"""Stores an update, as its last step."""


class KindHooks:
    """The API server's part in a kind's life; each method does nothing here."""

    def admit_create(self, obj: Message) -> None:
        """Before defaults on create: what admission adds with the server's settings."""

    def admit_delete(self, name: str) -> None:
        """Before a deletion: raise to refuse it."""

    def prepare_update(self, new: Message, old: Message) -> None:
        """After defaults on update, before validation: carry over what the server assigned."""

    async def create(self, obj: Message, store: Store) -> Message:
        """Store a new, valid object with ``store``, taking what it needs from the server."""
        return await store(0)

    async def update(self, current: Message, updated: Message, write: Write) -> Message:
        """Store an update with ``write``, taking and freeing what it changes."""
        return await write()

    async def removed(self, obj: Message) -> None:
        """After ``obj`` has left storage: give back what it held."""

    def marked_deleted(self, obj: Message) -> None:
        """After ``obj`` is stored with its deletionTimestamp."""


class PodHooks(KindHooks):
    """DefaultTolerationSeconds admission: a pod rides out a short node outage before the taint
    manager evicts it, unless it says otherwise."""

    TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

    def __init__(self, toleration_seconds: int) -> None:
        self.toleration_seconds = toleration_seconds

    def admit_create(self, obj: Message) -> None:
        assert isinstance(obj, v1.Pod)
        for key in self.TAINTS:
            if not any(t.key in ("", key) and t.effect in ("", "NoExecute")
                       for t in obj.spec.tolerations):
                obj.spec.tolerations.add(
                    key=key, operator="Exists", effect="NoExecute",
                    toleration_seconds=self.toleration_seconds,
                )


class NamespaceHooks(KindHooks):
    """NamespaceLifecycle: the system namespaces stay; a namespace is terminating for this
    server's creates as soon as its deletion is stored."""

    def __init__(self, immortal: tuple[str, ...], terminating: Callable[[str], None]) -> None:
        self.immortal = immortal
        self.terminating = terminating

    def admit_delete(self, name: str) -> None:
        if name in self.immortal:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')

    def marked_deleted(self, obj: Message) -> None:
        # Terminating from now on for this server's creates, before the watch brings the
        # change round.
        self.terminating(m.meta(obj).name)


class EventHooks(KindHooks):
    """Events expire: each is stored under a shared etcd lease."""

    def __init__(self, leases: EventLeases) -> None:
        self.leases = leases

    async def create(self, obj: Message, store: Store) -> Message:
        return await store(await self.leases.lease())


class ServiceHooks(KindHooks):
    """ClusterIPs and nodePorts: taken with the write that needs them, given back when it fails
    or when the Service goes."""

    def __init__(self, allocator: ServiceAllocator, storage: Storage, rtype: ResourceType) -> None:
        self.allocator = allocator
        self.storage = storage
        self.rtype = rtype

    def prepare_update(self, new: Message, old: Message) -> None:
        assert isinstance(new, v1.Service) and isinstance(old, v1.Service)
        self.allocator.patch_update(new, old)

    async def create(self, obj: Message, store: Store) -> Message:
        assert isinstance(obj, v1.Service)
        held = await self.allocator.allocate_create(obj)
        try:
            return await store(0)
        except BaseException as e:
            await self._release_unless_stored(obj, held, e)
            raise

    async def update(self, current: Message, updated: Message, write: Write) -> Message:
        assert isinstance(current, v1.Service) and isinstance(updated, v1.Service)
        if updated.spec == current.spec:  # a status or metadata write takes and frees nothing
            return await write()
        taken, freed = await self.allocator.allocate_update(updated, current)
        try:
            stored = await write()
        except BaseException as e:
            await self._release_unless_stored(updated, taken, e)
            raise
        await self.allocator.release(freed)
        return stored

    async def removed(self, obj: Message) -> None:
        assert isinstance(obj, v1.Service)
        await self.allocator.release(held_by(obj))

    async def _release_unless_stored(
        self, obj: v1.Service, held: Held, error: BaseException
    ) -> None:
        """After a failed write: give back what it took, unless the outcome is unknown and the
        object did land (a leaked IP is better than one handed out twice)."""
        if not held:
            return
        if not isinstance(error, (AlreadyExists, Conflict, NotFound, Invalid)):
            meta = m.meta(obj)
            try:
                stored = await self.storage.get(self.rtype, meta.namespace, meta.name)
            except NotFound:
                stored = None
            except ApiError:
                log.warning("service write outcome unknown; keeping its allocations",
                            service=f"{meta.namespace}/{meta.name}")
                return
            if isinstance(stored, v1.Service) and held_by(stored) == held_by(obj):
                return
        await self.allocator.release(held)
