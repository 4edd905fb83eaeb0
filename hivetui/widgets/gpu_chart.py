"""A history chart of one GPU metric, drawn with plotext.

The chart keeps the last series it was given and draws it only when Textual
renders it, so charts that are off screen cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot


@dataclass(frozen=True, slots=True)
class ChartMetric:
    """What a chart shows: title, unit, colour, and a fixed top for percentages."""

    title: str
    unit: str
    color: str
    upper: float | None = None  # None: fit the data


@dataclass(frozen=True, slots=True)
class ChartSeries:
    """Times (epoch seconds) and values; ``nan`` marks a reading the driver could not give."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    @classmethod
    def of(cls, times: Iterable[float], values: Iterable[float]) -> ChartSeries:
        return cls(tuple(times), tuple(values))

    @property
    def latest(self) -> float | None:
        for value in reversed(self.values):
            if math.isfinite(value):
                return value
        return None

    def segments(self) -> list[tuple[list[float], list[float]]]:
        """Runs of finite values, x in seconds relative to the last reading; gaps split runs."""
        if not self.times:
            return []
        end = self.times[-1]
        runs: list[tuple[list[float], list[float]]] = []
        xs: list[float] = []
        ys: list[float] = []
        for at, value in zip(self.times, self.values, strict=True):
            if math.isfinite(value):
                xs.append(at - end)
                ys.append(value)
            elif xs:
                runs.append((xs, ys))
                xs, ys = [], []
        if xs:
            runs.append((xs, ys))
        return runs


WAITING = "waiting for data"


class GpuChart(PlotextPlot):
    """One metric over the last minutes; ``show`` is the only way in."""

    DEFAULT_CSS = """
    GpuChart {
        border: round $primary 40%;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        height: 1fr;
        width: 1fr;
        min-height: 5;
    }
    """

    def __init__(self, metric: ChartMetric, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.metric = metric
        self.series: ChartSeries | None = None
        self.note = WAITING
        self.border_title = metric.title

    def show(self, series: ChartSeries | None, note: str = "") -> None:
        """Take a new series; it is drawn on the next render, if visible.

        ``note`` says why there is no series (the host has no GPU, say); without
        one an empty chart is waiting for data.
        """
        note = note or WAITING
        if series == self.series and note == self.note:
            return
        self.series = series
        self.note = note
        latest = None if series is None else series.latest
        self.border_subtitle = "" if latest is None else f"now {latest:.0f} {self.metric.unit}"
        self.refresh()

    def render(self) -> RenderResult:
        runs = [] if self.series is None else self.series.segments()
        if not runs:
            return Text(self.note, style="dim", justify="center")
        self._draw(runs)
        return super().render()

    def _draw(self, runs: list[tuple[list[float], list[float]]]) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.frame(False)
        plt.xaxes(True, False)  # bottom and left axes only: small charts keep one more row
        plt.yaxes(True, False)
        for xs, ys in runs:
            plt.plot(xs, ys, marker="braille", color=self.metric.color)
        assert self.series is not None
        span = max(self.series.times[-1] - self.series.times[0], 1.0)
        plt.xlim(-span, 0)
        ages = time_ticks(span, 4 if self.size.width < 50 else 6)
        plt.xticks([-age for age in ages], [age_label(age) for age in ages])
        top = self.metric.upper
        if top is None:
            peak = max(max(ys) for _, ys in runs)
            top = peak * 1.1 if peak > 0 else 1.0
        rows = self.size.height - 2  # time axis and its labels
        values = value_ticks(top, 3 if rows >= 6 else 2)  # few ticks: evenly spaced rows
        plt.ylim(0, values[-1])
        plt.yticks(values, [f"{v:g}" for v in values])


_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def time_ticks(span: float, most: int) -> list[float]:
    """Ages in seconds (0 = now) at round steps, at most ``most`` of them within ``span``."""
    step = next((s for s in _TIME_STEPS if span / s <= most - 1), _TIME_STEPS[-1])
    return [float(i * step) for i in range(int(span // step) + 1)]


def age_label(seconds: float) -> str:
    """``now``, ``45s`` or ``3m``: how long ago a point on the time axis is."""
    if seconds < 0.5:
        return "now"
    if seconds < 60 or seconds % 60:
        return f"-{seconds:.0f}s"
    return f"-{seconds / 60:.0f}m"


def value_ticks(top: float, most: int) -> list[float]:
    """``most`` or fewer round ticks from 0 up to the first at or above ``top``."""
    raw = top / max(most - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 6) for i in range(count + 1)]
