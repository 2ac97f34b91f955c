"""Recording Events about objects, as client-go's EventRecorder.

``record(obj, "Normal", "Scheduled", "...")`` returns at once; a background task writes the
Event. A repeat of the same (object, type, reason, message) within the cache's life bumps
``count`` and ``lastTimestamp`` of the existing Event instead of writing a new one.
Failures are logged, never raised into the caller's control loop.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

NORMAL, WARNING = "Normal", "Warning"


def object_reference(obj: Message) -> v1.ObjectReference:
    rtype = by_message(type(obj))
    meta = m.meta(obj)
    return v1.ObjectReference(
        kind=rtype.kind, namespace=meta.namespace, name=meta.name, uid=meta.uid,
        api_version=rtype.api_version, resource_version=meta.resource_version,
    )


@dataclass(frozen=True)
class _Pending:
    ref: v1.ObjectReference
    type: str
    reason: str
    message: str


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "",
                 max_pending: int = 1000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(max_pending)
        self._seen: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events-{self.component}")

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), flush_timeout)
        except TimeoutError:
            log.warning("dropping unwritten events on stop", pending=self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait(_Pending(object_reference(obj), type_, reason, message))
        except asyncio.QueueFull:
            log.warning("event queue full; dropping event", reason=reason)

    async def _run(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except ApiError as e:
                log.warning("could not write event", reason=pending.reason, error=str(e))
            except Exception:
                log.exception("could not write event", reason=pending.reason)
            finally:
                self._queue.task_done()

    async def _write(self, p: _Pending) -> None:
        now = m.now_rfc3339()
        namespace = p.ref.namespace or "default"
        key = (p.ref.uid or p.ref.name, p.type, p.reason, p.message)
        seen = self._seen.get(key)
        if seen is not None:
            name, _ = seen
            try:
                existing = await self.client.get(v1.Event, name, namespace)
                existing.count += 1
                existing.last_timestamp = now
                await self.client.update(existing)
                return
            except NotFound:
                del self._seen[key]
        event = v1.Event(
            metadata=v1.ObjectMeta(
                name=f"{p.ref.name}.{secrets.token_hex(8)}", namespace=namespace
            ),
            involved_object=p.ref,
            reason=p.reason,
            message=p.message[:1024],
            source=v1.EventSource(component=self.component, host=self.host),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type=p.type,
            reporting_component=self.component,
            reporting_instance=self.host,
        )
        created = await self.client.create(event)
        if len(self._seen) > 4096:
            self._seen.clear()
        self._seen[key] = (created.metadata.name, namespace)
