"""The compute processes of one GPU: PID, owner, GPU memory, command."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from hivetui.model import GpuProcess
from hivetui.safe_text import printable
from hivetui.widgets.cells import DASH


class ProcessTable(DataTable[object]):
    """Processes of one GPU; ``show`` is the only way in."""

    DEFAULT_CSS = """
    ProcessTable {
        height: 1fr;
        overflow-x: hidden;  /* long commands are cut at the edge, not scrolled */
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_cursor=False)
        self._shown: tuple[GpuProcess, ...] | None = None

    def on_mount(self) -> None:
        self.add_column("PID", key="pid", width=8)
        self.add_column("User", key="user", width=12)
        self.add_column("GPU MiB", key="mem", width=8)
        self.add_column("Command", key="command")

    def show(self, processes: Sequence[GpuProcess]) -> None:
        procs = tuple(processes)
        if procs == self._shown:
            return
        self._shown = procs
        self.clear()
        for proc in procs:
            mem = DASH if proc.gpu_memory_mib is None else f"{proc.gpu_memory_mib:.0f}"
            self.add_row(
                Text(str(proc.pid), justify="right"),
                Text(printable(proc.user or "?"), style="yellow"),
                Text(mem, justify="right"),
                Text(printable(proc.command), no_wrap=True, overflow="ellipsis"),
                key=str(proc.pid),
            )
