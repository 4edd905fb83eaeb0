"""Pilot tests of the dashboard: rows, refresh, keys, filter, help, narrow terminals."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from textual.widgets import Input

from hivetui.app import HiveApp
from hivetui.fleet import Fleet
from hivetui.model import GpuProcess, HostSnapshot, HostStatus
from hivetui.screens.dashboard import DashboardScreen
from hivetui.screens.help import HelpScreen
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.widgets.fleet_status import FleetStatus
from hivetui.widgets.fleet_table import FleetTable

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData

SIZE = (120, 40)


def table(app: HiveApp) -> FleetTable:
    return app.screen.query_one(FleetTable)


def cell(app: HiveApp, row: str, column: str) -> str:
    return str(table(app).get_cell(row, column))


def status_text(app: HiveApp) -> str:
    return str(app.screen.query_one(FleetStatus).render())


def dashboard_screen(app: HiveApp) -> DashboardScreen:
    screen = app.screen
    assert isinstance(screen, DashboardScreen)
    return screen


def all_keys(tui: TuiData) -> list[str]:
    return [tui.big, *(f"{tui.big}/{i}" for i in range(8)), tui.offline, tui.no_gpu]


async def test_rows_for_every_host_and_gpu(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert list(table(app).row_keys) == all_keys(tui)
        assert "3/8 GPUs free" in cell(app, tui.big, "state")
        assert cell(app, f"{tui.big}/2", "state") == "free"
        assert cell(app, f"{tui.big}/3", "state") == "alice, bob"
        assert cell(app, f"{tui.big}/0", "name").strip() == "0 H100 80GB"
        assert "42.5/80G" in cell(app, f"{tui.big}/0", "mem")
        assert cell(app, f"{tui.big}/7", "power").strip() == "–"  # [N/A] power
        assert cell(app, f"{tui.big}/0", "temp").strip() == "66°C"


async def test_status_line_counts_hosts_gpus_and_age(app: HiveApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = status_text(app)
        assert "hosts 2/3 online" in text
        assert "GPUs 3/8 free" in text
        assert "updated 1s ago" in text


async def test_offline_host_shows_its_cause(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert cell(app, tui.offline, "state") == "offline: connection refused"
        assert cell(app, tui.offline, "util") == "–"


async def test_host_without_gpu_says_so(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "no NVIDIA GPU" in cell(app, tui.no_gpu, "state")


async def test_ssh_errors_show_as_text_in_the_row(fleet: Fleet, tui: TuiData) -> None:
    fleet.record(HostSnapshot("keyless", HostStatus.AUTH_FAILED, error="publickey denied"))
    fleet.record(HostSnapshot("moved", HostStatus.HOST_KEY_CHANGED, error="see known_hosts:12"))
    app = tui.quiet_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert cell(app, "keyless", "state") == "auth failed: publickey denied"
        assert cell(app, "moved", "state") == "host key changed: see known_hosts:12"


async def test_a_snapshot_that_cannot_be_shown_is_an_error_row(fleet: Fleet, tui: TuiData) -> None:
    # Not a number, deliberately ill-typed: formatting fails.
    bad_gpu = replace(tui.h100(0, 0), utilization_pct=cast(float, "oops"))
    fleet.record(HostSnapshot("weird", HostStatus.ONLINE, gpus=(bad_gpu,), updated_at=tui.t0))
    app = tui.quiet_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert cell(app, "weird", "state").startswith("display error:")
        assert tui.big in table(app).row_keys  # the other hosts still show


async def test_new_reading_updates_cells_in_place(app: HiveApp, fleet: Fleet, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rebuilds = table(app).rebuilds
        snap = fleet.snapshot(tui.big)
        busy = replace(
            snap.gpus[2],
            utilization_pct=97.0,
            processes=(GpuProcess(pid=7, user="carol", gpu_memory_mib=1000.0, command="x"),),
        )
        fleet.record(tui.with_gpu(snap, busy, snap.updated_at + 1))
        dashboard_screen(app).refresh_fleet()
        assert cell(app, f"{tui.big}/2", "state") == "carol"
        assert cell(app, f"{tui.big}/2", "util").endswith(" 97%")
        assert "2/8 GPUs free" in cell(app, tui.big, "state")
        assert table(app).rebuilds == rebuilds  # same rows: no rebuild


async def test_timer_picks_up_new_readings(app: HiveApp, fleet: Fleet, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        snap = fleet.snapshot(tui.big)
        fleet.record(replace(snap, status=HostStatus.OFFLINE, error="no route to host"))
        await pilot.pause(1.1)
        assert cell(app, tui.big, "state") == "offline: no route to host"


async def test_new_host_adds_rows(app: HiveApp, fleet: Fleet, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("j", "j", "j", "j")
        rebuilds = table(app).rebuilds
        fleet.record(replace(tui.big_host(0), name="hopper-02"))
        dashboard_screen(app).refresh_fleet()
        assert "hopper-02/7" in table(app).row_keys
        assert table(app).rebuilds == rebuilds + 1
        assert table(app).cursor_key == f"{tui.big}/3"  # the cursor stays on its GPU


async def test_hidden_dashboard_skips_work_until_shown(
    app: HiveApp, fleet: Fleet, tui: TuiData
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, HostDetailScreen)
        fleet.record(replace(fleet.snapshot(tui.offline), error="timed out"))
        dashboard.refresh_fleet()
        assert str(dashboard.query_one(FleetTable).get_cell(tui.offline, "state")).endswith(
            "connection refused"
        )
        await pilot.press("escape")
        await pilot.pause()
        assert cell(app, tui.offline, "state") == "offline: timed out"


async def test_keys_move_the_cursor(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        keys = all_keys(tui)
        assert table(app).cursor_key == keys[0]
        await pilot.press("j", "j")
        assert table(app).cursor_key == keys[2]
        await pilot.press("k")
        assert table(app).cursor_key == keys[1]
        await pilot.press("down", "down", "up")
        assert table(app).cursor_key == keys[2]
        await pilot.press("G")
        assert table(app).cursor_key == keys[-1]
        await pilot.press("g")
        assert table(app).cursor_key == keys[0]


async def test_enter_opens_detail_and_escape_returns(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("j", "j", "j", "enter")  # hopper-01/2
        screen = app.screen
        assert isinstance(screen, HostDetailScreen)
        assert (screen.host, screen.gpu_index) == (tui.big, 2)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        assert table(app).cursor_key == f"{tui.big}/2"
        await pilot.press("G", "enter")  # a host row: its detail, no GPU
        assert isinstance(app.screen, HostDetailScreen)
        assert (app.screen.host, app.screen.gpu_index) == (tui.no_gpu, None)
        await pilot.press("backspace")
        assert isinstance(app.screen, DashboardScreen)


async def test_click_selects_and_double_click_opens(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.click(FleetTable, offset=(4, 5))  # header line, then rows 0..4
        assert table(app).cursor_key == f"{tui.big}/3"
        assert isinstance(app.screen, DashboardScreen)
        await pilot.double_click(FleetTable, offset=(4, 6))
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HostDetailScreen)
        assert screen.gpu_index == 4


async def test_filter_by_user_then_escape_clears(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"BoB")
        box = app.screen.query_one("#filter", Input)
        assert box.display and box.has_focus
        assert list(table(app).row_keys) == [tui.big] + [f"{tui.big}/{i}" for i in (1, 3, 7)]
        assert "filter “bob”" in status_text(app)
        await pilot.press("escape")
        assert not box.display
        assert list(table(app).row_keys) == all_keys(tui)
        assert table(app).has_focus


async def test_filter_by_host_and_gpu_name(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"volta")
        assert list(table(app).row_keys) == [tui.offline]
        await pilot.press(*["backspace"] * 5, *"h100", "enter")
        assert len(table(app).row_keys) == 9
        assert table(app).has_focus  # enter keeps the filter and goes back to the rows


async def test_typing_q_in_the_filter_does_not_quit(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash", "q", "question_mark")
        assert app.is_running
        assert isinstance(app.screen, DashboardScreen)
        assert app.screen.query_one("#filter", Input).value == "q?"


async def test_help_lists_every_key_and_closes(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        descriptions = {e.description.lower(): e for e in help_screen.entries}
        assert descriptions["quit"].scope == "everywhere"
        assert descriptions["filter"].keys == "/"
        assert "j" in descriptions["cursor down"].keys
        assert "enter" in descriptions["open"].keys.lower() or "⏎" in descriptions["open"].keys
        assert "Quit" in tui.screen_text(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("question_mark", "escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_q_quits(app: HiveApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_command_palette_offers_screens(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {"Dashboard", "Keys", "Filter", f"Host: {tui.big}"} <= set(commands)
        commands[f"Host: {tui.big}"].callback()
        await pilot.pause()
        assert isinstance(app.screen, HostDetailScreen)
        commands["Dashboard"].callback()
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


async def test_narrow_terminal_keeps_host_gpu_and_util(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        t = table(app)
        shown = [str(column.key.value) for column in t.ordered_columns]
        assert shown[:3] == ["name", "state", "util"]
        assert "procs" not in shown  # the least important column goes first
        assert cell(app, f"{tui.big}/0", "util").endswith(" 85%")
        assert cell(app, tui.offline, "state") == "offline: connection refused"
        assert sum(c.width + 2 for c in t.ordered_columns) <= 78  # no sideways scrolling


async def test_large_fleet_updates_in_place(tui: TuiData) -> None:
    fleet = Fleet([])
    hosts = [replace(tui.big_host(0), name=f"node-{n:03d}") for n in range(100)]
    for snap in hosts:
        fleet.record(snap)
    app = tui.quiet_app(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(table(app).row_keys) == 900
        rebuilds = table(app).rebuilds
        for snap in hosts:
            fleet.record(replace(tui.big_host(1), name=snap.name))
        dashboard_screen(app).refresh_fleet()
        assert table(app).rebuilds == rebuilds
        expected = tui.h100(0, 1).utilization_pct
        assert cell(app, "node-099/0", "util").endswith(f" {expected:.0f}%")
