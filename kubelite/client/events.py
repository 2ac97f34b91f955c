"""Recording Events about objects, as client-go's EventRecorder and EventCorrelator.

``record(obj, "Normal", "Scheduled", "...")`` returns at once; a background task writes the
Event. Before anything is queued, each event goes through the correlator, with upstream's
semantics and defaults (``EventCorrelationSettings``):

- Aggregation: events that differ only by message (same source, involved object, type and
  reason) are similar. Once ``aggregate_max_events`` distinct messages of one such group
  have been seen, each seen within ``aggregate_interval`` of the one before, the group's
  further events are folded into one Event whose message is ``(combined from similar
  events): <latest message>``: it is created once, then its ``count``, ``lastTimestamp``
  and message are updated.
- Dedup: a repeat of an identical event (message too) bumps ``count`` and
  ``lastTimestamp`` of the Event already written instead of writing a new one.
- Spam filter: each source and involved object has a token bucket (``spam_burst`` events,
  refilled at ``spam_qps``); events past it are dropped and counted in ``dropped``.

Writes of one Event that wait in the queue together become one write carrying the latest
count, so a burst of repeats costs one request. Failures are logged, never raised into the
caller's control loop.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Generic, TypeVar

import structlog
from google.protobuf.message import Message

from kubelite.api import meta as m
from kubelite.api.errors import ApiError, NotFound
from kubelite.api.registry import by_message
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1

log = structlog.get_logger(__name__)

NORMAL, WARNING = "Normal", "Warning"

COMBINED_PREFIX = "(combined from similar events): "
"""What an aggregated Event's message starts with (client-go's
EventAggregatorByReasonMessageFunc)."""

MAX_MESSAGE_LENGTH = 1024


def object_reference(obj: Message) -> v1.ObjectReference:
    rtype = by_message(type(obj))
    meta = m.meta(obj)
    return v1.ObjectReference(
        kind=rtype.kind, namespace=meta.namespace, name=meta.name, uid=meta.uid,
        api_version=rtype.api_version, resource_version=meta.resource_version,
    )


@dataclass(frozen=True)
class EventCorrelationSettings:
    """How a recorder folds, counts and limits the events it is given (client-go's
    CorrelatorOptions; the defaults are client-go's)."""

    cache_entries: int = 4096
    """Entries each of the correlator's caches (similar groups, written Events, spam
    buckets) keeps, least recently used dropped first (client-go's maxLruCacheEntries)."""
    aggregate_max_events: int = 10
    """Distinct messages of one similar group after which its events are folded into one
    combined Event (client-go's defaultAggregateMaxEvents)."""
    aggregate_interval: float = 600.0
    """Seconds without a similar event after which a group starts counting afresh
    (client-go's defaultAggregateIntervalInSeconds)."""
    spam_burst: int = 25
    """Events a source may write about one object at once (client-go's
    defaultSpamBurst)."""
    spam_qps: float = 1 / 300
    """Events per second the spam budget of a source and object refills at: one every five
    minutes (client-go's defaultSpamQPS)."""
    max_pending: int = 1000
    """Events waiting to be written; past it further events are dropped (counted in
    ``EventRecorder.queue_dropped``) so that recording never blocks a caller."""
    drop_log_interval: float = 10.0
    """Seconds between warnings about events dropped from a full queue: the first drop is
    logged at once, later ones as one line with their count per interval (a line per drop
    gave a busy scheduler 3,810 lines for 5,000 pods)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{f.name}: must be a positive integer, got {value!r}")
            elif (isinstance(value, bool) or not isinstance(value, int | float)
                  or not value > 0):
                raise ValueError(f"{f.name}: must be a positive number, got {value!r}")


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A map that keeps its ``size`` most recently used entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class _Group:
    """The distinct messages of one similar group seen lately."""

    messages: set[str]
    last_seen: float


@dataclass(slots=True)
class _Observation:
    """An Event already on its way to the server, which repeats update."""

    name: str
    first_timestamp: str
    count: int


@dataclass(slots=True)
class _TokenBucket:
    tokens: float
    updated: float

    def take(self, burst: int, qps: float, now: float) -> bool:
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * qps)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class Correlated:
    """What to write for one recorded event."""

    event: v1.Event
    """The Event as the server should have it now (its name, count and timestamps)."""
    update: bool
    """The Event was written before: update its count, timestamp and message."""


def _source_object_key(event: v1.Event) -> tuple[str, ...]:
    ref = event.involved_object
    return (event.source.component, event.source.host, ref.kind, ref.namespace, ref.name,
            ref.uid, ref.api_version)


class EventCorrelator:
    """Folds, counts and limits events before they are written (client-go's
    EventCorrelator): see the module's docstring. ``clock`` gives seconds (monotonic)."""

    def __init__(self, settings: EventCorrelationSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._groups: _Lru[tuple[str, ...], _Group] = _Lru(settings.cache_entries)
        self._observations: _Lru[tuple[str, ...], _Observation] = _Lru(settings.cache_entries)
        self._buckets: _Lru[tuple[str, ...], _TokenBucket] = _Lru(settings.cache_entries)

    def correlate(self, event: v1.Event) -> Correlated | None:
        """What to write for ``event`` (a new Event, named), or None when the spam filter
        drops it. As upstream, a dropped repeat still counts towards its Event's count."""
        now = self._clock()
        event, key = self._aggregate(event, now)
        observed, update = self._observe(event, key)
        if not self._allow(event, now):
            return None
        return Correlated(observed, update)

    def _aggregate(self, event: v1.Event, now: float) -> tuple[v1.Event, tuple[str, ...]]:
        """The event itself and its dedup key, or the group's combined Event and the
        group's key once the group has seen enough distinct messages."""
        group_key = (*_source_object_key(event), event.type, event.reason)
        event_key = (*group_key, event.involved_object.field_path, event.message)
        group = self._groups.get(group_key)
        if group is None or now - group.last_seen > self.settings.aggregate_interval:
            group = _Group(set(), now)
        limit = self.settings.aggregate_max_events
        if len(group.messages) < limit:  # bounded: past the limit all are combined anyway
            group.messages.add(event.message)
        group.last_seen = now
        self._groups.put(group_key, group)
        if len(group.messages) < limit:
            return event, event_key
        combined = v1.Event()
        combined.CopyFrom(event)
        combined.message = (COMBINED_PREFIX + event.message)[:MAX_MESSAGE_LENGTH]
        combined.involved_object.field_path = ""
        return combined, ("combined", *group_key)

    def _observe(self, event: v1.Event, key: tuple[str, ...]) -> tuple[v1.Event, bool]:
        seen = self._observations.get(key)
        if seen is None:
            self._observations.put(key, _Observation(
                event.metadata.name, event.first_timestamp, event.count))
            return event, False
        seen.count += 1
        observed = v1.Event()
        observed.CopyFrom(event)
        observed.metadata.name = seen.name
        observed.first_timestamp = seen.first_timestamp
        observed.count = seen.count
        return observed, True

    def _allow(self, event: v1.Event, now: float) -> bool:
        key = _source_object_key(event)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _TokenBucket(float(self.settings.spam_burst), now)
            self._buckets.put(key, bucket)
        return bucket.take(self.settings.spam_burst, self.settings.spam_qps, now)


@dataclass(slots=True)
class _Write:
    event: v1.Event
    update: bool


class EventRecorder:
    """Records Events about objects for ``component`` (on ``host``): ``record`` returns at
    once; ``start`` runs the writer, ``stop`` flushes it. ``dropped`` counts events the
    spam filter dropped, ``queue_dropped`` those dropped because ``max_pending`` writes
    were waiting."""

    def __init__(self, client: ApiClient, component: str, host: str = "",
                 settings: EventCorrelationSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.settings = settings or EventCorrelationSettings()
        self.correlator = EventCorrelator(self.settings, clock)
        self._clock = clock
        self._drops_logged = 0
        """``queue_dropped`` as of the last warning about drops."""
        self._drop_logged_at: float | None = None
        self.dropped = 0
        self.queue_dropped = 0
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(self.settings.max_pending)
        self._pending: dict[tuple[str, str], _Write] = {}
        """The write waiting for each queued (namespace, name)."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"events-{self.component}")

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self.queue_dropped > self._drops_logged:
            self._log_drops()  # those of the last interval
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
            ref = object_reference(obj)
        except Exception:
            log.exception("could not record event", reason=reason)
            return
        now = m.now_rfc3339()
        event = v1.Event(
            metadata=v1.ObjectMeta(
                name=f"{ref.name}.{secrets.token_hex(8)}", namespace=ref.namespace or "default"
            ),
            involved_object=ref,
            reason=reason,
            message=message[:MAX_MESSAGE_LENGTH],
            source=v1.EventSource(component=self.component, host=self.host),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            type=type_,
            reporting_component=self.component,
            reporting_instance=self.host,
        )
        correlated = self.correlator.correlate(event)
        if correlated is None:
            self.dropped += 1
            log.debug("event dropped by the spam filter", reason=reason, object=ref.name,
                      dropped=self.dropped)
            return
        key = (correlated.event.metadata.namespace, correlated.event.metadata.name)
        waiting = self._pending.get(key)
        if waiting is not None:
            # Nothing was written since that write was queued: it carries this state too.
            waiting.event = correlated.event
            return
        try:
            self._queue.put_nowait(key)
        except asyncio.QueueFull:
            self.queue_dropped += 1
            at = self._clock()
            if (self._drop_logged_at is None
                    or at - self._drop_logged_at >= self.settings.drop_log_interval):
                self._log_drops(reason)
                self._drop_logged_at = at
            return
        self._pending[key] = _Write(correlated.event, correlated.update)

    def _log_drops(self, reason: str = "") -> None:
        log.warning("event queue full; dropping events",
                    dropped=self.queue_dropped - self._drops_logged,
                    queue_dropped=self.queue_dropped, **({"reason": reason} if reason else {}))
        self._drops_logged = self.queue_dropped

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            write = self._pending.pop(key)
            try:
                await self._write(write)
            except ApiError as e:
                log.warning("could not write event", reason=write.event.reason, error=str(e))
            except Exception:
                log.exception("could not write event", reason=write.event.reason)
            finally:
                self._queue.task_done()

    async def _write(self, write: _Write) -> None:
        event = write.event
        if write.update:
            try:
                await self.client.patch(
                    v1.Event, event.metadata.name,
                    {"count": event.count, "lastTimestamp": event.last_timestamp,
                     "message": event.message},
                    event.metadata.namespace,
                )
                return
            except NotFound:
                pass  # expired (events live --event-ttl), or its create failed: write it anew
        await self.client.create(event)
