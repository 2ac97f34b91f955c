"""Informers: a local, always-current copy of one kind, and notifications of its changes.

As client-go's reflector: list, then watch from the list's resourceVersion; on a broken stream
resume from the last version seen (bookmarks included) after a jittered backoff; on Expired
relist and reconcile the store with what the list returned; on anything unexpected, log it and
relist after the backoff (an informer ends only when stopped). Cached objects are shared: copy
before changing (kubelite.api.meta.copy).

``Informer.healthy`` says whether the copy is current: set right after a successful (re)list
and when a watch call delivers its first event or bookmark, cleared as soon as the watch
breaks and while the informer backs off. Readiness checks build on it (kubelite.health).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import ApiError, Expired
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=Message)
IndexFunc = Callable[[T], Iterable[str]]


def index_by_namespace(obj: Message) -> list[str]:
    return [m.meta(obj).namespace]


def index_by_owner_uid(obj: Message) -> list[str]:
    return [ref.uid for ref in m.meta(obj).owner_references]


def index_by_node_name(obj: Message) -> list[str]:
    return [obj.spec.node_name]  # type: ignore[attr-defined]


class Store(Generic[T]):
    """Objects by ``namespace/name`` key, with secondary indexes."""

    def __init__(self, indexers: dict[str, IndexFunc[T]] | None = None) -> None:
        self._items: dict[str, T] = {}
        self._indexers: dict[str, IndexFunc[T]] = {"namespace": index_by_namespace}
        self._indexers.update(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {n: {} for n in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str, name: str) -> T | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[T]:
        return [*self._items.values()]

    def keys(self) -> list[str]:
        return [*self._items]

    def by_index(self, index: str, value: str) -> list[T]:
        keys = self._indices[index].get(value, ())
        return [self._items[k] for k in keys]

    def add_indexer(self, name: str, func: IndexFunc[T]) -> None:
        self._indexers[name] = func
        self._indices[name] = {}
        for key, obj in self._items.items():
            self._index(name, key, obj)

    def _index(self, name: str, key: str, obj: T) -> None:
        for value in self._indexers[name](obj):
            self._indices[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: T) -> None:
        for name, func in self._indexers.items():
            for value in func(obj):
                keys = self._indices[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indices[name][value]

    def put(self, obj: T) -> T | None:
        key = m.key_of(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name in self._indexers:
            self._index(name, key, obj)
        return old

    def remove(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old


@dataclass(frozen=True)
class InformerSettings:
    resync_period: float = 0.0
    """Seconds between replays of every cached object as an update (0: never)."""
    backoff_initial: float = 0.2
    """First delay before re-watching after a broken stream, seconds (doubles, jittered)."""
    backoff_max: float = 5.0
    """Cap on that delay, seconds."""


@dataclass
class Handlers(Generic[T]):
    on_add: Callable[[T], None] | None = None
    on_update: Callable[[T, T], None] | None = None
    on_delete: Callable[[T], None] | None = None


@dataclass
class _Stats:
    lists: int = 0
    watches: int = 0
    events: int = 0


class Informer(Generic[T]):
    def __init__(
        self,
        client: ApiClient,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        indexers: dict[str, IndexFunc[T]] | None = None,
        settings: InformerSettings = InformerSettings(),
    ) -> None:
        self.client = client
        self.kind = kind
        self.rtype = by_message(kind)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.settings = settings
        self.store: Store[T] = Store(indexers)
        self.resource_version = ""
        self.stats = _Stats()
        self._handlers: list[Handlers[T]] = []
        self._synced = asyncio.Event()
        self._healthy = False
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None

    def add_handlers(
        self,
        on_add: Callable[[T], None] | None = None,
        on_update: Callable[[T, T], None] | None = None,
        on_delete: Callable[[T], None] | None = None,
    ) -> None:
        """Handlers run in the informer's task and must not block: enqueue keys, no I/O."""
        handlers = Handlers(on_add, on_update, on_delete)
        self._handlers.append(handlers)
        if handlers.on_add is not None:
            for obj in self.store.items():
                self._call(handlers.on_add, obj)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    @property
    def healthy(self) -> bool:
        """Synced and its watch established now (not broken, not backing off, not stopped)."""
        return self._healthy

    @property
    def description(self) -> str:
        """The resource with its namespace and selectors, as readiness reasons name it."""
        parts = [self.rtype.plural]
        if self.namespace:
            parts.append(f"namespace={self.namespace}")
        if self.label_selector:
            parts.append(f"labels={self.label_selector}")
        if self.field_selector:
            parts.append(f"fields={self.field_selector}")
        return " ".join(parts)

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.rtype.plural}")
            if self.settings.resync_period > 0:
                self._resync_task = asyncio.create_task(self._resync_forever())

    async def stop(self) -> None:
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        self._task = self._resync_task = None
        self._healthy = False

    async def _run(self) -> None:
        try:
            await self._list_and_watch()
        finally:
            self._healthy = False

    async def _list_and_watch(self) -> None:
        delay = self.settings.backoff_initial
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                self.stats.watches += 1
                async for event in self.client.watch(
                    self.kind,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    resource_version=self.resource_version,
                ):
                    delay = self.settings.backoff_initial
                    self._healthy = True
                    self._apply(event.type, event.object, event.resource_version)
            except Expired as e:
                self._healthy = False
                log.info("watch expired; relisting", resource=self.rtype.plural, error=str(e))
                need_list = True
                continue
            except ApiError as e:
                self._healthy = False
                log.warning(
                    "watch broke; resuming",
                    resource=self.rtype.plural,
                    resource_version=self.resource_version,
                    error=str(e),
                    retry_in=round(delay, 2),
                )
            except Exception:
                # Not an API answer (say, an object that does not decode): never the end of
                # the informer. Start over from a fresh list after the backoff.
                self._healthy = False
                log.exception("list or watch failed unexpectedly; relisting",
                              resource=self.rtype.plural, retry_in=round(delay, 2))
                need_list = True
            self._healthy = False
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.backoff_max)

    async def _list(self) -> None:
        self.stats.lists += 1
        result = await self.client.list(
            self.kind,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self._replace(result.items)
        self.resource_version = result.resource_version
        self._synced.set()
        self._healthy = True

    def _replace(self, items: list[T]) -> None:
        fresh = {m.key_of(o): o for o in items}
        for key in self.store.keys():
            if key not in fresh:
                old = self.store.remove(key)
                if old is not None:
                    self._notify_delete(old)
        for obj in items:
            old = self.store.put(obj)
            if old is None:
                self._notify_add(obj)
            elif m.meta(old).resource_version != m.meta(obj).resource_version:
                self._notify_update(old, obj)

    def _apply(self, kind: str, obj: T | None, resource_version: str) -> None:
        self.resource_version = resource_version
        if obj is None:  # BOOKMARK
            return
        self.stats.events += 1
        if kind == "DELETED":
            # A resumed watch may bring again the events of the revision it resumed in.
            if self.store.remove(m.key_of(obj)) is not None:
                self._notify_delete(obj)
            return
        old = self.store.put(obj)
        if old is None:
            self._notify_add(obj)
        else:
            self._notify_update(old, obj)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_period)
            for obj in self.store.items():
                self._notify_update(obj, obj)

    def _call(self, func: Callable[..., None], *args: T) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("informer handler failed", resource=self.rtype.plural)

    def _notify_add(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _notify_update(self, old: T, new: T) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _notify_delete(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)


@dataclass
class InformerFactory:
    """One informer per (kind, namespace, selectors) per process, shared by its controllers."""

    client: ApiClient
    settings: InformerSettings = field(default_factory=InformerSettings)
    _informers: dict[tuple[type[Message], str, str, str], Informer[Message]] = field(
        default_factory=dict
    )

    def informer(
        self,
        kind: type[T],
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> Informer[T]:
        key = (kind, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(
                self.client, kind, namespace, label_selector=label_selector,
                field_selector=field_selector, settings=self.settings,
            )
            self._informers[key] = informer
        return informer  # type: ignore[return-value]

    def start(self) -> None:
        for informer in self._informers.values():
            informer.start()

    async def wait_for_sync(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(i.wait_for_sync(timeout) for i in self._informers.values()))

    def unhealthy(self) -> list[str]:
        """Descriptions of the informers that are not healthy now (see Informer.healthy)."""
        return [i.description for i in self._informers.values() if not i.healthy]

    def healthy(self) -> bool:
        """Every informer made so far is synced and watching."""
        return not self.unhealthy()

    def informers(self) -> list[Informer[Message]]:
        """The informers made so far."""
        return [*self._informers.values()]

    async def stop(self) -> None:
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
