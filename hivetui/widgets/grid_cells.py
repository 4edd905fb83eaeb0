"""What the reservation grid shows, as plain values: pure functions, no Textual.

:func:`visible_cells` is the hot path: the grid calls it on every change of
window or data, and ``bench`` times it (64 GPUs x 7 days of 1 h slots).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hivetui.reservations import GpuRef, Reservation

# Zoom levels, finest first: 15 minutes to a day per column.
ZOOMS: tuple[timedelta, ...] = (
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
)
DEFAULT_ZOOM = 2  # one hour per column


@dataclass(frozen=True, slots=True)
class GridSlot:
    """One cell: free (``reservation`` None), or held by a reservation, maybe mine."""

    reservation: Reservation | None
    mine: bool = False
    idle: bool = False  # its GPU has stayed idle past the config's threshold
    violated: bool = False  # someone else's process runs on its GPU right now

    @property
    def holder(self) -> str | None:
        return None if self.reservation is None else self.reservation.user


FREE = GridSlot(None)


@dataclass(frozen=True, slots=True)
class GridView:
    """The cells of a window: ``rows[r][c]`` is GPU ``gpus[r]`` at slot ``c``."""

    gpus: tuple[GpuRef, ...]
    start: datetime
    slot: timedelta
    columns: int
    rows: tuple[tuple[GridSlot, ...], ...]
    now_column: int | None

    @property
    def end(self) -> datetime:
        return self.start + self.slot * self.columns

    def time_of(self, column: int) -> datetime:
        return self.start + self.slot * column


def visible_cells(
    gpus: Sequence[GpuRef],
    reservations: Iterable[Reservation],
    start: datetime,
    slot: timedelta,
    columns: int,
    me: str,
    now: datetime,
    idle: frozenset[int] = frozenset(),
    violated: frozenset[int] = frozenset(),
) -> GridView:
    """The grid's cells for ``columns`` slots of length ``slot`` from ``start``.

    A slot partly covered by a reservation counts as held by it (where two
    share a slot, the later one in ``reservations`` shows). Work is linear in
    cells plus reservations: each reservation fills its span with one shared value.
    """
    columns = max(columns, 0)
    start_s = start.timestamp()
    slot_s = slot.total_seconds()
    end_s = start_s + slot_s * columns
    row_of = {gpu.uuid: r for r, gpu in enumerate(gpus)}
    rows = [[FREE] * columns for _ in gpus]
    for res in reservations:
        r = row_of.get(res.gpu.uuid)
        if r is None:
            continue
        res_start, res_end = res.start.timestamp(), res.end.timestamp()
        if res_end <= start_s or res_start >= end_s:
            continue
        first = max(int((res_start - start_s) // slot_s), 0)
        last = min(math.ceil((res_end - start_s) / slot_s), columns)
        cell = GridSlot(res, res.user == me, res.id in idle, res.id in violated)
        rows[r][first:last] = [cell] * (last - first)
    now_s = now.timestamp()
    now_column = int((now_s - start_s) // slot_s) if start_s <= now_s < end_s else None
    return GridView(
        tuple(gpus), start, slot, columns, tuple(tuple(row) for row in rows), now_column
    )


def local_midnight(when: datetime) -> datetime:
    """The start of ``when``'s day in local time, as a UTC instant."""
    local = when.astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def floor_slot(when: datetime, slot: timedelta) -> datetime:
    """The start of the slot holding ``when``; slots are counted from local midnight."""
    midnight = local_midnight(when)
    return midnight + slot * ((when - midnight) // slot)


def gpus_of(gpus: Iterable[GpuRef], reservations: Iterable[Reservation]) -> tuple[GpuRef, ...]:
    """The fleet's GPUs, plus any that only reservations name (an offline host), sorted."""
    by_uuid = {gpu.uuid: gpu for gpu in gpus}
    for res in reservations:
        by_uuid.setdefault(res.gpu.uuid, res.gpu)
    return tuple(sorted(by_uuid.values(), key=lambda g: (g.host, g.index)))
