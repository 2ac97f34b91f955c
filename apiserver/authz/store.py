"""In-memory copies of the objects authorization and authentication read, kept current by the
API server's own watch caches (an in-process informer: list from storage, then watch the
resource's cache from the list's revision; on any break, list again).

A ``Feed`` gets every object at the (re)list in one step and then every change: the RBAC
index, the Node authorizer's graph, the uids of ServiceAccounts for token checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog
from google.protobuf.message import Message

from apiserver.api import Api
from apiserver.watch_cache import BOOKMARK, DELETED
from kubelite.api import meta as m
from kubelite.api.errors import ApiError
from kubelite.api.registry import ResourceType

log = structlog.get_logger(__name__)


class Feed(Protocol):
    def reset(self, kind: str) -> None:
        """Forgets every object of ``kind`` (a relist follows at once)."""
        ...

    def apply(self, kind: str, obj: Message, deleted: bool) -> None:
        """An object of ``kind`` was added or changed (or ``deleted``: its last state)."""
        ...


@dataclass(frozen=True)
class StoreSettings:
    relist_delay: float = 0.5
    """Seconds before listing again after a watch broke."""


class LocalInformer:
    """Keeps ``feed`` current with every object of one resource."""

    def __init__(self, api: Api, rtype: ResourceType, feed: Feed,
                 settings: StoreSettings = StoreSettings()) -> None:
        self.api = api
        self.rtype = rtype
        self.feed = feed
        self.settings = settings
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"authz-{self.rtype.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        kind = self.rtype.kind
        cache = self.api.caches[self.rtype.plural]
        while True:
            try:
                result = await self.api.storage.list(self.rtype)
                # One step, no await: readers never see a half-filled copy.
                self.feed.reset(kind)
                for obj in result.items:
                    self.feed.apply(kind, obj, False)
                self.synced.set()
                async for item in cache.watch(result.revision, "", None):
                    if item.type == BOOKMARK:
                        continue
                    obj = self.rtype.decode(item.data)
                    self.feed.apply(kind, obj, item.type == DELETED)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                log.warning("authorization cache interrupted; listing again",
                            resource=self.rtype.plural, error=str(e))
            except Exception:
                log.exception("authorization cache failed; listing again",
                              resource=self.rtype.plural)
            await asyncio.sleep(self.settings.relist_delay)


class Uids:
    """uid and deletion time of every object of some kinds, by (kind, namespace, name): what
    a ServiceAccount token's bound objects are checked against."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], tuple[str, str]] = {}

    def reset(self, kind: str) -> None:
        for key in [k for k in self._objects if k[0] == kind]:
            del self._objects[key]

    def apply(self, kind: str, obj: Message, deleted: bool) -> None:
        meta = m.meta(obj)
        key = (kind, meta.namespace, meta.name)
        if deleted:
            self._objects.pop(key, None)
        else:
            self._objects[key] = (meta.uid, meta.deletion_timestamp)

    def get(self, kind: str, namespace: str, name: str) -> tuple[str, str] | None:
        """(uid, deletionTimestamp or "") of the object, None when there is none."""
        return self._objects.get((kind, namespace, name))
