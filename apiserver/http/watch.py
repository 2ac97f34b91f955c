"""Watches over HTTP: ``GET ...?watch=true`` as kube-apiserver streams them.

The response is chunked JSON, one ``{"type": ..., "object": ...}`` per line: ADDED, MODIFIED
and DELETED with the object, BOOKMARK (when ``allowWatchBookmarks``) with an object of the
kind that carries only ``metadata.resourceVersion``, and ERROR with a Status, after which the
stream ends: a resourceVersion compacted away is an ERROR with a 410 Expired Status, and the
client lists again. The resourceVersion semantics are the gRPC Watch's (Api.watch): unset or
"0" starts with the current objects as ADDED, any other version with the changes after it. A
watch ends after ``timeoutSeconds`` (by default a random time between the server's minimum
request timeout and twice that, as upstream spreads relists), or when the server stops.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from google.protobuf.message import Message

from apiserver.api import Api, parse_selectors
from apiserver.http.routes import ResourceRequest, is_true
from apiserver.http.status import JSON, dumps, status
from apiserver.watch_cache import BOOKMARK, WatchItem
from kubelite.api.errors import ApiError, BadRequest, Invalid, Unavailable
from kubelite.api.field_errors import FieldPath

log = structlog.get_logger(__name__)

ERROR = "ERROR"


@dataclass(frozen=True)
class WatchSettings:
    min_request_timeout: float = 1800.0
    """Seconds: a watch that names no timeoutSeconds ends after a random time between this
    and twice this, so clients' relists spread out (kube-apiserver's --min-request-timeout)."""

    def __post_init__(self) -> None:
        if not self.min_request_timeout > 0:
            raise ValueError(f"--min-request-timeout: must be more than 0, got"
                             f" {self.min_request_timeout}")


def _timeout(query: Any, settings: WatchSettings) -> float:
    text = query.get("timeoutSeconds")
    if text is None or text == "":
        low = settings.min_request_timeout
        return random.uniform(low, 2 * low)
    try:
        seconds = int(text)
    except ValueError:
        raise BadRequest(f'timeoutSeconds: Invalid value: "{text}": must be an integer'
                         ) from None
    if seconds < 0:
        raise BadRequest(f"timeoutSeconds: Invalid value: {seconds}: must not be negative")
    return float(seconds)


def event(kind: str, obj: dict[str, Any]) -> bytes:
    return dumps({"type": kind, "object": obj}) + b"\n"


class Watches:
    """The HTTP watches being served: each ends at its deadline, or all at once on stop."""

    def __init__(self, settings: WatchSettings) -> None:
        self.settings = settings
        self._deadlines: set[asyncio.Timeout] = set()
        self._stopping = False

    @property
    def active(self) -> int:
        return len(self._deadlines)

    def stop(self) -> None:
        """Ends every watch now (cleanly: the client sees its stream end and re-watches
        elsewhere); later ones end at once."""
        self._stopping = True
        now = asyncio.get_running_loop().time()
        for deadline in self._deadlines:
            deadline.reschedule(now)

    async def serve(self, http: web.Request, api: Api, request: ResourceRequest,
                    encode: Callable[[Message], dict[str, Any]], *, table: bool = False
                    ) -> web.StreamResponse:
        """Streams the watch of ``request``; ``encode`` renders each object as asked."""
        rtype, query = request.rtype, http.query
        label_selector = query.get("labelSelector", "")
        field_selector = query.get("fieldSelector", "")
        if request.name:
            # A watch of one object is a watch of its name.
            field_selector = ",".join(
                s for s in (field_selector, f"metadata.name={request.name}") if s)
        # Bad input is a 400 before the stream starts; later failures are ERROR events.
        parse_selectors(rtype, label_selector, field_selector)
        if is_true(query.get("sendInitialEvents")):
            # Upstream's answer while its WatchList feature is off; clients then list and
            # watch.
            raise Invalid.from_field_errors("ListOptions.meta.k8s.io", "", [
                FieldPath("sendInitialEvents").forbidden(
                    "sendInitialEvents is forbidden for watch unless the WatchList feature"
                    " gate is enabled")])
        version = query.get("resourceVersion", "")
        if version not in ("", "0"):
            try:
                if int(version) < 0:
                    raise ValueError
            except ValueError:
                raise BadRequest(f'resourceVersion: Invalid value: "{version}": must be a'
                                 " non-negative integer") from None
        bookmarks = is_true(query.get("allowWatchBookmarks")) and not table
        timeout = _timeout(query, self.settings)

        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(http)
        batches = api.watch_batches(rtype, request.namespace, label_selector, field_selector,
                                    version)
        try:
            async with asyncio.timeout(timeout) as deadline:
                self._deadlines.add(deadline)
                if self._stopping:
                    deadline.reschedule(asyncio.get_running_loop().time())
                try:
                    async for batch in batches:
                        # The events ready together go in one write: one syscall for many, and
                        # a revision's events leave together.
                        lines = b"".join(self._line(rtype, item, encode, bookmarks)
                                         for item in batch)
                        if lines:
                            await response.write(lines)
                finally:
                    self._deadlines.discard(deadline)
        except TimeoutError:
            if not deadline.expired():
                raise
        except Unavailable as e:
            # Closed by the cache (too far behind) or etcd lost: the client resumes from its
            # last version, as after any end of stream.
            log.info("watch ended", resource=rtype.plural, reason=str(e))
        except ApiError as e:
            await response.write(event(ERROR, status(e, rtype)))
        finally:
            await batches.aclose()  # the cache's watcher goes now, not at GC
        await response.write_eof()
        return response

    @staticmethod
    def _line(rtype: Any, item: WatchItem, encode: Callable[[Message], dict[str, Any]],
              bookmarks: bool) -> bytes:
        if item.type == BOOKMARK:
            if not bookmarks:
                return b""
            return event(BOOKMARK, {"kind": rtype.kind, "apiVersion": rtype.api_version,
                                    "metadata": {"resourceVersion": str(item.revision)}})
        return event(item.type, encode(rtype.decode(item.data)))
