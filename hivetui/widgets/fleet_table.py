"""The fleet table: a DataTable that takes whole row sets and changes only what differs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from hivetui.widgets.cells import Cell
from hivetui.widgets.fleet_rows import ColumnSpec, TableRow


class FleetTable(DataTable[object]):
    """One row per host and per GPU; ``show`` is the only way in.

    When the columns and the row keys stay the same, only changed cells are
    written (``update_cell``); otherwise the table is rebuilt once, keeping the
    cursor on the same row key.
    """

    DEFAULT_CSS = """
    FleetTable {
        height: 1fr;
        scrollbar-gutter: stable;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g,home", "scroll_top", "First row", show=False),
        Binding("G,end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._columns: tuple[ColumnSpec, ...] = ()
        self._keys: tuple[str, ...] = ()
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self.rebuilds = 0  # how often the row set changed; tests and benchmarks read it

    @property
    def row_keys(self) -> tuple[str, ...]:
        """Keys of the rows shown, top to bottom."""
        return self._keys

    @property
    def cursor_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if not self._keys or not 0 <= self.cursor_row < len(self._keys):
            return None
        return self._keys[self.cursor_row]

    def show(self, columns: Sequence[ColumnSpec], rows: Sequence[TableRow]) -> None:
        """Make the table show exactly ``rows`` under ``columns``."""
        columns = tuple(columns)
        keys = tuple(row.key for row in rows)
        if columns != self._columns or keys != self._keys:
            self._rebuild(columns, rows)
            return
        column_keys = [column.key for column in columns]
        for row in rows:
            old = self._cells[row.key]
            if old == row.cells:
                continue
            for key, before, after in zip(column_keys, old, row.cells, strict=True):
                if before != after:
                    self.update_cell(row.key, key, after.to_text())
            self._cells[row.key] = row.cells

    def _rebuild(self, columns: tuple[ColumnSpec, ...], rows: Sequence[TableRow]) -> None:
        self.rebuilds += 1
        keep = self.cursor_key
        scroll_y = self.scroll_y
        with self.app.batch_update():
            self.clear(columns=columns != self._columns)
            if columns != self._columns:
                for column in columns:
                    self.add_column(column.label, width=column.width, key=column.key)
            for row in rows:
                self.add_row(*(cell.to_text() for cell in row.cells), key=row.key)
            self._columns = columns
            self._keys = tuple(row.key for row in rows)
            self._cells = {row.key: row.cells for row in rows}
            if keep in self._cells:
                self.scroll_to(y=scroll_y, animate=False, immediate=True)
                self.move_cursor(row=self._keys.index(keep), animate=False)
