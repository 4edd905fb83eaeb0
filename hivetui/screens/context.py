"""What every screen is given: the core, a clock, and how to draw the header."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hivetui.booking import ReservationStore
from hivetui.fleet import Fleet
from hivetui.reservations import GpuRef


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

    def now(self) -> datetime:
        """The clock as an aware UTC instant, to the second."""
        return datetime.fromtimestamp(int(self.clock()), UTC)

    def fleet_gpus(self) -> list[GpuRef]:
        """Every GPU the fleet's current snapshots show."""
        return [
            GpuRef(snap.name, gpu.index, gpu.uuid)
            for snap in self.fleet.snapshots()
            for gpu in snap.gpus
        ]
