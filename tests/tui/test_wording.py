"""Counts on screen agree with their nouns: `1 row`, `4 rows`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hivetui.app import HiveApp
from hivetui.widgets.fleet_status import FleetStatus

if TYPE_CHECKING:
    from tests.tui.conftest import TuiData


def status_text(app: HiveApp) -> str:
    return str(app.screen.query_one(FleetStatus).render())


async def test_the_filter_counts_one_row_and_many_rows(app: HiveApp, tui: TuiData) -> None:
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("slash", *"volta")
        await pilot.pause()
        assert "filter “volta”: 1 row" in status_text(app)
        assert "1 rows" not in status_text(app)
        await pilot.press(*["backspace"] * 5, *"bob")
        await pilot.pause()
        assert "filter “bob”: 4 rows" in status_text(app)
