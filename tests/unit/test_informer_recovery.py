"""An informer outlives whatever breaks its stream: it logs, backs off and lists again."""

from __future__ import annotations

from typing import cast

from google.protobuf.message import DecodeError

from kubelite.client.client import ApiClient
from kubelite.client.informer import Informer, InformerSettings
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient


async def test_unexpected_error_in_the_stream_relists_instead_of_ending_the_informer() -> None:
    fake = FakeClient()
    informer: Informer[v1.ConfigMap] = Informer(
        cast(ApiClient, fake), v1.ConfigMap,
        settings=InformerSettings(backoff_initial=0.01, backoff_max=0.02))
    informer.start()
    try:
        await eventually(lambda: informer.healthy, message="synced")
        await fake.watch_events.put(DecodeError("Error parsing message: Wire format was corrupt"))
        await eventually(lambda: fake.lists == 2, message="a relist after the unexpected error")
        await eventually(lambda: informer.healthy and fake.watches == 2,
                         message="watching again")
    finally:
        await informer.stop()
