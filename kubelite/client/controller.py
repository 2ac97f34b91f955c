"""The controller loop: handlers enqueue keys; workers call ``reconcile(key)``; the queue retries.

A subclass wires informer handlers to ``enqueue`` and implements ``reconcile``, which re-reads
the current state from the informers' stores and makes the world match it. An exception from
``reconcile`` sends the key back with per-key exponential backoff; success forgets the key's
failure count.
"""

from __future__ import annotations

import abc
import asyncio

import structlog
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.client.workqueue import RateLimit, ShutDown, WorkQueue

log = structlog.get_logger(__name__)


class Controller(abc.ABC):
    name: str = "controller"

    def __init__(self, workers: int = 1, rate_limit: RateLimit = RateLimit()) -> None:
        self.workers = workers
        self.queue = WorkQueue(rate_limit, name=self.name)
        self._tasks: list[asyncio.Task[None]] = []

    def enqueue(self, obj: Message) -> None:
        self.queue.add(m.key_of(obj))

    @abc.abstractmethod
    async def reconcile(self, key: str) -> None:
        """Make the world match the desired state for ``key``; raise to retry later."""

    async def start(self) -> None:
        """Hook for subclasses: wait for caches, then workers start."""

    def run(self) -> None:
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}"))

    async def stop(self) -> None:
        await self.queue.shut_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                retries = self.queue.num_requeues(key)
                log.warning(
                    "reconcile failed; will retry", controller=self.name, key=key,
                    error=f"{type(e).__name__}: {e}", retries=retries,
                    exc_info=not _expected(e),
                )
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)


def _expected(error: Exception) -> bool:
    from kubelite.api.errors import ApiError

    return isinstance(error, ApiError)
