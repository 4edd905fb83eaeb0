"""The headless agent: follows the fleet and runs the guard, for one team, all day.

Run one per team (``hivetui agent``, or ``contrib/hivetui-agent.service``).
It logs to stderr and writes a heartbeat row (``agent_heartbeats``) after
every round, so front ends can tell whether reserved GPUs are being guarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from hivetui import db
from hivetui.config import Config
from hivetui.core import open_store
from hivetui.files import FileIdentity
from hivetui.guard import Guard
from hivetui.hosts import build_fleet
from hivetui.model import HostStatus
from hivetui.reservations import plural
from hivetui.safe_text import stderr_handler

log = logging.getLogger("hivetui.agent")

CHECK_INTERVAL_S = 5.0
H = db.agent_heartbeats


def agent_name() -> str:
    """This agent in the heartbeat table: the machine it runs on."""
    return socket.gethostname()[:128]


async def beat(engine: AsyncEngine, agent: str, detail: str, at_s: int) -> None:
    """Write this agent's heartbeat (update, else insert)."""
    async with engine.connect() as raw:
        conn = await db.writing(raw)
        async with conn.begin():
            result = await conn.execute(
                update(H).where(H.c.agent == agent).values(at_s=at_s, detail=detail)
            )
            if result.rowcount == 0:
                await conn.execute(insert(H).values(agent=agent, at_s=at_s, detail=detail))


async def heartbeats(engine: AsyncEngine) -> dict[str, tuple[datetime, str]]:
    """Agent name -> (last heartbeat, what it said)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(H))).all()
    return {r.agent: (datetime.fromtimestamp(r.at_s, UTC), r.detail) for r in rows}


async def run_agent(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    interval: float = CHECK_INTERVAL_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Follow every host and guard reserved GPUs until ``stop`` is set (or cancelled).

    Raises :class:`~hivetui.db.DatabaseError` when the database cannot be opened;
    once running, a failing round is logged and the next one tried.
    """
    stop = stop or asyncio.Event()
    store = await open_store(config)
    database = _database_file(config)
    fleet = build_fleet(config)
    guard = Guard(
        fleet, store, config.protection, clock=clock, command_timeout=config.ssh.command_timeout
    )
    name = agent_name()
    await fleet.start()
    log.info("agent %s guarding %s", name, plural(len(fleet.host_names), "host"))
    try:
        while not stop.is_set():
            if database is not None and (gone := database.problem()):
                raise db.DatabaseError(
                    f"{gone} while the agent ran; it stops rather than write where nobody "
                    "reads. Start it again to use the file now at that path"
                )
            try:
                found = await guard.check()
                online = sum(s.status is HostStatus.ONLINE for s in fleet.snapshots())
                detail = (
                    f"{online}/{len(fleet.host_names)} hosts online, "
                    f"{plural(len(found), 'violation')}, "
                    f"{plural(len(guard.idle_reservations()), 'idle reservation')}"
                )
                await beat(store.engine, name, detail, int(clock()))
            except (db.DatabaseError, SQLAlchemyError) as exc:
                # A locked or unreachable database costs one round, never the agent.
                log.error("round failed: %s", db.explain(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await fleet.stop()
        await store.engine.dispose()
        log.info("agent %s stopped", name)


def _database_file(config: Config) -> FileIdentity | None:
    """The SQLite file the agent writes to, as it was when opened (``None``: not SQLite)."""
    path = db.sqlite_path(config.database or db.default_database_url())
    if path is None:
        return None
    try:
        return FileIdentity.of(path)
    except OSError as exc:
        raise db.DatabaseError(f"cannot read the database file {path}: {exc.strerror}") from None


def main_agent(config: Config) -> int:
    """``hivetui agent``: run until SIGTERM or SIGINT; the exit status."""
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    # force: the CLI set up its one-line stderr format already; the agent wants times.
    logging.basicConfig(level=logging.INFO, handlers=[stderr_handler(fmt)], force=True)
    # Alembic's "Context impl SQLiteImpl." and "Will assume ..." are for its own CLI.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_agent(config, stop=stop)

    try:
        asyncio.run(main())
    except db.DatabaseError as exc:
        log.error("%s", exc)
        return 1
    return 0
