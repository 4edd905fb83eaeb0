"""The shared database: schema, engines and migrations (SQLAlchemy 2 async, Alembic).

SQLite (the default, a file under the user's data dir) runs in WAL mode with a
busy timeout, and every write takes the database's write lock when its
transaction begins (``BEGIN IMMEDIATE``), so many hivetui processes can book
at once. PostgreSQL is reached with asyncpg. On both, the database itself
refuses overlapping reservations of one GPU (a trigger on SQLite, an exclusion
constraint on PostgreSQL), whatever the client does.
"""

from __future__ import annotations

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


def default_database_url() -> str:
    path = user_data_path("hivetui") / "hivetui.db"
    return f"sqlite+aiosqlite:///{path}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_connect(busy_ms: int, dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, in the mode we choose.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, sqlite_busy_ms: int = SQLITE_BUSY_MS) -> AsyncEngine:
    """An engine for ``url``; for SQLite the file's folder is created.

    ``sqlite_busy_ms``: how long a writer waits for another's lock before
    giving up with "the database is busy".
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise DatabaseError(f"database = {url!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(parsed, connect_args={"timeout": sqlite_busy_ms / 1000})
        event.listen(engine.sync_engine, "connect", partial(_sqlite_connect, sqlite_busy_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
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
