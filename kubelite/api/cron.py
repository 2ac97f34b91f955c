"""CronJob schedules: the standard 5-field cron syntax as Kubernetes accepts it (robfig/cron's
ParseStandard), plus the @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly
descriptors, and computing the next activation time in a time zone.

Fields: minute hour day-of-month month day-of-week; each a comma list of ``*``, ``?``, ``N``,
``N-M``, with an optional ``/step``; months and weekdays also by name (jan, mon). When both day
fields are restricted a day matches if either does (classic cron), otherwise both must.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_MINUTE = _Bounds(0, 59)
_HOUR = _Bounds(0, 23)
_DOM = _Bounds(1, 31)
_MONTH = _Bounds(1, 12, _MONTHS)
_DOW = _Bounds(0, 6, _DAYS)

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# How far ahead to look before deciding a schedule never fires (e.g. "0 0 30 2 *").
_SEARCH_YEARS = 5


class NoNextTime(ValueError):
    """The schedule has no activation time (it names a day that never exists)."""


def _parse_int(text: str) -> int:
    if not text or not (text.isdigit() and text.isascii()):
        if text.startswith("-") and text[1:].isdigit():
            raise ValueError(f"negative number ({text}) not allowed: {text}")
        raise ValueError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    return int(text)


def _parse_value(text: str, bounds: _Bounds) -> int:
    if bounds.names is not None and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    return _parse_int(text)


def _parse_range(expr: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    """Values one comma-separated element allows, and whether it was a bare star."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        if len(low_high) > 1:
            raise ValueError(f"too many hyphens: {expr}")
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _parse_value(low_high[0], bounds)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _parse_value(low_high[1], bounds)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if len(low_high) == 1:  # "N/step" means "N-max/step"
            end = bounds.high
        if step > 1:
            star = False
    else:
        raise ValueError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise ValueError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise ValueError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")
    return frozenset(range(start, end + 1, step)), star


def _parse_field(text: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        allowed, part_star = _parse_range(part, bounds)
        values |= allowed
        star = star or part_star
    return frozenset(values), star


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    """0 = Sunday."""
    dom_star: bool
    dow_star: bool
    time_zone: tzinfo | None = None
    """Zone the fields are read in; None uses the zone of the time passed to next_after."""
    spec: str = ""

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days_of_month
        dow = (day.isoweekday() % 7) in self.days_of_week
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def _next_wall(self, start: datetime) -> datetime | None:
        """First naive wall-clock minute >= start that matches, within the search window."""
        t = start
        limit = start.year + _SEARCH_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        return None

    def next_after(self, after: datetime) -> datetime:
        """The first activation strictly after ``after``.

        An aware ``after`` gives an aware result in the schedule's zone (or ``after``'s zone when
        the schedule has none); a naive one gives a naive wall-clock result. Wall times that a
        DST change skips are skipped. Raises NoNextTime when the schedule never fires.
        """
        zone = self.time_zone if self.time_zone is not None else after.tzinfo
        if after.tzinfo is None or zone is None:
            start = after.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
            found = self._next_wall(start)
            if found is None:
                raise NoNextTime(f"schedule {self.spec!r} has no activation after {after}")
            return found
        local = after.astimezone(zone)
        cursor = local.replace(second=0, microsecond=0, tzinfo=None)
        for _ in range(200):  # only DST folds and gaps make this loop more than once
            found = self._next_wall(cursor)
            if found is None:
                break
            for fold in (0, 1):
                aware = found.replace(tzinfo=zone, fold=fold)
                # Via UTC: astimezone to the same zone would return the time unchanged.
                roundtrip = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
                if roundtrip == found and aware > after:
                    return aware
            cursor = found + timedelta(minutes=1)
        raise NoNextTime(f"schedule {self.spec!r} has no activation after {after}")


def load_time_zone(name: str) -> tzinfo:
    """The zone for an IANA name; raises ValueError("unknown time zone X") like Go."""
    if not name or name.lower() == "local" or name.startswith("/") or ".." in name:
        raise ValueError(f"unknown time zone {name}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name}") from None


def parse_schedule(spec: str, time_zone: str | None = None) -> CronSchedule:
    """Parse a 5-field schedule or descriptor; raises ValueError with robfig/cron's wording."""
    text = spec.strip()
    if not text:
        raise ValueError("empty spec string")
    zone = load_time_zone(time_zone) if time_zone is not None else None
    if text.startswith("@"):
        expanded = _DESCRIPTORS.get(text)
        if expanded is None:
            raise ValueError(f"unrecognized descriptor: {text}")
        text = expanded
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    minutes, _ = _parse_field(fields[0], _MINUTE)
    hours, _ = _parse_field(fields[1], _HOUR)
    dom, dom_star = _parse_field(fields[2], _DOM)
    months, _ = _parse_field(fields[3], _MONTH)
    dow, dow_star = _parse_field(fields[4], _DOW)
    return CronSchedule(minutes, hours, dom, months, dow, dom_star, dow_star, zone, spec)
