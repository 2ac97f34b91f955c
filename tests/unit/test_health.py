"""Readiness: the gRPC health server follows its check; informers know when they are healthy."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from kubelite.api.errors import Expired, Unavailable
from kubelite.client.client import ApiClient, WatchEvent
from kubelite.client.informer import Informer, InformerSettings
from kubelite.health import (
    HealthServer,
    HealthSettings,
    Readiness,
    check_health,
    informers_readiness,
)
from kubelite.testing.apiserver import server_settings, start_api_server
from kubelite.testing.etcd import EtcdProcess
from kubelite.testing.ports import free_port
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient

FAST = HealthSettings("127.0.0.1:0", "widget", interval=0.05, check_timeout=0.2)


async def both_report(health: HealthServer, status: str) -> bool:
    return (await check_health(health.address) == status
            and await check_health(health.address, "widget") == status)


async def test_health_server_flips_with_its_check() -> None:
    state: dict[str, Any] = {"ok": False, "reason": "warming up"}
    health = HealthServer(FAST, lambda: (state["ok"], state["reason"]),
                          log_fields=lambda: {"leader": False})
    with capture_logs() as logs:
        await health.start()
        try:
            assert await both_report(health, "NOT_SERVING")
            assert health.reason == "warming up"
            state.update(ok=True, reason="all good")
            await eventually(lambda: both_report(health, "SERVING"), message="SERVING")
            state.update(ok=False, reason="informers not watching: pods")
            await eventually(lambda: both_report(health, "NOT_SERVING"), message="NOT_SERVING")
            assert await check_health(health.address, "other") == "SERVICE_UNKNOWN"
        finally:
            await health.stop()
    flips = [e for e in logs if e["event"] == "readiness changed"]
    assert [(e["status"], e["reason"]) for e in flips] == [
        ("NOT_SERVING", "warming up"),
        ("SERVING", "all good"),
        ("NOT_SERVING", "informers not watching: pods"),
    ]
    assert all(e["service"] == "widget" and e["leader"] is False for e in flips)
    assert await check_health(health.address) == "UNREACHABLE", "stopped"


async def test_async_checks_exceptions_and_timeouts_count_as_not_ready() -> None:
    mode = {"value": "ok"}

    async def check() -> Readiness:
        if mode["value"] == "raise":
            raise RuntimeError("boom")
        if mode["value"] == "hang":
            await asyncio.Event().wait()
        return True, "fine"

    health = HealthServer(FAST, check)
    await health.start()
    try:
        assert health.serving is True
        mode["value"] = "raise"
        await eventually(lambda: health.serving is False, message="exception -> not ready")
        assert "boom" in health.reason
        mode["value"] = "ok"
        await eventually(lambda: health.serving is True, message="ready again")
        mode["value"] = "hang"
        await eventually(lambda: health.serving is False, message="timeout -> not ready")
        assert "took over" in health.reason
        assert await check_health(health.address) == "NOT_SERVING"
    finally:
        await health.stop()


async def test_a_taken_address_fails_to_start() -> None:
    first = HealthServer(FAST, lambda: (True, "ok"))
    await first.start()
    try:
        second = HealthServer(HealthSettings(first.address, "widget"), lambda: (True, "ok"))
        with pytest.raises(OSError):
            await second.start()
    finally:
        await first.stop()


# --------------------------------------------------------------------- informer: fake client


async def test_informer_healthy_follows_list_watch_and_backoff() -> None:
    fake = FakeClient()
    informer: Informer[v1.ConfigMap] = Informer(
        cast(ApiClient, fake), v1.ConfigMap,
        settings=InformerSettings(backoff_initial=0.01, backoff_max=0.02))
    assert not informer.healthy and informers_readiness([informer])[0] is False
    informer.start()
    try:
        await eventually(lambda: informer.healthy, message="healthy right after the list")
        assert informers_readiness([informer]) == (True, "1 informers watching")

        await fake.watch_events.put(Unavailable("stream broke"))
        await eventually(lambda: fake.watches == 2, message="resumed watch")
        assert not informer.healthy, "a resumed watch is not healthy before it delivers"
        ok, reason = informers_readiness([informer])
        assert not ok and reason == "informers not watching: configmaps"
        await fake.watch_events.put(WatchEvent("BOOKMARK", None, "11"))
        await eventually(lambda: informer.healthy, message="healthy on the first bookmark")
        assert fake.lists == 1

        await fake.watch_events.put(Expired("too old"))
        await eventually(lambda: fake.lists == 2, message="relisted")
        await eventually(lambda: informer.healthy, message="healthy right after the relist")
    finally:
        await informer.stop()
    assert not informer.healthy, "a stopped informer is not healthy"


# --------------------------------------------------------------- informer: real API server


async def test_informer_healthy_across_api_server_stop_and_restart(etcd: EtcdProcess) -> None:
    settings = server_settings(etcd.endpoint, listen=f"127.0.0.1:{free_port()}")
    server = await start_api_server(settings)
    client = ApiClient(settings.listen, timeout=10)
    informer: Informer[v1.ConfigMap] = Informer(
        client, v1.ConfigMap, "default",
        settings=InformerSettings(backoff_initial=0.05, backoff_max=0.2))
    try:
        informer.start()
        await informer.wait_for_sync(5)
        assert informer.healthy
        await server.stop()
        await eventually(lambda: not informer.healthy, timeout=5, message="unhealthy when down")

        server = await start_api_server(settings)
        async with ApiClient(settings.listen, timeout=5) as writer:

            async def healthy_again() -> bool:
                # Any write moves the revision on, so the resumed watch gets a bookmark.
                name = f"tick-{uuid.uuid4().hex[:8]}"
                await writer.create(v1.Secret(metadata=v1.ObjectMeta(name=name)))
                return informer.healthy

            await eventually(healthy_again, timeout=10, interval=0.1,
                             message="healthy after the restart")
        assert informer.stats.watches >= 2
    finally:
        await informer.stop()
        await client.close()
        await server.stop()
