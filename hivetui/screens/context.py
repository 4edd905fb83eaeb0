"""What every screen is given: the core, a clock, and how to draw the header."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from hivetui.booking import ReservationStore
from hivetui.fleet import Fleet
from hivetui.reservations import GpuRef, Reservation
from hivetui.usage import UsageTable


@dataclass(slots=True)
class AgentWatch:
    """What the TUI last read of the agents' heartbeats (the app fills it in)."""

    checked: bool = False  # False: no database, or not read yet
    last_beat: float | None = None  # the newest heartbeat of any agent


@dataclass(frozen=True, slots=True)
class ScreenContext:
    """Injected into each screen by the app factory; tests pin ``clock`` and hide the clock.

    ``store`` is None when there is no database: reservation features say so.
    ``user`` is who reservations are made as.
    """

    fleet: Fleet
    clock: Callable[[], float] = field(default=time.time)
    show_clock: bool = True
    store: ReservationStore | None = None
    user: str = ""
    idle_minutes: float = 60.0  # a reservation whose GPU idles this long is shown as idle
    agent: AgentWatch = field(default_factory=AgentWatch)

    def now(self) -> datetime:
        """The clock as an aware UTC instant, to the second."""
        return datetime.fromtimestamp(int(self.clock()), UTC)

    async def idle_ids(self, reservations: Iterable[Reservation]) -> frozenset[int]:
        """Which of these reservations have sat idle past ``idle_minutes`` (usage table)."""
        if self.store is None:
            return frozenset()
        try:
            usages = await UsageTable(self.store.engine).load(r.id for r in reservations)
        except SQLAlchemyError:
            return frozenset()  # the marks are a hint: a busy database must not cost the grid
        now_s = int(self.clock())
        limit = self.idle_minutes * 60
        return frozenset(i for i, u in usages.items() if u.idle_for(now_s) >= limit)

    def fleet_gpus(self) -> list[GpuRef]:
        """Every GPU the fleet's current snapshots show."""
        return [
            GpuRef(snap.name, gpu.index, gpu.uuid)
            for snap in self.fleet.snapshots()
            for gpu in snap.gpus
        ]
