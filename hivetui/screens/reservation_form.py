"""Modals of the reservation grid: book or edit, find a free slot, confirm a cancel.

Each modal is handed the call that does the work; when it fails the modal
stays open with its values and the error shows as a notification.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from hivetui.db import DatabaseError
from hivetui.reservations import FreeSlot, ReservationError
from hivetui.safe_text import literal, printable
from hivetui.timeparse import parse_duration

FAILURES = (ReservationError, DatabaseError)


@dataclass(frozen=True, slots=True)
class FormValues:
    """What the form holds, as typed: the caller reads the times with ``parse_when``."""

    gpus: str
    start: str
    end: str
    title: str


class GridModal(ModalScreen[bool]):
    """A centred box over the grid (styled in reservations.tcss); esc closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close")]

    def action_close(self) -> None:
        self.dismiss(False)


class ReservationForm(GridModal):
    """New or edit: GPUs, start, end, title. Enter saves, esc closes unsaved."""

    def __init__(
        self,
        heading: str,
        values: FormValues,
        submit: Callable[[FormValues], Awaitable[str]],
        *,
        gpus_editable: bool = True,
    ) -> None:
        super().__init__()
        self.heading = heading
        self.values = values
        self._submit = submit
        self._gpus_editable = gpus_editable

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.heading
            box.border_subtitle = 'times: "tomorrow 9:00", "+2h", "2026-12-01 09:00"'
            yield Label("GPUs (host:index, comma separated)")
            yield Input(self.values.gpus, id="gpus", disabled=not self._gpus_editable)
            yield Label("Start")
            yield Input(self.values.start, id="start")
            yield Label("End")
            yield Input(self.values.end, id="end")
            yield Label("Title")
            yield Input(self.values.title, id="title")
            with Horizontal():
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="close")

    def on_mount(self) -> None:
        self.query_one("#start" if not self._gpus_editable else "#gpus", Input).focus()

    def current(self) -> FormValues:
        """The values as typed now."""
        return FormValues(
            *(self.query_one(f"#{key}", Input).value for key in ("gpus", "start", "end", "title"))
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self.save()

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(False)

    @work(exclusive=True, group="form")
    async def save(self) -> None:
        try:
            message = await self._submit(self.current())
        except FAILURES as exc:
            self.notify(
                printable(str(exc)), title="Not saved", severity="error", timeout=8, markup=False
            )
            return
        self.notify(printable(message), title="Saved", markup=False)
        self.dismiss(True)


class FindFreeForm(GridModal):
    """Count, hours, host (empty: any). Enter searches; enter again books what it found."""

    def __init__(
        self,
        find: Callable[[int, timedelta, str | None], Awaitable[FreeSlot | None]],
        book: Callable[[FreeSlot], Awaitable[str]],
        describe: Callable[[FreeSlot], str],
    ) -> None:
        super().__init__()
        self._find, self._book, self._describe = find, book, describe
        self.slot: FreeSlot | None = None
        self._asked: tuple[str, str, str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Find free GPUs"
            box.border_subtitle = "enter: find, then enter again: book"
            yield Label("How many GPUs")
            yield Input("1", id="count")
            yield Label("For how long (hours, or 90m, 1d)")
            yield Input("1", id="hours")
            yield Label("Host (empty: any host)")
            yield Input("", id="host")
            yield Static("", id="free-result")
            with Horizontal():
                yield Button("Find", variant="primary", id="find")
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        self.query_one("#count", Input).focus()

    def _typed(self) -> tuple[str, str, str]:
        return (
            self.query_one("#count", Input).value.strip(),
            self.query_one("#hours", Input).value.strip(),
            self.query_one("#host", Input).value.strip(),
        )

    @on(Input.Submitted)
    @on(Button.Pressed, "#find")
    def _go(self) -> None:
        self.go()

    @on(Button.Pressed, "#close")
    def _close(self) -> None:
        self.dismiss(False)

    @work(exclusive=True, group="find-free")
    async def go(self) -> None:
        """Book the slot shown if the question did not change, else look for one."""
        typed = self._typed()
        result = self.query_one("#free-result", Static)
        try:
            if self.slot is not None and typed == self._asked:
                message = await self._book(self.slot)
                self.notify(printable(message), title="Booked", markup=False)
                self.dismiss(True)
                return
            count_text, hours_text, host = typed
            if not count_text.isdigit() or int(count_text) < 1:
                raise ReservationError(f"{count_text!r} is not a number of GPUs")
            slot = await self._find(int(count_text), parse_duration(hours_text), host or None)
        except FAILURES as exc:
            self.notify(
                printable(str(exc)), title="Find free", severity="error", timeout=8, markup=False
            )
            return
        self.slot, self._asked = slot, typed
        if slot is None:
            result.update("[yellow]nothing free within the booking horizon[/]")
        else:
            result.update(
                Text.assemble(literal(self._describe(slot), "bold green"), "\nenter books it")
            )
        self.query_one("#find", Button).label = "Book" if slot else "Find"


class ConfirmCancel(GridModal):
    """y or enter cancels the reservation; n or esc keeps it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "answer(True)", "Cancel it"),
        Binding("n,escape", "answer(False)", "Keep it"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Cancel reservation"
            yield Static(literal(self.question))
            with Horizontal():
                yield Button("Yes, cancel it (y)", variant="error", id="yes")
                yield Button("Keep it (n)", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
