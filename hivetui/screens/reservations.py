"""The reservation grid screen: who holds which GPU when; book, edit, cancel, find free."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static

from hivetui.booking import ReservationStore
from hivetui.db import DatabaseError
from hivetui.protection import violations
from hivetui.reservations import (
    FreeSlot,
    GpuRef,
    Reservation,
    ReservationError,
    gpus_in_use,
    holders_at,
    in_use_note,
    plural,
)
from hivetui.safe_text import literal, printable
from hivetui.screens.context import ScreenContext
from hivetui.screens.reservation_form import (
    ConfirmCancel,
    FindFreeForm,
    FormValues,
    ReservationForm,
)
from hivetui.timeparse import parse_when
from hivetui.widgets.fleet_rows import fleet_no_gpu_note, no_gpu_reason
from hivetui.widgets.reservation_grid import ReservationGrid

RELOAD_S = 10.0
NO_DATABASE = "no database: reservations are off (set `database` in the config)"


def local_text(when: datetime) -> str:
    """How the form shows a time: local, ISO-like, which parse_when reads back."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def describe_slot(slot: FreeSlot, in_use: dict[str, str] | None = None) -> str:
    """The slot in a line; a second line names its GPUs that are in use right now."""
    gpus = ",".join(str(g.index) for g in slot.gpus)
    start, end = slot.start.astimezone(), slot.end.astimezone()
    line = f"{slot.host}:{gpus} free {start:%a %d %b %H:%M} → {end:%a %d %b %H:%M}"
    note = in_use_note(slot, in_use or {})
    return line if note is None else f"{line}\n⚠ {note}"


class ReservationsLoaded(Message):
    """The reservations of a window came back from the store."""

    def __init__(
        self,
        start: datetime,
        end: datetime,
        reservations: list[Reservation],
        idle: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__()
        self.start, self.end, self.reservations = start, end, reservations
        self.idle = idle


class ReservationsScreen(Screen[None]):
    """GPUs down, time across; ``n`` books the selection, ``f`` finds a free slot."""

    CSS_PATH = "reservations.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("E", "edit(True)", "Edit this GPU only", show=False),
        Binding("d", "cancel_reservation", "Cancel res."),
        Binding("D", "cancel_reservation(True)", "Cancel this GPU only", show=False),
        Binding("f", "find_free", "Find free"),
    ]

    def __init__(self, ctx: ScreenContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.store: ReservationStore | None = ctx.store
        self._timer: Timer | None = None
        self.loads = 0  # finished loads; tests wait on it

    def compose(self) -> ComposeResult:
        yield Header(show_clock=self.ctx.show_clock)
        yield ReservationGrid(self.ctx.now(), me=self.ctx.user, id="grid")
        yield Static("", id="grid-status")
        yield Footer()

    @property
    def grid(self) -> ReservationGrid:
        return self.query_one(ReservationGrid)

    def _no_gpu_note(self) -> str:
        return fleet_no_gpu_note(self.ctx.fleet.snapshots())

    def on_mount(self) -> None:
        self.grid.update(self.ctx.fleet_gpus(), (), self.ctx.now(), note=self._no_gpu_note())
        self.grid.focus()
        self.call_after_refresh(self.grid.action_today)
        self._status()

    def on_screen_resume(self) -> None:
        self.reload()

    # -- loading -----------------------------------------------------------
    @on(ReservationGrid.WindowChanged)
    def _window_changed(self, _event: ReservationGrid.WindowChanged) -> None:
        self.reload()
        self._status()

    def reload(self) -> None:
        """Fetch the visible window's reservations in a worker (never blocks the UI)."""
        if self.store is None:
            self._status()
            return
        start, end = self.grid.window
        self._load(self.store, start, end)

    @work(exclusive=True, group="reservations")
    async def _load(self, store: ReservationStore, start: datetime, end: datetime) -> None:
        try:
            found = await store.list_reservations(start=start, end=end)
            idle = await self.ctx.idle_ids(found)
        except DatabaseError as exc:
            self.notify(
                printable(str(exc)), title="Reservations", severity="error", timeout=8, markup=False
            )
        else:
            self.post_message(ReservationsLoaded(start, end, found, idle))
        self._rearm()

    def _rearm(self) -> None:
        # One timer at a time, armed after a load: a slow database never stacks loads.
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(RELOAD_S, self._tick)

    def _tick(self) -> None:
        if self.app.screen is self:  # hidden: skip; on_screen_resume reloads
            self.reload()

    def on_reservations_loaded(self, event: ReservationsLoaded) -> None:
        self.loads += 1
        now = self.ctx.now()
        holders = holders_at(event.reservations, now)
        violated = frozenset(
            v.reservation.id for v in violations(self.ctx.fleet.snapshots(), holders)
        )
        self.grid.update(
            self.ctx.fleet_gpus(),
            event.reservations,
            now,
            event.idle,
            violated,
            note=self._no_gpu_note(),
        )
        self._status()

    def _status(self) -> None:
        line = self.query_one("#grid-status", Static)
        if self.store is None:
            line.update(f"[yellow]{NO_DATABASE}[/]")
            return
        grid = self.grid
        res = grid.under_cursor.reservation
        zoom = _zoom_text(grid.slot)
        if not grid.gpus:
            what = grid.note
        elif res is None:
            sel = grid.selection
            what = "free" if sel is None else f"free · {plural(len(sel.gpus), 'GPU')} selected"
        else:
            title = f" “{res.title}”" if res.title else ""
            what = (
                f"{res.user}{title} · {res.gpu.label} {res.start.astimezone():%a %H:%M}"
                f" → {res.end.astimezone():%a %H:%M} (#{res.id})"
            )
        keys = f"   {zoom}/column · n new · e edit · d cancel · f find"
        line.update(Text.assemble(literal(what), (keys, "dim"), no_wrap=True, overflow="ellipsis"))

    @on(ReservationGrid.Moved)
    def _moved(self) -> None:
        self._status()

    # -- actions -----------------------------------------------------------
    def action_back(self) -> None:
        if not self.grid.clear_selection():
            self.dismiss()

    def _need_store(self) -> ReservationStore | None:
        if self.store is None:
            self.notify(NO_DATABASE, severity="warning")
        return self.store

    def action_new(self) -> None:
        store, sel = self._need_store(), self.grid.selection
        if store is not None and sel is None:
            self.notify(self._no_gpu_note(), severity="warning", markup=False)
        if store is None or sel is None:
            return
        values = FormValues(
            gpus=",".join(g.label for g in sel.gpus),
            start=local_text(max(sel.start, self.ctx.now())),
            end=local_text(sel.end),
            title="",
        )
        form = ReservationForm("New reservation", values, self._book)
        self.app.push_screen(form, self._after_change)

    async def _book(self, values: FormValues) -> str:
        store = self._need_store()
        assert store is not None
        gpus = self._parse_gpus(values.gpus)
        now = store.now()
        start, end = parse_when(values.start, now), parse_when(values.end, now)
        made = await store.add(self.ctx.user, gpus, start, end, values.title.strip())
        return f"booked {', '.join(r.gpu.label for r in made)}"

    def _parse_gpus(self, text: str) -> list[GpuRef]:
        known = {g.label: g for g in self.grid.gpus}
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ReservationError(f"unknown GPU {', '.join(unknown)}: use host:index")
        if not names:
            raise ReservationError("name at least one GPU (host:index)")
        return [known[name] for name in names]

    def _held(self) -> Reservation | None:
        res = self.grid.under_cursor.reservation
        if res is None:
            self.notify("no reservation under the cursor", severity="warning")
        return res

    def _together(self, res: Reservation, one_gpu: bool) -> list[Reservation]:
        """What ``e``/``d`` act on: the whole booking of ``res``, or only its GPU."""
        if one_gpu:
            return [res]
        same = [r for r in self.grid.reservations if r.booking == res.booking]
        return sorted(same or [res], key=lambda r: (r.gpu.host, r.gpu.index))

    def action_edit(self, one_gpu: bool = False) -> None:
        """Edit the booking under the cursor (all its GPUs); ``one_gpu``: only this GPU."""
        store = self._need_store()
        res = self._held() if store is not None else None
        if store is None or res is None:
            return
        together = self._together(res, one_gpu)
        labels = ",".join(r.gpu.label for r in together)
        # Shown in Inputs, which draw text as it is: escape what a teammate wrote.
        values = FormValues(
            printable(labels), local_text(res.start), local_text(res.end), printable(res.title)
        )
        only = [res.gpu.index] if one_gpu else None

        shown = values

        async def submit(values: FormValues) -> str:
            # The form shows minutes: a time left as shown keeps its exact value.
            now = store.now()
            start = None if values.start == shown.start else parse_when(values.start, now)
            end = None if values.end == shown.end else parse_when(values.end, now)
            changed = await store.edit(
                res.id, self.ctx.user, start=start, end=end, title=values.title.strip(), gpus=only
            )
            return f"{_labels(changed)} now end{'s' if len(changed) == 1 else ''} " + (
                f"{changed[0].end.astimezone():%a %H:%M}"
            )

        heading = (
            f"Edit reservation {res.id} ({res.gpu.label} only)"
            if one_gpu
            else f"Edit reservation {res.booking}"
        )
        form = ReservationForm(heading, values, submit, gpus_editable=False)
        self.app.push_screen(form, self._after_change)

    def action_cancel_reservation(self, one_gpu: bool = False) -> None:
        """Cancel the booking under the cursor (all its GPUs); ``one_gpu``: only this GPU."""
        store = self._need_store()
        res = self._held() if store is not None else None
        if store is None or res is None:
            return
        together = self._together(res, one_gpu)
        what = f"{_labels(together)} only" if one_gpu else _labels(together)
        question = (
            f"Cancel reservation {res.id if one_gpu else res.booking} of {res.user} on {what}, "
            f"{res.start.astimezone():%a %d %b %H:%M} → {res.end.astimezone():%a %d %b %H:%M}?"
        )
        only = [res.gpu.index] if one_gpu else None

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(store, res, only)

        self.app.push_screen(ConfirmCancel(question), answered)

    @work(group="change")
    async def _cancel(
        self, store: ReservationStore, res: Reservation, only: list[int] | None
    ) -> None:
        try:
            gone = await store.cancel(res.id, self.ctx.user, gpus=only)
        except (ReservationError, DatabaseError) as exc:
            self.notify(
                printable(str(exc)),
                title="Not cancelled",
                severity="error",
                timeout=8,
                markup=False,
            )
            return
        self.notify(f"cancelled {_labels(gone)} (reservation {gone[0].booking})")
        self.reload()

    def action_find_free(self) -> None:
        store = self._need_store()
        if store is None:
            return

        in_use: dict[str, str] = {}

        async def find(count: int, duration: timedelta, host: str | None) -> FreeSlot | None:
            gpus = self.grid.fleet_gpus
            if host is not None and host not in {g.host for g in gpus}:
                snaps = {snap.name: snap for snap in self.ctx.fleet.snapshots()}
                reason = no_gpu_reason(snaps[host]) if host in snaps else None
                raise ReservationError(reason or f"no host {host!r} with GPUs in the fleet")
            if not gpus:
                raise ReservationError(self._no_gpu_note())
            # The same rule as `hivetui reserve free`: idle GPUs first for a slot starting now.
            in_use.clear()
            in_use.update(gpus_in_use(self.ctx.fleet.snapshots()))
            return await store.find_free(gpus, count, duration, hosts=_hosts(host), in_use=in_use)

        async def book(slot: FreeSlot) -> str:
            made = await store.add(self.ctx.user, slot.gpus, slot.start, slot.end, "")
            self.grid.go_to(slot.start)
            return f"booked {', '.join(r.gpu.label for r in made)}"

        def describe(slot: FreeSlot) -> str:
            return describe_slot(slot, in_use)

        self.app.push_screen(FindFreeForm(find, book, describe), self._after_change)

    def _after_change(self, changed: bool | None) -> None:
        if changed:
            self.reload()


def _labels(reservations: Sequence[Reservation]) -> str:
    """``gpu01:0,1,3``: the GPUs of one booking (one host), in a few characters."""
    if not reservations:
        return ""
    host = reservations[0].gpu.host
    return f"{host}:" + ",".join(str(r.gpu.index) for r in reservations)


def _hosts(host: str | None) -> Sequence[str] | None:
    return None if host is None else [host]


def _zoom_text(slot: timedelta) -> str:
    minutes = int(slot.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440} d"
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
