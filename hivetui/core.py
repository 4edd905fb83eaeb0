"""Opening the shared state a front end needs: the reservation store and who we are."""

from __future__ import annotations

import os
import pwd

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.config import Config
from hivetui.reservations import Limits, ReservationError
from hivetui.trust import is_user_name


class UnknownUser(ReservationError):
    """This process's uid has no usable account name, so it cannot book."""


def current_user() -> str:
    """The account of this process's uid: the identity reservations are made under.

    Never ``LOGNAME`` or ``USER``: anyone can set those to another person's name.
    """
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise UnknownUser(
            f"uid {uid} has no account name (no passwd entry), and reservations are made "
            "under the account name: run hivetui as a user with an account"
        ) from None
    if not is_user_name(name):
        raise UnknownUser(
            f"the account name of uid {uid} ({name!r}) is not a valid user name "
            "(letters, digits, . _ -; at most 32): run hivetui as another account"
        )
    return name


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
        raise db.DatabaseError(
            f"cannot open the database {db.shown_url(url)}: {db.explain(exc)}"
        ) from None
    limits = Limits(
        max_hours=config.reservations.max_hours,
        max_days_ahead=config.reservations.max_days_ahead,
    )
    return ReservationStore(engine, limits=limits, admins=config.admins)
