"""What a new user hit in the TUI: the grid's time header, a host without GPUs, the palette,
and the dashboard at 80x24.

The grid's header lines are read back from the widget (``render_line``): what
the terminal would get for each line, at every zoom level and many widths.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot

from hivetui import db
from hivetui.app import HiveApp, make_app
from hivetui.booking import ReservationStore
from hivetui.fleet import Fleet
from hivetui.screens.help import HelpScreen
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.screens.reservation_form import FindFreeForm
from hivetui.widgets.fleet_rows import choose_layout
from hivetui.widgets.fleet_table import FleetTable
from hivetui.widgets.grid_cells import ZOOMS
from hivetui.widgets.reservation_grid import ReservationGrid

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData

DAY_LABEL = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
)
MONTH = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")


@pytest.fixture(autouse=True)
def utc_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def grid_app(fleet: Fleet, now: float) -> HiveApp:
    return make_app(fleet, start_fleet=False, show_clock=False, clock=lambda: now, user="alice")


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_grid(pilot: Pilot[Any]) -> ReservationGrid:
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)
    grid = pilot.app.screen.query_one(ReservationGrid)
    return grid


def header(grid: ReservationGrid) -> tuple[str, str]:
    width = grid.size.width
    day, times = grid.render_line(0), grid.render_line(1)
    # Each line covers the whole width: a shorter one leaves old labels behind.
    drawn = [sum(segment.cell_length for segment in line) for line in (day, times)]
    assert drawn == [width, width], (day.text, times.text)
    return day.text, times.text


def check_time_line(text: str) -> None:
    """Only whole labels: a time cut at the right edge reads as another time."""
    tokens = text.split()
    assert tokens[0] == "GPU"
    for token in tokens[1:]:
        assert re.fullmatch(r"\d\d:\d\d|\d\d|now", token), (token, text)


def check_day_line(text: str, daily: bool) -> None:
    """Every label on the day line is whole, or cut with an ellipsis at the right edge."""
    words = text.split("  ")
    labels = [w.strip() for w in words if w.strip()]
    for i, label in enumerate(labels):
        if daily:
            assert MONTH.fullmatch(label) or (i == len(labels) - 1 and label.endswith("…")), text
        elif not DAY_LABEL.fullmatch(label):
            assert i == len(labels) - 1 and label.endswith("…"), (label, text)


@pytest.mark.parametrize("width", [61, 70, 77, 80, 93, 100, 117, 120])
async def test_header_labels_are_whole_at_every_zoom_and_width(
    width: int, fleet: Fleet, tui: TuiData
) -> None:
    app = grid_app(fleet, tui.now)
    async with app.run_test(size=(width, 24)) as pilot:
        grid = await open_grid(pilot)
        for _ in ZOOMS:
            for _ in range(3):  # the window moves: no label of the last one stays
                day, times = header(grid)
                check_day_line(day, grid.slot.days >= 1)
                check_time_line(times)
                await pilot.press("right_square_bracket")
                await pilot.pause()
            await pilot.press("z")
            await pilot.pause()


async def test_now_stands_apart_at_one_day_per_column(fleet: Fleet, tui: TuiData) -> None:
    app = grid_app(fleet, tui.now)
    async with app.run_test(size=(100, 24)) as pilot:
        grid = await open_grid(pilot)
        while grid.slot.days < 1:
            await pilot.press("z")
            await pilot.pause()
        _day, times = header(grid)
        days = times.split()[1:]  # after "GPU"
        assert all(re.fullmatch(r"\d\d", d) for d in days), times  # nothing run together
        # Now's column keeps its date, marked in now's colour; the next date still shows.
        assert days[days.index("14") + 1] == "15", times
        marked = [seg for seg in grid.render_line(1) if seg.style and seg.style.color]
        assert [seg.text for seg in marked if seg.style and seg.style.bold] == ["14 "]
        assert grid.render_line(2).text.count("│") == 1  # the now line under it


async def test_both_months_are_named_where_the_view_spans_two(fleet: Fleet, tui: TuiData) -> None:
    # 28 Nov 2023: at a day per column the view runs into December.
    now = datetime(2023, 11, 28, 12, tzinfo=UTC).timestamp()
    app = grid_app(fleet, now)
    async with app.run_test(size=(100, 24)) as pilot:
        grid = await open_grid(pilot)
        while grid.slot.days < 1:
            await pilot.press("z")
            await pilot.pause()
        day, times = header(grid)
        assert "Nov" in day and "Dec" in day, day
        # "Dec" sits over the column of the 1st.
        assert day.index("Dec") == times.index(" 01 ") + 1, (day, times)


# -- a host without GPUs ------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path, tui: TuiData) -> AsyncIterator[ReservationStore]:
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/r.db")
    await db.upgrade(engine)
    yield ReservationStore(engine, clock=lambda: tui.now)
    await engine.dispose()


def gpu_less_fleet(tui: TuiData) -> Fleet:
    """The README's first scenario on a machine without an NVIDIA GPU."""
    fleet = Fleet([])
    fleet.record(tui.filled_fleet(1).snapshot(tui.no_gpu))
    return fleet


def notes(app: HiveApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_grid_of_a_fleet_without_gpus_says_why(tui: TuiData, store: ReservationStore) -> None:
    app = make_app(
        gpu_less_fleet(tui),
        start_fleet=False,
        show_clock=False,
        clock=lambda: tui.now,
        store=store,
        user="alice",
    )
    why = f"no GPU to book: {tui.no_gpu} has no NVIDIA GPU"
    async with app.run_test(size=(100, 24)) as pilot:
        grid = await open_grid(pilot)
        assert not grid.gpus
        assert why in grid.render_line(2).text  # where the rows would be
        assert why in tui.screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert notes(app) == [why]
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, FindFreeForm)
        await pilot.press("enter")
        await settle(pilot)
        assert notes(app)[-1] == why
        assert "nothing free" not in tui.screen_text(app)
        await pilot.press("escape")
        await pilot.press("f", "tab", "tab", *tui.no_gpu, "enter")  # that host, by name
        await settle(pilot)
        assert notes(app)[-1] == f"{tui.no_gpu} has no NVIDIA GPU"


# -- the command palette --------------------------------------------------------------


async def test_palette_lists_the_keys_once(app: HiveApp) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert titles.count("Keys") == 1 and not [t for t in titles if "Help" in t]
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"keys")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_palette_shows_host_names_as_text(tui: TuiData) -> None:
    fleet = tui.filled_fleet(1)
    odd = "lab[/b]-[@click=app.quit]"
    fleet.record(replace(fleet.snapshot(tui.offline), name=odd))
    app = tui.quiet_app(fleet)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"host: lab")
        await pilot.pause(0.5)
        assert app.is_running and odd in tui.screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HostDetailScreen) and app.screen.host == odd


# -- the dashboard in a narrow terminal ------------------------------------------------

ORDER = ["name", "state", "util", "mem", "temp", "power", "procs"]


def test_bars_shrink_before_any_column_hides(tui: TuiData) -> None:
    snapshots = tui.filled_fleet(2).snapshots()
    shown_before: list[str] = []
    for width in range(56, 220):
        layout = choose_layout(width, snapshots)
        keys = list(layout.keys)
        assert keys == ORDER[: len(keys)]  # hidden by priority: the least important first
        assert sum(column.width + 2 for column in layout.columns) <= width
        if len(keys) < len(ORDER):
            # A column is hidden only when it does not fit even with every bar at
            # its shortest (Util a 3-cell bar, Memory its numbers alone).
            widths = {column.key: column.width for column in layout.columns}
            shortest = sum(widths.values()) + 2 * len(widths) - (widths["util"] - 8)
            shortest -= widths.get("mem", 10) - 10
            following = 10 if ORDER[len(keys)] == "mem" else 5
            assert shortest + following + 2 > width, (width, layout)
        assert len(keys) >= len(shown_before)  # wider never shows less
        shown_before = keys


async def test_80x24_shows_temp_and_power_of_one_gpu(tui: TuiData) -> None:
    """The README's first scenario: the local machine with one GPU, in 80x24."""
    fleet = Fleet([])
    big = tui.big_host(tui.steps - 1)
    fleet.record(replace(big, name="localhost", gpus=big.gpus[:1]))
    app = tui.quiet_app(fleet)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(FleetTable)
        shown = [str(column.key.value) for column in table.ordered_columns]
        assert shown == ORDER[:6], shown
        text = tui.screen_text(app)
        assert "Temp" in text and "Power" in text and "578W" in text
        # No column runs past the edge: every header and value is whole.
        assert sum(column.get_render_width(table) for column in table.ordered_columns) <= 78
