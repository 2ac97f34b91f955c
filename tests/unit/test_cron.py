"""CronJob schedule parsing and next-activation computation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubelite.api.cron import NoNextTime, load_time_zone, parse_schedule


def test_every_minute() -> None:
    sched = parse_schedule("* * * * *")
    assert sched.next_after(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)) == datetime(
        2024, 1, 1, 0, 1, tzinfo=UTC
    )
    # Strictly after: an exact minute boundary moves on to the next one.
    assert sched.next_after(datetime(2024, 1, 1, 0, 1, tzinfo=UTC)) == datetime(
        2024, 1, 1, 0, 2, tzinfo=UTC
    )


def test_ranges_steps_and_names() -> None:
    sched = parse_schedule("*/15 9-17 * * mon-fri")
    assert sched.minutes == frozenset({0, 15, 30, 45})
    assert sched.hours == frozenset(range(9, 18))
    assert sched.days_of_week == frozenset({1, 2, 3, 4, 5})
    # Friday 17:50 -> Monday 09:00.
    assert sched.next_after(datetime(2024, 3, 1, 17, 50, tzinfo=UTC)) == datetime(
        2024, 3, 4, 9, 0, tzinfo=UTC
    )


def test_lists_and_month_names() -> None:
    sched = parse_schedule("5,35 0 1 jan,JUL *")
    assert sched.months == frozenset({1, 7})
    assert sched.next_after(datetime(2024, 1, 1, 0, 5, tzinfo=UTC)) == datetime(
        2024, 1, 1, 0, 35, tzinfo=UTC
    )
    assert sched.next_after(datetime(2024, 1, 1, 0, 35, tzinfo=UTC)) == datetime(
        2024, 7, 1, 0, 5, tzinfo=UTC
    )


def test_step_from_a_start_value() -> None:
    assert parse_schedule("10/20 * * * *").minutes == frozenset({10, 30, 50})


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    sched = parse_schedule("0 0 1,15 * wed")
    # 2024-01-03 is a Wednesday: matches through the weekday even though it is not the 1st/15th.
    assert sched.next_after(datetime(2024, 1, 1, 0, 0, tzinfo=UTC)) == datetime(
        2024, 1, 3, 0, 0, tzinfo=UTC
    )


def test_question_mark_is_a_star() -> None:
    sched = parse_schedule("0 12 ? * 0")
    # Star in day-of-month means weekday alone decides: next Sunday.
    assert sched.next_after(datetime(2024, 1, 1, tzinfo=UTC)) == datetime(
        2024, 1, 7, 12, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@hourly", datetime(2024, 5, 5, 11, 0, tzinfo=UTC)),
        ("@daily", datetime(2024, 5, 6, 0, 0, tzinfo=UTC)),
        ("@midnight", datetime(2024, 5, 6, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2024, 5, 12, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2024, 6, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2025, 1, 1, 0, 0, tzinfo=UTC)),
        ("@annually", datetime(2025, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_descriptors(spec: str, expected: datetime) -> None:
    # 2024-05-05 is a Sunday.
    assert parse_schedule(spec).next_after(datetime(2024, 5, 5, 10, 30, tzinfo=UTC)) == expected


def test_leap_day() -> None:
    assert parse_schedule("0 0 29 2 *").next_after(datetime(2024, 3, 1)) == datetime(2028, 2, 29)


def test_never_firing_schedule() -> None:
    sched = parse_schedule("0 0 30 2 *")
    with pytest.raises(NoNextTime):
        sched.next_after(datetime(2024, 1, 1, tzinfo=UTC))


def test_time_zone() -> None:
    sched = parse_schedule("0 9 * * *", "Europe/Berlin")
    nxt = sched.next_after(datetime(2024, 1, 10, 12, 0, tzinfo=UTC))
    assert nxt == datetime(2024, 1, 11, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert nxt.utcoffset() is not None and nxt.utcoffset().total_seconds() == 3600  # type: ignore[union-attr]


def test_dst_gap_is_skipped() -> None:
    sched = parse_schedule("30 2 * * *", "America/New_York")
    # 2024-03-10 02:30 does not exist in New York.
    nxt = sched.next_after(datetime(2024, 3, 10, 5, 0, tzinfo=UTC))
    assert nxt == datetime(2024, 3, 11, 6, 30, tzinfo=UTC)


def test_dst_fold_fires_once() -> None:
    sched = parse_schedule("30 1 * * *", "America/New_York")
    first = sched.next_after(datetime(2024, 11, 3, 4, 0, tzinfo=UTC))
    # Compare in UTC: PEP 495 makes a time in a fold unequal to any other zone's time.
    assert first.astimezone(UTC) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)
    assert sched.next_after(first).astimezone(UTC) == datetime(2024, 11, 4, 6, 30, tzinfo=UTC)


def test_naive_times_stay_naive() -> None:
    assert parse_schedule("0 * * * *").next_after(datetime(2024, 1, 1, 5, 59, 59)) == datetime(
        2024, 1, 1, 6, 0
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ("5-3 * * * *", "beginning of range (5) beyond end of range (3): 5-3"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("a * * * *", "failed to parse int from a"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("* * * foo *", "failed to parse int from foo"),
        ("@every 5m", "unrecognized descriptor: @every 5m"),
        ("@often", "unrecognized descriptor: @often"),
        ("", "empty spec string"),
    ],
)
def test_invalid_schedules(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_schedule(spec)
    assert message in str(info.value)


def test_invalid_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone Mars/Olympus"):
        parse_schedule("* * * * *", "Mars/Olympus")
    with pytest.raises(ValueError):
        load_time_zone("Local")
    with pytest.raises(ValueError):
        load_time_zone("../etc/passwd")
    assert load_time_zone("UTC") is not None
