"""Image garbage collection, as the kubelet's image manager does it: when the image
filesystem's usage passes the high threshold, images no container uses (running or exited)
are removed, least recently seen in use first, until usage is down to the low threshold."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from kubelet.runtime.interface import ImageInfo, Runtime, RuntimeError_

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ImageGCSettings:
    high_threshold_percent: int = 85
    """Usage of the image filesystem (percent) that starts a collection."""
    low_threshold_percent: int = 80
    """Usage (percent) a collection brings it down to."""
    interval: float = 300.0
    """Seconds between checks (upstream checks every 5 minutes)."""

    def __post_init__(self) -> None:
        if not 0 <= self.low_threshold_percent <= self.high_threshold_percent <= 100:
            raise ValueError(
                f"image GC thresholds: must satisfy 0 <= low ({self.low_threshold_percent}) <="
                f" high ({self.high_threshold_percent}) <= 100")


@dataclass(frozen=True)
class Collection:
    """What one check did."""

    usage_percent: float
    freed_bytes: int = 0
    removed: tuple[str, ...] = ()
    wanted_bytes: int = 0
    """How much had to go (0: usage was below the high threshold)."""


class ImageGarbageCollector:
    def __init__(self, runtime: Runtime, settings: ImageGCSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self._last_used: dict[str, float] = {}
        """When each image was last seen in use."""
        self._first_seen: dict[str, float] = {}
        """When each image was first seen."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="image-gc")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.collect()
            except RuntimeError_ as e:
                log.warning("image garbage collection failed", error=e.message)
            await asyncio.sleep(self.settings.interval)

    async def _in_use(self, images: list[ImageInfo]) -> set[str]:
        """Ids of images some container was made from, by id or by any of its tags."""
        used_refs = {c.image for c in await self.runtime.list_containers()}
        return {i.id for i in images if i.id in used_refs or used_refs & set(i.tags)}

    async def collect(self) -> Collection:
        usage = await self.runtime.image_fs_usage()
        if usage is None or usage.capacity_bytes <= 0:
            return Collection(usage_percent=0.0)
        percent = usage.used_bytes * 100 / usage.capacity_bytes
        images = await self.runtime.list_images()
        in_use = await self._in_use(images)
        now = time.time()
        for image in images:
            self._first_seen.setdefault(image.id, now)
            if image.id in in_use:
                self._last_used[image.id] = now
        present = {i.id for i in images}
        for table in (self._first_seen, self._last_used):
            for gone in set(table) - present:
                del table[gone]
        if percent < self.settings.high_threshold_percent:
            return Collection(usage_percent=percent)
        low = self.settings.low_threshold_percent
        wanted = usage.used_bytes - usage.capacity_bytes * low // 100
        candidates = sorted(
            (i for i in images if i.id not in in_use and not i.pinned),
            # Never used first, then least recently used; ties by first seen.
            key=lambda i: (self._last_used.get(i.id, 0.0), self._first_seen[i.id]),
        )
        freed, removed = 0, []
        for image in candidates:
            if freed >= wanted:
                break
            await self.runtime.remove_image(image.id)
            self._last_used.pop(image.id, None)
            self._first_seen.pop(image.id, None)
            freed += image.size_bytes
            removed.append(image.tags[0] if image.tags else image.id)
        log.info("image garbage collection", usage_percent=round(percent, 1),
                 wanted_bytes=wanted, freed_bytes=freed, removed=removed)
        if freed < wanted:
            log.warning("image garbage collection freed less than wanted: the rest is in use",
                        wanted_bytes=wanted, freed_bytes=freed)
        return Collection(usage_percent=percent, freed_bytes=freed, removed=tuple(removed),
                          wanted_bytes=wanted)
