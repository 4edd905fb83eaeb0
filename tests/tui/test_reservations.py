"""The reservation grid and the dashboard's reservation marks, against a real SQLite store.

The clock is pinned (the fleet fixture's NOW) and the local zone is UTC, so
times on screen are fixed. Reservations that started in the past are seeded
through a store whose clock is two hours earlier: the rules refuse past starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Static

from hivetui import db
from hivetui.agent import beat
from hivetui.app import HiveApp, make_app
from hivetui.booking import ReservationStore
from hivetui.fleet import Fleet
from hivetui.reservations import GpuRef, Reservation
from hivetui.screens.dashboard import DashboardScreen
from hivetui.screens.reservation_form import ConfirmCancel, FindFreeForm, ReservationForm
from hivetui.screens.reservations import ReservationsScreen
from hivetui.usage import Usage, UsageTable
from hivetui.widgets.fleet_table import FleetTable
from hivetui.widgets.grid_cells import FREE, visible_cells
from hivetui.widgets.reservation_grid import ReservationGrid

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData

NOW = 1_700_000_180.0  # the fleet fixture's pinned clock: Tue 14 Nov 2023 22:16:20 UTC
HOST = "hopper-01"
ME = "alice"


def at(hours: float) -> datetime:
    return datetime.fromtimestamp(NOW, UTC) + timedelta(hours=hours)


def gpu(index: int) -> GpuRef:
    return GpuRef(HOST, index, f"GPU-{index:08x}-0000-4000-8000-000000000000")


@pytest.fixture(autouse=True)
def utc_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC here, so what the screen shows does not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ReservationStore]:
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/r.db")
    await db.upgrade(engine)
    yield ReservationStore(engine, clock=lambda: NOW)
    await engine.dispose()


async def seed(
    store: ReservationStore, user: str, index: int, start_h: float, end_h: float, title: str = ""
) -> Reservation:
    """Book as ``user`` through a store whose clock is two hours early (past starts allowed)."""
    early = ReservationStore(store.engine, clock=lambda: NOW - 7200)
    [made] = await early.add(user, [gpu(index)], at(start_h), at(end_h), title)
    return made


def grid_app(fleet: Fleet, store: ReservationStore | None) -> HiveApp:
    return make_app(
        fleet, start_fleet=False, show_clock=False, clock=lambda: NOW, store=store, user=ME
    )


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_grid(pilot: Pilot[Any]) -> ReservationGrid:
    await settle(pilot)
    await pilot.press("r")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ReservationsScreen)
    return pilot.app.screen.query_one(ReservationGrid)


def notes(app: HiveApp) -> str:
    return " | ".join(n.message for n in app._notifications)


async def go_to_row(pilot: Pilot[Any], grid: ReservationGrid, index: int) -> None:
    while grid.cursor_row < index:
        await pilot.press("j")
    while grid.cursor_row > index:
        await pilot.press("k")


# -- the pure cells function ------------------------------------------------


def test_visible_cells_marks_holders_mine_and_now() -> None:
    bob = Reservation(1, "bob", gpu(1), at(-1), at(2), "", at(-2))
    mine = Reservation(2, ME, gpu(2), at(3), at(3.5), "", at(-2))
    start = datetime(2023, 11, 14, 20, tzinfo=UTC)
    view = visible_cells(
        [gpu(0), gpu(1), gpu(2)], [bob, mine], start, timedelta(hours=1), 10, ME, at(0)
    )
    assert view.now_column == 2  # 22:16 is in the 22:00 slot
    assert [c.holder for c in view.rows[1]] == [None, "bob", "bob", "bob", "bob"] + [None] * 5
    assert view.rows[2][5].mine and view.rows[2][5].holder == ME  # 01:16-01:46 -> the 01:00 slot
    assert [c for i, c in enumerate(view.rows[2]) if i != 5] == [FREE] * 9
    assert all(c is FREE for c in view.rows[0])


def test_visible_cells_fills_a_week_of_64_gpus() -> None:
    """The shape bench/grid.py times; speed itself is measured there, not here."""
    gpus = [GpuRef(f"h{h:02d}", i, f"U-{h}-{i}") for h in range(8) for i in range(8)]
    start = datetime(2023, 11, 13, tzinfo=UTC)
    res = [
        Reservation(
            n,
            f"u{n % 7}",
            gpus[n % 64],
            start + timedelta(hours=n // 64 * 3),
            start + timedelta(hours=n // 64 * 3 + 2),
            "",
            start,
        )
        for n in range(64 * 56)
    ]
    view = visible_cells(gpus, res, start, timedelta(hours=1), 7 * 24, ME, start)
    assert len(view.rows) == 64 and len(view.rows[0]) == 168
    assert view.rows[0][0].holder == "u0" and view.rows[0][2] is FREE
    assert view.rows[0][3].holder == "u1" and view.rows[1][0].holder == "u1"


# -- the grid ---------------------------------------------------------------


async def test_grid_shows_existing_reservations_with_holder(
    fleet: Fleet, store: ReservationStore, tui: TuiData
) -> None:
    await seed(store, "bob", 1, -1, 2, "llama run")
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        view = grid.view
        assert view.now_column is not None
        assert view.rows[1][view.now_column].holder == "bob"
        assert not view.rows[1][view.now_column].mine
        assert view.rows[0][view.now_column] is FREE
        text = tui.screen_text(app)
        assert "bob" in text and "hopper-01:1" in text and "now" in text
        await go_to_row(pilot, grid, 1)
        await pilot.pause()
        assert "“llama run”" in tui.screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_n_books_the_selection(fleet: Fleet, store: ReservationStore) -> None:
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 2)
        await pilot.press("l", "shift+down", "shift+right", "shift+right", "n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        values = form.current()
        assert values.gpus == "hopper-01:2,hopper-01:3"
        assert (values.start, values.end) == ("2023-11-14 23:00", "2023-11-15 02:00")
        form.query_one("#title", Input).value = "sweep"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)
        booked = await store.list_reservations(user=ME)
        assert sorted(r.gpu.index for r in booked) == [2, 3]
        span = (datetime(2023, 11, 14, 23, tzinfo=UTC), datetime(2023, 11, 15, 2, tzinfo=UTC))
        assert {(r.start, r.end, r.title) for r in booked} == {(*span, "sweep")}
        assert grid.view.rows[2][grid.cursor_column].mine


async def test_booking_over_someone_else_names_the_holder_and_keeps_the_form(
    fleet: Fleet, store: ReservationStore
) -> None:
    await seed(store, "bob", 1, -1, 2)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 1)
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        form.query_one("#end", Input).value = "+1h"
        form.query_one("#title", Input).value = "keep me"
        await pilot.press("enter")
        await settle(pilot)
        assert form.current().title == "keep me" and form.current().end == "+1h"
        assert app.screen is form  # still open, values kept
        assert "reserved by bob" in notes(app)
        assert await store.list_reservations(user=ME) == []


async def test_bad_time_is_a_notification(fleet: Fleet, store: ReservationStore) -> None:
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_grid(pilot)
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        form.query_one("#end", Input).value = "next blue moon"
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is form
        assert "cannot read 'next blue moon'" in notes(app)


async def test_d_and_confirm_cancels(fleet: Fleet, store: ReservationStore) -> None:
    await seed(store, ME, 2, 1, 3)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 2)
        await pilot.press("l", "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("y")
        await settle(pilot)
        assert await store.list_reservations() == []
        assert grid.under_cursor is FREE


async def test_d_on_someone_elses_is_refused(fleet: Fleet, store: ReservationStore) -> None:
    await seed(store, "bob", 1, -1, 2)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 1)
        await pilot.press("d", "y")
        await settle(pilot)
        assert "belongs to bob" in notes(app)
        assert len(await store.list_reservations()) == 1


async def test_e_edits_the_end(fleet: Fleet, store: ReservationStore) -> None:
    made = await seed(store, ME, 2, 1, 3)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 2)
        await pilot.press("l", "e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        assert form.current().end == "2023-11-15 01:16"
        form.query_one("#end", Input).value = "+5h"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)
        [after] = await store.list_reservations()
        assert (after.id, after.start, after.end) == (made.id, made.start, at(5))


async def test_e_and_d_act_on_the_whole_booking(fleet: Fleet, store: ReservationStore) -> None:
    made = await store.add(ME, [gpu(i) for i in (2, 5, 6)], at(1), at(3), "three")
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 5)
        await pilot.press("l", "e")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        assert form.current().gpus == "hopper-01:2,hopper-01:5,hopper-01:6"
        form.query_one("#end", Input).value = "+12h"
        await pilot.press("enter")
        await settle(pilot)
        after = await store.list_reservations()
        assert [(r.id, r.end) for r in after] == [(r.id, at(12)) for r in made]
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmCancel)
        assert "hopper-01:2,5,6" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert await store.list_reservations() == []


async def test_shift_e_and_shift_d_act_on_one_gpu(fleet: Fleet, store: ReservationStore) -> None:
    made = await store.add(ME, [gpu(i) for i in (2, 5, 6)], at(1), at(3), "three")
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        await go_to_row(pilot, grid, 5)
        await pilot.press("l", "E")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, ReservationForm)
        assert form.current().gpus == "hopper-01:5"
        form.query_one("#end", Input).value = "+5h"
        await pilot.press("enter")
        await settle(pilot)
        ends = {r.gpu.index: (r.end, r.booking) for r in await store.list_reservations()}
        first, moved = made[0].id, made[1].id
        assert ends == {2: (at(3), first), 5: (at(5), moved), 6: (at(3), first)}
        await go_to_row(pilot, grid, 6)
        await pilot.press("D")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmCancel)
        assert "hopper-01:6 only" in app.screen.question
        await pilot.press("y")
        await settle(pilot)
        assert [r.gpu.index for r in await store.list_reservations()] == [2, 5]


async def test_brackets_change_day_and_t_comes_back(fleet: Fleet, store: ReservationStore) -> None:
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        start = grid.view_start
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert grid.view_start == start + timedelta(days=1)
        assert grid.view.now_column is None
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert grid.view_start == start - timedelta(days=1)
        await pilot.press("t")
        assert grid.view_start == start and grid.view.now_column is not None


async def test_zoom_changes_the_slot_length(fleet: Fleet, store: ReservationStore) -> None:
    await seed(store, "bob", 1, -1, 2)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        assert grid.slot == timedelta(hours=1)
        await pilot.press("plus")
        assert grid.slot == timedelta(minutes=30)
        await pilot.press("minus", "minus")
        assert grid.slot == timedelta(hours=2)
        for _ in range(4):
            await pilot.press("z")
        assert grid.slot == timedelta(days=1)
        await settle(pilot)
        assert grid.view.rows[1][grid.view.now_column or 0].holder == "bob"


async def test_find_free_books_the_earliest_slot(fleet: Fleet, store: ReservationStore) -> None:
    await seed(store, "bob", 1, -1, 2)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_grid(pilot)
        await pilot.press("f")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FindFreeForm)
        form.query_one("#count", Input).value = "8"
        form.query_one("#hours", Input).value = "1"
        await pilot.press("enter")
        await settle(pilot)
        assert form.slot is not None and form.slot.start == at(2)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)
        booked = await store.list_reservations(user=ME)
        assert len(booked) == 8 and {(r.start, r.end) for r in booked} == {(at(2), at(3))}


async def test_find_free_now_takes_idle_gpus_first(fleet: Fleet, store: ReservationStore) -> None:
    """GPUs 0, 1, 3, 4 and 7 run processes (nobody reserved them); 2, 5 and 6 are idle."""
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_grid(pilot)
        await pilot.press("f")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FindFreeForm)
        form.query_one("#count", Input).value = "4"
        await pilot.press("enter")
        await settle(pilot)
        assert form.slot is not None and form.slot.start == at(0)
        assert [g.index for g in form.slot.gpus] == [0, 2, 5, 6]
        shown = str(form.query_one("#free-result", Static).render())
        assert "hopper-01:0 (2 processes, " in shown and "in use right now" in shown
        form.query_one("#count", Input).value = "1"
        await pilot.press("enter")
        await settle(pilot)
        assert form.slot is not None and [g.index for g in form.slot.gpus] == [2]
        assert "in use right now" not in str(form.query_one("#free-result", Static).render())
        await pilot.press("enter")
        await settle(pilot)
        assert [r.gpu.index for r in await store.list_reservations(user=ME)] == [2]


async def test_mouse_drag_selects_a_range(fleet: Fleet, store: ReservationStore) -> None:
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        lw, first = grid.label_width, grid.view_start
        await pilot.mouse_down(ReservationGrid, offset=(lw + 1, 2))
        await pilot.hover(ReservationGrid, offset=(lw + 3 * 3 + 1, 3))
        await pilot.mouse_up(ReservationGrid, offset=(lw + 3 * 3 + 1, 3))
        sel = grid.selection
        assert sel is not None
        assert [g.index for g in sel.gpus] == [0, 1]
        assert (sel.start, sel.end) == (first, first + timedelta(hours=4))


async def test_without_a_database_the_grid_says_so(fleet: Fleet, tui: TuiData) -> None:
    app = grid_app(fleet, None)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_grid(pilot)
        assert "no database" in tui.screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, ReservationsScreen)
        assert "no database" in notes(app)


# -- the dashboard ----------------------------------------------------------


async def test_dashboard_marks_reserved_mine_and_violations(
    fleet: Fleet, store: ReservationStore
) -> None:
    await seed(store, "bob", 1, -1, 2)  # bob runs there: fine
    await seed(store, ME, 2, -1, 2)  # free and mine
    await seed(store, "carol", 0, -1, 2)  # alice runs there: a violation
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(FleetTable)
        state = {i: str(table.get_cell(f"{HOST}/{i}", "state")) for i in range(4)}
        assert state[1] == "reserved: bob · bob"
        assert state[2] == "mine · free"
        assert state[0] == "⚠ alice on carol's GPU"
        assert state[3] == "alice, bob"


async def test_command_palette_opens_the_grid(fleet: Fleet, store: ReservationStore) -> None:
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"reservations")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)


# -- looks ------------------------------------------------------------------


def _snapshot_app(fleet: Fleet, tmp_path: Path) -> HiveApp:
    url = f"sqlite+aiosqlite:///{tmp_path}/r.db"

    async def prepare() -> None:
        # Seeded before the app runs, so its first look at the database finds the rows.
        engine = db.make_engine(url)
        await db.upgrade(engine)
        store = ReservationStore(engine, clock=lambda: NOW)
        await seed(store, "bob", 1, -1, 2, "llama")
        await seed(store, ME, 2, 1, 5)
        await seed(store, "carol", 5, 3, 30)
        await engine.dispose()

    asyncio.run(prepare())
    return grid_app(fleet, ReservationStore(db.make_engine(url), clock=lambda: NOW))


async def _open_and_select(pilot: Pilot[Any]) -> None:
    await open_grid(pilot)
    await pilot.press("j", "j", "j", "shift+right", "shift+down")
    await settle(pilot)


def test_grid_120x40(snap_compare: Any, fleet: Fleet, tmp_path: Path) -> None:
    app = _snapshot_app(fleet, tmp_path)
    assert snap_compare(app, terminal_size=(120, 40), run_before=_open_and_select)


def test_grid_80x24(snap_compare: Any, fleet: Fleet, tmp_path: Path) -> None:
    app = _snapshot_app(fleet, tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_open_and_select)


async def test_idle_reservation_is_marked_in_the_grid_and_told_to_its_owner(
    fleet: Fleet, store: ReservationStore, tui: TuiData
) -> None:
    mine = await seed(store, ME, 2, -1, 3, "sleepy")
    busy = await seed(store, "bob", 1, -1, 3, "busy")
    table = UsageTable(store.engine)
    idle_since = int(NOW) - 2 * 3600  # past the default 60 min threshold
    await table.save(
        [
            Usage(mine.id, samples=10, util_sum=0.0, last_s=int(NOW), idle_since_s=idle_since),
            Usage(busy.id, samples=10, util_sum=900.0, last_s=int(NOW), idle_since_s=None),
        ]
    )
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        col = grid.view.now_column
        assert col is not None
        assert grid.view.rows[2][col].idle and not grid.view.rows[1][col].idle
        assert "alice idle" in tui.screen_text(app)
        app._check_idle()
        await settle(pilot)
        told = notes(app)
        assert f"reservation {mine.id}" in told and "idle" in told
        assert f"reservation {busy.id}" not in told
        app._check_idle()  # once per reservation, not every minute
        await settle(pilot)
        assert notes(app).count(f"reservation {mine.id}") == 1


async def test_grid_marks_a_violated_reservation(
    fleet: Fleet, store: ReservationStore, tui: TuiData
) -> None:
    carol = await seed(store, "carol", 0, -1, 2)  # alice's process runs on GPU 0
    bob = await seed(store, "bob", 1, -1, 2)  # bob's own process: no violation
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        grid = await open_grid(pilot)
        col = grid.view.now_column
        assert col is not None
        assert grid.view.rows[0][col].violated and grid.view.rows[0][col].reservation == carol
        assert not grid.view.rows[1][col].violated and grid.view.rows[1][col].reservation == bob
        assert "carol ⚠" in tui.screen_text(app)


@pytest.mark.parametrize(
    ("beat_age_s", "expected"),
    [(None, "no agent"), (5, "agent alive"), (2 * 3600, "agent silent, 2h ago")],
)
async def test_status_line_says_whether_an_agent_is_alive(
    fleet: Fleet, store: ReservationStore, tui: TuiData, beat_age_s: int | None, expected: str
) -> None:
    if beat_age_s is not None:
        await beat(store.engine, "head-node", "ok", int(NOW) - beat_age_s)
    app = grid_app(fleet, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert "agent" not in tui.screen_text(app)  # not read yet: nothing claimed
        app._check_agent()
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.refresh_fleet(force=True)
        await pilot.pause()
        assert expected in tui.screen_text(app)
