"""Snapshots of the looks: fixed data, pinned clock, header clock hidden.

Regenerate after an intended change with ``pytest tests/tui --snapshot-update``
and look at the SVGs before committing them.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from hivetui.fleet import Fleet


async def _settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()


def test_dashboard_120x40(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(tui.quiet_app(fleet), terminal_size=(120, 40), run_before=_settle)


def test_dashboard_80x24(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(tui.quiet_app(fleet), terminal_size=(80, 24), run_before=_settle)


def test_dashboard_filtered_by_user(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(
        tui.quiet_app(fleet),
        press=["slash", *"bob", "enter"],
        terminal_size=(100, 30),
        run_before=_settle,
    )


def test_detail_120x40(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(
        tui.quiet_app(fleet), press=["j", "enter"], terminal_size=(120, 40), run_before=_settle
    )


def test_detail_80x24(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(
        tui.quiet_app(fleet), press=["j", "enter"], terminal_size=(80, 24), run_before=_settle
    )


def test_help_120x40(snap_compare: Any, fleet: Fleet, tui: Any) -> None:
    assert snap_compare(
        tui.quiet_app(fleet), press=["question_mark"], terminal_size=(120, 40), run_before=_settle
    )
