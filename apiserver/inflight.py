"""Request admission: how many requests the API server serves at once.

As kube-apiserver's max-in-flight filter: reads (Get, List) and writes (Create, Update,
UpdateStatus, Patch, Delete, Bind) each have a limit on how many are served at once; one past
its limit is answered at once with TooManyRequests (gRPC RESOURCE_EXHAUSTED, Kubernetes' 429)
and a retry-after in the trailing status metadata, and was not executed, so clients send it
again after that many seconds. Long-running requests (Watch, PodLogs, PodExec) do not count
against those limits; they have their own. A watch from a resourceVersion older than its watch
cache's window replays the history from a private etcd watch until it reaches the window; those
replays are bounded again on their own: the watch cache takes a slot (``take_uncached_watch``)
when it opens such an etcd watch and gives it back when the watch has caught up and the cache
serves it, or ends. Health checks are never limited.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

import grpc

from kubelite.api.errors import TooManyRequests, status_metadata

READONLY = "readonly"
MUTATING = "mutating"
LONG_RUNNING = "long-running"
UNCACHED_WATCH = "uncached-watch"
CLASSES = (READONLY, MUTATING, LONG_RUNNING, UNCACHED_WATCH)

_SERVICE = "/kubelite.v1.ApiServer/"
METHOD_CLASSES: dict[str, str] = {
    **{_SERVICE + m: READONLY for m in ("Get", "List")},
    **{
        _SERVICE + m: MUTATING
        for m in ("Create", "Update", "UpdateStatus", "Patch", "Delete", "Bind")
    },
    **{_SERVICE + m: LONG_RUNNING for m in ("Watch", "PodLogs", "PodExec")},
}
"""The class of every method of the API service; other services (health) are not limited."""


@dataclass(frozen=True)
class InflightSettings:
    max_requests_inflight: int = 400
    """Reads (Get, List) served at once; more are answered TooManyRequests
    (``--max-requests-inflight``, kube-apiserver's default 400). 0: no limit."""
    max_mutating_requests_inflight: int = 200
    """Writes (Create, Update, UpdateStatus, Patch, Delete, Bind) served at once; more are
    answered TooManyRequests (``--max-mutating-requests-inflight``, kube-apiserver's default
    200). 0: no limit."""
    max_long_running_requests: int = 3000
    """Watches and log and exec streams open at once, which the two limits above leave out;
    more are answered TooManyRequests (``--max-long-running-requests``). 0: no limit."""
    max_uncached_watches: int = 200
    """Of those, watches from a resourceVersion older than the watch cache's window while
    they replay the history since that version, each from an etcd watch of its own (until it
    reaches the window; ``--max-uncached-watches``). 0: no limit."""
    retry_after_seconds: int = 1
    """Seconds a refused request is told to wait before sending again (Kubernetes'
    Retry-After: 1; ``--retry-after-seconds``)."""
    max_pending_calls: int = 10_000
    """Calls gRPC may hold before the server takes them up; admission comes only then. Past
    its backlog gRPC itself cancels calls (status CANCELLED, no retry-after; its own default
    starts at 1,000), so this stays above any burst the limits should answer with
    TooManyRequests (``--max-pending-calls``)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            positive = f.name in ("retry_after_seconds", "max_pending_calls")
            if isinstance(value, bool) or not isinstance(value, int) or value < int(positive):
                rule = "a positive integer" if positive else "a non-negative integer (0: no limit)"
                raise ValueError(f"--{f.name.replace('_', '-')}: must be {rule}, got {value!r}")

    def limit(self, kind: str) -> int:
        return {
            READONLY: self.max_requests_inflight,
            MUTATING: self.max_mutating_requests_inflight,
            LONG_RUNNING: self.max_long_running_requests,
            UNCACHED_WATCH: self.max_uncached_watches,
        }[kind]


_FLAGS = {
    READONLY: "--max-requests-inflight",
    MUTATING: "--max-mutating-requests-inflight",
    LONG_RUNNING: "--max-long-running-requests",
    UNCACHED_WATCH: "--max-uncached-watches",
}
_WHAT = {
    READONLY: "read requests",
    MUTATING: "mutating requests",
    LONG_RUNNING: "watches and streams",
    UNCACHED_WATCH: "watches replaying history from before the watch cache (each with its own"
    " etcd watch)",
}


class Slot:
    """The places one request holds in some classes; ``release`` gives them back, once."""

    __slots__ = ("_admission", "_kinds")

    def __init__(self, admission: RequestAdmission, kinds: tuple[str, ...]) -> None:
        self._admission = admission
        self._kinds = kinds

    def release(self) -> None:
        kinds, self._kinds = self._kinds, ()
        self._admission._release(kinds)


class _AdmittedServicer:
    """The API service's methods, each wrapped by ``RequestAdmission.admitting``."""


class RequestAdmission:
    """Counts requests in flight per class and refuses those past their limit with
    TooManyRequests."""

    def __init__(self, settings: InflightSettings) -> None:
        self.settings = settings
        self._limits = {kind: settings.limit(kind) for kind in CLASSES}
        self.in_flight: dict[str, int] = dict.fromkeys(CLASSES, 0)
        """Requests being served now, per class."""
        self.rejected: dict[str, int] = dict.fromkeys(CLASSES, 0)
        """Requests answered TooManyRequests since start, per class (the one that was full)."""

    def admitting(self, servicer: object) -> object:
        """``servicer`` with each method of the API service counted and limited by its
        class, for gRPC to serve (the HTTP API takes its slots itself). The methods are
        wrapped once, here: a gRPC interceptor would cost every call a lookup and a
        coroutine of its own (about 30 microseconds of CPU here)."""
        admitted = _AdmittedServicer()
        for method, kind in METHOD_CLASSES.items():
            name = method.removeprefix(_SERVICE)
            behavior = getattr(servicer, name)
            wrap = self._stream if inspect.isasyncgenfunction(behavior) else self._unary
            setattr(admitted, name, wrap(kind, behavior))
        return admitted

    # ------------------------------------------------------------ counting

    def _admit(self, kinds: tuple[str, ...]) -> TooManyRequests | None:
        """Takes a slot of every class in ``kinds``, or none and says which one is full."""
        for kind in kinds:
            limit = self._limits[kind]
            if limit and self.in_flight[kind] >= limit:
                self.rejected[kind] += 1
                return TooManyRequests(
                    f"Too many requests, please try again later: {limit} {_WHAT[kind]} in"
                    f" flight (the {_FLAGS[kind]} limit)",
                    retry_after_seconds=self.settings.retry_after_seconds,
                )
        for kind in kinds:
            self.in_flight[kind] += 1
        return None

    def _release(self, kinds: tuple[str, ...]) -> None:
        for kind in kinds:
            self.in_flight[kind] -= 1

    def take(self, *kinds: str) -> Slot:
        """A place in every class of ``kinds``; TooManyRequests (counted as rejected) naming
        the class that is full, and no place taken, when there is none."""
        refusal = self._admit(kinds)
        if refusal is not None:
            raise refusal
        return Slot(self, kinds)

    def take_uncached_watch(self) -> Callable[[], None]:
        """For the watch caches: a place for one private etcd watch of a watch that replays
        history from before the window, and the function that gives it back."""
        return self.take(UNCACHED_WATCH).release

    @staticmethod
    async def _refuse(context: grpc.aio.ServicerContext[Any, Any], error: TooManyRequests) -> None:
        context.set_trailing_metadata(status_metadata(error))
        await context.abort(error.code, error.message)

    # ------------------------------------------------------------ wrapping methods

    def _unary(
        self, kind: str, behavior: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        kinds = (kind,)

        async def admitted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            refusal = self._admit(kinds)
            if refusal is not None:
                await self._refuse(context, refusal)
            try:
                return await behavior(request, context)
            finally:
                self._release(kinds)

        return admitted

    def _stream(
        self, kind: str, behavior: Callable[[Any, Any], AsyncIterator[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        kinds = (kind,)

        async def admitted(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            refusal = self._admit(kinds)
            if refusal is not None:
                await self._refuse(context, refusal)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                self._release(kinds)

        return admitted
