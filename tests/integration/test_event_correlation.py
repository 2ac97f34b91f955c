"""The event recorder against a real API server: repeats update the Event written, and a
burst of similar events about one object becomes a handful of Events."""

from __future__ import annotations

from kubelite.client.client import ApiClient
from kubelite.client.events import COMBINED_PREFIX, NORMAL, WARNING, EventRecorder
from kubelite.testing.wait import eventually
from protos.v1 import objects_pb2 as v1

NS = "default"


async def events_about(client: ApiClient, name: str) -> list[v1.Event]:
    listed = await client.list(v1.Event, NS)
    return [e for e in listed.items if e.involved_object.name == name]


async def test_a_repeat_updates_the_count_of_the_event_on_the_server(client: ApiClient) -> None:
    pod = await client.create(v1.Pod(
        metadata=v1.ObjectMeta(name="repeats", namespace=NS),
        spec=v1.PodSpec(containers=[v1.Container(name="c", image="busybox")]),
    ))
    recorder = EventRecorder(client, "test-controller", "host-a")
    recorder.start()
    try:
        recorder.record(pod, WARNING, "BackOff", "back-off restarting container")
        await eventually(lambda: events_about(client, "repeats"), message="the first event")
        recorder.record(pod, WARNING, "BackOff", "back-off restarting container")
        recorder.record(pod, WARNING, "BackOff", "back-off restarting container")

        async def counted_three() -> bool:
            events = await events_about(client, "repeats")
            return len(events) == 1 and events[0].count == 3

        await eventually(counted_three, message="one Event with count 3")
    finally:
        await recorder.stop()


async def test_a_thousand_similar_events_become_a_few(client: ApiClient) -> None:
    rs = await client.create(v1.ReplicaSet(
        metadata=v1.ObjectMeta(name="many", namespace=NS),
        spec=v1.ReplicaSetSpec(
            selector=v1.LabelSelector(match_labels={"app": "many"}),
            template=v1.PodTemplateSpec(
                metadata=v1.ObjectMeta(labels={"app": "many"}),
                spec=v1.PodSpec(containers=[v1.Container(name="c", image="busybox")]),
            ),
        ),
    ))
    recorder = EventRecorder(client, "test-controller", "host-a")
    recorder.start()
    try:
        for i in range(1000):
            recorder.record(rs, NORMAL, "SuccessfulCreate", f"Created pod: many-{i:04d}")
    finally:
        await recorder.stop()  # writes what waits first
    events = await events_about(client, "many")
    assert len(events) == 10
    assert recorder.dropped == 975
    [combined] = [e for e in events if e.message.startswith(COMBINED_PREFIX)]
    assert combined.message == f"{COMBINED_PREFIX}Created pod: many-0024"
    assert combined.count == 16
