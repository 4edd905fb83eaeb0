"""Opening the shared state a front end needs: the reservation store and who we are."""

from __future__ import annotations

import getpass

from sqlalchemy.engine import make_url

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.config import Config
from hivetui.reservations import Limits


def current_user() -> str:
    """The OS user running hivetui: the identity reservations are made under."""
    return getpass.getuser()


async def open_store(config: Config) -> ReservationStore:
    """The team's reservation store, its schema brought up to date where that is ours to do.

    The default SQLite file is upgraded on start. A database named in the
    config is shared: its schema is only checked, and ``hivetui db upgrade``
    moves it forward, so one release cannot surprise the others.
    """
    url = config.database or db.default_database_url()
    engine = db.make_engine(url)
    try:
        if config.database is None:
            await db.upgrade(engine)
        else:
            current = await db.current_revision(engine)
            head = db.head_revision()
            if current != head:
                raise db.DatabaseError(
                    f"the database schema is at {current or 'nothing'}, this hivetui needs "
                    f"{head}: run `hivetui db upgrade` (rows are kept)"
                )
    except db.DatabaseError:
        await engine.dispose()
        raise
    except Exception as exc:  # driver errors: refused, auth, unknown database
        await engine.dispose()
        safe = make_url(url).render_as_string(hide_password=True)
        raise db.DatabaseError(f"cannot open the database {safe}: {exc}") from None
    limits = Limits(
        max_hours=config.reservations.max_hours,
        max_days_ahead=config.reservations.max_days_ahead,
    )
    return ReservationStore(engine, limits=limits, admins=config.admins)
