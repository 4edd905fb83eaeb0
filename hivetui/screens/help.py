"""A modal list of every key of the screen underneath and of the app, read from the bindings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.table import Table
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


@dataclass(frozen=True, slots=True)
class KeyHelp:
    """One action and every key that triggers it, and where it works."""

    keys: str
    description: str
    scope: str  # "this screen" or "everywhere"


def key_help(screen: Screen[Any]) -> list[KeyHelp]:
    """Every active binding of ``screen`` (focused widget, screen, app), one line per action."""
    app = screen.app
    grouped: dict[tuple[int, str], tuple[list[str], str, str]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.system:
            continue
        scope = "everywhere" if isinstance(active.node, App) else "this screen"
        description = binding.description or binding.action.replace("_", " ")
        slot = grouped.setdefault((id(active.node), binding.action), ([], description, scope))
        key = app.get_key_display(binding)
        if key not in slot[0]:
            slot[0].append(key)
    entries = [KeyHelp(", ".join(keys), desc, scope) for keys, desc, scope in grouped.values()]
    return sorted(entries, key=lambda e: e.scope == "everywhere")


class HelpScreen(ModalScreen[None]):
    """Keys of the screen it was opened over; esc, q or ? closes it."""

    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help"),
    ]

    def __init__(self, entries: list[KeyHelp], *, title: str = "Keys") -> None:
        super().__init__()
        self.entries = entries
        self.title_text = title

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
        table.add_column("Key", style="bold cyan", no_wrap=True)
        table.add_column("Action")
        table.add_column("Where", style="dim", no_wrap=True)
        for entry in self.entries:
            table.add_row(entry.keys, entry.description, entry.scope)
        with VerticalScroll(id="help-body") as body:
            body.border_title = self.title_text
            body.border_subtitle = "esc, q or ? closes"
            yield Static(table, id="help-keys")

    def action_close(self) -> None:
        self.dismiss()
