"""The objects admission plugins look at (ServiceAccounts, LimitRanges, ResourceQuotas,
Namespaces), kept in memory from the API server's own watch caches, as Kubernetes' plugins keep
informers, so a pod create does not read etcd for each of them.

What the copy does not have yet is read from etcd: a name missing from it is looked up
(``get``), and a namespace with nothing in it is listed, that answer kept for ``live_ttl``
seconds (Kubernetes' liveLookupCache) or until the watch brings an object of that namespace.
"""

from __future__ import annotations

import asyncio

import structlog
from google.protobuf.message import Message

from apiserver.storage import Storage
from apiserver.watch_cache import BOOKMARK, DELETED, ResourceWatchCache
from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.registry import ResourceType

log = structlog.get_logger(__name__)

LIVE_LOOKUPS_KEPT = 10_000
"""Namespaces whose live lookups are remembered at most (expired ones go first)."""


def _revision(obj: Message) -> int:
    return int(m.meta(obj).resource_version or 0)


class ObjectStore:
    """One kind's objects by namespace and name, current as of the watch cache."""

    def __init__(
        self, storage: Storage, cache: ResourceWatchCache, live_ttl: float = 30.0,
        relist_delay: float = 0.5,
    ) -> None:
        self.storage = storage
        self.cache = cache
        self.rtype: ResourceType = cache.rtype
        self.live_ttl = live_ttl
        self.relist_delay = relist_delay
        self._objects: dict[str, dict[str, Message]] = {}
        """namespace -> name -> object."""
        self._live: dict[str, tuple[float, list[Message]]] = {}
        """namespace -> (expiry, what etcd listed), for namespaces the copy has nothing of."""
        self._synced = False
        self._task: asyncio.Task[None] | None = None

    @property
    def synced(self) -> bool:
        return self._synced

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"admission-{self.rtype.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                result = await self.storage.list(self.rtype)
                self._objects = {}
                for obj in result.items:
                    self._put(obj)
                self._synced = True
                async for item in self.cache.watch(result.revision, "", None):
                    if item.type == BOOKMARK:
                        continue
                    obj = self.rtype.decode(item.data)
                    if item.type == DELETED:
                        self._remove(obj, item.revision)
                    else:
                        self._put(obj)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Until the relist, lookups go to etcd.
                self._synced = False
                if isinstance(e, ApiError):
                    log.warning("admission copy interrupted; relisting",
                                resource=self.rtype.plural, error=str(e))
                else:
                    log.exception("admission copy failed; relisting", resource=self.rtype.plural)
                await asyncio.sleep(self.relist_delay)

    def _put(self, obj: Message) -> None:
        meta = m.meta(obj)
        names = self._objects.setdefault(meta.namespace, {})
        held = names.get(meta.name)
        if held is None or _revision(held) <= _revision(obj):
            names[meta.name] = obj
        self._live.pop(meta.namespace, None)

    def _remove(self, obj: Message, revision: int) -> None:
        meta = m.meta(obj)
        names = self._objects.get(meta.namespace, {})
        held = names.get(meta.name)
        if held is not None and _revision(held) <= revision:
            del names[meta.name]
            if not names:
                del self._objects[meta.namespace]

    def wrote(self, obj: Message) -> None:
        """This server just stored ``obj``, an update of an object the copy holds: take it now,
        before the watch brings it (a newer version from the watch is kept)."""
        meta = m.meta(obj)
        if meta.name in self._objects.get(meta.namespace, {}):
            self._put(obj)

    async def get(self, namespace: str, name: str) -> Message | None:
        """The object, or None when etcd does not have it either."""
        obj = self._objects.get(namespace, {}).get(name)
        if obj is not None:
            return obj
        try:
            return await self.storage.get(self.rtype, namespace, name)
        except NotFound:
            return None

    async def in_namespace(self, namespace: str) -> list[Message]:
        """Every object of the namespace (read-only: copy before changing)."""
        if self._synced:
            names = self._objects.get(namespace)
            if names:
                return list(names.values())
        loop = asyncio.get_running_loop()
        cached = self._live.get(namespace)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        items = (await self.storage.list(self.rtype, namespace)).items
        if len(self._live) >= LIVE_LOOKUPS_KEPT:
            now = loop.time()
            self._live = {ns: entry for ns, entry in self._live.items() if entry[0] > now}
            if len(self._live) >= LIVE_LOOKUPS_KEPT:
                self._live.clear()
        self._live[namespace] = (loop.time() + self.live_ttl, items)
        return items


class Sources:
    """The stores the enabled plugins share, one per resource, made on first use."""

    def __init__(
        self, storage: Storage, caches: dict[str, ResourceWatchCache], live_ttl: float
    ) -> None:
        self.storage = storage
        self.caches = caches
        self.live_ttl = live_ttl
        self.stores: dict[str, ObjectStore] = {}

    def store(self, plural: str) -> ObjectStore:
        store = self.stores.get(plural)
        if store is None:
            store = self.stores[plural] = ObjectStore(
                self.storage, self.caches[plural], self.live_ttl
            )
        return store
