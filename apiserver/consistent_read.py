"""Consistent reads from the watch cache: a read sees every write that was acknowledged
before it arrived, as a read from etcd would, without reading the object from etcd.

The read asks etcd for its current revision, in a request that starts after the read arrived,
then waits until the resource's cache has every change up to that revision (Kubernetes'
consistent reads from cache, KEP 2340). Reads that arrive together share one such request:
whoever arrives while one is in flight waits for the next, which starts once that one is
answered (and may wait a little longer for company, ``CurrentRevision``), so the revision
each read gets is never older than its arrival. One etcd round trip thus serves every read
of a burst.

How the cache knows it has caught up: from its own watch's events (an event of revision R
means every change of the resource up to R has arrived; etcd sends them in order), or from a
progress notification, which says the same of the whole stream. etcd before 3.4.31 and 3.5.13
may send a progress notification ahead of events it has not sent yet, so on those versions,
as Kubernetes does, only events count, and a read whose resource has not changed since the
revision it must reach is read from etcd instead.
"""

from __future__ import annotations

import asyncio
import re

from apiserver.etcd import Etcd

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def progress_notify_is_reliable(etcd_version: str) -> bool:
    """Whether etcd at ``etcd_version`` sends a progress notification only once every event
    up to its revision has been sent (fixed in 3.4.31 and 3.5.13)."""
    match = _VERSION.match(etcd_version)
    if match is None:
        return False
    major, minor, patch = (int(g) for g in match.groups())
    if (major, minor) == (3, 4):
        return patch >= 31
    if (major, minor) == (3, 5):
        return patch >= 13
    return (major, minor) > (3, 5)


class CurrentRevision:
    """etcd's current revision, fetched by one request for every caller of a burst, and
    never from a request that started before the caller asked.

    One request is in flight at a time. Callers that come meanwhile wait for the next, which
    leaves once that one is answered and once it has as many callers as the last one that
    left, or ``linger`` after its first caller came: a busy server takes requests up one at a
    time, so its readers seldom arrive together, while one reader at a time never waits."""

    def __init__(self, etcd: Etcd, linger: float = 0.005) -> None:
        self.etcd = etcd
        self.linger = linger
        """Seconds the next request may wait for as many readers as the last one had."""
        self._in_flight = False
        self._next: asyncio.Future[int] | None = None
        """The future of the request not sent yet, which new callers join."""
        self._next_since = 0.0
        self._next_readers = 0
        self._expected = 1
        """Callers of the last request sent: how many the next is expected to gather."""
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        """Requests sent to etcd."""

    async def get(self) -> int:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            self._next_since = loop.time()
            self._next_readers = 0
        future = self._next
        self._next_readers += 1
        self._send_when_due()
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _send_when_due(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._next is None or self._in_flight:
            return  # sent when the one in flight is answered
        loop = asyncio.get_running_loop()
        due = self._next_since + self.linger
        if self._next_readers < self._expected and loop.time() < due:
            self._timer = loop.call_at(due, self._send_when_due)
            return
        future, self._next = self._next, None
        self._expected = self._next_readers
        self._in_flight = True
        task = asyncio.create_task(self._run(future), name="etcd-current-revision")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, future: asyncio.Future[int]) -> None:
        try:
            self.requests += 1
            revision = await self.etcd.current_revision()
        except Exception as e:  # noqa: BLE001 - every waiting reader gets the failure
            future.set_exception(e)
            future.exception()  # retrieved here: readers that went away need not see it
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(revision)
        finally:
            self._in_flight = False
            self._send_when_due()
