"""The app's own duties: start and stop the fleet, the command palette."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hivetui.app import HiveApp, make_app
from hivetui.fleet import Fleet, UpdateListener
from hivetui.model import HostSnapshot, HostStatus
from hivetui.screens.dashboard import DashboardScreen
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.widgets.fleet_table import FleetTable

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData


class ScriptedHost:
    """A collector that publishes one fixed reading; records what the fleet asked of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.followed = False
        self.closed = False

    async def follow(self, publish: UpdateListener) -> None:
        self.followed = True
        publish(HostSnapshot(self.name, HostStatus.OFFLINE, error="scripted", updated_at=1.0))
        await asyncio.Event().wait()  # like a real collector: runs until cancelled

    async def sweep(self, timeout: float) -> HostSnapshot:
        return HostSnapshot(self.name, HostStatus.OFFLINE, error="scripted")

    async def close(self) -> None:
        self.closed = True


async def test_app_starts_fleet_on_mount_and_stops_it_on_exit() -> None:
    host = ScriptedHost("scripted-01")
    app = make_app(Fleet([host]), show_clock=False, clock=lambda: 2.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert host.followed
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.refresh_fleet()
        table = app.screen.query_one(FleetTable)
        assert str(table.get_cell("scripted-01", "state")) == "offline: scripted"
        assert not host.closed
    assert host.closed


async def test_start_fleet_false_leaves_collectors_alone() -> None:
    host = ScriptedHost("scripted-01")
    app = make_app(Fleet([host]), start_fleet=False, show_clock=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert not host.followed
        table = app.screen.query_one(FleetTable)
        assert str(table.get_cell("scripted-01", "state")) == "connecting…"
    assert not host.closed


async def test_command_palette_opens_a_host(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*f"host: {tui.offline}")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HostDetailScreen)
        assert screen.host == tui.offline
        assert "offline: connection refused" in tui.screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
