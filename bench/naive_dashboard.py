"""The naive peer for bench/tui.py: one plotext chart per GPU, all drawn from the start.

Same core (config, fleet, SSH) as hivetui; only the screen differs. Not shipped.

    python bench/naive_dashboard.py CONFIG
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.app import App, ComposeResult  # noqa: E402
from textual.containers import Grid  # noqa: E402
from textual_plotext import PlotextPlot  # noqa: E402

from hivetui.config import load_config  # noqa: E402
from hivetui.fleet import Fleet  # noqa: E402
from hivetui.hosts import build_fleet  # noqa: E402


class GpuPlot(PlotextPlot):
    def __init__(self, fleet: Fleet, host: str, index: int) -> None:
        super().__init__()
        self.fleet, self.host, self.index = fleet, host, index

    def on_mount(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title(f"{self.host}/{self.index}")
        history = self.fleet.history(self.host, self.index)
        if history:
            plt.plot(list(history.utilization), marker="braille")
        plt.ylim(0, 100)
        self.refresh()


class NaiveDashboard(App[None]):
    CSS = "Grid { grid-size: 8; } GpuPlot { height: 6; }"

    def __init__(self, fleet: Fleet, hosts: list[str]) -> None:
        super().__init__()
        self.fleet, self.hosts = fleet, hosts

    def compose(self) -> ComposeResult:
        with Grid():
            for host in self.hosts:
                for index in range(8):
                    yield GpuPlot(self.fleet, host, index)

    async def on_mount(self) -> None:
        await self.fleet.start()
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        for plot in self.query(GpuPlot):
            plot.redraw()

    async def on_unmount(self) -> None:
        await self.fleet.stop()


if __name__ == "__main__":
    config = load_config(sys.argv[1]).config
    NaiveDashboard(build_fleet(config), [h.name for h in config.hosts]).run()
