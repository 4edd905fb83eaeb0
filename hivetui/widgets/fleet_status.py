"""The one-line fleet summary under the dashboard: hosts up, GPUs free, data age."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from hivetui.model import HostSnapshot
from hivetui.safe_text import printable


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """Counts for the status line; ``age_s`` is None before the first reading."""

    hosts_online: int
    hosts_total: int
    gpus_free: int
    gpus_total: int
    latest_at: float | None
    now: float = 0.0
    rows_shown: int = 0
    query: str = ""  # set while a filter hides some rows
    agent_checked: bool = False  # whether the agents' heartbeats were read
    agent_beat_at: float | None = None  # the newest heartbeat, if any

    @classmethod
    def of(cls, snapshots: Sequence[HostSnapshot]) -> FleetSummary:
        return cls(
            hosts_online=sum(1 for s in snapshots if s.status.is_up),
            hosts_total=len(snapshots),
            gpus_free=sum(s.free_gpus for s in snapshots),
            gpus_total=sum(len(s.gpus) for s in snapshots),
            latest_at=max((s.updated_at for s in snapshots if s.updated_at), default=None),
        )

    @property
    def age_s(self) -> float | None:
        return None if self.latest_at is None else max(self.now - self.latest_at, 0.0)


def age_text(age_s: float | None) -> str:
    if age_s is None:
        return "no data yet"
    if age_s < 90:
        return f"updated {age_s:.0f}s ago"
    if age_s < 5400:
        return f"updated {age_s / 60:.0f}m ago"
    return f"updated {age_s / 3600:.0f}h ago"


AGENT_ALIVE_S = 60.0  # the agent beats every few seconds; a minute of silence is news


def agent_part(beat_at: float | None, now: float) -> tuple[str, str]:
    """The status line's word on the agent: alive, silent since when, or none."""
    if beat_at is None:
        return (" · no agent", "yellow")
    silent = max(now - beat_at, 0.0)
    if silent < AGENT_ALIVE_S:
        return (" · agent alive", "green")
    return (f" · agent silent, {age_text(silent).removeprefix('updated ')}", "yellow")


class FleetStatus(Static):
    """Shows a :class:`FleetSummary`; ``show`` is the only way in."""

    DEFAULT_CSS = """
    FleetStatus {
        height: 1;
        padding: 0 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def show(self, summary: FleetSummary) -> None:
        age = summary.age_s
        free_style = "bold green" if summary.gpus_free else "bold"
        stale = age is None or age > 10
        parts: list[tuple[str, str]] = [
            ("hosts ", ""),
            (f"{summary.hosts_online}/{summary.hosts_total}", "bold"),
            (" online · GPUs ", ""),
            (f"{summary.gpus_free}/{summary.gpus_total}", free_style),
            (" free · ", ""),
            (age_text(age), "yellow" if stale else ""),
        ]
        if summary.agent_checked:
            parts.append(agent_part(summary.agent_beat_at, summary.now))
        if summary.query:
            rows = f"{summary.rows_shown} row{'' if summary.rows_shown == 1 else 's'}"
            parts.append((f" · filter “{printable(summary.query)}”: {rows}", "cyan"))
        self.update(Text.assemble(*parts, no_wrap=True, overflow="ellipsis"))
