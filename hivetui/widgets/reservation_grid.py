"""The reservation grid: GPUs down, time slots across, holders in the cells.

Drawn with the line API, so only the visible lines are rendered; the cells
come from :func:`~hivetui.widgets.grid_cells.visible_cells` for the visible
window only. ``update`` is the one way in for data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from hivetui.reservations import GpuRef, Reservation
from hivetui.safe_text import chunk_cells, pad_cells, printable
from hivetui.safe_text import width as cell_width
from hivetui.widgets.cells import fit
from hivetui.widgets.grid_cells import (
    DEFAULT_ZOOM,
    FREE,
    ZOOMS,
    GridSlot,
    GridView,
    floor_slot,
    gpus_of,
    visible_cells,
)

CELL_W = 3
HEADER_LINES = 2
_LABEL_MAX = 18

_STYLES = {
    "label": Style(bold=True),
    "free": Style(color="green"),
    "mine": Style(color="white", bgcolor="blue", bold=True),
    "other": Style(color="white", bgcolor="grey30"),
    "idle": Style(color="yellow", italic=True),
    "violated": Style(color="white", bgcolor="red", bold=True),
    "past": Style(dim=True),
    "now": Style(color="red", bold=True),
    "cursor": Style(reverse=True),
    "selected": Style(bgcolor="magenta", color="white"),
    "day": Style(bold=True, color="cyan"),
    "hour": Style(dim=True),
}


@dataclass(frozen=True, slots=True)
class Selection:
    """GPUs and the time range ``[start, end)`` the user picked."""

    gpus: tuple[GpuRef, ...]
    start: datetime
    end: datetime


class ReservationGrid(Widget, can_focus=True):
    """Move with arrows/hjkl, select with shift+arrows, ``v`` or a mouse drag."""

    DEFAULT_CSS = """
    ReservationGrid {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(0, -1)", "Earlier", show=False),
        Binding("right,l", "move(0, 1)", "Later", show=False),
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("shift+left,H", "select(0, -1)", "Select earlier", show=False),
        Binding("shift+right,L", "select(0, 1)", "Select later", show=False),
        Binding("shift+up,K", "select(-1, 0)", "Select up", show=False),
        Binding("shift+down,J", "select(1, 0)", "Select down", show=False),
        Binding("v", "toggle_select", "Select"),
        Binding("t", "today", "Now"),
        Binding("left_square_bracket", "day(-1)", "Prev day"),
        Binding("right_square_bracket", "day(1)", "Next day"),
        Binding("plus,equals_sign", "zoom(-1)", "Zoom in", show=False),
        Binding("minus", "zoom(1)", "Zoom out", show=False),
        Binding("z", "zoom(0)", "Zoom"),
    ]

    class WindowChanged(Message):
        """The visible time window moved: the screen loads its reservations."""

        def __init__(self, start: datetime, end: datetime) -> None:
            super().__init__()
            self.start, self.end = start, end

    class Moved(Message):
        """The cursor or the selection changed: what is under it may be new."""

    def __init__(self, now: datetime, *, me: str, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.me = me
        self.now = now
        self.zoom = DEFAULT_ZOOM
        self.fleet_gpus: tuple[GpuRef, ...] = ()
        self.reservations: tuple[Reservation, ...] = ()
        self.idle: frozenset[int] = frozenset()
        self.violated: frozenset[int] = frozenset()
        self.gpus: tuple[GpuRef, ...] = ()
        self.cursor_row = 0
        self.cursor_time = floor_slot(now, self.slot)
        self.view_start = self.cursor_time
        self.select_from: tuple[int, datetime] | None = None
        self.row_offset = 0
        self._dragging = False
        self._selecting = False  # "v" pressed: moves extend the selection
        self._view: GridView | None = None
        self._window: tuple[datetime, datetime] | None = None
        self.note = ""  # shown where the rows would be when there is no GPU

    # -- the way in --------------------------------------------------------
    def update(
        self,
        gpus: Sequence[GpuRef],
        reservations: Sequence[Reservation],
        now: datetime,
        idle: frozenset[int] = frozenset(),
        violated: frozenset[int] = frozenset(),
        note: str = "",
    ) -> None:
        """Show ``reservations`` on the fleet's ``gpus`` at ``now``; mark idle and violated ids.

        ``note`` says why there is no GPU to show, when there is none.
        """
        self.note = note
        self.fleet_gpus = tuple(gpus)
        self.reservations = tuple(reservations)
        self.idle = idle
        self.violated = violated
        self.now = now
        self.gpus = gpus_of(self.fleet_gpus, self.reservations)
        self.cursor_row = min(self.cursor_row, max(len(self.gpus) - 1, 0))
        self._changed()

    # -- geometry ----------------------------------------------------------
    @property
    def slot(self) -> timedelta:
        return ZOOMS[self.zoom]

    @property
    def label_width(self) -> int:
        longest = max([cell_width(printable(g.label)) for g in self.gpus] + [8])
        return min(longest, _LABEL_MAX) + 1

    @property
    def columns(self) -> int:
        return max((self.size.width - self.label_width) // CELL_W, 1)

    @property
    def visible_rows(self) -> int:
        return max(self.size.height - HEADER_LINES, 1)

    @property
    def window(self) -> tuple[datetime, datetime]:
        return self.view_start, self.view_start + self.slot * self.columns

    @property
    def view(self) -> GridView:
        if self._view is None:
            self._view = visible_cells(
                self.gpus,
                self.reservations,
                self.view_start,
                self.slot,
                self.columns,
                self.me,
                self.now,
                self.idle,
                self.violated,
            )
        return self._view

    @property
    def cursor_column(self) -> int:
        return (self.cursor_time - self.view_start) // self.slot

    @property
    def under_cursor(self) -> GridSlot:
        view = self.view
        col = self.cursor_column
        if not view.rows or not 0 <= col < view.columns:
            return FREE
        return view.rows[self.cursor_row][col]

    @property
    def selection(self) -> Selection | None:
        """The selected range, or the cell under the cursor when nothing is selected."""
        if not self.gpus:
            return None
        row0, time0 = self.select_from or (self.cursor_row, self.cursor_time)
        rows = range(min(row0, self.cursor_row), max(row0, self.cursor_row) + 1)
        start = min(time0, self.cursor_time)
        end = max(time0, self.cursor_time) + self.slot
        return Selection(tuple(self.gpus[r] for r in rows), start, end)

    def _changed(self) -> None:
        """Keep the cursor in view, drop cached cells, ask for data if the window moved."""
        cols = self.columns
        if self.cursor_time < self.view_start:
            self.view_start = self.cursor_time
        elif self.cursor_time >= self.view_start + self.slot * cols:
            self.view_start = self.cursor_time - self.slot * (cols - 1)
        if self.cursor_row < self.row_offset:
            self.row_offset = self.cursor_row
        elif self.cursor_row >= self.row_offset + self.visible_rows:
            self.row_offset = self.cursor_row - self.visible_rows + 1
        self._view = None
        if self.window != self._window:
            self._window = self.window
            self.post_message(self.WindowChanged(*self.window))
        self.post_message(self.Moved())
        self.refresh()

    def on_resize(self, _event: events.Resize) -> None:
        self._changed()

    # -- keys --------------------------------------------------------------
    def action_move(self, rows: int, cols: int, *, keep_selection: bool = False) -> None:
        if not keep_selection and self.select_from is not None and not self._selecting:
            self.select_from = None
        if self.gpus:
            self.cursor_row = max(0, min(self.cursor_row + rows, len(self.gpus) - 1))
        self.cursor_time += self.slot * cols
        self._changed()

    def action_select(self, rows: int, cols: int) -> None:
        if self.select_from is None:
            self.select_from = (self.cursor_row, self.cursor_time)
        self.action_move(rows, cols, keep_selection=True)

    def action_toggle_select(self) -> None:
        if self._selecting or self.select_from is not None:
            self.clear_selection()
        else:
            self._selecting = True
            self.select_from = (self.cursor_row, self.cursor_time)
            self.refresh()

    def clear_selection(self) -> bool:
        """Drop the selection; False when there was none."""
        had = self.select_from is not None
        self.select_from = None
        self._selecting = False
        self.post_message(self.Moved())
        self.refresh()
        return had

    def action_today(self) -> None:
        self.cursor_time = floor_slot(self.now, self.slot)
        self.view_start = self.cursor_time - self.slot * (self.columns // 4)
        self._changed()

    def go_to(self, when: datetime) -> None:
        """Put the cursor on the slot holding ``when``."""
        self.cursor_time = floor_slot(when, self.slot)
        self._changed()

    def action_day(self, days: int) -> None:
        self.clear_selection()
        self.cursor_time += timedelta(days=days)
        self.view_start += timedelta(days=days)
        self._changed()

    def action_zoom(self, step: int) -> None:
        """-1 finer, 1 coarser, 0 cycles through every level."""
        self.zoom = (self.zoom + 1) % len(ZOOMS) if step == 0 else self.zoom + step
        self.zoom = max(0, min(self.zoom, len(ZOOMS) - 1))
        self.clear_selection()
        self.cursor_time = floor_slot(self.cursor_time, self.slot)
        self.view_start = self.cursor_time - self.slot * (self.columns // 4)
        self._changed()

    # -- mouse -------------------------------------------------------------
    def _cell_at(self, x: int, y: int) -> tuple[int, datetime] | None:
        if y < HEADER_LINES or x < self.label_width or not self.gpus:
            return None
        row = min(self.row_offset + y - HEADER_LINES, len(self.gpus) - 1)
        col = min((x - self.label_width) // CELL_W, self.columns - 1)
        return row, self.view_start + self.slot * col

    def on_mouse_down(self, event: events.MouseDown) -> None:
        cell = self._cell_at(event.x, event.y)
        if cell is None:
            return
        self.focus()
        self.cursor_row, self.cursor_time = cell
        self.select_from = cell
        self._dragging = True
        self.capture_mouse()
        self._changed()

    def on_mouse_move(self, event: events.MouseMove) -> None:
        if not self._dragging:
            return
        cell = self._cell_at(event.x, event.y)
        if cell is not None and cell != (self.cursor_row, self.cursor_time):
            self.cursor_row, self.cursor_time = cell
            self._changed()

    def on_mouse_up(self, _event: events.MouseUp) -> None:
        if not self._dragging:
            return
        self._dragging = False
        self.release_mouse()
        if self.select_from == (self.cursor_row, self.cursor_time):
            self.select_from = None  # a click, not a drag
            self.refresh()

    # -- drawing -----------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return Strip(self._day_line(width)).crop_extend(0, width, None)
        if y == 1:
            return Strip(self._time_line(width)).crop_extend(0, width, None)
        row = self.row_offset + y - HEADER_LINES
        if not self.gpus and row == 0 and self.note:
            note = Segment(fit(self.note, max(width - 1, 0)), _STYLES["idle"])
            return Strip([Segment(" "), note]).crop_extend(0, width, None)
        if row >= len(self.gpus):
            return Strip.blank(width)
        return Strip(self._row_segments(row)).crop_extend(0, width, None)

    def _day_line(self, width: int) -> list[Segment]:
        """Each day's name over its first column; at a day per column, each month's."""
        view, lw = self.view, self.label_width
        daily = self.slot >= timedelta(days=1)
        segments, x, last = [], 0, None
        for col in range(view.columns):
            local = view.time_of(col).astimezone()
            key = (local.year, local.month) if daily else local.date()
            if key == last:
                continue
            last = key
            at = lw + col * CELL_W
            if at < x + 1:
                continue  # the previous label still runs here: keep a gap
            label = local.strftime("%b" if daily else "%a %d %b")
            if at + len(label) > width:
                room = width - at
                if room < 4:
                    break
                label = fit(label, room)  # cut at the edge, and marked as cut
            segments += [Segment(" " * (at - x)), Segment(label, _STYLES["day"])]
            x = at + len(label)
        return segments

    def _time_line(self, width: int) -> list[Segment]:
        """Labels every other column (each column at a day per column); "now" over now."""
        view, lw = self.view, self.label_width
        daily = self.slot >= timedelta(days=1)
        blank = (" " * CELL_W, Style())
        cells: list[tuple[str, Style]] = []
        for col in range(view.columns):
            local = view.time_of(col).astimezone()
            if daily:
                cells.append((local.strftime("%d").ljust(CELL_W), _STYLES["hour"]))
            elif col % 2 == 0:
                label = local.strftime("%H:%M").ljust(CELL_W * 2)
                cells += [(label[:CELL_W], _STYLES["hour"]), (label[CELL_W:], _STYLES["hour"])]
        del cells[view.columns :]
        if not daily and len(cells) % 2:
            cells[-1] = blank  # half a time would read as another time
        now = view.now_column
        if now is not None:
            if daily:
                # A day's column holds its date and a space: "now" takes all three
                # cells, so it gives way to a marked date instead.
                day = view.time_of(now).astimezone().strftime("%d")
                cells[now] = (day.ljust(CELL_W), _STYLES["now"])
            else:
                # "now" takes the label pair it falls in; on the pair's second half it
                # would touch the next label, so that label gives way too.
                hide = [now + 1] if now % 2 == 0 else [now - 1, now + 1, now + 2]
                for col in hide:
                    if 0 <= col < len(cells):
                        cells[col] = blank
                cells[now] = ("now", _STYLES["now"])
        head = Segment(pad_cells(fit("GPU", lw - 1), lw), _STYLES["label"])
        return [head, *(Segment(text, style) for text, style in cells)]

    def _row_segments(self, row: int) -> list[Segment]:
        view, lw = self.view, self.label_width
        gpu = view.gpus[row]
        segments = [Segment(pad_cells(fit(gpu.label, lw - 1), lw), _STYLES["label"])]
        cells = view.rows[row]
        texts = _run_texts(cells)
        sel = self._selected_columns(row)
        cursor_col = self.cursor_column if row == self.cursor_row else -1
        now_col = view.now_column if view.now_column is not None else -1
        for col, cell in enumerate(cells):
            text = texts[col]
            if cell.reservation is None:
                base = "free"
                if col == now_col:
                    text, base = " │ ", "now"
            else:
                base = "mine" if cell.mine else "other"
            if cell.violated:
                base = "violated"
            style = _cell_style(
                base,
                cell.idle,
                col < now_col,
                sel is not None and sel[0] <= col <= sel[1],
                col == cursor_col,
            )
            segments.append(Segment(text, style))
        return segments

    def _selected_columns(self, row: int) -> tuple[int, int] | None:
        if self.select_from is None:
            return None
        row0, time0 = self.select_from
        if not min(row0, self.cursor_row) <= row <= max(row0, self.cursor_row):
            return None
        a = (time0 - self.view_start) // self.slot
        b = self.cursor_column
        return min(a, b), max(a, b)


@cache
def _cell_style(base: str, idle: bool, past: bool, selected: bool, cursor: bool) -> Style:
    """A cell's combined style; a few dozen combinations, so combined once each."""
    style = _STYLES[base]
    for name, wanted in (
        ("idle", idle),
        ("past", past),
        ("selected", selected),
        ("cursor", cursor),
    ):
        if wanted:
            style += _STYLES[name]
    return style


def _run_texts(cells: Sequence[GridSlot]) -> list[str]:
    """Each cell's text: a reservation's holder is written across its run of cells."""
    texts = [" · "] * len(cells)
    col = 0
    while col < len(cells):
        res = cells[col].reservation
        if res is None:
            col += 1
            continue
        end = col
        while end < len(cells) and cells[end].reservation is res:
            end += 1
        width = (end - col) * CELL_W
        cell = cells[col]
        user = printable(res.user)
        name = f"{user} ⚠" if cell.violated else f"{user} idle" if cell.idle else user
        label = fit(name, width - 1) if width > 3 else fit(name, width)
        if width > 3:  # centred by cells, as str.center does: names may hold wide characters
            spare = width - cell_width(label)
            label = " " * (spare // 2 + (spare & width & 1)) + label
        pieces = chunk_cells(label, CELL_W)
        for i in range(col, end):
            texts[i] = pieces[i - col] if i - col < len(pieces) else " " * CELL_W
        col = end
    return texts
