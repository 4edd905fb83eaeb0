"""The main view: every host and GPU of the fleet in one table, refreshed once a second."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from hivetui.booking import ReservationStore
from hivetui.db import DatabaseError
from hivetui.reservations import Reservation
from hivetui.safe_text import printable
from hivetui.screens.context import ScreenContext
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.screens.reservations import ReservationsScreen
from hivetui.widgets.fleet_rows import RowCache, choose_layout, gpu_marks
from hivetui.widgets.fleet_status import FleetStatus, FleetSummary
from hivetui.widgets.fleet_table import FleetTable

REFRESH_S = 1.0
# While hosts connect, look more often, so first data shows as soon as it comes.
STARTUP_REFRESH_S = 0.1
STARTUP_TICKS = 50
ACTIVE_RELOAD_S = 10.0  # who holds which GPU now: asked of the database this often


class ActiveReservationsLoaded(Message):
    """The reservations holding GPUs right now, by GPU uuid."""

    def __init__(self, active: dict[str, Reservation]) -> None:
        super().__init__()
        self.active = active


class DashboardScreen(Screen[None]):
    """Hosts and their GPUs; enter opens a host, ``/`` filters."""

    CSS_PATH = "dashboard.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("r", "reservations", "Reservations"),
    ]

    def __init__(self, ctx: ScreenContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._query = ""
        # (fleet version, width, query, reservations version)
        self._shown: tuple[int, int, str, int] | None = None
        self._active: dict[str, Reservation] = {}
        self._active_version = 0
        self._rows = RowCache()
        self._targets: dict[str, tuple[str, int | None]] = {}
        self._summary = FleetSummary.of([])

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.ctx.show_clock)
        yield Input(placeholder="filter by host, GPU or user (esc clears)", id="filter")
        yield FleetTable(id="fleet")
        yield FleetStatus(id="fleet-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(FleetTable).focus()
        self.set_interval(REFRESH_S, self.refresh_fleet)
        self.set_interval(STARTUP_REFRESH_S, self.refresh_fleet, repeat=STARTUP_TICKS)
        self.call_after_refresh(self.refresh_fleet, True)
        self.reload_active()

    def on_screen_resume(self) -> None:
        self.refresh_fleet(force=True)
        self.reload_active()

    def reload_active(self) -> None:
        """Ask the store who holds which GPU now, in a worker; re-armed when it is done."""
        if self.ctx.store is not None:
            self._load_active(self.ctx.store)

    @work(exclusive=True, group="active-reservations")
    async def _load_active(self, store: ReservationStore) -> None:
        try:
            active = await store.active_now()
        except DatabaseError as exc:
            self.notify(
                printable(str(exc)), title="Reservations", severity="error", timeout=8, markup=False
            )
        else:
            self.post_message(ActiveReservationsLoaded(active))
        self.set_timer(ACTIVE_RELOAD_S, self._active_tick, name="active-reservations")

    def _active_tick(self) -> None:
        if self.app.screen is self:  # hidden: on_screen_resume reloads
            self.reload_active()

    def on_active_reservations_loaded(self, event: ActiveReservationsLoaded) -> None:
        if event.active != self._active:
            self._active = event.active
            self._active_version += 1
            self.refresh_fleet()

    def action_reservations(self) -> None:
        self.app.push_screen(ReservationsScreen(self.ctx))

    def on_resize(self, _event: Resize) -> None:
        self.call_after_refresh(self.refresh_fleet, True)

    def refresh_fleet(self, force: bool = False) -> None:
        """Show the fleet's latest state; cheap when nothing changed."""
        if self.app.screen is not self:  # Screen.is_current is also true one screen down
            return  # keep collecting, skip rendering while hidden
        table = self.query_one(FleetTable)
        width = table.scrollable_content_region.width
        if width <= 0:
            return
        state = (self.ctx.fleet.version, width, self._query, self._active_version)
        if force or state != self._shown:
            snapshots = self.ctx.fleet.snapshots()
            layout = choose_layout(width, snapshots)
            marks = gpu_marks(snapshots, self._active, self.ctx.user)
            rows = self._rows.build(snapshots, layout, self._query, marks)
            table.show(layout.columns, rows)
            self._targets = {row.key: (row.host, row.gpu_index) for row in rows}
            self._summary = replace(
                FleetSummary.of(snapshots), rows_shown=len(rows), query=self._query
            )
            self._shown = state
        agent = self.ctx.agent
        self.query_one(FleetStatus).show(
            replace(
                self._summary,
                now=self.ctx.clock(),
                agent_checked=agent.checked,
                agent_beat_at=agent.last_beat,
            )
        )

    @property
    def selected(self) -> tuple[str, int | None] | None:
        """(host, GPU index or None for the host row) under the cursor."""
        key = self.query_one(FleetTable).cursor_key
        return None if key is None else self._targets.get(key)

    @on(DataTable.RowSelected, "#fleet")
    def _open_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        target = self._targets.get(key) if key is not None else None
        if target is not None:
            self.open_detail(*target)

    def open_detail(self, host: str, gpu_index: int | None) -> None:
        self.app.push_screen(HostDetailScreen(self.ctx, host, gpu_index))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.display and not self._query:
            return
        box.value = ""
        box.display = False
        self._set_query("")
        self.query_one(FleetTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_query(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, _event: Input.Submitted) -> None:
        if not self._query:
            self.query_one("#filter", Input).display = False
        self.query_one(FleetTable).focus()

    def _set_query(self, text: str) -> None:
        self._query = text.strip().lower()
        self.refresh_fleet(force=True)
