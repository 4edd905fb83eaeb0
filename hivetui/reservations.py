"""Reservation rules: pure functions over plain values, no I/O.

Times are timezone-aware datetimes in UTC; the database stores whole seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hivetui.model import HostSnapshot


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
    """A GPU booked by one user for ``[start, end)``.

    ``booking_id`` groups the GPUs booked together (the smallest id among
    them); ``None`` in values built by hand means a booking of its own.
    """

    id: int
    user: str
    gpu: GpuRef
    start: datetime
    end: datetime
    title: str
    created_at: datetime
    booking_id: int | None = None

    @property
    def booking(self) -> int:
        """The id of the booking this GPU belongs to."""
        return self.id if self.booking_id is None else self.booking_id

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


def plural(count: float, word: str) -> str:
    """``1 day``, ``2 days``, ``1.5 days``: a count and its noun, agreed."""
    return f"{count:g} {word}{'' if count == 1 else 's'}"


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
            f"the start is more than {plural(limits.max_days_ahead, 'day')} ahead, the most allowed"
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
    """``gpus`` (all on ``host``) are free together for ``[start, end)``.

    ``in_use``: those of ``gpus`` that someone uses right now without a
    reservation (only known for a slot that starts now).
    """

    host: str
    gpus: tuple[GpuRef, ...]
    start: datetime
    end: datetime
    in_use: tuple[GpuRef, ...] = ()


def find_free(
    reservations: Sequence[Reservation],
    gpus: Sequence[GpuRef],
    count: int,
    duration: timedelta,
    after: datetime,
    hosts: Iterable[str] | None = None,
    horizon: timedelta = timedelta(days=30),
    in_use: Collection[str] = frozenset(),
) -> FreeSlot | None:
    """The earliest slot where ``count`` GPUs of one host are free for ``duration``.

    Candidate starts are ``after`` and every end of a reservation: a slot only
    opens when something ends. Ties go to the host listed first.

    ``in_use``: uuids of the GPUs someone is using at ``after`` (live data, so
    only pass it when ``after`` is now). At that start idle GPUs are taken
    first, and a host that can give only idle ones beats one that cannot.
    Later starts ignore it: nobody knows who will use what then.
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
        free = {
            host: [g for g in host_gpus if first_conflict(reservations, g.uuid, start, end) is None]
            for host, host_gpus in by_host.items()
        }
        picked = pick_gpus(free, count, in_use if start == after else frozenset())
        if picked is not None:
            host, chosen = picked
            busy = tuple(g for g in chosen if g.uuid in in_use and start == after)
            return FreeSlot(host, chosen, start, end, busy)
    return None


def pick_gpus(
    free: dict[str, list[GpuRef]], count: int, in_use: Collection[str]
) -> tuple[str, tuple[GpuRef, ...]] | None:
    """``count`` GPUs of one host out of ``free`` (host -> its unreserved GPUs), or None.

    Idle GPUs (not in ``in_use``) come first; among hosts, the one that needs
    the fewest GPUs in use wins, ties going to the host listed first. The GPUs
    come back in index order.
    """
    best: tuple[int, str, tuple[GpuRef, ...]] | None = None
    for host, candidates in free.items():
        if len(candidates) < count:
            continue
        chosen = sorted(candidates, key=lambda g: (g.uuid in in_use, g.index))[:count]
        busy = sum(1 for g in chosen if g.uuid in in_use)
        if best is None or busy < best[0]:
            best = (busy, host, tuple(sorted(chosen, key=lambda g: g.index)))
        if busy == 0:
            break
    return None if best is None else (best[1], best[2])


def gpus_in_use(snapshots: Iterable[HostSnapshot]) -> dict[str, str]:
    """GPU uuid -> why it counts as in use now (processes, load), from live samples."""
    found: dict[str, str] = {}
    for snap in snapshots:
        for gpu in snap.gpus:
            if gpu.is_free:
                continue
            why = []
            if gpu.processes:
                n = len(gpu.processes)
                why.append(f"{n} process{'' if n == 1 else 'es'}")
            if gpu.utilization_pct is not None:
                why.append(f"{gpu.utilization_pct:.0f} % busy")
            if gpu.memory_pct is not None:
                why.append(f"{gpu.memory_pct:.0f} % memory")
            found[gpu.uuid] = ", ".join(why)
    return found


def in_use_note(slot: FreeSlot, reasons: dict[str, str]) -> str | None:
    """A sentence naming the GPUs of ``slot`` that are in use now, or None when none are."""
    if not slot.in_use:
        return None
    named = [
        f"{g.label} ({reasons[g.uuid]})" if reasons.get(g.uuid) else g.label for g in slot.in_use
    ]
    verb = "is" if len(named) == 1 else "are"
    return f"{', '.join(named)} {verb} in use right now, though not reserved (too few idle GPUs)"


def cuda_visible_devices(reservations: Iterable[Reservation]) -> str:
    """``CUDA_VISIBLE_DEVICES=...`` for these GPUs, by uuid (stable across reboots)."""
    return "CUDA_VISIBLE_DEVICES=" + ",".join(r.gpu.uuid for r in reservations)
