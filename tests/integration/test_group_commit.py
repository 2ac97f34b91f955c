"""Group commit against a real etcd: concurrent writes share transactions, and every rule a
write had alone still holds (conflicts, names taken, watches that resume)."""

from __future__ import annotations

import asyncio
from collections import Counter

from apiserver.server import ApiServer
from kubelite.api import errors
from kubelite.client.client import ApiClient
from protos.v1 import objects_pb2 as v1
from tests.integration.helpers import configmap

WRITES = 40


async def test_concurrent_creates_share_transactions_and_revisions(
    api_server: ApiServer, client: ApiClient,
) -> None:
    before = api_server.batcher.transactions
    created = await asyncio.gather(
        *(client.create(configmap(f"gc-{i}", v="0")) for i in range(WRITES)))
    sent = api_server.batcher.transactions - before
    assert sent < WRITES, f"{WRITES} concurrent creates took {sent} transactions"
    versions = Counter(c.metadata.resource_version for c in created)
    assert max(versions.values()) > 1
    for c in created:  # each as stored, with the revision of its batch
        got = await client.get(v1.ConfigMap, c.metadata.name)
        assert got.metadata.resource_version == c.metadata.resource_version
        assert got.metadata.uid == c.metadata.uid


async def test_concurrent_updates_from_one_version_let_exactly_one_through(
    client: ApiClient,
) -> None:
    base = await client.create(configmap("contended", v="0"))

    async def update(i: int) -> str:
        change = v1.ConfigMap()
        change.CopyFrom(base)
        change.data["v"] = str(i + 1)
        try:
            await client.update(change)
            return "ok"
        except errors.Conflict:
            return "conflict"

    outcomes = Counter(await asyncio.gather(*(update(i) for i in range(20))))
    assert outcomes == {"ok": 1, "conflict": 19}


async def test_concurrent_creates_of_one_name_let_exactly_one_through(client: ApiClient) -> None:
    async def create(i: int) -> str:
        try:
            await client.create(configmap("one-name", v=str(i)))
            return "ok"
        except errors.AlreadyExists:
            return "exists"

    others = [client.create(configmap(f"other-{i}")) for i in range(20)]
    outcomes, _ = await asyncio.gather(asyncio.gather(*(create(i) for i in range(20))),
                                       asyncio.gather(*others))
    assert Counter(outcomes) == {"ok": 1, "exists": 19}


async def test_a_watch_resumed_inside_a_shared_revision_misses_nothing(
    client: ApiClient,
) -> None:
    start = await client.list(v1.ConfigMap, "default")
    created = await asyncio.gather(
        *(client.create(configmap(f"rw-{i}")) for i in range(WRITES)))
    names = {c.metadata.name for c in created}
    shared = Counter(c.metadata.resource_version for c in created).most_common(1)[0][0]
    assert sum(c.metadata.resource_version == shared for c in created) > 1

    seen: set[str] = set()
    resume_from = ""
    stream = client.watch(v1.ConfigMap, "default", resource_version=start.resource_version)
    async for event in stream:
        assert event.object is not None
        seen.add(event.object.metadata.name)
        if event.object.metadata.resource_version == shared:
            # The first of several events of one revision: the stream says to resume from
            # before it, since the others of its revision are still to come.
            resume_from = event.resource_version
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert int(resume_from) == int(shared) - 1

    async for event in client.watch(v1.ConfigMap, "default", resource_version=resume_from):
        if event.object is not None:
            seen.add(event.object.metadata.name)
        if names <= seen:
            break
    assert names <= seen
