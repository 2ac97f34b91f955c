"""The event recorder's correlation: dedup, aggregation of similar events, the spam filter,
and a writer that folds waiting writes of one Event and never raises into callers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from kubelite.api.errors import NotFound
from kubelite.client.client import ApiClient
from kubelite.client.events import (
    COMBINED_PREFIX,
    NORMAL,
    WARNING,
    EventCorrelationSettings,
    EventRecorder,
)
from protos.v1 import objects_pb2 as v1
from tests.unit.fakes import FakeClient, ManualClock
from tests.unit.objects import stored

UNLIMITED = EventCorrelationSettings(spam_burst=10_000)
"""No spam filter in the way of what a test looks at."""


def pod(name: str = "web-1") -> v1.Pod:
    return stored(v1.Pod(), name)


class Recording:
    """A recorder on a fake client and a manual clock; ``flush`` waits for its writes."""

    def __init__(self, settings: EventCorrelationSettings) -> None:
        self.client = FakeClient()
        self.clock = ManualClock()
        self.recorder = EventRecorder(cast(ApiClient, self.client), "test-controller",
                                      "host-a", settings, clock=self.clock)

    async def flush(self) -> None:
        await self.recorder._queue.join()

    def events(self) -> list[v1.Event]:
        return sorted((cast(v1.Event, o) for k, o in self.client.objects.items()
                       if k[0] == "events"), key=lambda e: e.message)

    def writes(self) -> list[str]:
        return [verb for verb, kind, _ in self.client.calls if kind == "Event"]


@pytest.fixture
async def rec(request: pytest.FixtureRequest) -> AsyncIterator[Recording]:
    settings = getattr(request, "param", UNLIMITED)
    recording = Recording(settings)
    recording.recorder.start()
    yield recording
    await recording.recorder.stop()


async def test_an_event_is_written_with_its_object_and_source(rec: Recording) -> None:
    rec.recorder.record(pod(), NORMAL, "Scheduled", "assigned default/web-1 to node-1")
    await rec.flush()
    [event] = rec.events()
    assert (event.reason, event.type, event.count) == ("Scheduled", NORMAL, 1)
    assert event.metadata.namespace == "default"
    assert event.metadata.name.startswith("web-1.")
    assert (event.involved_object.kind, event.involved_object.name) == ("Pod", "web-1")
    assert (event.source.component, event.source.host) == ("test-controller", "host-a")
    assert event.first_timestamp and event.last_timestamp


async def test_an_identical_event_bumps_the_count_of_the_one_written(rec: Recording) -> None:
    for expected in (1, 2, 3):
        rec.recorder.record(pod(), WARNING, "BackOff", "back-off restarting container")
        await rec.flush()
        [event] = rec.events()
        assert event.count == expected
    assert rec.writes() == ["create", "patch", "patch"]
    assert rec.client.patches[-1][1]["count"] == 3


async def test_repeats_waiting_together_are_one_write() -> None:
    recording = Recording(UNLIMITED)
    for _ in range(50):  # the writer has not run yet: all wait together
        recording.recorder.record(pod(), WARNING, "BackOff", "back-off restarting container")
    recording.recorder.start()
    await recording.recorder.stop()
    [event] = recording.events()
    assert event.count == 50
    assert recording.writes() == ["create"]


async def test_ten_similar_events_are_combined_into_one(rec: Recording) -> None:
    for i in range(1, 10):
        rec.recorder.record(pod(), NORMAL, "Pulling", f"pulling image {i}")
        await rec.flush()
    assert len(rec.events()) == 9
    assert not any(e.message.startswith(COMBINED_PREFIX) for e in rec.events())

    rec.recorder.record(pod(), NORMAL, "Pulling", "pulling image 10")
    await rec.flush()
    [combined] = [e for e in rec.events() if e.message.startswith(COMBINED_PREFIX)]
    assert combined.message == "(combined from similar events): pulling image 10"
    assert combined.count == 1
    assert len(rec.events()) == 10

    for i in range(11, 14):
        rec.recorder.record(pod(), NORMAL, "Pulling", f"pulling image {i}")
        await rec.flush()
    [combined] = [e for e in rec.events() if e.message.startswith(COMBINED_PREFIX)]
    assert combined.message == "(combined from similar events): pulling image 13"
    assert combined.count == 4
    assert len(rec.events()) == 10, "similar events past the limit make no new Event"
    assert rec.writes() == ["create"] * 10 + ["patch"] * 3


async def test_events_differing_in_reason_or_object_are_not_similar(rec: Recording) -> None:
    for i in range(12):
        rec.recorder.record(pod(f"web-{i}"), NORMAL, "Pulling", f"pulling image {i}")
        rec.recorder.record(pod(), NORMAL, f"Reason{i}", f"message {i}")
    await rec.flush()
    assert len(rec.events()) == 24
    assert not any(e.message.startswith(COMBINED_PREFIX) for e in rec.events())


async def test_a_group_starts_afresh_after_the_interval(rec: Recording) -> None:
    for i in range(10):
        rec.recorder.record(pod(), NORMAL, "Pulling", f"pulling image {i}")
    rec.clock.now += UNLIMITED.aggregate_interval + 1
    rec.recorder.record(pod(), NORMAL, "Pulling", "pulling image after a quiet spell")
    await rec.flush()
    assert "pulling image after a quiet spell" in [e.message for e in rec.events()]


async def test_the_interval_is_counted_from_the_last_similar_event(rec: Recording) -> None:
    for i in range(10):
        rec.clock.now += UNLIMITED.aggregate_interval - 1  # never a quiet spell
        rec.recorder.record(pod(), NORMAL, "Pulling", f"pulling image {i}")
    await rec.flush()
    assert any(e.message.startswith(COMBINED_PREFIX) for e in rec.events())


@pytest.mark.parametrize("rec", [EventCorrelationSettings()], indirect=True)
async def test_the_spam_filter_drops_events_past_the_burst(rec: Recording) -> None:
    for i in range(30):  # distinct reasons: neither dedup nor aggregation folds them
        rec.recorder.record(pod(), NORMAL, f"Reason{i}", "something happened")
    await rec.flush()
    assert len(rec.events()) == 25
    assert rec.recorder.dropped == 5
    # another object of the same source has a budget of its own
    rec.recorder.record(pod("web-2"), NORMAL, "Reason0", "something happened")
    await rec.flush()
    assert len(rec.events()) == 26
    assert rec.recorder.dropped == 5


@pytest.mark.parametrize("rec", [EventCorrelationSettings()], indirect=True)
async def test_the_spam_budget_refills_one_event_per_five_minutes(rec: Recording) -> None:
    for i in range(25):
        rec.recorder.record(pod(), NORMAL, f"Reason{i}", "something happened")
    rec.recorder.record(pod(), NORMAL, "Late", "dropped")
    assert rec.recorder.dropped == 1

    rec.clock.now += 299
    rec.recorder.record(pod(), NORMAL, "Late", "still dropped")
    assert rec.recorder.dropped == 2
    rec.clock.now += 1
    rec.recorder.record(pod(), NORMAL, "Late", "let through")
    rec.recorder.record(pod(), NORMAL, "Late", "dropped again")
    assert rec.recorder.dropped == 3
    await rec.flush()
    assert "let through" in [e.message for e in rec.events()]
    assert len(rec.events()) == 26


@pytest.mark.parametrize("rec", [EventCorrelationSettings()], indirect=True)
async def test_a_thousand_similar_events_cost_few_writes(rec: Recording) -> None:
    """A controller creating 1,000 pods: one SuccessfulCreate each, on its ReplicaSet."""
    rs = stored(v1.ReplicaSet(), "web")
    for i in range(1000):
        rec.recorder.record(rs, NORMAL, "SuccessfulCreate", f"Created pod: web-{i:04d}")
    await rec.flush()
    # 9 written as they are, the 10th to the 25th into the combined Event, the rest dropped
    assert len(rec.events()) == 10
    assert rec.recorder.dropped == 975
    [combined] = [e for e in rec.events() if e.message.startswith(COMBINED_PREFIX)]
    assert combined.count == 16
    assert combined.message.endswith("web-0024")
    assert rec.writes() == ["create"] * 10, "the combined Event's 16 waited as one write"


async def test_an_expired_event_is_written_anew_with_its_count(rec: Recording) -> None:
    rec.recorder.record(pod(), WARNING, "BackOff", "back-off")
    await rec.flush()
    rec.client.objects.clear()  # the event's TTL passed
    rec.recorder.record(pod(), WARNING, "BackOff", "back-off")
    await rec.flush()
    [event] = rec.events()
    assert event.count == 2
    assert rec.writes() == ["create", "patch", "create"]


class FailingClient(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def create(self, obj: Any, namespace: str = "") -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("connection reset")
        return await super().create(obj, namespace)

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotFound("gone")


async def test_write_failures_are_logged_and_later_events_still_written() -> None:
    client = FailingClient()
    recorder = EventRecorder(cast(ApiClient, client), "test-controller",
                             settings=UNLIMITED, clock=ManualClock())
    recorder.start()
    try:
        recorder.record(pod(), NORMAL, "Started", "first")  # fails, not raised
        recorder.record(pod(), NORMAL, "Other", "second")
        await recorder._queue.join()
        recorder.record(pod(), NORMAL, "Started", "first")  # its create failed: created now
        await recorder._queue.join()
    finally:
        await recorder.stop()
    assert sorted((cast(v1.Event, e).message, cast(v1.Event, e).count)
                  for e in client.objects.values()) == [("first", 2), ("second", 1)]


async def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    recorder = EventRecorder(cast(ApiClient, FakeClient()), "test-controller",
                             settings=EventCorrelationSettings(max_pending=3),
                             clock=ManualClock())
    for i in range(5):
        recorder.record(pod(), NORMAL, f"Reason{i}", "m")
    assert recorder.queue_dropped == 2
    assert recorder._queue.qsize() == 3


async def test_drops_are_logged_once_per_interval_with_their_count() -> None:
    clock = ManualClock()
    recorder = EventRecorder(cast(ApiClient, FakeClient()), "test-controller",
                             settings=EventCorrelationSettings(max_pending=1,
                                                               drop_log_interval=10),
                             clock=clock)
    with capture_logs() as logs:
        for i in range(6):  # the first is queued, five are dropped
            recorder.record(pod(), NORMAL, f"Reason{i}", "m")
        clock.now += 10
        recorder.record(pod(), NORMAL, "Later", "m")
        recorder.record(pod(), NORMAL, "Last", "m")
        await recorder.stop()
    drops = [(e["dropped"], e["queue_dropped"]) for e in logs
             if e["event"] == "event queue full; dropping events"]
    # The first drop at once; the next four with the one after the interval; the last at stop.
    assert drops == [(1, 1), (5, 6), (1, 7)]


@pytest.mark.parametrize(("field", "value", "rule"), [
    ("spam_burst", 0, "positive integer"),
    ("aggregate_max_events", 2.5, "positive integer"),
    ("cache_entries", True, "positive integer"),
    ("spam_qps", 0, "positive number"),
    ("aggregate_interval", -1.0, "positive number"),
])
def test_settings_name_the_field_and_the_rule(field: str, value: object, rule: str) -> None:
    with pytest.raises(ValueError, match=f"{field}: must be a {rule}"):
        EventCorrelationSettings(**{field: value})  # type: ignore[arg-type]
