"""A short block about one host: connection, CPU, load, memory, GPUs free."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from hivetui.model import HostSnapshot
from hivetui.safe_text import literal
from hivetui.widgets.cells import DASH, bar, host_memory_text, number
from hivetui.widgets.fleet_rows import host_state


class HostInfo(Static):
    """Facts about one host; ``show`` is the only way in."""

    DEFAULT_CSS = """
    HostInfo {
        height: auto;
        padding: 0 1;
    }
    """

    def show(self, snap: HostSnapshot) -> None:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("host", literal(snap.name))
        grid.add_row("state", host_state(snap).to_text())
        load = snap.load
        if load is None:
            grid.add_row("cpu", DASH)
            grid.add_row("load", DASH)
            grid.add_row("memory", DASH)
        else:
            grid.add_row(
                "cpu", Text.assemble(*bar(load.cpu_pct, 10), " ", number(load.cpu_pct, ".0f", "%"))
            )
            grid.add_row("load", number(load.load1, ".2f"))
            grid.add_row(
                "memory",
                Text.assemble(
                    *bar(load.mem_pct, 10),
                    " ",
                    host_memory_text(load.mem_used_mib, load.mem_total_mib),
                ),
            )
        grid.add_row("GPUs", f"{snap.free_gpus}/{len(snap.gpus)} free" if snap.gpus else DASH)
        self.update(grid)
