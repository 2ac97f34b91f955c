"""An asyncio work queue with client-go's guarantees.

- A key is never handed to two workers at once: a key added while it is being processed is
  marked dirty and handed out again after ``done``.
- Adding a key that is already waiting does nothing (repeated adds collapse).
- ``add_rate_limited`` re-adds after a per-key exponential backoff; ``forget`` resets it.
- ``add_after`` adds after a delay; the earliest pending delay for a key wins.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


class ShutDown(Exception):
    """The queue was shut down; workers should return."""


@dataclass(frozen=True)
class RateLimit:
    base_delay: float = 0.005
    """First retry delay, seconds; it doubles on each failure of the same key."""
    max_delay: float = 1000.0
    """Cap on the per-key delay, seconds (client-go's default controller limiter)."""

    def delay(self, failures: int) -> float:
        return float(min(self.base_delay * (2 ** min(failures, 62)), self.max_delay))


class WorkQueue:
    def __init__(self, rate_limit: RateLimit = RateLimit(), name: str = "") -> None:
        self.name = name
        self.rate_limit = rate_limit
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._delayed: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._ready = asyncio.Condition()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._notify()

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._ready:
                self._ready.notify()

        # Condition.notify needs the lock; take it in a task so add() stays synchronous.
        task = asyncio.get_running_loop().create_task(wake())
        task.add_done_callback(_log_failure)

    def add_after(self, key: str, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        handle = loop.call_at(when, self._fire_delayed, key)
        self._delayed[key] = (when, handle)

    def _fire_delayed(self, key: str) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, self.rate_limit.delay(failures))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        async with self._ready:
            await self._ready.wait_for(lambda: bool(self._queue) or self._shutting_down)
            if not self._queue:
                raise ShutDown(self.name)
            key = self._queue.popleft()
            self._processing.add(key)
            self._dirty.discard(key)
            return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    async def shut_down(self) -> None:
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        async with self._ready:
            self._ready.notify_all()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        import structlog

        structlog.get_logger(__name__).error("work queue wake-up failed", exc_info=task.exception())
