"""Request admission: in-flight limits answer TooManyRequests with a retry-after, and the client
library retries such answers transparently (real etcd, real API server)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from apiserver.inflight import InflightSettings
from apiserver.server import ApiServer
from kubelite.api import errors
from kubelite.client.client import ApiClient, RetrySettings
from kubelite.processes import suspend
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.wait import eventually
from protos.v1 import apiserver_pb2 as pb
from protos.v1 import apiserver_pb2_grpc as pb_grpc
from protos.v1 import objects_pb2 as v1


def configmap(name: str) -> v1.ConfigMap:
    return v1.ConfigMap(metadata=v1.ObjectMeta(name=name), data={"k": "v"})


async def start_limited(etcd: EtcdProcess, prefix: str | None = None, **limits: int) -> ApiServer:
    settings = dataclasses.replace(
        server_settings(etcd.endpoint, prefix=prefix), inflight=InflightSettings(**limits)
    )
    return await start_api_server(settings)


@dataclasses.dataclass
class Limited:
    """An API server with limits, a raw stub and a client library on it, and open watches."""

    server: ApiServer
    stub: pb_grpc.ApiServerStub
    client: ApiClient
    watches: list[Watching] = dataclasses.field(default_factory=list)

    def watch(self, resource_version: str) -> Watching:
        watching = Watching(self.client, resource_version)
        self.watches.append(watching)
        return watching


@asynccontextmanager
async def limited_server(
    etcd: EtcdProcess, prefix: str | None = None, **limits: int
) -> AsyncIterator[Limited]:
    server = await start_limited(etcd, prefix, **limits)
    channel = grpc.aio.insecure_channel(server.address)
    stub = pb_grpc.ApiServerStub(channel)  # type: ignore[no-untyped-call]
    limited = Limited(server, stub, ApiClient(server.address, timeout=20))
    try:
        yield limited
    finally:
        for w in limited.watches:
            await w.close()
        await limited.client.close()
        await channel.close(None)
        await server.stop()


def status_payload(error: grpc.aio.AioRpcError) -> dict[str, object]:
    trailing: Any = error.trailing_metadata()
    for key, value in trailing or ():
        if key == errors.STATUS_METADATA_KEY:
            payload: dict[str, object] = json.loads(value)
            return payload
    raise AssertionError(f"no {errors.STATUS_METADATA_KEY} in the trailing metadata")


def assert_too_many_requests(error: BaseException) -> None:
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    payload = status_payload(error)
    assert payload["reason"] == "TooManyRequests"
    assert payload["retryAfterSeconds"] == 1


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    """An etcd of this test's own, so pausing it stalls no other test."""
    process = EtcdProcess(tmp_path / "etcd")
    process.start()
    yield process
    process.stop()


class Paused:
    """SIGSTOP an etcd so requests that reach it stay in flight; SIGCONT on resume/exit."""

    def __init__(self, etcd: EtcdProcess) -> None:
        assert etcd.process is not None
        self.pid = etcd.process.pid
        suspend(self.pid)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False


def in_flight_is(server: ApiServer, readonly: int = 0, mutating: int = 0) -> bool:
    """Asserts the server's requests in flight by class, so a wait that times out says what
    was in flight instead."""
    expected = {"readonly": readonly, "mutating": mutating, "long-running": 0,
                "uncached-watch": 0}
    assert server.admission.in_flight == expected
    return True


async def test_requests_beyond_the_limits_get_too_many_requests_and_the_client_retries(
    own_etcd: EtcdProcess,
) -> None:
    async with limited_server(
        own_etcd, max_requests_inflight=2, max_mutating_requests_inflight=2
    ) as limited:
        server, stub, client = limited.server, limited.stub, limited.client
        await client.create(configmap("there"))
        get = pb.GetRequest(resource="configmaps", namespace="default", name="there")
        paused = Paused(own_etcd)
        held: list[asyncio.Future[Any]] = []
        try:
            # Two reads and two writes wait on the paused etcd: every slot is taken.
            held = [asyncio.ensure_future(stub.Get(get, timeout=30)) for _ in range(2)]
            held += [asyncio.ensure_future(client.create(configmap(f"held-{i}")))
                     for i in range(2)]

            def every_slot_taken() -> bool:
                ended = [f"{i}: {task.exception() or task.result()!r}"
                         for i, task in enumerate(held) if task.done()]
                assert not ended, f"held calls ended with etcd paused: {ended}"
                return in_flight_is(server, readonly=2, mutating=2)

            await eventually(every_slot_taken, message="two reads and two writes in flight")

            # Refused at once, not queued: a queued call would wait for the held ones and end
            # in DEADLINE_EXCEEDED, not RESOURCE_EXHAUSTED.
            with pytest.raises(grpc.aio.AioRpcError) as refused_read:
                await stub.Get(get, timeout=5)
            assert_too_many_requests(refused_read.value)
            create = pb.CreateRequest(
                resource="configmaps", namespace="default",
                object=configmap("refused").SerializeToString(),
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused_write:
                await stub.Create(create, timeout=5)
            assert_too_many_requests(refused_write.value)
            assert "--max-mutating-requests-inflight" in (refused_write.value.details() or "")
            # Without retries the client raises TooManyRequests carrying the retry-after.
            async with ApiClient(server.address, retry=RetrySettings(max_retries=0)) as once:
                with pytest.raises(errors.TooManyRequests) as raised:
                    await once.get(v1.ConfigMap, "there")
            assert raised.value.retry_after_seconds == 1

            # The client library waits the retry-after and sends again until a slot is free.
            reads = asyncio.ensure_future(client.get(v1.ConfigMap, "there"))
            writes = asyncio.ensure_future(client.create(configmap("retried")))
            held += [reads, writes]
            await eventually(
                lambda: client.stats.too_many_requests_retries >= 2, message="client retrying"
            )
            paused.resume()
            assert (await reads).metadata.name == "there"
            assert (await writes).metadata.name == "retried"
            for outcome in await asyncio.gather(*held):
                assert outcome is not None
            # A refused create was not executed.
            with pytest.raises(errors.NotFound):
                await client.get(v1.ConfigMap, "refused")
        finally:
            paused.resume()
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)


class Watching:
    """A client watch consumed in the background: the names it saw, or the error it ended with."""

    def __init__(self, client: ApiClient, resource_version: str) -> None:
        self.names: list[str] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(client, resource_version), name="watching")

    async def _run(self, client: ApiClient, resource_version: str) -> None:
        try:
            async for event in client.watch(
                v1.ConfigMap, "default", resource_version=resource_version
            ):
                if event.object is not None:
                    self.names.append(event.object.metadata.name)
        except errors.ApiError as e:
            self.error = e

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def refused_watch(stub: pb_grpc.ApiServerStub, resource_version: str) -> BaseException:
    call = stub.Watch(pb.WatchRequest(
        resource="configmaps", namespace="default", resource_version=resource_version
    ))
    try:
        async for _ in call:
            raise AssertionError("the watch was admitted")
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError("the watch ended without a status")


async def test_watches_beyond_the_limit_are_refused_and_reads_go_on(etcd: EtcdProcess) -> None:
    async with limited_server(etcd, max_long_running_requests=2) as limited:
        server, client = limited.server, limited.client
        version = (await client.list(v1.ConfigMap, "default")).resource_version
        admitted = [limited.watch(version) for _ in range(2)]
        await eventually(lambda: server.admission.in_flight["long-running"] == 2,
                         message="two watches open")

        assert_too_many_requests(await refused_watch(limited.stub, version))
        # Every watch slot is taken; reads and writes are still served, none refused (this
        # client raises TooManyRequests instead of waiting it out).
        async with ApiClient(server.address, retry=RetrySettings(max_retries=0)) as once:
            await once.create(configmap("during"))
            for _ in range(20):
                await once.get(v1.ConfigMap, "during")
        await eventually(lambda: all("during" in w.names for w in admitted),
                         message="admitted watches deliver")

        # A client watch that is refused waits the retry-after and is established once a
        # slot frees, from the version it asked for.
        late = limited.watch(version)
        await eventually(lambda: client.stats.too_many_requests_retries >= 1,
                         message="the late watch is refused and retrying")
        await admitted[0].close()
        await eventually(lambda: "during" in late.names, timeout=10,
                         message="the late watch re-established")
        assert late.error is None
        assert server.admission.rejected["long-running"] >= 2


async def test_watches_replaying_from_etcd_are_bounded_until_they_reach_the_cache(
    own_etcd: EtcdProcess,
) -> None:
    prefix = f"/test-inflight-{time.monotonic_ns()}"
    first = await start_limited(own_etcd, prefix=prefix)
    async with ApiClient(first.address) as writer:
        old = await writer.create(configmap("old"))
    await first.stop()
    # A second server's watch cache starts after "old": watching from before it replays
    # from an etcd watch of its own until it reaches the cache's window.
    async with limited_server(own_etcd, prefix, max_uncached_watches=1) as limited:
        server, client = limited.server, limited.client
        cache = server.api.caches["configmaps"]
        before = str(int(old.metadata.resource_version) - 1)
        assert int(before) < cache.start_revision
        current = (await client.list(v1.ConfigMap, "default")).resource_version
        await cache.wait_for_revision(int(current))
        paused = Paused(own_etcd)
        try:
            # Its etcd watch waits on the paused etcd: the replay holds the one slot.
            replayed = limited.watch(before)
            await eventually(lambda: server.admission.in_flight["uncached-watch"] == 1,
                             message="a replay holds the slot")
            assert_too_many_requests(await refused_watch(limited.stub, before))
            # Watches the cache serves are not bounded by it.
            cached = limited.watch(current)
            await eventually(lambda: server.admission.in_flight["long-running"] == 2,
                             message="a cached watch admitted")
        finally:
            paused.resume()
        await eventually(lambda: replayed.names == ["old"], message="replay from etcd")
        # Caught up, the cache serves it: its slot (and etcd watch) are given back while it
        # goes on, so the next watch from before the window is admitted.
        await eventually(lambda: server.admission.in_flight["uncached-watch"] == 0,
                         message="the slot given back")
        assert (cache.handovers, cache.private_watches) == (1, 0)
        again = limited.watch(before)
        await eventually(lambda: again.names == ["old"], message="the next replay")
        await client.create(configmap("new"))
        await eventually(
            lambda: (cached.names, replayed.names, again.names)
            == (["new"], ["old", "new"], ["old", "new"]),
            message="every watch delivers",
        )
        assert server.admission.rejected["uncached-watch"] == 1
        assert server.admission.in_flight == {
            "readonly": 0, "mutating": 0, "long-running": 3, "uncached-watch": 0,
        }


async def test_a_burst_of_two_thousand_creates_all_succeed(etcd: EtcdProcess) -> None:
    """More calls at once than gRPC's own backlog (1,000) and than the mutating limit."""
    outcomes: dict[str, int] = {}
    async with limited_server(etcd, max_mutating_requests_inflight=5) as limited:
        client = limited.client

        async def create(i: int) -> None:
            try:
                await client.create(configmap(f"burst-{i}"))
                outcome = "OK"
            except errors.ApiError as e:
                cause = e.__cause__
                outcome = cause.code().name if isinstance(cause, grpc.RpcError) else repr(e)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        await asyncio.gather(*(create(i) for i in range(2000)))
        assert outcomes == {"OK": 2000}
        # Past the mutating limit the server refused some; the client sent each one again.
        refused = limited.server.admission.rejected["mutating"]
        assert refused > 0
        assert client.stats.too_many_requests_retries == refused
        listed = await client.list(v1.ConfigMap, "default")
        assert len([c for c in listed.items if c.metadata.name.startswith("burst-")]) == 2000
