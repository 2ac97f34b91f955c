"""Request admission's settings, counting and refusals, and the client's retry budget."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from apiserver.__main__ import parse_args
from apiserver.inflight import (
    LONG_RUNNING,
    METHOD_CLASSES,
    MUTATING,
    READONLY,
    UNCACHED_WATCH,
    InflightSettings,
    RequestAdmission,
)
from kubelite.api import errors
from kubelite.client.client import ClientStats, RetrySettings, _Retries
from protos.v1 import apiserver_pb2 as pb


def test_defaults_are_kube_apiservers() -> None:
    settings = InflightSettings()
    assert settings.max_requests_inflight == 400
    assert settings.max_mutating_requests_inflight == 200
    assert settings.retry_after_seconds == 1
    assert parse_args(["--insecure"])[0].inflight == settings


def test_flags_set_the_limits() -> None:
    settings, _ = parse_args(["--insecure",
        "--max-requests-inflight", "7", "--max-mutating-requests-inflight", "0",
        "--max-long-running-requests", "9", "--max-uncached-watches", "3",
        "--retry-after-seconds", "2", "--max-pending-calls", "500",
    ])
    assert settings.inflight == InflightSettings(
        max_requests_inflight=7, max_mutating_requests_inflight=0,
        max_long_running_requests=9, max_uncached_watches=3, retry_after_seconds=2,
        max_pending_calls=500,
    )


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--max-requests-inflight", "-1", "must be a non-negative integer (0: no limit)"),
        ("--max-uncached-watches", "-5", "must be a non-negative integer (0: no limit)"),
        ("--retry-after-seconds", "0", "must be a positive integer"),
        ("--max-pending-calls", "0", "must be a positive integer"),
        ("--watch-cache-size", "-5", "must be at least 1"),
        ("--consistent-read-linger", "-0.5", "must be between 0 and 1 second"),
        ("--compaction-interval", "-3.0", "must not be negative (0 disables)"),
        ("--etcd-batch-linger", "2.0", "must be between 0 and 1 second"),
        ("--etcd-batch-idle", "-1", "must be between 0 and 1 second"),
    ],
)
def test_bad_limits_are_refused_naming_the_flag(
    flag: str, value: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--insecure", flag, value])
    assert f"{flag}: {rule}, got {value}" in capsys.readouterr().err


def test_too_many_requests_carries_its_retry_after_through_grpc() -> None:
    sent = errors.TooManyRequests("slow down", retry_after_seconds=3)
    rpc_error = grpc.aio.AioRpcError(
        sent.code, grpc.aio.Metadata(),
        grpc.aio.Metadata(*errors.status_metadata(sent)), sent.message, "",
    )
    received = errors.from_rpc_error(rpc_error)
    assert isinstance(received, errors.TooManyRequests)
    assert received.retry_after_seconds == 3
    assert received.message == "slow down"
    assert errors.from_rpc_error(grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(),
        grpc.aio.Metadata(*errors.status_metadata(errors.NotFound("x"))), "x", "",
    )).retry_after_seconds == 0


def test_retry_budget_follows_the_retry_after_and_ends() -> None:
    stats = ClientStats()
    retries = _Retries(
        RetrySettings(max_retries=3, max_wait=100, backoff_factor=1, jitter=0.5), stats
    )
    refused = errors.TooManyRequests("busy", retry_after_seconds=2)
    delays = [retries.delay(refused) for _ in range(4)]
    assert all(d is not None and 2 <= d <= 3 for d in delays[:3])
    assert delays[3] is None, "three retries, then the refusal is raised"
    assert stats.too_many_requests_retries == 3
    # Without a retry-after, or for other errors, nothing is sent again.
    fresh = _Retries(RetrySettings(), stats)
    assert fresh.delay(errors.TooManyRequests("quota")) is None
    assert fresh.delay(errors.Unavailable("down", retry_after_seconds=1)) is None
    # The total wait is bounded too.
    short = _Retries(RetrySettings(max_retries=10, max_wait=2.5, jitter=0), stats)
    assert short.delay(refused) == 2
    assert short.delay(refused) is None


def test_repeated_refusals_of_one_request_back_off_up_to_a_cap() -> None:
    retries = _Retries(
        RetrySettings(max_retries=10, max_wait=1000, backoff_factor=2, max_delay=10, jitter=0),
        ClientStats(),
    )
    refused = errors.TooManyRequests("busy", retry_after_seconds=1)
    assert [retries.delay(refused) for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    # Never shorter than the server asked for.
    long = _Retries(RetrySettings(max_delay=1, jitter=0), ClientStats())
    assert long.delay(errors.TooManyRequests("busy", retry_after_seconds=5)) == 5


class FakeContext:
    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


def admitted(admission: RequestAdmission, method: str, behavior: Any) -> Any:
    """``behavior`` as gRPC serves it for ``method`` of the API service."""
    servicer = SimpleNamespace(**{m.rpartition("/")[2]: behavior for m in METHOD_CLASSES})
    return getattr(admission.admitting(servicer), method.rpartition("/")[2])


async def test_slots_are_taken_released_and_refused_per_class() -> None:
    admission = RequestAdmission(
        InflightSettings(max_requests_inflight=1, max_mutating_requests_inflight=1)
    )
    release = asyncio.Event()

    async def get(request: Any, context: Any) -> str:
        await release.wait()
        return "got"

    async def create(request: Any, context: Any) -> str:
        raise RuntimeError("failed")

    get_admitted = admitted(admission, "/kubelite.v1.ApiServer/Get", get)
    create_admitted = admitted(admission, "/kubelite.v1.ApiServer/Create", create)
    first = asyncio.create_task(get_admitted(None, FakeContext()))
    await asyncio.sleep(0)
    assert admission.in_flight[READONLY] == 1

    refused = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await get_admitted(None, refused)
    assert refused.aborted is not None
    assert refused.aborted[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-requests-inflight" in refused.aborted[1]
    payload = json.loads(dict(refused.trailing)[errors.STATUS_METADATA_KEY])
    assert payload["reason"] == "TooManyRequests"
    assert payload["retryAfterSeconds"] == 1
    assert admission.rejected[READONLY] == 1
    assert admission.in_flight[READONLY] == 1, "a refused request takes no slot"

    # Writes have their own limit; a write that fails gives its slot back.
    with pytest.raises(RuntimeError):
        await create_admitted(None, FakeContext())
    assert admission.in_flight[MUTATING] == 0
    release.set()
    assert await first == "got"
    assert admission.in_flight[READONLY] == 0


async def test_uncached_watch_slots_are_bounded_and_given_back_once() -> None:
    """Watches are long-running; the watch cache takes an uncached-watch slot for a replay
    from etcd on top, and gives it back when the replay reaches the cache."""
    admission = RequestAdmission(
        InflightSettings(max_long_running_requests=5, max_uncached_watches=1)
    )
    stop = asyncio.Event()

    async def watch(request: Any, context: Any) -> AsyncIterator[str]:
        yield "event"
        await stop.wait()

    old = admitted(admission, "/kubelite.v1.ApiServer/Watch", watch)(
        pb.WatchRequest(resource_version="1"), FakeContext())
    assert await anext(old) == "event"
    give_back = admission.take_uncached_watch()
    assert admission.in_flight == {READONLY: 0, MUTATING: 0, LONG_RUNNING: 1, UNCACHED_WATCH: 1}

    with pytest.raises(errors.TooManyRequests, match="--max-uncached-watches") as refused:
        admission.take_uncached_watch()
    assert refused.value.retry_after_seconds == 1
    assert admission.rejected[UNCACHED_WATCH] == 1
    give_back()
    give_back()  # once only
    assert admission.in_flight[UNCACHED_WATCH] == 0
    admission.take_uncached_watch()()
    await old.aclose()
    assert admission.in_flight == dict.fromkeys(admission.in_flight, 0)


def test_every_method_of_the_api_service_has_a_class() -> None:
    """gRPC serves the servicer ``admitting`` gives, which has only the methods named
    here: a method left out would fail registration, not go unlimited."""
    service = pb.DESCRIPTOR.services_by_name["ApiServer"]
    assert {f"/{service.full_name}/{m.name}" for m in service.methods} == set(METHOD_CLASSES)
