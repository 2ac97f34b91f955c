"""Events expire, as in Kubernetes (--event-ttl, one hour): each is stored with an etcd lease.

Granting a lease per event would double the writes; like Kubernetes' lease manager, one lease
is shared by the events created within a window, and lives ``ttl + window`` seconds, so every
event lives at least ``ttl``.
"""

from __future__ import annotations

import asyncio
import time

from apiserver.etcd import Etcd


class EventLeases:
    def __init__(self, etcd: Etcd, ttl: int, window: int = 60) -> None:
        self.etcd = etcd
        self.ttl = ttl
        self.window = max(1, min(window, ttl))
        self._lease = 0
        self._granted_at = 0.0
        self._lock = asyncio.Lock()

    async def lease(self) -> int:
        """The lease for an event created now (0 when events do not expire)."""
        if self.ttl <= 0:
            return 0
        async with self._lock:
            now = time.monotonic()
            if not self._lease or now - self._granted_at >= self.window:
                self._lease = await self.etcd.grant_lease(self.ttl + self.window)
                self._granted_at = now
            return self._lease
