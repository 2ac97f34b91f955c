"""Consistent reads from the watch cache: a read sees every write that was acknowledged
before it arrived, as a read from etcd would, without reading the object from etcd.

The read asks etcd for its current revision, in a request that starts after the read arrived,
then waits until the resource's cache has every change up to that revision (Kubernetes'
consistent reads from cache, KEP 2340). Reads that arrive together share one such request:
whoever arrives while one is in flight waits for the next, which starts as soon as that one
is answered (or a millisecond after the first of them came, if that is later: a busy server
takes requests up one at a time), so the revision each read gets is never older than its
arrival. One etcd round trip thus serves every read of a burst.

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
    never from a request that started before the caller asked."""

    def __init__(self, etcd: Etcd, linger: float = 0.001) -> None:
        self.etcd = etcd
        self.linger = linger
        """Seconds the next request waits for more readers when readers came while one was
        in flight (a busy server takes requests up one at a time)."""
        self._in_flight: asyncio.Future[int] | None = None
        self._next: asyncio.Future[int] | None = None
        self._next_since = 0.0
        self._sent = False
        """Whether the request of the future in flight has been sent to etcd."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        """Requests sent to etcd."""

    async def get(self) -> int:
        if self._in_flight is None:
            future = self._in_flight = asyncio.get_running_loop().create_future()
            self._fetch(future)
        elif not self._sent:
            future = self._in_flight  # its request has not left yet: it is recent enough
        else:
            # The one in flight may have been answered before this call: wait for the next.
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
                self._next_since = asyncio.get_running_loop().time()
            future = self._next
        return await asyncio.shield(future)

    async def close(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _fetch(self, future: asyncio.Future[int], not_before: float = 0.0) -> None:
        self._sent = False
        task = asyncio.create_task(self._run(future, not_before), name="etcd-current-revision")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, future: asyncio.Future[int], not_before: float = 0.0) -> None:
        try:
            delay = not_before - asyncio.get_running_loop().time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._sent = True
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
            self._in_flight, self._next = self._next, None
            if self._in_flight is not None:
                self._fetch(self._in_flight, self._next_since + self.linger)
