"""Group commit of etcd writes (apiserver/txn_batch.py) against a fake etcd that evaluates
transactions like etcd: all compares, then all puts at one new revision."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aetcd.rpc import rpc_pb2

from apiserver.etcd import Etcd, absent, get_op, mod_revision_is, put_op
from apiserver.txn_batch import TxnBatcher, TxnBatchSettings
from kubelite.api.errors import RequestEntityTooLarge, Unavailable


class FakeEtcd:
    """Keys with mod revisions; a transaction is answered after ``release`` is set."""

    def __init__(self) -> None:
        self.revision = 1
        self.mod: dict[bytes, int] = {}
        self.calls: list[int] = []
        """Operations in each transaction received, in order."""
        self.release = asyncio.Event()
        self.release.set()
        self.fail_with: Exception | None = None
        self.max_ops = 128

    def _holds(self, c: rpc_pb2.Compare) -> bool:
        if c.target == rpc_pb2.Compare.CREATE:
            return bool((c.key not in self.mod) == (c.create_revision == 0))
        return bool(self.mod.get(c.key, 0) == c.mod_revision)

    async def txn(self, compare: Any, success: Any, failure: Any = ()) -> rpc_pb2.TxnResponse:
        self.calls.append(len(success))
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if len(success) > self.max_ops:
            raise RequestEntityTooLarge("too many operations in txn request")
        ok = all(self._holds(c) for c in compare)
        response = rpc_pb2.TxnResponse(succeeded=ok)
        ops = success if ok else failure
        if ok and any(op.WhichOneof("request") == "request_put" for op in ops):
            self.revision += 1
        for op in ops:
            if op.WhichOneof("request") == "request_put":
                self.mod[op.request_put.key] = self.revision
                response.responses.add(response_put=rpc_pb2.PutResponse())
            else:
                found = rpc_pb2.RangeResponse()
                if op.request_range.key in self.mod:
                    found.kvs.add(key=op.request_range.key,
                                  mod_revision=self.mod[op.request_range.key])
                response.responses.add(response_range=found)
        response.header.revision = self.revision
        return response


def batcher(fake: FakeEtcd, **settings: Any) -> TxnBatcher:
    return TxnBatcher(cast(Etcd, fake), TxnBatchSettings(**settings))


def create(key: bytes) -> tuple[Any, ...]:
    return ([absent(key)], [put_op(key, b"v")])


async def test_one_write_at_a_time_goes_alone_at_once() -> None:
    fake = FakeEtcd()
    b = batcher(fake)
    for i in range(3):
        result = await b.txn(*create(f"k{i}".encode()))
        assert result.succeeded and result.revision == 2 + i
    assert fake.calls == [1, 1, 1]


async def test_writes_waiting_behind_busy_etcd_leave_together_and_share_a_revision() -> None:
    fake = FakeEtcd()
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    first = asyncio.create_task(b.txn(*create(b"first")))
    await asyncio.sleep(0)  # the first is sent; etcd holds it
    rest = [asyncio.create_task(b.txn(*create(f"k{i}".encode()))) for i in range(10)]
    await asyncio.sleep(0)
    fake.release.set()
    results = [await first, *await asyncio.gather(*rest)]
    assert fake.calls == [1, 10]
    assert all(r.succeeded for r in results)
    assert results[0].revision == 2
    assert {r.revision for r in results[1:]} == {3}
    assert b.transactions == 2 and b.writes == 11


async def test_a_failed_condition_fails_only_its_own_write() -> None:
    fake = FakeEtcd()
    fake.mod[b"taken"] = 1
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    writes = [asyncio.create_task(b.txn(*create(k))) for k in (b"a", b"taken", b"c")]
    await asyncio.sleep(0)
    fake.release.set()
    await blocker
    a, taken, c = await asyncio.gather(*writes)
    assert a.succeeded and c.succeeded and not taken.succeeded
    assert fake.mod[b"taken"] == 1
    # The batch of three failed as a whole, then each went alone.
    assert fake.calls == [1, 3, 1, 1, 1] and b.batches_failed == 1


async def test_two_writes_of_one_key_never_share_a_batch() -> None:
    """Two updates guarded by the same revision: together both conditions would hold and
    both would be written; one after the other, the second is a conflict."""
    fake = FakeEtcd()
    fake.mod[b"k"] = 1
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    update = ([mod_revision_is(b"k", 1)], [put_op(b"k", b"new")], [get_op(b"k")])
    first = asyncio.create_task(b.txn(*update))
    second = asyncio.create_task(b.txn(*update))
    await asyncio.sleep(0)
    fake.release.set()
    await blocker
    one, two = await asyncio.gather(first, second)
    assert one.succeeded and not two.succeeded
    assert two.responses[0].response_range.kvs[0].mod_revision == one.revision


async def test_each_write_gets_the_responses_of_its_own_operations() -> None:
    fake = FakeEtcd()
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    plain = asyncio.create_task(b.txn(*create(b"a")))
    with_read = asyncio.create_task(
        b.txn([absent(b"b")], [put_op(b"b", b"v"), get_op(b"b")]))
    await asyncio.sleep(0)
    fake.release.set()
    await blocker
    a, bb = await asyncio.gather(plain, with_read)
    assert len(a.responses) == 1 and a.responses[0].HasField("response_put")
    assert len(bb.responses) == 2
    assert bb.responses[1].response_range.kvs[0].key == b"b"


async def test_an_etcd_error_fails_every_write_of_the_batch() -> None:
    fake = FakeEtcd()
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    writes = [asyncio.create_task(b.txn(*create(f"k{i}".encode()))) for i in range(3)]
    await asyncio.sleep(0)
    fake.fail_with = Unavailable("etcd request failed: UNAVAILABLE")
    fake.release.set()
    for task in (blocker, *writes):
        with pytest.raises(Unavailable):
            await task
    fake.fail_with = None
    assert (await b.txn(*create(b"after"))).succeeded  # the batcher goes on


async def test_a_batch_too_large_for_etcd_is_retried_write_by_write() -> None:
    fake = FakeEtcd()
    fake.max_ops = 2
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    writes = [asyncio.create_task(b.txn(*create(f"k{i}".encode()))) for i in range(3)]
    await asyncio.sleep(0)
    fake.release.set()
    await blocker
    assert all(r.succeeded for r in await asyncio.gather(*writes))
    assert fake.calls == [1, 3, 1, 1, 1]


async def test_batches_are_cut_at_max_writes_and_max_bytes() -> None:
    fake = FakeEtcd()
    fake.release.clear()
    b = batcher(fake, max_in_flight=1, max_writes=4, max_bytes=40)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    small = [asyncio.create_task(b.txn(*create(f"s{i}".encode()))) for i in range(6)]
    big = asyncio.create_task(b.txn([absent(b"big")], [put_op(b"big", b"x" * 100)]))
    await asyncio.sleep(0)
    fake.release.set()
    await asyncio.gather(blocker, *small, big)
    assert fake.calls == [1, 4, 2, 1]


async def test_turned_off_every_write_is_its_own_transaction() -> None:
    fake = FakeEtcd()
    b = batcher(fake, enabled=False)
    results = await asyncio.gather(*(b.txn(*create(f"k{i}".encode())) for i in range(5)))
    assert len({r.revision for r in results}) == 5
    assert fake.calls == [1] * 5


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    fake = FakeEtcd()
    fake.release.clear()
    b = batcher(fake, max_in_flight=1)
    blocker = asyncio.create_task(b.txn(*create(b"blocker")))
    await asyncio.sleep(0)
    gone = asyncio.create_task(b.txn(*create(b"gone")))
    stays = asyncio.create_task(b.txn(*create(b"stays")))
    await asyncio.sleep(0)
    gone.cancel()
    fake.release.set()
    await blocker
    assert (await stays).succeeded
    with pytest.raises(asyncio.CancelledError):
        await gone
    await b.close()


@pytest.mark.parametrize("settings", [
    {"max_in_flight": 0}, {"max_writes": 0}, {"max_writes": 65}, {"max_bytes": 0},
    {"linger": -1}, {"linger": 2}, {"idle": -1}, {"idle": 2}])
def test_settings_out_of_range_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        TxnBatchSettings(**settings)


async def a_batch_of_three(fake: FakeEtcd, b: TxnBatcher) -> None:
    """Three writes queue behind a transaction in flight and leave together."""
    fake.release.clear()
    first = asyncio.create_task(b.txn(*create(b"first")))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(b.txn(*create(f"q{i}".encode()))) for i in range(3)]
    await asyncio.sleep(0)
    fake.release.set()
    await asyncio.gather(first, *queued)
    assert fake.calls == [1, 3]


async def test_after_a_batch_writes_wait_to_make_one_as_large_then_leave_at_once() -> None:
    fake = FakeEtcd()
    b = batcher(fake, max_in_flight=1, linger=0.5, idle=0.5)
    await a_batch_of_three(fake, b)
    later = [asyncio.create_task(b.txn(*create(f"k{i}".encode()))) for i in range(2)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.calls == [1, 3], "etcd is free, but two writes wait for a third"
    third = asyncio.create_task(b.txn(*create(b"k2")))
    await asyncio.gather(*later, third)  # the third completes the batch: no linger
    assert fake.calls == [1, 3, 3]


async def a_write_waiting_for_company(fake: FakeEtcd, b: TxnBatcher) -> asyncio.Task[Any]:
    """After a batch of three, a write alone, which waits for two more."""
    await a_batch_of_three(fake, b)
    alone = asyncio.create_task(b.txn(*create(b"alone")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.calls == [1, 3], "it waits for company"
    return alone


async def test_a_waiting_batch_leaves_when_its_linger_is_up_and_the_next_expects_less() -> None:
    fake = FakeEtcd()
    b = batcher(fake, max_in_flight=1, linger=0.05, idle=1)
    alone = await a_write_waiting_for_company(fake, b)
    await alone  # none comes: it leaves when its linger is up
    assert fake.calls == [1, 3, 1]
    following = asyncio.create_task(b.txn(*create(b"next")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert fake.calls == [1, 3, 1, 1], "the last batch was of one: no waiting"
    await following


async def test_a_waiting_batch_leaves_once_writes_stop_joining_it() -> None:
    """The end of a burst: no write comes for ``idle``, so the batch leaves long before its
    linger would be up."""
    fake = FakeEtcd()
    b = batcher(fake, max_in_flight=1, linger=1, idle=0.01)
    await asyncio.wait_for(await a_write_waiting_for_company(fake, b), timeout=0.5)
    assert fake.calls == [1, 3, 1]


async def test_linger_zero_never_waits() -> None:
    fake = FakeEtcd()
    b = batcher(fake, max_in_flight=1, linger=0)
    await a_batch_of_three(fake, b)
    await b.txn(*create(b"alone"))
    assert fake.calls == [1, 3, 1]
