"""Reservations in the shared database: book, list, edit, cancel, find free slots.

Every front end (TUI keys, CLI commands, the agent) goes through this one
class. It hands out :class:`~hivetui.reservations.Reservation` values, never
rows, and turns database failures into messages a person can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hivetui import db
from hivetui.reservations import (
    Conflict,
    FreeSlot,
    GpuRef,
    Limits,
    Reservation,
    ReservationError,
    check_change,
    check_edit,
    check_new,
    find_free,
    first_conflict,
    utc,
)
from hivetui.safe_text import fit_cells, printable
from hivetui.trust import is_gpu_uuid

T = db.reservations
log = logging.getLogger(__name__)


def _s(when: datetime) -> int:
    return int(utc(when).timestamp())


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class MalformedRow(db.DatabaseError):
    """A row that hivetui did not write: its GPU uuid is not one a driver prints."""


def _value(row: Row[Any]) -> Reservation:
    """The row as a value; a GPU uuid a driver could not have printed is refused here.

    Anyone who can write the shared database can put any text in a row, and
    ``reserve env`` hands the uuid to a shell: nothing unchecked leaves here.
    """
    m = row._mapping
    if not is_gpu_uuid(m["gpu_uuid"]):
        shown = printable(fit_cells(str(m["gpu_uuid"]), 60))
        raise MalformedRow(
            f"reservation {m['id']} in the database has a malformed GPU uuid '{shown}': "
            "hivetui did not write it; ask an admin to delete that row"
        )
    return Reservation(
        id=m["id"],
        user=m["user"],
        gpu=GpuRef(m["host"], m["gpu_index"], m["gpu_uuid"]),
        start=_dt(m["start_s"]),
        end=_dt(m["end_s"]),
        title=m["title"],
        created_at=_dt(m["created_s"]),
        booking_id=m["booking_id"],
    )


def _values(rows: Iterable[Row[Any]]) -> list[Reservation]:
    """Rows as values, leaving out (and logging) the malformed ones.

    One bad row must not take the grid, the lists and the guard down for the
    whole team; asked for by id (``get``), it is refused with the reason.
    """
    values = []
    for row in rows:
        try:
            values.append(_value(row))
        except MalformedRow as exc:
            log.error("%s; left out", exc)
    return values


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth remembering: a violation, a warning sent, a process killed."""

    id: int
    at: datetime
    kind: str
    user: str | None
    host: str | None
    gpu_uuid: str | None
    reservation_id: int | None
    detail: str


def _explain(exc: Exception, url: str) -> db.DatabaseError:
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    if "locked" in text or "busy" in text:
        return db.DatabaseError(
            "the database is busy (another program holds its lock): try again; nothing was changed"
        )
    return db.DatabaseError(f"database {db.shown_url(url)}: {db.explain(exc)}")


class ReservationStore:
    """The reservations of a team, in one shared database."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        limits: Limits | None = None,
        admins: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        self.admins = frozenset(admins)
        self._clock = clock
        self._longest_seen: int | None = None

    def now(self) -> datetime:
        return utc(datetime.fromtimestamp(self._clock(), UTC))

    # -- reading -------------------------------------------------------------
    async def list_reservations(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        user: str | None = None,
        hosts: Sequence[str] | None = None,
    ) -> list[Reservation]:
        """Live (not cancelled) reservations touching ``[start, end)``, by start."""
        query = select(T).where(T.c.cancelled_s.is_(None))
        if start is not None:
            # No reservation is longer than the longest in the table, so a bound on
            # its start lets the (gpu, start, end) index skip the rest of history.
            longest = await self._longest()
            query = query.where(T.c.end_s > _s(start), T.c.start_s >= _s(start) - longest)
        if end is not None:
            query = query.where(T.c.start_s < _s(end))
        if user is not None:
            query = query.where(T.c.user == user)
        if hosts is not None:
            query = query.where(T.c.host.in_(list(hosts)))
        query = query.order_by(T.c.start_s, T.c.host, T.c.booking_id, T.c.gpu_index)
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        return _values(rows)

    async def _longest(self) -> int:
        """Seconds of the longest reservation that may exist (the table's, or our limit)."""
        if self._longest_seen is None:
            length = func.max(T.c.end_s - T.c.start_s)
            async with self._connect() as conn:
                found = (await conn.execute(select(length))).scalar()
            self._longest_seen = int(found or 0)
        # Other processes may book meanwhile, within the configured limit.
        return max(self._longest_seen, int(self.limits.max_hours * 3600))

    async def get(self, reservation_id: int) -> Reservation:
        async with self._connect() as conn:
            return await self._get_in(conn, reservation_id)

    async def active_now(self) -> dict[str, Reservation]:
        """GPU uuid -> the reservation holding it right now."""
        now = self.now()
        return {
            r.gpu.uuid: r
            for r in await self.list_reservations(start=now, end=now + timedelta(seconds=1))
        }

    # -- writing -------------------------------------------------------------
    async def add(
        self, user: str, gpus: Sequence[GpuRef], start: datetime, end: datetime, title: str = ""
    ) -> list[Reservation]:
        """Book every GPU in ``gpus`` for ``[start, end)``: all of them or none."""
        start, end = utc(start), utc(end)
        check_new(start, end, self.now(), self.limits)
        if not gpus:
            raise ReservationError("name at least one GPU")
        created = _s(self.now())
        async with self._connect(write=True) as conn:
            try:
                async with conn.begin():
                    await self._refuse_overlaps(conn, gpus, start, end)
                    made: list[Reservation] = []
                    for gpu in gpus:
                        # The first row is a booking of its own (the database fills
                        # in its id); the others join it.
                        booking = made[0].id if made else None
                        result = await conn.execute(
                            insert(T).values(
                                user=user,
                                host=gpu.host,
                                gpu_index=gpu.index,
                                gpu_uuid=gpu.uuid,
                                start_s=_s(start),
                                end_s=_s(end),
                                title=title,
                                created_s=created,
                                booking_id=booking,
                            )
                        )
                        key = result.inserted_primary_key
                        assert key is not None
                        rid = int(key[0])
                        made.append(
                            Reservation(
                                rid, user, gpu, start, end, title, _dt(created), booking or rid
                            )
                        )
            except IntegrityError:
                # Another writer won the race the database settles (trigger or
                # exclusion constraint): name who holds the slot now.
                raise await self._conflict_after_race(gpus, start, end) from None
        return made  # what was inserted, to the second: no need to read it back

    async def _refuse_overlaps(
        self,
        conn: AsyncConnection,
        gpus: Sequence[GpuRef],
        start: datetime,
        end: datetime,
        ignore_ids: Collection[int] = (),
    ) -> None:
        query = select(T).where(
            T.c.cancelled_s.is_(None),
            T.c.gpu_uuid.in_([g.uuid for g in gpus]),
            T.c.start_s < _s(end),
            T.c.end_s > _s(start),
        )
        rows = (await conn.execute(query)).all()
        existing = [r for r in _values(rows) if r.id not in ignore_ids]
        for gpu in gpus:
            holder = first_conflict(existing, gpu.uuid, start, end)
            if holder is not None:
                raise _conflict(holder)

    async def _conflict_after_race(
        self, gpus: Sequence[GpuRef], start: datetime, end: datetime
    ) -> Conflict:
        async with self._connect() as conn:
            try:
                await self._refuse_overlaps(conn, gpus, start, end)
            except Conflict as found:
                return found
        return Conflict("the slot was taken by another booking at the same moment")

    async def booking(self, reservation_id: int) -> list[Reservation]:
        """The live reservations booked together with ``reservation_id``, by GPU index."""
        async with self._connect() as conn:
            return await self._booking_in(conn, reservation_id)

    async def cancel(
        self, reservation_id: int, user: str, *, gpus: Collection[int] | None = None
    ) -> list[Reservation]:
        """Cancel the booking of ``reservation_id``, or only its GPUs indexed ``gpus``."""
        async with self._connect(write=True) as conn, conn.begin():
            whole = await self._booking_in(conn, reservation_id)
            chosen = _only(whole, gpus)
            now = self.now()
            for res in chosen:
                check_change(res, user, self.admins, now)
            await conn.execute(
                update(T)
                .where(T.c.id.in_([r.id for r in chosen]))
                .values(cancelled_s=_s(now), cancelled_by=user)
            )
            await self._regroup(conn, whole, chosen, keep_chosen=False)
        return chosen

    async def edit(
        self,
        reservation_id: int,
        user: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        title: str | None = None,
        gpus: Collection[int] | None = None,
    ) -> list[Reservation]:
        """Move, extend or retitle the booking of ``reservation_id``, all its GPUs at once.

        ``gpus``: only these GPU indices of the booking; they leave it and
        become a booking of their own (a booking's GPUs share times and title).
        """
        async with self._connect(write=True) as conn:
            try:
                async with conn.begin():
                    whole = await self._booking_in(conn, reservation_id)
                    chosen = _only(whole, gpus)
                    now = self.now()
                    first = chosen[0]
                    new_start = utc(start) if start is not None else first.start
                    new_end = utc(end) if end is not None else first.end
                    for res in chosen:
                        check_change(res, user, self.admins, now)
                        check_edit(res, new_start, new_end, now, self.limits)
                    await self._refuse_overlaps(
                        conn, [r.gpu for r in chosen], new_start, new_end, {r.id for r in chosen}
                    )
                    await conn.execute(
                        update(T)
                        .where(T.c.id.in_([r.id for r in chosen]))
                        .values(
                            start_s=_s(new_start),
                            end_s=_s(new_end),
                            title=first.title if title is None else title,
                        )
                    )
                    await self._regroup(conn, whole, chosen, keep_chosen=True)
            except IntegrityError:
                raise Conflict("the new times overlap a booking made at the same moment") from None
        return await self.booking(first.id)

    async def _booking_in(self, conn: AsyncConnection, reservation_id: int) -> list[Reservation]:
        res = await self._get_in(conn, reservation_id)
        query = select(T).where(T.c.booking_id == res.booking, T.c.cancelled_s.is_(None))
        together = [_value(row) for row in (await conn.execute(query)).all()]
        if res.id not in {r.id for r in together}:
            together.append(res)  # a row written without a booking by hand
        return sorted(together, key=lambda r: (r.gpu.host, r.gpu.index, r.id))

    async def _regroup(
        self,
        conn: AsyncConnection,
        whole: Sequence[Reservation],
        chosen: Sequence[Reservation],
        *,
        keep_chosen: bool,
    ) -> None:
        """Keep each live booking's id the smallest id among its live GPUs."""
        chosen_ids = {r.id for r in chosen}
        parts = [[r for r in whole if r.id not in chosen_ids]]
        if keep_chosen:
            parts.append(list(chosen))
        for part in parts:
            ids = [r.id for r in part]
            if ids and any(r.booking != min(ids) for r in part):
                await conn.execute(update(T).where(T.c.id.in_(ids)).values(booking_id=min(ids)))

    async def _get_in(self, conn: AsyncConnection, reservation_id: int) -> Reservation:
        row = (await conn.execute(select(T).where(T.c.id == reservation_id))).first()
        if row is None or row._mapping["cancelled_s"] is not None:
            raise ReservationError(f"no reservation {reservation_id}")
        return _value(row)

    async def find_free(
        self,
        gpus: Sequence[GpuRef],
        count: int,
        duration: timedelta,
        hosts: Iterable[str] | None = None,
        after: datetime | None = None,
        in_use: Collection[str] = frozenset(),
    ) -> FreeSlot | None:
        """The earliest free slot (see :func:`hivetui.reservations.find_free`).

        ``in_use``: uuids of GPUs busy right now (``gpus_in_use`` of the live
        snapshots); they count only for a slot that starts now.
        """
        now = self.now()
        start = utc(after) if after is not None else now
        horizon = timedelta(days=self.limits.max_days_ahead)
        existing = await self.list_reservations(start=start, end=start + horizon + duration)
        busy = in_use if start <= now else frozenset()
        return find_free(existing, gpus, count, duration, start, hosts, horizon, busy)

    # -- events --------------------------------------------------------------
    async def record_event(
        self,
        kind: str,
        detail: str,
        *,
        user: str | None = None,
        host: str | None = None,
        gpu_uuid: str | None = None,
        reservation_id: int | None = None,
    ) -> None:
        async with self._connect(write=True) as conn, conn.begin():
            await conn.execute(
                insert(db.events).values(
                    at_s=_s(self.now()),
                    kind=kind,
                    user=user,
                    host=host,
                    gpu_uuid=gpu_uuid,
                    reservation_id=reservation_id,
                    detail=detail,
                )
            )

    async def events(self, since: datetime | None = None, kind: str | None = None) -> list[Event]:
        query = select(db.events).order_by(db.events.c.at_s, db.events.c.id)
        if since is not None:
            query = query.where(db.events.c.at_s >= _s(since))
        if kind is not None:
            query = query.where(db.events.c.kind == kind)
        async with self._connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Event(
                id=r.id,
                at=_dt(r.at_s),
                kind=r.kind,
                user=r.user,
                host=r.host,
                gpu_uuid=r.gpu_uuid,
                reservation_id=r.reservation_id,
                detail=r.detail,
            )
            for r in rows
        ]

    # -- plumbing ------------------------------------------------------------
    def _connect(self, write: bool = False) -> _Connection:
        return _Connection(self.engine, write)


class _Connection:
    """``async with``: a connection, database failures turned into DatabaseError."""

    def __init__(self, engine: AsyncEngine, write: bool) -> None:
        self._engine, self._write = engine, write
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> AsyncConnection:
        try:
            conn = await self._engine.connect()
        except (OperationalError, DBAPIError, OSError) as exc:
            raise _explain(exc, str(self._engine.url)) from None
        self._conn = await db.writing(conn) if self._write else conn
        return self._conn

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._conn is not None
        await self._conn.close()
        if isinstance(exc, IntegrityError):
            return  # the caller turns it into a Conflict
        if isinstance(exc, (OperationalError, DBAPIError)):
            raise _explain(exc, str(self._engine.url)) from None


def _only(whole: Sequence[Reservation], gpus: Collection[int] | None) -> list[Reservation]:
    """The reservations of a booking on the GPU indices ``gpus`` (None: all of them)."""
    if gpus is None:
        return list(whole)
    chosen = [r for r in whole if r.gpu.index in set(gpus)]
    missing = sorted(set(gpus) - {r.gpu.index for r in chosen})
    if missing:
        first = whole[0]
        have = ",".join(str(r.gpu.index) for r in whole)
        raise ReservationError(
            f"reservation {first.booking} has no GPU {', '.join(map(str, missing))} "
            f"(it holds {first.gpu.host}:{have})"
        )
    return chosen


def _conflict(holder: Reservation) -> Conflict:
    local = holder.start.astimezone(), holder.end.astimezone()
    return Conflict(
        f"{holder.gpu.label} is reserved by {holder.user} from {local[0]:%a %d %b %H:%M} "
        f"to {local[1]:%a %d %b %H:%M} (reservation {holder.id})",
        holder,
    )
