"""The work queue's guarantees: collapse, exclusivity, backoff, delays, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.client.workqueue import RateLimit, ShutDown, WorkQueue
from kubelite.testing.wait import eventually


async def test_repeated_adds_collapse() -> None:
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert await q.get() == "a"
    assert await q.get() == "b"


async def test_key_added_while_processing_is_handed_out_again_only_after_done() -> None:
    q = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")
    assert len(q) == 0, "a key being processed must not be handed to a second worker"
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"


async def test_a_key_is_never_processed_by_two_workers_at_once() -> None:
    q = WorkQueue()
    active: set[str] = set()
    overlaps = 0
    processed = 0

    async def worker() -> None:
        nonlocal overlaps, processed
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps += 1
            active.add(key)
            await asyncio.sleep(0.001)
            active.discard(key)
            processed += 1
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    for i in range(300):
        q.add(f"k{i % 5}")
        await asyncio.sleep(0)
    await eventually(lambda: len(q) == 0 and not active, message="queue drained")
    await q.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == 0
    assert processed >= 5


async def test_rate_limited_adds_back_off_exponentially_and_forget_resets() -> None:
    limit = RateLimit(base_delay=0.01, max_delay=0.04)
    assert [limit.delay(n) for n in range(4)] == [0.01, 0.02, 0.04, 0.04]
    q = WorkQueue(limit)
    q.add_rate_limited("x")
    q.add_rate_limited("x")
    assert q.num_requeues("x") == 2
    assert await asyncio.wait_for(q.get(), 1) == "x"
    q.forget("x")
    assert q.num_requeues("x") == 0


async def test_add_after_keeps_the_earliest_delay() -> None:
    q = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 5.0)
    q.add_after("k", 0.05)
    assert await asyncio.wait_for(q.get(), 2) == "k"
    assert loop.time() - start < 2
    await q.shut_down()


async def test_shutdown_releases_waiting_workers() -> None:
    q = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    await q.shut_down()
    with pytest.raises(ShutDown):
        await waiter
