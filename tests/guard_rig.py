"""What the guard and agent tests share: a fake clock, a real store, a real SMTP sink."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.collect import HostReader
from hivetui.config import parse_config
from hivetui.fleet import Fleet
from hivetui.hosts import build_fleet, transport_for
from hivetui.reservations import GpuRef, Reservation
from tests.sshd import free_port

UUID0 = "GPU-00000000-0000-0000-0000-000000000000"


def spawn(argv: list[str], user: str | None = None, **kw: object) -> subprocess.Popen[bytes]:
    """A real process (as ``user`` when given), stdin from /dev/null unless given."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(argv, user=user, **kw)  # type: ignore[call-overload, no-any-return]


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MailSink:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(message_from_bytes(content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"


@contextmanager
def smtp_sink() -> Iterator[tuple[MailSink, int]]:
    """A real SMTP server on 127.0.0.1; yields the sink and its port."""
    sink = MailSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


async def make_store(path: Path, clock: FakeClock) -> ReservationStore:
    engine = db.make_engine(f"sqlite+aiosqlite:///{path}")
    await db.upgrade(engine)
    return ReservationStore(engine, clock=clock)


async def reserve(store: ReservationStore, user: str, host: str, uuid: str = UUID0) -> Reservation:
    now = store.now()
    (res,) = await store.add(user, [GpuRef(host, 0, uuid)], now, now + timedelta(hours=2))
    return res


def clocked_fleet(config_text: str, clock: FakeClock | None) -> Fleet:
    """The fleet of this config; its readers date what they see by ``clock`` when given."""
    if clock is None:
        return build_fleet(parse_config(config_text, "test.toml"))
    config = parse_config(config_text, "test.toml")
    readers = [
        HostReader(host.name, transport_for(host, config), clock=clock)
        for host in config.effective_hosts
    ]
    return Fleet(readers)


@asynccontextmanager
async def swept_fleet(config_text: str, clock: FakeClock | None = None) -> AsyncIterator[Fleet]:
    """A fleet that has swept its hosts once and keeps its connections open.

    With ``clock``, the fleet and the guard share one fake time: a sighting is as
    old as the test says, and a new sweep is needed after the clock moves.
    """
    fleet = clocked_fleet(config_text, clock)
    try:
        await fleet.sweep(10)
        yield fleet
    finally:
        await fleet.stop()


def one_app(state: dict[str, Any], pid: int) -> dict[str, Any]:
    """``state`` with one compute app, ``pid``, on GPU 0."""
    app = dict(state["apps"][0])
    app["pid"] = pid
    state["apps"] = [app]
    return state


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")
