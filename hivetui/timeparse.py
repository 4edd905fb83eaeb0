"""Times and durations as people type them: ISO 8601, "+2h", "tomorrow 9:00", "fri 14:30".

Wall-clock times are read in the local time zone and returned in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hivetui.reservations import InvalidTimes

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_CLOCK = re.compile(r"^(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

HELP = 'use ISO 8601 ("2026-12-01 09:00"), "now", "+2h", "tomorrow 9:00" or "fri 14:30"'


def parse_duration(text: str) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1d12h"``, ``"1.5h"``; a bare number is hours."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        cleaned += "h"
    if not cleaned or _DURATION.sub("", cleaned):
        raise InvalidTimes(f"cannot read {text!r} as a duration: use 2h, 90m, 1d12h")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(cleaned))
    if seconds <= 0:
        raise InvalidTimes(f"the duration {text!r} is not positive")
    return timedelta(seconds=seconds)


def _weekday(word: str) -> int | None:
    """0 for "mon"/"monday" ... 6 for "sun"; None for anything else."""
    for number, name in enumerate(_DAYS):
        if len(word) >= 3 and name.startswith(word):
            return number
    return None


def _clock(text: str) -> tuple[int, int]:
    match = _CLOCK.match(text)
    if not match:
        raise InvalidTimes(f"cannot read {text!r} as a time of day")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if match.group(3) and not 1 <= hour <= 12:
        raise InvalidTimes(f"{text!r} is not a time of day")
    if match.group(3) == "pm" and hour < 12:
        hour += 12
    elif match.group(3) == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        raise InvalidTimes(f"{text!r} is not a time of day")
    return hour, minute


def parse_when(text: str, now: datetime) -> datetime:
    """An instant in UTC. ``now`` must be aware; its zone is the local one."""
    raw = text.strip()
    lowered = raw.lower()
    if not lowered:
        raise InvalidTimes(f"no time given: {HELP}")
    local_now = now.astimezone()
    if lowered == "now":
        return now.astimezone(UTC)
    if lowered.startswith(("+", "in ")):
        return (now + parse_duration(lowered.removeprefix("in ").lstrip("+"))).astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        pass
    else:
        # A naive time is local wall-clock time, with the offset of its own day (DST).
        return (parsed.astimezone() if parsed.tzinfo is None else parsed).astimezone(UTC)
    day_word, _, clock = lowered.partition(" ")
    if day_word in ("today", "tomorrow"):
        day = local_now.date() + timedelta(days=1 if day_word == "tomorrow" else 0)
    elif (weekday := _weekday(day_word)) is not None:
        ahead = (weekday - local_now.weekday()) % 7 or 7
        day = local_now.date() + timedelta(days=ahead)
    else:
        day, clock = local_now.date(), lowered
    try:
        hour, minute = _clock(clock.strip()) if clock.strip() else (0, 0)
    except InvalidTimes:
        raise InvalidTimes(f"cannot read {text!r} as a time: {HELP}") from None
    # astimezone() on a naive value applies the local zone's rules for that day.
    return datetime(day.year, day.month, day.day, hour, minute).astimezone().astimezone(UTC)
