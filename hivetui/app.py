"""The Textual app: screens, global keys and the command palette, around an injected fleet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any, ClassVar

from sqlalchemy.exc import SQLAlchemyError
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.screen import Screen

from hivetui.booking import ReservationStore
from hivetui.core import current_user
from hivetui.db import DatabaseError
from hivetui.fleet import Fleet
from hivetui.guard import Guard
from hivetui.safe_text import printable
from hivetui.screens.context import ScreenContext
from hivetui.screens.dashboard import DashboardScreen
from hivetui.screens.help import HelpScreen, key_help
from hivetui.screens.host_detail import HostDetailScreen
from hivetui.screens.reservations import ReservationsScreen

GUARD_EVERY_S = 5.0
IDLE_FIRST_S = 3.0
IDLE_EVERY_S = 60.0
AGENT_EVERY_S = 15.0


class HiveApp(App[None]):
    """Live GPU state of the fleet. Build it with :func:`make_app`."""

    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        ctx: ScreenContext,
        *,
        title: str,
        start_fleet: bool,
        notice: str | None = None,
        guard: Guard | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.fleet = ctx.fleet
        self.title = title
        self._start_fleet = start_fleet
        self._fleet_started = False
        self._notice = notice
        self.guard = guard
        self._told_idle: set[int] = set()

    async def on_mount(self) -> None:
        # Pushed, not returned by get_default_screen: only pushed screens load CSS_PATH.
        await self.push_screen(DashboardScreen(self.ctx))
        if self._start_fleet:
            await self.fleet.start()  # only spawns the collector tasks; never blocks
            self._fleet_started = True
        if self._notice:
            self.notify(printable(self._notice), severity="warning", timeout=20, markup=False)
        if self.guard is not None:
            self.set_interval(GUARD_EVERY_S, self._run_guard)
        if self.ctx.store is not None:
            self.set_timer(IDLE_FIRST_S, self._check_idle)
            self.set_interval(IDLE_EVERY_S, self._check_idle)
            self.set_timer(IDLE_FIRST_S, self._check_agent)
            self.set_interval(AGENT_EVERY_S, self._check_agent)

    def _check_agent(self) -> None:
        self.run_worker(self._read_heartbeats(), group="agent", exclusive=True, exit_on_error=False)

    async def _read_heartbeats(self) -> None:
        """Whether a `hivetui agent` is alive, for the status line."""
        from hivetui.agent import heartbeats  # not needed for the first frame

        store = self.ctx.store
        if store is None:
            return
        try:
            beats = await heartbeats(store.engine)
        except (SQLAlchemyError, DatabaseError):
            return
        newest = max((at for at, _ in beats.values()), default=None)
        self.ctx.agent.last_beat = None if newest is None else newest.timestamp()
        self.ctx.agent.checked = True

    def _check_idle(self) -> None:
        self.run_worker(self._tell_owner_idle(), group="idle", exclusive=True, exit_on_error=False)

    async def _tell_owner_idle(self) -> None:
        """Tell this user, once per reservation, that a GPU they hold sits idle."""
        store = self.ctx.store
        if store is None:
            return
        now = self.ctx.now()
        try:
            mine = await store.list_reservations(
                start=now, end=now + timedelta(seconds=1), user=self.ctx.user
            )
        except DatabaseError:
            return
        idle = await self.ctx.idle_ids(mine)
        for res in mine:
            if res.id in idle and res.id not in self._told_idle:
                self._told_idle.add(res.id)
                self.notify(
                    f"Your reservation {res.id} of {printable(res.gpu.label)} has been idle for "
                    f"over {self.ctx.idle_minutes:g} min. Cancel it (r, then d) if you no "
                    "longer need it.",
                    title="Idle reservation",
                    severity="warning",
                    timeout=30,
                    markup=False,
                )

    def _run_guard(self) -> None:
        """Protection from the TUI ([protection] warn_from_tui): a worker, never blocking."""
        if self.guard is not None:
            self.run_worker(self.guard.check(), group="guard", exclusive=True, exit_on_error=False)

    async def on_unmount(self) -> None:
        if self._fleet_started:
            await self.fleet.stop()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(key_help(self.screen)))

    def action_dashboard(self) -> None:
        while len(self.screen_stack) > 2:  # [blank default screen, dashboard, ...]
            self.pop_screen()

    def open_host(self, host: str, gpu_index: int | None = None) -> None:
        """Show the detail screen of ``host`` over the dashboard."""
        self.action_dashboard()
        self.push_screen(HostDetailScreen(self.ctx, host, gpu_index))

    def open_reservations(self) -> None:
        """Show the reservation grid over the dashboard."""
        self.action_dashboard()
        self.push_screen(ReservationsScreen(self.ctx))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own "Keys" opens its side panel; ours lists every key, once.
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        yield SystemCommand("Dashboard", "All hosts and GPUs", self.action_dashboard)
        yield SystemCommand(
            "Reservations", "Who holds which GPU when; book a slot", self.open_reservations
        )
        yield SystemCommand("Keys", "Every key of this screen", self.action_help)
        if isinstance(screen, DashboardScreen):
            yield SystemCommand("Filter", "Filter rows by host, GPU or user", screen.action_filter)
        for host in self.fleet.host_names:
            name = escape(printable(host))  # the palette reads its titles as markup
            yield SystemCommand(
                f"Host: {name}",
                f"GPU charts and processes of {name}",
                partial(self.open_host, host),
                discover=False,
            )


def make_app(
    fleet: Fleet,
    *,
    title: str = "hivetui",
    start_fleet: bool = True,
    show_clock: bool = True,
    clock: Callable[[], float] = time.time,
    store: ReservationStore | None = None,
    user: str | None = None,
    notice: str | None = None,
    guard: Guard | None = None,
    idle_minutes: float = 60.0,
) -> HiveApp:
    """The one way to build the app, shared by the CLI and the tests.

    ``start_fleet=False`` leaves the collectors alone, for tests that fill the
    fleet with ``fleet.record``; ``show_clock`` and ``clock`` pin time for snapshots.
    ``store`` None turns reservations off (the screens say "no database");
    ``user`` (default: the OS user) is who reservations are made as.
    ``notice`` is shown once at start (why the database is off, say); ``guard``
    makes this TUI check reserved GPUs and warn intruders, like the agent.
    """
    ctx = ScreenContext(
        fleet=fleet,
        clock=clock,
        show_clock=show_clock,
        store=store,
        user=user if user is not None else current_user(),
        idle_minutes=idle_minutes,
    )
    return HiveApp(ctx, title=title, start_fleet=start_fleet, notice=notice, guard=guard)
