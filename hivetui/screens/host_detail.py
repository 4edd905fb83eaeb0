"""One host in depth: history charts of one of its GPUs, its processes, the host's load."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from hivetui.history import GpuHistory
from hivetui.model import GpuSample, HostSnapshot
from hivetui.safe_text import literal
from hivetui.screens.context import ScreenContext
from hivetui.widgets.fleet_rows import gpu_state, host_state, no_gpu_reason
from hivetui.widgets.gpu_chart import ChartMetric, ChartSeries, GpuChart
from hivetui.widgets.host_info import HostInfo
from hivetui.widgets.process_table import ProcessTable

REFRESH_S = 1.0
WIDE = 180  # from this width the four charts sit in one row

_Series = Callable[[GpuHistory], ChartSeries]

# (widget id, what it shows, how to read it from the history)
CHARTS: tuple[tuple[str, ChartMetric, _Series], ...] = (
    (
        "chart-util",
        ChartMetric("Utilisation %", "%", "green", upper=100.0),
        lambda h: ChartSeries.of(h.times, h.utilization),
    ),
    (
        "chart-mem",
        ChartMetric("Memory %", "%", "cyan", upper=100.0),
        lambda h: ChartSeries.of(h.times, h.memory_pct),
    ),
    (
        "chart-temp",
        ChartMetric("Temperature °C", "°C", "orange"),
        lambda h: ChartSeries.of(h.times, h.temperature),
    ),
    (
        "chart-power",
        ChartMetric("Power W", "W", "magenta"),
        lambda h: ChartSeries.of(h.times, h.power),
    ),
)


class HostDetailScreen(Screen[None]):
    """Charts and processes of one GPU of one host; left/right walks the host's GPUs."""

    CSS_PATH = "host_detail.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("right,l,tab", "next_gpu", "Next GPU", priority=True),
        Binding("left,h,shift+tab", "previous_gpu", "Previous GPU", priority=True),
    ]

    def __init__(self, ctx: ScreenContext, host: str, gpu_index: int | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.host = host
        self.gpu_index = gpu_index  # None: the host's first GPU
        self._shown: tuple[int, int | None] | None = None  # (fleet version, GPU index)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.ctx.show_clock)
        yield Static(id="detail-title")
        with Grid(id="charts"):
            for chart_id, metric, _ in CHARTS:
                yield GpuChart(metric, id=chart_id)
        with Horizontal(id="detail-lower"):
            yield ProcessTable(id="procs")
            yield HostInfo(id="host-info")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self.refresh_detail)
        self.refresh_detail(force=True)

    def on_screen_resume(self) -> None:
        self.refresh_detail(force=True)

    def on_resize(self, event: Resize) -> None:
        self.set_class(event.size.width >= WIDE, "-wide")

    def _snapshot(self) -> HostSnapshot | None:
        try:
            return self.ctx.fleet.snapshot(self.host)
        except KeyError:
            return None

    def _gpu(self, snap: HostSnapshot) -> GpuSample | None:
        if self.gpu_index is None and snap.gpus:
            self.gpu_index = snap.gpus[0].index
        return next((gpu for gpu in snap.gpus if gpu.index == self.gpu_index), None)

    def refresh_detail(self, force: bool = False) -> None:
        """Redraw from the fleet, at most once per tick and only while this screen shows."""
        if self.app.screen is not self:  # Screen.is_current is also true one screen down
            return
        state = (self.ctx.fleet.version, self.gpu_index)
        if state == self._shown and not force:
            return
        self._shown = state
        snap = self._snapshot()
        gpu = None if snap is None else self._gpu(snap)
        self.query_one("#detail-title", Static).update(self._title(snap, gpu))
        history = None
        if gpu is not None:
            history = self.ctx.fleet.history(self.host, gpu.index)
        note = "" if snap is None else no_gpu_reason(snap) or ""
        for chart_id, _, series_of in CHARTS:
            series = None if history is None or not len(history) else series_of(history)
            self.query_one(f"#{chart_id}", GpuChart).show(series, note)
        self.query_one(ProcessTable).show(() if gpu is None else gpu.processes)
        if snap is not None:
            self.query_one(HostInfo).show(snap)

    def _title(self, snap: HostSnapshot | None, gpu: GpuSample | None) -> Text:
        if snap is None:
            return Text.assemble(literal(self.host, "bold"), (" · not in the fleet", "red"))
        if gpu is None:
            return Text.assemble(literal(snap.name, "bold"), " · ", host_state(snap).to_text())
        position = [g.index for g in snap.gpus].index(gpu.index) + 1
        return Text.assemble(
            literal(snap.name, "bold"),
            f" · GPU {gpu.index} ({position}/{len(snap.gpus)}) · ",
            literal(gpu.name),
            " · ",
            gpu_state(gpu).to_text(),
            ("   ←/→ switch GPU", "dim"),
        )

    def _step_gpu(self, step: int) -> None:
        snap = self._snapshot()
        if snap is None or not snap.gpus:
            return
        indices = [gpu.index for gpu in snap.gpus]
        pos = indices.index(self.gpu_index) if self.gpu_index in indices else -step
        self.gpu_index = indices[(pos + step) % len(indices)]
        self.refresh_detail(force=True)

    def action_next_gpu(self) -> None:
        self._step_gpu(1)

    def action_previous_gpu(self) -> None:
        self._step_gpu(-1)

    def action_back(self) -> None:
        self.dismiss()
