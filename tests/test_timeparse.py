"""Times as people type them, read in a fixed local zone against a fixed ``now``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hivetui.reservations import InvalidTimes
from hivetui.timeparse import HELP, parse_duration, parse_when

# A Wednesday. Asia/Kolkata is +05:30 (local 15:45:30); New York is -05:00 (05:15:30).
NOW = datetime(2026, 11, 25, 10, 15, 30, tzinfo=UTC)


@pytest.fixture
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    zone: str = getattr(request, "param", "Asia/Kolkata")
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        yield zone
    finally:
        monkeypatch.undo()
        time.tzset()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


KOLKATA = [
    ("now", NOW),
    ("NOW", NOW),
    ("+2h", utc(2026, 11, 25, 12, 15, 30)),
    ("+90m", utc(2026, 11, 25, 11, 45, 30)),
    ("in 90m", utc(2026, 11, 25, 11, 45, 30)),
    ("in 30s", utc(2026, 11, 25, 10, 16)),
    ("+1.5h", utc(2026, 11, 25, 11, 45, 30)),
    ("+2", utc(2026, 11, 25, 12, 15, 30)),  # a bare number is hours
    ("+1d12h", utc(2026, 11, 26, 22, 15, 30)),
    ("+1w", utc(2026, 12, 2, 10, 15, 30)),
    ("+1h 30m", utc(2026, 11, 25, 11, 45, 30)),
    ("2026-12-01 09:00", utc(2026, 12, 1, 3, 30)),  # naive ISO: local time
    ("2026-12-01T09:00:00", utc(2026, 12, 1, 3, 30)),
    ("2026-12-01T09:00:00+01:00", utc(2026, 12, 1, 8, 0)),  # an offset wins
    ("2026-12-01T09:00Z", utc(2026, 12, 1, 9, 0)),
    ("2026-12-01", utc(2026, 11, 30, 18, 30)),  # a date: local midnight
    ("today 18:00", utc(2026, 11, 25, 12, 30)),
    ("tomorrow 9:00", utc(2026, 11, 26, 3, 30)),
    ("Tomorrow 09:00", utc(2026, 11, 26, 3, 30)),
    ("  tomorrow 9:00  ", utc(2026, 11, 26, 3, 30)),
    ("tomorrow", utc(2026, 11, 25, 18, 30)),  # local midnight starting tomorrow
    ("tomorrow 9pm", utc(2026, 11, 26, 15, 30)),
    ("fri 14:30", utc(2026, 11, 27, 9, 0)),
    ("friday 14:30", utc(2026, 11, 27, 9, 0)),
    ("Fri 2:30pm", utc(2026, 11, 27, 9, 0)),
    ("wed 9:00", utc(2026, 12, 2, 3, 30)),  # today's weekday: next week
    ("mon", utc(2026, 11, 29, 18, 30)),
    ("sun 23:59", utc(2026, 11, 29, 18, 29)),
    ("14:30", utc(2026, 11, 25, 9, 0)),  # a bare time: today
    ("9pm", utc(2026, 11, 25, 15, 30)),
    ("9:30am", utc(2026, 11, 25, 4, 0)),
    ("12am", utc(2026, 11, 24, 18, 30)),
    ("12pm", utc(2026, 11, 25, 6, 30)),
]


@pytest.mark.parametrize(("text", "expected"), KOLKATA)
def test_accepted_forms_in_kolkata(local_zone: str, text: str, expected: datetime) -> None:
    got = parse_when(text, NOW)
    assert got == expected
    assert got.tzinfo is UTC


NEW_YORK = [
    ("tomorrow 9:00", utc(2026, 11, 26, 14, 0)),
    ("today 23:30", utc(2026, 11, 26, 4, 30)),
    ("2026-12-01 09:00", utc(2026, 12, 1, 14, 0)),
    ("fri 14:30", utc(2026, 11, 27, 19, 30)),
    ("wed", utc(2026, 12, 2, 5, 0)),
    ("+2h", utc(2026, 11, 25, 12, 15, 30)),  # relative times ignore the zone
    ("2026-12-01T09:00+05:30", utc(2026, 12, 1, 3, 30)),
]


@pytest.mark.parametrize("local_zone", ["America/New_York"], indirect=True)
@pytest.mark.parametrize(("text", "expected"), NEW_YORK)
def test_accepted_forms_in_new_york(local_zone: str, text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_the_zone_really_is_read(local_zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kolkata = parse_when("tomorrow 9:00", NOW)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    assert parse_when("tomorrow 9:00", NOW) == utc(2026, 11, 26, 9, 0)
    assert kolkata == utc(2026, 11, 26, 3, 30)


def test_now_in_another_zone_is_the_same_instant(local_zone: str) -> None:
    from zoneinfo import ZoneInfo

    elsewhere = NOW.astimezone(ZoneInfo("Pacific/Auckland"))
    assert parse_when("now", elsewhere) == NOW
    assert parse_when("+1h", elsewhere) == NOW + timedelta(hours=1)
    # Wall-clock words use the process's zone (Kolkata), not the one `now` carries.
    assert parse_when("tomorrow 9:00", elsewhere) == utc(2026, 11, 26, 3, 30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no time given"),
        ("   ", "no time given"),
        ("yesterday", "cannot read 'yesterday' as a time"),
        ("25:00", "cannot read '25:00' as a time"),
        ("tomorrow 9:61", "cannot read 'tomorrow 9:61' as a time"),
        ("fri at 9", "cannot read 'fri at 9' as a time"),
        ("2026-13-01", "cannot read '2026-13-01' as a time"),
        ("next week", "cannot read 'next week' as a time"),
    ],
)
def test_bad_times_name_the_input_and_the_forms(local_zone: str, text: str, message: str) -> None:
    with pytest.raises(InvalidTimes) as caught:
        parse_when(text, NOW)
    assert message in str(caught.value)
    assert HELP in str(caught.value)
    for form in ('"now"', '"+2h"', '"tomorrow 9:00"', '"fri 14:30"', "ISO 8601"):
        assert form in HELP


@pytest.mark.parametrize(
    ("text", "message"),
    [("+2x", "cannot read '2x' as a duration"), ("+0h", "'0h' is not positive")],
)
def test_bad_relative_times(local_zone: str, text: str, message: str) -> None:
    with pytest.raises(InvalidTimes, match=message):
        parse_when(text, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1.5h", timedelta(minutes=90)),
        ("2", timedelta(hours=2)),
        ("0.25", timedelta(minutes=15)),
        ("1w", timedelta(days=7)),
        ("45s", timedelta(seconds=45)),
        ("1h 30m", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cannot read '' as a duration: use 2h, 90m, 1d12h"),
        ("abc", "cannot read 'abc' as a duration"),
        ("2x", "cannot read '2x' as a duration"),
        ("h", "cannot read 'h' as a duration"),
        ("-1h", "cannot read '-1h' as a duration"),
        ("2h later", "cannot read '2h later' as a duration"),
        ("0h", "the duration '0h' is not positive"),
        ("0", "the duration '0' is not positive"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(InvalidTimes) as caught:
        parse_duration(text)
    assert message in str(caught.value)


def test_wall_clock_times_use_the_offset_of_their_own_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Berlin moves to summer time on 2026-03-29: 9:00 that day is 07:00 UTC."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
        assert parse_when("tomorrow 9:00", now) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
        assert parse_when("2026-03-29 09:00", now) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
        assert parse_when("today 9:00", now) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize("text", ["monkey 9:00", "13pm", "0am", "sunny"])
def test_near_misses_are_refused(text: str) -> None:
    with pytest.raises(InvalidTimes):
        parse_when(text, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
