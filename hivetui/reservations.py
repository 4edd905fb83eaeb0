"""Reservation rules: pure functions over plain values, no I/O.

Times are timezone-aware datetimes in UTC; the database stores whole seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class GpuRef:
    """One GPU of one host, as reservations name it."""

    host: str
    index: int
    uuid: str

    @property
    def label(self) -> str:
        return f"{self.host}:{self.index}"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A GPU booked by one user for ``[start, end)``."""

    id: int
    user: str
    gpu: GpuRef
    start: datetime
    end: datetime
    title: str
    created_at: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return overlaps(self.start, self.end, start, end)

    def active_at(self, when: datetime) -> bool:
        return self.start <= when < self.end


@dataclass(frozen=True, slots=True)
class Limits:
    """What one reservation may be: the config's ``[reservations]`` table."""

    max_hours: float = 7 * 24
    max_days_ahead: float = 30


class ReservationError(Exception):
    """A reservation cannot be made or changed; the message says why."""


class InvalidTimes(ReservationError):
    pass


class LimitExceeded(ReservationError):
    pass


class NotAllowed(ReservationError):
    pass


class Conflict(ReservationError):
    """The slot is taken; ``holder`` is the reservation in the way, when known."""

    def __init__(self, message: str, holder: Reservation | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def utc(value: datetime) -> datetime:
    """The same instant in UTC, to the second (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Half-open intervals: one that ends at 10:00 does not touch one that starts then."""
    return a_start < b_end and b_start < a_end


def check_new(start: datetime, end: datetime, now: datetime, limits: Limits) -> None:
    """Raise unless ``[start, end)`` is a reservation anyone may make now."""
    if end <= start:
        raise InvalidTimes(f"the end ({end:%Y-%m-%d %H:%M}) must come after the start")
    if end <= now:
        raise InvalidTimes("the reservation would end in the past")
    if start < now - timedelta(minutes=5):
        raise InvalidTimes("the start is in the past (use now or later)")
    hours = (end - start).total_seconds() / 3600
    if hours > limits.max_hours:
        raise LimitExceeded(
            f"{hours:g} h is longer than the longest reservation allowed ({limits.max_hours:g} h)"
        )
    if start - now > timedelta(days=limits.max_days_ahead):
        raise LimitExceeded(
            f"the start is more than {limits.max_days_ahead:g} days ahead, the most allowed"
        )


def check_change(res: Reservation, user: str, admins: Iterable[str], now: datetime) -> None:
    """Raise unless ``user`` may edit or cancel ``res`` now."""
    if user != res.user and user not in set(admins):
        raise NotAllowed(f"reservation {res.id} belongs to {res.user}: only they or an admin")
    if res.end <= now:
        raise NotAllowed(f"reservation {res.id} has ended: the past cannot be rewritten")


def check_edit(
    res: Reservation, start: datetime, end: datetime, now: datetime, limits: Limits
) -> None:
    """An edit keeps what already happened: a started reservation keeps its start."""
    if res.start <= now and start != res.start:
        raise NotAllowed(f"reservation {res.id} has started: only its end can move")
    if end <= start:
        raise InvalidTimes("the end must come after the start")
    if end <= now:
        raise InvalidTimes("the new end is in the past")
    if res.start > now:
        check_new(start, end, now, limits)
    elif (end - start).total_seconds() / 3600 > limits.max_hours:
        raise LimitExceeded(f"longer than the longest reservation allowed ({limits.max_hours:g} h)")


def first_conflict(
    existing: Iterable[Reservation],
    gpu_uuid: str,
    start: datetime,
    end: datetime,
    ignore_id: int | None = None,
) -> Reservation | None:
    for res in existing:
        if res.gpu.uuid == gpu_uuid and res.id != ignore_id and res.overlaps(start, end):
            return res
    return None


def holders_at(reservations: Iterable[Reservation], when: datetime) -> dict[str, Reservation]:
    """GPU uuid -> the reservation holding it at ``when``."""
    return {r.gpu.uuid: r for r in reservations if r.active_at(when)}


@dataclass(frozen=True, slots=True)
class FreeSlot:
    """``gpus`` (all on ``host``) are free together for ``[start, end)``."""

    host: str
    gpus: tuple[GpuRef, ...]
    start: datetime
    end: datetime


def find_free(
    reservations: Sequence[Reservation],
    gpus: Sequence[GpuRef],
    count: int,
    duration: timedelta,
    after: datetime,
    hosts: Iterable[str] | None = None,
    horizon: timedelta = timedelta(days=30),
) -> FreeSlot | None:
    """The earliest slot where ``count`` GPUs of one host are free for ``duration``.

    Candidate starts are ``after`` and every end of a reservation: a slot only
    opens when something ends. Ties go to the host listed first.
    """
    if count < 1 or duration <= timedelta(0):
        raise InvalidTimes("ask for at least one GPU and a positive duration")
    wanted = set(hosts) if hosts is not None else None
    by_host: dict[str, list[GpuRef]] = {}
    for gpu in gpus:
        if wanted is None or gpu.host in wanted:
            by_host.setdefault(gpu.host, []).append(gpu)
    starts = sorted({after, *(r.end for r in reservations if r.end > after)})
    for start in starts:
        if start - after > horizon:
            break
        end = start + duration
        for host, host_gpus in by_host.items():
            free = [
                g for g in host_gpus if first_conflict(reservations, g.uuid, start, end) is None
            ]
            if len(free) >= count:
                return FreeSlot(
                    host, tuple(sorted(free, key=lambda g: g.index)[:count]), start, end
                )
    return None


def cuda_visible_devices(reservations: Iterable[Reservation]) -> str:
    """``CUDA_VISIBLE_DEVICES=...`` for these GPUs, by uuid (stable across reboots)."""
    return "CUDA_VISIBLE_DEVICES=" + ",".join(r.gpu.uuid for r in reservations)
