"""The shared database: schema, engines and migrations (SQLAlchemy 2 async, Alembic).

SQLite (the default, a file under the user's data dir) runs in WAL mode with a
busy timeout, and every write takes the database's write lock when its
transaction begins (``BEGIN IMMEDIATE``), so many hivetui processes can book
at once. PostgreSQL is reached with asyncpg. On both, the database itself
refuses overlapping reservations of one GPU (a trigger on SQLite, an exclusion
constraint on PostgreSQL), whatever the client does.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from platformdirs import user_data_path
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hivetui import files
from hivetui.masking import mask_secrets

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_MS = 30_000

metadata = MetaData()

reservations = Table(
    "reservations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(64), nullable=False),
    Column("host", String(128), nullable=False),
    Column("gpu_index", Integer, nullable=False),
    Column("gpu_uuid", String(96), nullable=False),
    Column("start_s", BigInteger, nullable=False),
    Column("end_s", BigInteger, nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("created_s", BigInteger, nullable=False),
    Column("cancelled_s", BigInteger, nullable=True),
    Column("cancelled_by", String(64), nullable=True),
    # The GPUs booked together share the smallest id among them. Left out of
    # an insert, the database makes the row a booking of its own (a trigger).
    Column("booking_id", Integer, nullable=True),
    Index("ix_reservations_gpu_time", "gpu_uuid", "start_s", "end_s"),
    Index("ix_reservations_end", "end_s"),
    Index("ix_reservations_start", "start_s", "end_s"),
    Index("ix_reservations_booking", "booking_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_s", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("user", String(64), nullable=True),
    Column("host", String(128), nullable=True),
    Column("gpu_uuid", String(96), nullable=True),
    Column("reservation_id", Integer, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_events_at", "at_s"),
)

reservation_usage = Table(
    "reservation_usage",
    metadata,
    Column("reservation_id", Integer, ForeignKey("reservations.id"), primary_key=True),
    Column("samples", Integer, nullable=False),
    Column("util_sum", Float, nullable=False),
    Column("mem_sum", Float, nullable=False),
    Column("last_s", BigInteger, nullable=False),
    Column("idle_since_s", BigInteger, nullable=True),
)

agent_heartbeats = Table(
    "agent_heartbeats",
    metadata,
    Column("agent", String(128), primary_key=True),
    Column("at_s", BigInteger, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


class DatabaseError(Exception):
    """The database cannot be used; the message says which and what to do."""


# Drivers hivetui runs on (it is async throughout), and the one chosen for a URL that
# names only the database kind or a synchronous driver.
ASYNC_DRIVERS = {"sqlite": ("aiosqlite",), "postgresql": ("asyncpg", "psycopg", "psycopg_async")}
DEFAULT_DRIVER = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
URL_FORMS = "sqlite+aiosqlite:////path/to/team.db or postgresql+asyncpg://USER@HOST:PORT/DATABASE"


def default_database_path() -> Path:
    """The default SQLite file: private to its owner (0600, in a 0700 folder)."""
    return user_data_path("hivetui") / "hivetui.db"


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{default_database_path()}"


def normalize_url(text: str) -> str:
    """``text`` as a URL hivetui can open: ``postgresql://`` gets asyncpg, ``sqlite://`` aiosqlite.

    Raises ``ValueError`` saying what is wrong and what to write (the config names
    the file and line); the message never holds the URL's password.
    """
    try:
        parsed = make_url(text)
    except ValueError as exc:  # a port that is not a number
        port = str(exc).rpartition(": ")[2]
        raise ValueError(f"the port {port} is not a number; write {URL_FORMS}") from None
    except Exception:  # sqlalchemy.exc.ArgumentError
        raise ValueError(f"not a database URL; write {URL_FORMS}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"hivetui keeps reservations in SQLite or PostgreSQL; write {URL_FORMS}")
    driver = parsed.drivername.partition("+")[2]
    if driver not in ASYNC_DRIVERS[backend]:
        driver = DEFAULT_DRIVER[backend]
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    """The URL as messages and logs show it: without its password."""
    return mask_secrets(url)


def explain(exc: BaseException) -> str:
    """A driver error in one line: the driver's own words, without SQLAlchemy's help link
    or a password."""
    text = str(getattr(exc, "orig", None) or exc) or type(exc).__name__
    return mask_secrets(text.strip().splitlines()[0][:300])


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for other databases and in-memory ones)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _sqlite_connect(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, in the mode we choose.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_open_check(path: Path, *_: Any) -> None:
    """Open the file once with the plain driver before aiosqlite does.

    A failed aiosqlite connect leaves its worker thread to finish after the
    event loop may have closed, which prints a thread traceback on some runs;
    a file that cannot be opened fails here instead, the same way every time.
    """
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open the database file {path}: {exc}") from None


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, sqlite_busy_ms: int = SQLITE_BUSY_MS) -> AsyncEngine:
    """An engine for ``url``; for SQLite the file's folder is created.

    The default SQLite file and its folder are made private (0600 and 0700), and
    tightened when they exist with looser modes. ``sqlite_busy_ms``: how long a
    writer waits for another's lock before giving up with "the database is busy".
    """
    try:
        url = normalize_url(url)
    except ValueError as exc:
        raise DatabaseError(f"database = {shown_url(url)!r}: {exc}") from None
    parsed = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        try:
            files.prepare_sqlite_file(path, private=path == default_database_path())
        except files.FileProblem as exc:
            raise DatabaseError(str(exc)) from None
        engine = create_async_engine(parsed, connect_args={"timeout": sqlite_busy_ms / 1000})
        event.listen(engine.sync_engine, "do_connect", partial(_sqlite_open_check, path))
        event.listen(engine.sync_engine, "connect", partial(_sqlite_connect, sqlite_busy_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "sqlite":  # in memory
        return create_async_engine(parsed)
    return create_async_engine(parsed, pool_pre_ping=True)


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(_alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (every migration in order; rows are kept)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def writing(conn: AsyncConnection) -> AsyncConnection:
    """The same connection, whose next transaction takes the write lock at once."""
    return await conn.execution_options(sqlite_begin="IMMEDIATE")
