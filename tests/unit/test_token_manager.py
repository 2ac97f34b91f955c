"""The kubelet's token manager: when ServiceAccount tokens are asked for again."""

from __future__ import annotations

import pytest

from kubelet.token_manager import TokenManager, TokenManagerSettings
from kubelite.api.errors import Unavailable
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeRequester, ManualClock


def pod(name: str = "web", uid: str = "uid-web", account: str = "builder") -> v1.Pod:
    p = v1.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "team", uid
    p.spec.service_account_name = account
    return p


def manager(clock: ManualClock, requester: FakeRequester, jitter: float = 0.0) -> TokenManager:
    return TokenManager(requester, TokenManagerSettings(), clock=clock, jitter=lambda: jitter)


async def test_the_request_is_bound_to_the_pod_with_the_projection_s_audience_and_expiration(
) -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)

    assert await tokens.get(pod(), ["vault"], 7200) == "token-1"

    namespace, account, request = requester.requests[0]
    assert (namespace, account) == ("team", "builder")
    assert list(request.spec.audiences) == ["vault"]
    assert request.spec.expiration_seconds == 7200
    ref = request.spec.bound_object_ref
    assert (ref.kind, ref.api_version, ref.name, ref.uid) == ("Pod", "v1", "web", "uid-web")


async def test_no_audience_asks_for_the_default_and_no_account_is_default() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    await manager(clock, requester).get(pod(account=""))
    _, account, request = requester.requests[0]
    assert account == "default"
    assert list(request.spec.audiences) == []
    assert request.spec.expiration_seconds == 3600


async def test_a_token_is_served_from_the_cache_until_80_percent_of_its_lifetime() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    start = clock.now

    assert await tokens.get(pod(), [], 3600) == "token-1"
    clock.now = start + 2880  # exactly 80%: not yet
    assert await tokens.get(pod(), [], 3600) == "token-1"
    clock.now = start + 2881
    assert await tokens.get(pod(), [], 3600) == "token-2"
    assert len(requester.requests) == 2


async def test_jitter_brings_the_refresh_forward() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester, jitter=0.5)  # 5 s of the 10 s maximum
    start = clock.now
    await tokens.get(pod(), [], 3600)
    clock.now = start + 2875
    assert await tokens.get(pod(), [], 3600) == "token-1"
    clock.now = start + 2876
    assert await tokens.get(pod(), [], 3600) == "token-2"


async def test_a_long_lived_token_is_refreshed_after_24_hours() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    start = clock.now
    week = 7 * 24 * 3600
    await tokens.get(pod(), [], week)
    clock.now = start + 24 * 3600
    assert await tokens.get(pod(), [], week) == "token-1"
    clock.now = start + 24 * 3600 + 1
    assert await tokens.get(pod(), [], week) == "token-2"


async def test_the_lifetime_is_the_one_the_server_granted() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock, grant=1000)  # asked for an hour, given 1000 s
    tokens = manager(clock, requester)
    start = clock.now
    await tokens.get(pod(), [], 3600)
    clock.now = start + 801
    assert await tokens.get(pod(), [], 3600) == "token-2"


async def test_tokens_are_cached_per_pod_audience_and_expiration() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    await tokens.get(pod(), [], 3600)
    await tokens.get(pod(), ["vault"], 3600)
    await tokens.get(pod(), [], 7200)
    await tokens.get(pod("db", "uid-db"), [], 3600)
    await tokens.get(pod(), [], 3600)
    assert len(requester.requests) == 4


async def test_a_failed_refresh_serves_the_cached_token_while_it_is_valid() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    start = clock.now
    await tokens.get(pod(), [], 3600)
    requester.fail = Unavailable("the API server is down")
    clock.now = start + 3500
    assert await tokens.get(pod(), [], 3600) == "token-1"
    clock.now = start + 3600
    with pytest.raises(Unavailable):
        await tokens.get(pod(), [], 3600)


async def test_forgetting_a_pod_drops_its_tokens_only() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    await tokens.get(pod(), [], 3600)
    await tokens.get(pod("db", "uid-db"), [], 3600)

    tokens.forget_pod("uid-web")

    assert [k.pod_uid for k in tokens.cached()] == ["uid-db"]
    assert await tokens.get(pod(), [], 3600) == "token-3"


async def test_expired_tokens_leave_the_cache() -> None:
    clock = ManualClock()
    requester = FakeRequester(clock)
    tokens = manager(clock, requester)
    await tokens.get(pod(), [], 600)
    clock.now += 600
    await tokens.get(pod("db", "uid-db"), [], 3600)
    assert [k.pod_uid for k in tokens.cached()] == ["uid-db"]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="refresh_fraction"):
        TokenManagerSettings(refresh_fraction=0)
    with pytest.raises(ValueError, match="max_ttl"):
        TokenManagerSettings(max_ttl=0)
