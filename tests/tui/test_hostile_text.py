"""What hosts and teammates write is shown as data in every screen, never as markup or escapes.

A host whose GPU name, process command, owner and error text hold terminal
escapes (OSC 52, ``ESC[2J``), a bidi override and Textual markup
(``[@click=app.quit]``, ``[/nope]``); reservations in a real SQLite store whose
titles and user are the same. The cursor visits each of them in the
dashboard, the detail screen and the grid: the app keeps running, the text is
shown literally, and no control character reaches the screen.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import insert
from textual.pilot import Pilot

from hivetui import db
from hivetui.app import HiveApp, make_app
from hivetui.booking import ReservationStore
from hivetui.fleet import Fleet
from hivetui.model import GpuAvailability, GpuProcess, HostSnapshot, HostStatus
from hivetui.reservations import GpuRef
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.screens.reservation_form import ConfirmCancel
from hivetui.screens.reservations import ReservationsScreen
from hivetui.widgets.fleet_table import FleetTable
from hivetui.widgets.reservation_grid import ReservationGrid

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData

ESCAPES = "\x1b]52;c;aGVsbG8=\x07\x1b[2J\u202e"
SHOWN = "\\x1b]52;c;aGVsbG8=\\x07\\x1b[2J\\u202e"
MARKUP = "[@click=app.quit] [/nope]"
EVIL_HOST = "evil-07"
EVIL_USER = f"m{ESCAPES}x"
CONTROLS = ("\x1b", "\x07", "\u202e")


def hostile_fleet(tui: TuiData) -> Fleet:
    """The usual fleet, plus a host whose every outside string is hostile, and one in error."""
    fleet: Fleet = tui.filled_fleet(tui.steps)
    big = tui.big_host(tui.steps - 1)
    gpu = replace(
        big.gpus[1],
        uuid="GPU-000000ee-0000-4000-8000-000000000000",
        name=f"{ESCAPES}H100 {MARKUP}",
        processes=(GpuProcess(4242, EVIL_USER, 100.0, f"python {ESCAPES}{MARKUP}"),),
    )
    fleet.record(
        replace(big, name=EVIL_HOST, gpus=(gpu,), updated_at=tui.now - 1),
    )
    fleet.record(
        HostSnapshot(
            name="broken-08",
            status=HostStatus.ONLINE,
            gpu_availability=GpuAvailability.ERROR,
            gpu_error=f"[/nope] {ESCAPES}",
            updated_at=tui.now - 1,
        )
    )
    fleet.record(
        HostSnapshot(
            name="gone-09",
            status=HostStatus.OFFLINE,
            error=f"[@click=app.quit] {ESCAPES}",
            updated_at=tui.now - 1,
        )
    )
    return fleet


def assert_shown_literally(app: HiveApp, tui: TuiData, *expected: str) -> None:
    assert app.is_running and app.return_code is None
    svg = app.export_screenshot()
    for char in CONTROLS:
        assert char not in svg, f"{char!r} reached the screen"
    text = tui.screen_text(app)
    for part in expected:
        assert part in text, (part, text)


async def settle(pilot: Pilot[Any]) -> None:
    for _ in range(3):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_dashboard_rows_with_hostile_text(tui: TuiData) -> None:
    app = tui.quiet_app(hostile_fleet(tui))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(FleetTable)
        for _ in table.row_keys:  # the cursor visits every row
            await pilot.press("j")
            await pilot.pause()
        assert_shown_literally(app, tui, "m\\x1b]52", "[/nope] \\x1b]52", "[@click=app.quit] \\x1b")
        await pilot.press("slash", *"m", "enter")  # filter: the owner's name shows
        await settle(pilot)
        assert_shown_literally(app, tui, "m\\x1b]52")


async def test_detail_of_a_hostile_gpu(tui: TuiData) -> None:
    app = tui.quiet_app(hostile_fleet(tui))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        app.open_host(EVIL_HOST)
        await settle(pilot)
        assert isinstance(app.screen, HostDetailScreen)
        assert_shown_literally(app, tui, f"{SHOWN}H100 {MARKUP}", f"python {SHOWN}[@click")
        for host in ("broken-08", "gone-09"):
            app.open_host(host)
            await settle(pilot)
            assert_shown_literally(app, tui, SHOWN)


@pytest.fixture(autouse=True)
def utc_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
async def store(tmp_path: Path, tui: TuiData) -> AsyncIterator[ReservationStore]:
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/r.db")
    await db.upgrade(engine)
    now = datetime.fromtimestamp(tui.now, UTC)
    rows = [
        ("oops [/nope] x", 1, -1, 2),
        ("[@click=app.quit]", 2, -1, 2),
        (f"t{ESCAPES}[b]bold?[/b]", 3, -1, 2),
    ]
    async with engine.begin() as conn:  # as a teammate would write them: plain SQL
        for title, index, start_h, end_h in rows:
            await conn.execute(
                insert(db.reservations).values(
                    user=EVIL_USER,
                    host=tui.big,
                    gpu_index=index,
                    gpu_uuid=tui.h100(index, 0).uuid,
                    start_s=int((now + timedelta(hours=start_h)).timestamp()),
                    end_s=int((now + timedelta(hours=end_h)).timestamp()),
                    title=title,
                    created_s=int(now.timestamp()) - 7200,
                )
            )
        # A uuid no driver prints: left out, and the rest of the grid still shows.
        await conn.execute(
            insert(db.reservations).values(
                user=EVIL_USER,
                host=tui.big,
                gpu_index=4,
                gpu_uuid="GPU-x$(reboot)",
                start_s=int(now.timestamp()) - 60,
                end_s=int(now.timestamp()) + 3600,
                title="",
                created_s=int(now.timestamp()) - 7200,
            )
        )
    yield ReservationStore(engine, clock=lambda: tui.now)
    await engine.dispose()


async def test_grid_cursor_on_hostile_reservations(tui: TuiData, store: ReservationStore) -> None:
    app = make_app(
        hostile_fleet(tui),
        start_fleet=False,
        show_clock=False,
        clock=lambda: tui.now,
        store=store,
        user="alice",
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ReservationsScreen)
        grid = app.screen.query_one(ReservationGrid)
        for index, title in ((1, "oops [/nope] x"), (2, "[@click=app.quit]"), (3, f"t{SHOWN}[b]")):
            row = [(g.host, g.index) for g in grid.gpus].index((tui.big, index))
            while grid.cursor_row < row:
                await pilot.press("j")
            await settle(pilot)
            assert grid.under_cursor.reservation is not None
            assert_shown_literally(app, tui, title, "m\\x1b]")
        await pilot.press("d")  # the cancel question names the holder
        await settle(pilot)
        assert isinstance(app.screen, ConfirmCancel)
        assert_shown_literally(app, tui, "of m\\x1b]52")
        await pilot.press("n")
        await pilot.press("e")  # the edit form shows the title as text
        await settle(pilot)
        assert_shown_literally(app, tui, f"t{SHOWN}[b]bold?[/b]")


WIDE_USER = "数据科学家👩‍🔬长名字"  # CJK and an emoji sequence: two cells a character


async def test_wide_and_long_names_keep_every_line_to_its_width(
    tui: TuiData, tmp_path: Path
) -> None:
    fleet: Fleet = tui.filled_fleet(2)
    big = tui.big_host(1)
    gpu = replace(
        big.gpus[1],
        uuid="GPU-000000ef-0000-4000-8000-000000000000",
        name="英伟达 H100 八十吉字节 超长的名字" * 3,
        processes=(GpuProcess(77, WIDE_USER, 10.0, "训练 " * 50),),
    )
    fleet.record(replace(big, name="主机-" + "宽" * 30, gpus=(gpu,), updated_at=tui.now - 1))
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/w.db")
    await db.upgrade(engine)
    store = ReservationStore(engine, clock=lambda: tui.now - 7200)
    start = datetime.fromtimestamp(tui.now, UTC)
    for index, hours in ((1, 1), (2, 3), (3, 7)):  # runs of 1, 3 and 7 columns
        ref = GpuRef(tui.big, index, tui.h100(index, 0).uuid)
        await store.add(WIDE_USER, [ref], start, start + timedelta(hours=hours))
    store = ReservationStore(engine, clock=lambda: tui.now)
    app = make_app(
        fleet, start_fleet=False, show_clock=False, clock=lambda: tui.now, store=store, user="a"
    )
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(FleetTable)
            for y in range(table.size.height):
                line = table.render_line(y)
                assert sum(s.cell_length for s in line) == table.size.width, line.text
            await pilot.press("r")
            await settle(pilot)
            grid = app.screen.query_one(ReservationGrid)
            assert grid.label_width <= 19
            for y in range(grid.size.height):
                line = grid.render_line(y)
                assert sum(s.cell_length for s in line) == grid.size.width, line.text
            rows = "\n".join(grid.render_line(y).text for y in range(grid.size.height))
            assert "数 据 科 学 家" in rows  # a wide name runs across its cells, whole
            assert "主机-宽宽宽宽宽宽…" in rows  # a long label is cut by cells
    finally:
        await engine.dispose()
