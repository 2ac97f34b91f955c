"""The scheduling queue, as kube-scheduler's internal/queue PriorityQueue.

Three places a waiting pod can be:

- activeQ: ready to be tried, highest priority first, then the oldest;
- backoffQ: tried and failed recently; leaves for activeQ when its backoff (initial * 2^(n-1)
  after n attempts, capped) has passed;
- unschedulable: rejected by some plugins; parked until a cluster event that one of those
  plugins cares about (node added or changed, an assigned pod deleted), then moved to
  backoffQ or activeQ, or until it has waited ``max_in_unschedulable`` (a flush).

A popped pod is *in flight* until ``done``: adds and updates for it only refresh the stored
object, so a pod is never handed out twice at once. If a cluster event arrives while a pod
is in flight, its failure sends it to backoffQ instead of parking it, as upstream's
moveRequestCycle does, so it cannot miss the event that would have freed it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog

from protos.v1 import objects_pb2 as v1
from scheduler.framework import ClusterEvent, PodInfo

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class QueueSettings:
    pod_initial_backoff: float = 1.0
    """Seconds a pod waits after its first failed attempt; doubles with each attempt."""
    pod_max_backoff: float = 10.0
    """Cap on the per-pod backoff, seconds."""
    max_in_unschedulable: float = 300.0
    """Seconds an unschedulable pod waits for a helpful event before it is retried anyway."""
    unschedulable_flush_interval: float = 30.0
    """Seconds between checks for pods parked longer than ``max_in_unschedulable``."""


@dataclass(eq=False)
class QueuedPodInfo:
    pod_info: PodInfo
    timestamp: float
    """When the pod last entered the queue (its FIFO position and backoff start)."""
    initial_timestamp: float
    """When the pod first entered the queue (for latency figures)."""
    attempts: int = 0
    """Scheduling attempts so far; drives the backoff."""
    unschedulable_plugins: frozenset[str] = frozenset()
    """Plugins that rejected the pod in its last attempt."""
    cycle: int = 0
    """The scheduling cycle of the last pop."""

    @property
    def pod(self) -> v1.Pod:
        return self.pod_info.pod

    @property
    def uid(self) -> str:
        return self.pod_info.uid

    @property
    def priority(self) -> int:
        return self.pod.spec.priority if self.pod.spec.HasField("priority") else 0


ACTIVE, BACKOFF, UNSCHEDULABLE, IN_FLIGHT = "active", "backoff", "unschedulable", "in-flight"


@dataclass
class _InFlight:
    info: QueuedPodInfo
    deleted: bool = False
    updated: bool = False
    """The pod's spec or labels changed while it was being scheduled."""


def is_pod_updated(old: v1.Pod, new: v1.Pod) -> bool:
    """Whether an update may change the pod's scheduling result: anything but status and
    resourceVersion (upstream's isPodUpdated), so our own status writes do not requeue it."""
    def strip(pod: v1.Pod) -> bytes:
        copy = v1.Pod()
        copy.CopyFrom(pod)
        copy.ClearField("status")
        copy.metadata.resource_version = ""
        copy.metadata.generation = 0
        return copy.SerializeToString(deterministic=True)

    return strip(old) != strip(new)


class SchedulingQueue:
    def __init__(
        self,
        settings: QueueSettings = QueueSettings(),
        *,
        make_pod_info: Callable[[v1.Pod], PodInfo] = PodInfo.of,
        event_plugins: Mapping[ClusterEvent, frozenset[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``event_plugins``: for each cluster event, the plugins whose rejections it may
        resolve; None means every event may help every pod."""
        self.settings = settings
        self._make_pod_info = make_pod_info
        self._event_plugins = event_plugins
        self._clock = clock
        self._seq = itertools.count()
        self._active: dict[str, QueuedPodInfo] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []
        self._active_key: dict[str, tuple[int, float, int, str]] = {}
        self._backoff: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self._backoff_key: dict[str, tuple[float, int, str]] = {}
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._in_flight: dict[str, _InFlight] = {}
        self.scheduling_cycle = 0
        self._move_request_cycle = -1
        self._has_active = asyncio.Event()
        self._wake_flusher = asyncio.Event()
        self._closed = False

    # ---------------------------------------------------------------- introspection

    def where(self, uid: str) -> str | None:
        if uid in self._active:
            return ACTIVE
        if uid in self._backoff:
            return BACKOFF
        if uid in self._unschedulable:
            return UNSCHEDULABLE
        if uid in self._in_flight:
            return IN_FLIGHT
        return None

    def counts(self) -> dict[str, int]:
        return {
            ACTIVE: len(self._active),
            BACKOFF: len(self._backoff),
            UNSCHEDULABLE: len(self._unschedulable),
            IN_FLIGHT: len(self._in_flight),
        }

    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self._unschedulable)

    # ---------------------------------------------------------------- backoff

    def backoff_duration(self, info: QueuedPodInfo) -> float:
        s = self.settings
        if info.attempts == 0:
            return 0.0
        return float(min(s.pod_initial_backoff * 2 ** min(info.attempts - 1, 62),
                         s.pod_max_backoff))

    def backoff_expiry(self, info: QueuedPodInfo) -> float:
        return info.timestamp + self.backoff_duration(info)

    def is_backing_off(self, info: QueuedPodInfo) -> bool:
        return self.backoff_expiry(info) > self._clock()

    # ---------------------------------------------------------------- moving between queues

    def _push_active(self, info: QueuedPodInfo) -> None:
        key = (-info.priority, info.timestamp, next(self._seq), info.uid)
        self._active[info.uid] = info
        self._active_key[info.uid] = key
        heapq.heappush(self._active_heap, key)
        self._has_active.set()

    def _push_backoff(self, info: QueuedPodInfo) -> None:
        key = (self.backoff_expiry(info), next(self._seq), info.uid)
        self._backoff[info.uid] = info
        self._backoff_key[info.uid] = key
        heapq.heappush(self._backoff_heap, key)
        if self._backoff_heap[0] is key:
            self._wake_flusher.set()

    def _remove(self, uid: str) -> QueuedPodInfo | None:
        """Takes the pod out of whichever queue holds it (heaps are cleaned lazily)."""
        info = self._active.pop(uid, None)
        if info is not None:
            self._active_key.pop(uid, None)
            return info
        info = self._backoff.pop(uid, None)
        if info is not None:
            self._backoff_key.pop(uid, None)
            return info
        return self._unschedulable.pop(uid, None)

    def _move_to_active_or_backoff(self, info: QueuedPodInfo) -> None:
        if self.is_backing_off(info):
            self._push_backoff(info)
        else:
            self._push_active(info)

    # ---------------------------------------------------------------- pods

    def add(self, pod: v1.Pod) -> None:
        """A new unscheduled pod (or one seen again): straight to activeQ."""
        uid = pod.metadata.uid
        flight = self._in_flight.get(uid)
        if flight is not None:
            flight.info.pod_info = self._make_pod_info(pod)
            flight.updated = True
            return
        now = self._clock()
        old = self._remove(uid)
        if old is not None:
            old.pod_info = self._make_pod_info(pod)
            old.timestamp = now
            self._push_active(old)
            return
        self._push_active(QueuedPodInfo(self._make_pod_info(pod), now, now))

    def update(self, old: v1.Pod, new: v1.Pod) -> None:
        uid = new.metadata.uid
        flight = self._in_flight.get(uid)
        if flight is not None:
            flight.info.pod_info = self._make_pod_info(new)
            flight.updated = flight.updated or is_pod_updated(old, new)
            return
        if uid in self._active:
            info = self._active[uid]
            info.pod_info = self._make_pod_info(new)
            if info.priority != -self._active_key[uid][0]:  # re-sort on a priority change
                self._remove(uid)
                self._push_active(info)
            return
        if uid in self._backoff:
            self._backoff[uid].pod_info = self._make_pod_info(new)
            return
        parked = self._unschedulable.get(uid)
        if parked is not None:
            parked.pod_info = self._make_pod_info(new)
            if is_pod_updated(old, new):
                del self._unschedulable[uid]
                self._move_to_active_or_backoff(parked)
            return
        # Not known (e.g. its add was missed): treat as new, as upstream does.
        self.add(new)

    def delete(self, pod: v1.Pod) -> None:
        uid = pod.metadata.uid
        self._remove(uid)
        flight = self._in_flight.get(uid)
        if flight is not None:
            flight.deleted = True

    async def pop(self) -> QueuedPodInfo:
        """The next pod to schedule; waits while activeQ is empty. Raises QueueClosed."""
        while True:
            if self._closed:
                raise QueueClosed()
            while self._active_heap:
                key = heapq.heappop(self._active_heap)
                uid = key[3]
                if self._active_key.get(uid) != key:
                    continue  # removed or re-pushed since
                del self._active_key[uid]
                info = self._active.pop(uid)
                self.scheduling_cycle += 1
                info.attempts += 1
                info.cycle = self.scheduling_cycle
                self._in_flight[uid] = _InFlight(info)
                if not self._active:
                    self._has_active.clear()
                return info
            self._has_active.clear()
            await self._has_active.wait()

    def add_unschedulable_if_not_present(
        self, info: QueuedPodInfo, *, error: bool = False
    ) -> None:
        """After a failed attempt: back to backoffQ (errors, or a move request or pod update
        arrived during the attempt) or parked as unschedulable."""
        uid = info.uid
        flight = self._in_flight.get(uid)
        if flight is not None and flight.deleted:
            return
        if uid in self._active or uid in self._backoff or uid in self._unschedulable:
            return
        info.timestamp = self._clock()
        updated = flight is not None and flight.updated
        if error or updated or self._move_request_cycle >= info.cycle:
            self._push_backoff(info)
        else:
            self._unschedulable[uid] = info

    def done(self, uid: str) -> None:
        """The pod's attempt (scheduling and binding) is over."""
        self._in_flight.pop(uid, None)

    def move_all_to_active_or_backoff(self, event: ClusterEvent) -> int:
        """A cluster event: parked pods that it may help leave the unschedulable set."""
        self._move_request_cycle = self.scheduling_cycle
        interested = None if self._event_plugins is None else self._event_plugins.get(
            event, frozenset()
        )
        moved = [
            info for info in self._unschedulable.values()
            if interested is None or not info.unschedulable_plugins
            or info.unschedulable_plugins & interested
        ]
        self._move(moved)
        return len(moved)

    def _move(self, infos: Iterable[QueuedPodInfo]) -> None:
        for info in infos:
            del self._unschedulable[info.uid]
            self._move_to_active_or_backoff(info)

    # ---------------------------------------------------------------- flushing

    def flush_backoff_completed(self) -> int:
        now = self._clock()
        moved = 0
        while self._backoff_heap:
            key = self._backoff_heap[0]
            uid = key[2]
            if self._backoff_key.get(uid) != key:
                heapq.heappop(self._backoff_heap)
                continue
            if key[0] > now:
                break
            heapq.heappop(self._backoff_heap)
            del self._backoff_key[uid]
            self._push_active(self._backoff.pop(uid))
            moved += 1
        return moved

    def flush_unschedulable_leftover(self) -> int:
        now = self._clock()
        stale = [
            info for info in self._unschedulable.values()
            if now - info.timestamp > self.settings.max_in_unschedulable
        ]
        self._move(stale)
        return len(stale)

    def _next_backoff_expiry(self) -> float | None:
        while self._backoff_heap:
            key = self._backoff_heap[0]
            if self._backoff_key.get(key[2]) == key:
                return key[0]
            heapq.heappop(self._backoff_heap)
        return None

    async def run(self) -> None:
        """Moves pods out of backoffQ when their backoff ends and flushes long-parked pods."""
        next_leftover_flush = self._clock() + self.settings.unschedulable_flush_interval
        while not self._closed:
            now = self._clock()
            if now >= next_leftover_flush:
                self.flush_unschedulable_leftover()
                next_leftover_flush = now + self.settings.unschedulable_flush_interval
            self.flush_backoff_completed()
            wake_at = next_leftover_flush
            expiry = self._next_backoff_expiry()
            if expiry is not None:
                wake_at = min(wake_at, expiry)
            self._wake_flusher.clear()
            try:
                await asyncio.wait_for(self._wake_flusher.wait(), max(0.0, wake_at - now))
            except TimeoutError:
                pass

    def close(self) -> None:
        self._closed = True
        self._has_active.set()
        self._wake_flusher.set()


class QueueClosed(Exception):
    """The queue was closed; the scheduling loop should return."""

