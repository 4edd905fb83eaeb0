"""Plain, styled cell values and the small formatters that make them.

A :class:`Cell` is a frozen tuple of ``(text, style)`` parts: cheap to build
and to compare, so tables update only the cells whose value changed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from rich.text import Text

from hivetui.safe_text import fit_cells, printable

DASH = "–"  # shown wherever the driver or the host could not say

_VENDOR_WORDS = frozenset({"NVIDIA", "GeForce", "Tesla", "Quadro"})
_MEMORY_KIND = re.compile(r"^(HBM\w*|GDDR\w*)$", re.IGNORECASE)
_EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: text in styled parts, e.g. a coloured bar and a number."""

    parts: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, text: str, style: str = "") -> Cell:
        return cls(((text, style),))

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.parts)

    def to_text(self) -> Text:
        """The parts as one Text: never read as markup, controls shown escaped."""
        parts = ((printable(text), style) for text, style in self.parts)
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


EMPTY = Cell()


def fit(text: str, width: int) -> str:
    """``text`` escaped (see ``printable``), cut to ``width`` terminal cells with an ellipsis."""
    return fit_cells(printable(text), width)


def is_number(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def number(value: float | None, fmt: str, suffix: str = "") -> str:
    """``value`` formatted, or a dash where it is unknown."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:{fmt}}{suffix}"


def level_style(pct: float | None) -> str:
    """Colour for a load level: calm, warm, hot."""
    if pct is None or not math.isfinite(pct):
        return "dim"
    if pct < 30:
        return "green"
    if pct < 75:
        return "yellow"
    return "red"


def bar(pct: float | None, width: int) -> tuple[tuple[str, str], ...]:
    """A horizontal bar of ``width`` cells, filled to ``pct`` percent in eighths."""
    if width <= 0:
        return ()
    if pct is None or not math.isfinite(pct):
        return (("·" * width, "dim"),)
    pct = max(0.0, min(pct, 100.0))
    return _bar(round(pct / 100.0 * width * 8), width, level_style(pct))


@lru_cache(maxsize=4096)
def _bar(eighths: int, width: int, style: str) -> tuple[tuple[str, str], ...]:
    # Cached: a big fleet draws thousands of bars a second from a few hundred shapes.
    full, part = divmod(eighths, 8)
    filled = "█" * full + (_EIGHTHS[part] if part else "")
    return ((filled, style), ("░" * (width - len(filled)), "dim"))


def gib(mib: float) -> float:
    return mib / 1024.0


def memory_text(used_mib: float | None, total_mib: float | None, decimals: int) -> str:
    """``used/totalG`` in GiB, dashes for unknowns."""
    used = DASH if used_mib is None else f"{gib(used_mib):.{decimals}f}"
    total = DASH if total_mib is None else f"{gib(total_mib):.0f}"
    return f"{used}/{total}G"


def host_memory_text(used_mib: float, total_mib: float) -> str:
    """Host memory: a decimal while the used part is small, so 300 MiB is not "0"."""
    return memory_text(used_mib, total_mib, 1 if gib(used_mib) < 10 else 0)


def short_gpu_name(name: str, width: int = 14) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``H100 80GB``: drop brand and memory-kind words."""
    words = [w for w in name.split() if w not in _VENDOR_WORDS and not _MEMORY_KIND.match(w)]
    short = " ".join(words) or name.strip() or "GPU"
    return fit(short, width)
