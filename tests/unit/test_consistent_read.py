"""The revision requests behind consistent reads (apiserver/consistent_read.py)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from apiserver.consistent_read import CurrentRevision, progress_notify_is_reliable
from apiserver.etcd import Etcd
from kubelite.api.errors import Unavailable


class FakeEtcd:
    def __init__(self) -> None:
        self.revision = 10
        self.asked = 0
        self.release = asyncio.Event()
        self.fail = False

    async def current_revision(self) -> int:
        self.asked += 1
        seen = self.revision  # what etcd answers is its revision when the request arrives
        await self.release.wait()
        if self.fail:
            raise Unavailable("etcd request failed: UNAVAILABLE")
        return seen


@pytest.mark.parametrize(("version", "reliable"), [
    ("3.4.23", False), ("3.4.31", True), ("3.5.1", False), ("3.5.12", False),
    ("3.5.13", True), ("3.6.0", True), ("v3.5.17", True), ("", False), ("garbage", False),
])
def test_progress_notifications_are_trusted_from_the_fixed_versions(
    version: str, reliable: bool,
) -> None:
    assert progress_notify_is_reliable(version) is reliable


async def test_a_reader_never_gets_a_revision_from_a_request_older_than_itself() -> None:
    fake = FakeEtcd()
    current = CurrentRevision(cast(Etcd, fake))
    early = asyncio.create_task(current.get())
    while not fake.asked:  # until its request is in flight, having seen revision 10
        await asyncio.sleep(0)
    fake.revision = 11  # a write acknowledged after that request reached etcd
    late = [asyncio.create_task(current.get()) for _ in range(5)]
    await asyncio.sleep(0)
    fake.release.set()
    assert await early == 10
    assert await asyncio.gather(*late) == [11] * 5
    assert fake.asked == 2  # the five late readers shared one request


async def test_a_failed_request_fails_its_readers_and_the_next_one_is_asked_again() -> None:
    fake = FakeEtcd()
    fake.fail = True
    current = CurrentRevision(cast(Etcd, fake))
    readers = [asyncio.create_task(current.get()) for _ in range(3)]
    fake.release.set()
    for reader in readers:
        with pytest.raises(Unavailable):
            await reader
    fake.fail = False
    assert await current.get() == 10
    await current.close()


async def test_a_reader_that_goes_away_does_not_cancel_the_others() -> None:
    fake = FakeEtcd()
    current = CurrentRevision(cast(Etcd, fake))
    gone = asyncio.create_task(current.get())
    stays = asyncio.create_task(current.get())
    await asyncio.sleep(0)
    gone.cancel()
    fake.release.set()
    assert await stays == 10
    await current.close()


async def three_readers(fake: FakeEtcd, current: CurrentRevision) -> None:
    """A request for one reader, then one for three that came while it was in flight."""
    fake.release.clear()
    first = asyncio.create_task(current.get())
    while not fake.asked:
        await asyncio.sleep(0)
    readers = [asyncio.create_task(current.get()) for _ in range(3)]
    fake.release.set()
    assert await asyncio.gather(first, *readers) == [fake.revision] * 4
    assert fake.asked == 2
    fake.release.clear()


async def test_the_next_request_waits_for_as_many_readers_as_the_last_then_leaves() -> None:
    fake = FakeEtcd()
    current = CurrentRevision(cast(Etcd, fake), linger=0.5)
    await three_readers(fake, current)
    fake.revision = 12
    early = [asyncio.create_task(current.get()) for _ in range(2)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.asked == 2, "etcd is free, but two readers wait for a third"
    third = asyncio.create_task(current.get())
    while fake.asked < 3:  # the third completes the request's readers: no more waiting
        await asyncio.sleep(0)
    fake.release.set()
    assert await asyncio.gather(*early, third) == [12] * 3
    await current.close()


async def test_a_waiting_request_leaves_after_its_linger_and_the_next_expects_less() -> None:
    fake = FakeEtcd()
    current = CurrentRevision(cast(Etcd, fake), linger=0.05)
    await three_readers(fake, current)
    fake.release.set()
    alone = asyncio.create_task(current.get())
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.asked == 2, "it waits for company"
    assert await alone == 10  # none comes: it leaves when its linger is up
    assert fake.asked == 3
    following = asyncio.create_task(current.get())
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.asked == 4, "the last request had one reader: no waiting"
    await following
    await current.close()
