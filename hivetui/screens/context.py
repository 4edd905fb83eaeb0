"""What every screen is given: the core, a clock, and how to draw the header."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hivetui.fleet import Fleet


@dataclass(frozen=True, slots=True)
class ScreenContext:
    """Injected into each screen by the app factory; tests pin ``clock`` and hide the clock."""

    fleet: Fleet
    clock: Callable[[], float] = field(default=time.time)
    show_clock: bool = True
