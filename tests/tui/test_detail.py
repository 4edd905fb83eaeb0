"""Pilot tests of the host detail screen: charts, processes, GPU switching."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from textual.pilot import Pilot

from hivetui.app import HiveApp
from hivetui.fleet import Fleet
from hivetui.screens.dashboard import DashboardScreen
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.widgets.gpu_chart import ChartSeries, GpuChart
from hivetui.widgets.process_table import ProcessTable

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData

SIZE = (120, 40)


def detail(app: HiveApp) -> HostDetailScreen:
    screen = app.screen
    assert isinstance(screen, HostDetailScreen)
    return screen


def pids(app: HiveApp) -> list[str]:
    table = app.screen.query_one(ProcessTable)
    return [str(key.value) for key in table.rows]


def chart(app: HiveApp, chart_id: str) -> GpuChart:
    return app.screen.query_one(f"#{chart_id}", GpuChart)


async def open_gpu(pilot: Pilot[None], row: int) -> None:
    await pilot.pause()
    await pilot.press(*["j"] * row, "enter")
    await pilot.pause()


async def test_detail_shows_history_processes_and_host(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_gpu(pilot, 1)  # hopper-01/0
        assert (detail(app).host, detail(app).gpu_index) == (tui.big, 0)
        assert pids(app) == ["4101", "4102"]
        util = chart(app, "chart-util").series
        assert util is not None and len(util.times) == tui.steps
        assert sum(math.isnan(v) for v in util.values) == 10  # the [N/A] stretch
        assert len(util.segments()) == 2  # drawn as two runs around the gap
        power = chart(app, "chart-power").series
        assert power is not None and power.latest == tui.h100(0, tui.steps - 1).power_w
        title = str(app.screen.query_one("#detail-title").render())
        assert "GPU 0 (1/8)" in title and "alice" in title
        text = tui.screen_text(app)
        assert "waiting for data" not in text
        assert "load  12.50" in text and "550/2015G" in text  # host facts
        assert "python train.py --model llama" in text


async def test_right_left_and_hl_switch_gpu(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_gpu(pilot, 1)
        await pilot.press("right")
        assert detail(app).gpu_index == 1
        assert pids(app) == ["5120"]
        await pilot.press("l", "tab")
        assert detail(app).gpu_index == 3
        await pilot.press("left", "h", "h", "h")
        assert detail(app).gpu_index == 7  # wraps around
        assert pids(app) == ["5300"]
        await pilot.press("shift+tab")
        assert detail(app).gpu_index == 6
        assert pids(app) == []  # a free GPU
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_detail_follows_new_readings(app: HiveApp, fleet: Fleet, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_gpu(pilot, 1)
        fleet.record(tui.big_host(tui.steps))
        detail(app).refresh_detail()
        series = chart(app, "chart-temp").series
        assert series is not None and len(series.times) == tui.steps + 1
        assert series.latest == tui.h100(0, tui.steps).temperature_c


async def test_timer_redraws_detail(app: HiveApp, fleet: Fleet, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_gpu(pilot, 1)
        fleet.record(tui.big_host(tui.steps))
        await pilot.pause(1.1)
        series = chart(app, "chart-util").series
        assert series is not None and len(series.times) == tui.steps + 1


async def test_host_without_gpu_says_so(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("G", "enter")
        await pilot.pause()
        assert detail(app).host == tui.no_gpu
        for chart_id in ("chart-util", "chart-mem", "chart-temp", "chart-power"):
            assert chart(app, chart_id).series is None
            shown = str(chart(app, chart_id).render())
            assert shown == f"{tui.no_gpu} has no NVIDIA GPU"  # not "waiting for data"
        assert "no NVIDIA GPU" in str(app.screen.query_one("#detail-title").render())
        await pilot.press("right")  # nothing to switch to; no error
        assert detail(app).gpu_index is None


async def test_gpu_that_disappears_keeps_screen_up(
    app: HiveApp, fleet: Fleet, tui: TuiData
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await open_gpu(pilot, 8)  # GPU 7
        snap = fleet.snapshot(tui.big)
        fleet.record(replace(snap, gpus=snap.gpus[:4], updated_at=snap.updated_at + 1))
        detail(app).refresh_detail()
        assert pids(app) == []
        await pilot.press("right")
        assert detail(app).gpu_index == 0


def test_series_segments_split_at_gaps() -> None:
    nan = float("nan")
    series = ChartSeries.of([10.0, 11.0, 12.0, 13.0, 14.0], [1.0, nan, nan, 4.0, 5.0])
    assert series.segments() == [([-4.0], [1.0]), ([-1.0, 0.0], [4.0, 5.0])]
    assert series.latest == 5.0
    assert ChartSeries.of([], []).segments() == []
    assert ChartSeries.of([1.0], [nan]).latest is None
