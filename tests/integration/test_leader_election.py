"""Leader election on a Lease through the real API: one leader, fast failover."""

from __future__ import annotations

import asyncio
import contextlib

from apiserver.server import ApiServer
from kubelite.client.client import ApiClient
from kubelite.client.leaderelection import LeaderElectionSettings, LeaderElector
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1


def settings(identity: str) -> LeaderElectionSettings:
    return LeaderElectionSettings(
        name="test-lock", identity=identity, lease_duration=1.0, renew_deadline=0.8,
        retry_period=0.1,
    )


async def test_one_leader_at_a_time_and_standby_takes_over(api_server: ApiServer) -> None:
    leading: list[str] = []
    overlap = False

    def lead_as(identity: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            nonlocal overlap
            if leading:
                overlap = True
            leading.append(identity)
            try:
                await asyncio.Event().wait()
            finally:
                leading.remove(identity)

        return lead

    async with ApiClient(api_server.address) as a, ApiClient(api_server.address) as b:
        first = LeaderElector(a, settings("a"))
        second = LeaderElector(b, settings("b"))
        task_a = asyncio.create_task(first.run(lead_as("a")))
        await eventually(lambda: leading == ["a"], message="a leads")
        task_b = asyncio.create_task(second.run(lead_as("b")))
        # b must stay a standby while a renews.
        for _ in range(10):
            await asyncio.sleep(0.1)
            assert leading == ["a"]
        task_a.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_a
        await eventually(lambda: leading == ["b"], timeout=5, message="b takes over")
        lease = await a.get(v1.Lease, "test-lock", "kube-system")
        assert lease.spec.holder_identity == "b"
        assert lease.spec.lease_transitions >= 1
        task_b.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task_b
    assert not overlap


async def test_crashed_leader_is_replaced_after_the_lease_duration(api_server: ApiServer) -> None:
    async with ApiClient(api_server.address) as a, ApiClient(api_server.address) as b:
        # A leader that stops renewing without releasing (as after kill -9).
        crashed = LeaderElector(a, LeaderElectionSettings(
            name="crash-lock", identity="crashed", lease_duration=1.0, renew_deadline=0.8,
            retry_period=0.1, release_on_cancel=False))
        assert await crashed._try_acquire_or_renew()
        standby = LeaderElector(b, LeaderElectionSettings(
            name="crash-lock", identity="standby", lease_duration=1.0, renew_deadline=0.8,
            retry_period=0.1))
        became = asyncio.Event()

        async def lead() -> None:
            became.set()
            await asyncio.Event().wait()

        loop = asyncio.get_running_loop()
        start = loop.time()
        task = asyncio.create_task(standby.run(lead))
        await asyncio.wait_for(became.wait(), 5)
        waited = loop.time() - start
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert waited >= 0.9, "took over before the lease could have expired"
