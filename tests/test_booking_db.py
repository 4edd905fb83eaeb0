"""The reservation store on real SQLite and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.config import Config
from hivetui.core import open_store
from hivetui.reservations import (
    Conflict,
    GpuRef,
    InvalidTimes,
    LimitExceeded,
    Limits,
    NotAllowed,
    ReservationError,
)
from tests.postgres import PostgresCluster

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
GPU0 = GpuRef("gpu01", 0, "GPU-aaaaaaaa-0000-4000-8000-000000000000")
GPU1 = GpuRef("gpu01", 1, "GPU-bbbbbbbb-0000-4000-8000-000000000000")
RACE_UUID = "GPU-cccccccc-0000-4000-8000-000000000000"
FOUR = [GpuRef("gpu01", i, f"GPU-0000000{i}-4444-4000-8000-000000000000") for i in range(4)]
H = timedelta(hours=1)


def fixed(now: datetime) -> Callable[[], float]:
    return lambda: now.timestamp()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hive.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ReservationStore]:
    engine = db.make_engine(database_url)
    await db.upgrade(engine)
    try:
        yield ReservationStore(engine, admins=["root"], clock=fixed(NOW))
    finally:
        await engine.dispose()


async def test_book_list_and_conflict_names_the_holder(store: ReservationStore) -> None:
    (mine,) = await store.add("alice", [GPU0], NOW + H, NOW + 3 * H, "train")
    assert (mine.user, mine.gpu, mine.title) == ("alice", GPU0, "train")
    assert mine.start == NOW + H and mine.end == NOW + 3 * H
    with pytest.raises(Conflict) as info:
        await store.add("bob", [GPU0], NOW + 2 * H, NOW + 4 * H)
    assert info.value.holder == mine
    assert "reserved by alice" in str(info.value)
    # Touching ends do not overlap; another GPU is free.
    await store.add("bob", [GPU0], NOW + 3 * H, NOW + 4 * H)
    await store.add("bob", [GPU1], NOW + 2 * H, NOW + 4 * H)
    listed = await store.list_reservations()
    assert [(r.user, r.gpu.index) for r in listed] == [("alice", 0), ("bob", 1), ("bob", 0)]
    assert [r.user for r in await store.list_reservations(user="bob")] == ["bob", "bob"]


async def test_multi_gpu_booking_is_all_or_nothing(store: ReservationStore) -> None:
    await store.add("alice", [GPU1], NOW + H, NOW + 2 * H)
    with pytest.raises(Conflict):
        await store.add("bob", [GPU0, GPU1], NOW, NOW + 3 * H)
    assert [r.gpu for r in await store.list_reservations()] == [GPU1]


async def test_a_booking_is_edited_listed_and_cancelled_together(store: ReservationStore) -> None:
    made = await store.add("alice", FOUR, NOW + H, NOW + 3 * H, "four")
    ids = [r.id for r in made]
    assert {r.booking for r in made} == {ids[0]}
    (other,) = await store.add("alice", [GPU0], NOW + H, NOW + 3 * H, "four")  # same look
    assert other.booking == other.id  # booked apart: a booking of its own
    assert [r.booking for r in await store.list_reservations()] == [ids[0]] * 4 + [other.id]
    # Editing any one of them edits the booking: every GPU gets the new end.
    changed = await store.edit(ids[1], "alice", end=NOW + 12 * H)
    assert [r.id for r in changed] == ids and {r.end for r in changed} == {NOW + 12 * H}
    assert [r.id for r in await store.booking(ids[2])] == ids
    assert (await store.get(other.id)).end == NOW + 3 * H  # not part of it
    # One GPU on its own: it leaves the booking; the rest stay together.
    (alone,) = await store.edit(ids[2], "alice", start=NOW + 2 * H, gpus=[2])
    assert (alone.id, alone.booking, alone.start) == (ids[2], ids[2], NOW + 2 * H)
    assert [r.id for r in await store.booking(ids[0])] == [ids[0], ids[1], ids[3]]
    # Cancelling the GPU whose id names the booking: the next smallest names it now.
    (gone,) = await store.cancel(ids[3], "alice", gpus=[0])
    assert gone.id == ids[0]
    rest = await store.booking(ids[1])
    assert [(r.id, r.booking) for r in rest] == [(ids[1], ids[1]), (ids[3], ids[1])]
    with pytest.raises(ReservationError, match=r"has no GPU 7 \(it holds gpu01:1,3\)"):
        await store.cancel(ids[1], "alice", gpus=[7])
    with pytest.raises(NotAllowed, match="belongs to alice"):
        await store.cancel(ids[1], "bob")
    assert [r.id for r in await store.cancel(ids[3], "alice")] == [ids[1], ids[3]]
    assert [r.id for r in await store.list_reservations()] == [other.id, ids[2]]


async def test_a_booking_moves_as_one_or_not_at_all(store: ReservationStore) -> None:
    made = await store.add("alice", FOUR, NOW + H, NOW + 2 * H)
    (bob,) = await store.add("bob", [FOUR[3]], NOW + 2 * H, NOW + 3 * H)
    with pytest.raises(Conflict, match="reserved by bob"):
        await store.edit(made[0].id, "alice", end=NOW + 3 * H)
    assert {r.end for r in await store.booking(made[0].id)} == {NOW + 2 * H}
    # Without the GPU bob holds, the rest can grow.
    grown = await store.edit(made[0].id, "alice", end=NOW + 3 * H, gpus=[0, 1, 2])
    assert [r.gpu.index for r in grown] == [0, 1, 2] and {r.booking for r in grown} == {made[0].id}
    (left,) = await store.booking(made[3].id)
    assert (left.id, left.booking, left.end) == (made[3].id, made[3].id, NOW + 2 * H)
    assert bob.booking == bob.id


async def test_cancel_and_edit_rules(store: ReservationStore) -> None:
    (res,) = await store.add("alice", [GPU0], NOW + H, NOW + 2 * H)
    with pytest.raises(NotAllowed, match="belongs to alice"):
        await store.cancel(res.id, "bob")
    [edited] = await store.edit(res.id, "alice", end=NOW + 5 * H, title="longer")
    assert edited.end == NOW + 5 * H and edited.title == "longer"
    (other,) = await store.add("bob", [GPU0], NOW + 6 * H, NOW + 7 * H)
    with pytest.raises(Conflict, match="reserved by bob"):
        await store.edit(res.id, "alice", end=NOW + 7 * H)
    await store.cancel(other.id, "root")  # an admin may
    await store.cancel(res.id, "alice")
    assert await store.list_reservations() == []
    # The freed slot can be booked again.
    await store.add("carol", [GPU0], NOW + H, NOW + 2 * H)


async def test_the_past_cannot_be_rewritten(database_url: str) -> None:
    engine = db.make_engine(database_url)
    await db.upgrade(engine)
    try:
        early = ReservationStore(engine, clock=fixed(NOW))
        (res,) = await early.add("alice", [GPU0], NOW, NOW + 2 * H)
        later = ReservationStore(engine, clock=fixed(NOW + H))
        with pytest.raises(NotAllowed, match="only its end"):
            await later.edit(res.id, "alice", start=NOW + H)
        [moved] = await later.edit(res.id, "alice", end=NOW + 3 * H)
        assert moved.start == NOW
        after = ReservationStore(engine, clock=fixed(NOW + 4 * H))
        with pytest.raises(NotAllowed, match="has ended"):
            await after.cancel(res.id, "alice")
        with pytest.raises(InvalidTimes, match="past"):
            await after.add("alice", [GPU0], NOW, NOW + H)
    finally:
        await engine.dispose()


async def test_limits_from_the_config(database_url: str) -> None:
    engine = db.make_engine(database_url)
    await db.upgrade(engine)
    try:
        store = ReservationStore(
            engine, limits=Limits(max_hours=4, max_days_ahead=2), clock=fixed(NOW)
        )
        with pytest.raises(LimitExceeded, match="longest"):
            await store.add("alice", [GPU0], NOW, NOW + 5 * H)
        with pytest.raises(LimitExceeded, match="days ahead"):
            await store.add("alice", [GPU0], NOW + timedelta(days=3), NOW + timedelta(days=3) + H)
        with pytest.raises(InvalidTimes, match="after the start"):
            await store.add("alice", [GPU0], NOW + 2 * H, NOW + H)
    finally:
        await engine.dispose()


async def test_the_database_itself_refuses_an_overlap(store: ReservationStore) -> None:
    """Even a client that skips every check cannot double-book."""
    await store.add("alice", [GPU0], NOW + H, NOW + 3 * H)
    start = int((NOW + 2 * H).timestamp())
    async with store.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                insert(db.reservations).values(
                    user="mallory",
                    host="gpu01",
                    gpu_index=0,
                    gpu_uuid=GPU0.uuid,
                    start_s=start,
                    end_s=start + 3600,
                    title="",
                    created_s=start,
                )
            )
    # Moving a row onto it is refused too; renaming or regrouping is not a move.
    (later,) = await store.add("bob", [GPU0], NOW + 4 * H, NOW + 5 * H)
    moved = db.reservations.update().where(db.reservations.c.id == later.id)
    async with store.engine.begin() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(moved.values(start_s=start))
    async with store.engine.begin() as conn:
        await conn.execute(moved.values(title="renamed", booking_id=later.id))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(db.reservations.c.user))).all()
    assert [r.user for r in rows] == ["alice", "bob"]


async def test_find_free_skips_taken_slots(store: ReservationStore) -> None:
    await store.add("alice", [GPU0], NOW, NOW + 2 * H)
    await store.add("bob", [GPU1], NOW, NOW + 3 * H)
    slot = await store.find_free([GPU0, GPU1], count=2, duration=H)
    assert slot is not None and slot.start == NOW + 3 * H
    one = await store.find_free([GPU0, GPU1], count=1, duration=H)
    assert one is not None and one.start == NOW + 2 * H and one.gpus == (GPU0,)


WORKER = """
import asyncio, json, sys, time
from datetime import UTC, datetime
from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.reservations import Conflict, GpuRef

url, user, gpu_uuid, start, end, at = sys.argv[1:7]

async def main():
    engine = db.make_engine(url)
    store = ReservationStore(engine, clock=lambda: float(start) - 60)
    gpu = GpuRef("gpu01", 0, gpu_uuid)
    time.sleep(max(0.0, float(at) - time.time()))
    try:
        (res,) = await store.add(user, [gpu], datetime.fromtimestamp(int(start), UTC),
                                 datetime.fromtimestamp(int(end), UTC))
        print(json.dumps({"ok": res.id}))
    except Conflict as exc:
        print(json.dumps({"conflict": str(exc), "holder": exc.holder and exc.holder.user}))
    finally:
        await engine.dispose()

asyncio.run(main())
"""


def run_bookers(url: str, jobs: list[tuple[str, int, int]]) -> list[dict[str, object]]:
    """Start one process per (user, start, end), all booking at the same instant."""
    at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, user, RACE_UUID, str(s), str(e), str(at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user, s, e in jobs
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


async def test_concurrent_bookers_of_one_slot_exactly_one_wins(database_url: str) -> None:
    engine = db.make_engine(database_url)
    await db.upgrade(engine)
    await engine.dispose()
    start = int(time.time()) + 3600
    results = run_bookers(database_url, [(f"user{i}", start, start + 3600) for i in range(8)])
    winners = [r for r in results if "ok" in r]
    assert len(winners) == 1, results
    winner = f"user{results.index(winners[0])}"
    for loser in (r for r in results if "conflict" in r):
        assert loser["holder"] == winner, results


async def test_concurrent_random_overlaps_never_land(database_url: str) -> None:
    engine = db.make_engine(database_url)
    await db.upgrade(engine)
    base = int(time.time()) + 3600
    # Twelve bookers whose windows overlap in a chain: many conflicts at once.
    jobs = [(f"u{i}", base + i * 1800, base + i * 1800 + 3600) for i in range(12)]
    results = run_bookers(database_url, jobs)
    assert any("ok" in r for r in results)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(db.reservations))).all()
    await engine.dispose()
    spans = sorted((r.start_s, r.end_s) for r in rows)
    assert len(spans) == sum(1 for r in results if "ok" in r)
    for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False):
        assert e1 <= s2, f"overlap landed: {spans}"


async def test_locked_sqlite_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hive.db'}"
    engine = db.make_engine(url, sqlite_busy_ms=300)
    await db.upgrade(engine)
    store = ReservationStore(engine, clock=fixed(NOW))
    holder = sqlite3.connect(tmp_path / "hive.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(db.DatabaseError, match="busy.*nothing was changed"):
            await store.add("alice", [GPU0], NOW + H, NOW + 2 * H)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await store.list_reservations() == []
    await store.add("alice", [GPU0], NOW + H, NOW + 2 * H)
    await engine.dispose()


async def test_upgrade_from_every_revision_keeps_rows(database_url: str) -> None:
    engine = db.make_engine(database_url)
    await db.upgrade(engine, "0001")
    start = int((NOW + H).timestamp())
    async with engine.begin() as conn:  # the columns 0001 has: the store needs the head
        await conn.execute(
            insert(db.reservations).values(
                user="alice", host="gpu01", gpu_index=0, gpu_uuid=GPU0.uuid, start_s=start,
                end_s=start + 3600, title="kept", created_s=start,
            )
        )  # fmt: skip
    await db.upgrade(engine)
    assert await db.current_revision(engine) == db.head_revision()
    store = ReservationStore(engine, clock=fixed(NOW))
    (res,) = await store.list_reservations()
    assert (res.user, res.title, res.booking) == ("alice", "kept", res.id)
    await engine.dispose()


def uuid_of(host: str, index: int) -> str:
    """A driver-form uuid for GPU ``index`` of host ``gpuNN``."""
    return f"GPU-{int(host[3:]):08d}-0000-4000-8000-{index:012d}"


async def test_migration_0004_groups_the_rows_booked_together(database_url: str) -> None:
    """A filled database at 0003: rows of one user, host, times and title become one booking."""
    engine = db.make_engine(database_url)
    await db.upgrade(engine, "0003")
    base = int(NOW.timestamp())

    def row(
        rid: int, user: str, host: str, index: int, title: str, **extra: int
    ) -> dict[str, object]:
        return {
            "id": rid, "user": user, "host": host, "gpu_index": index,
            "gpu_uuid": uuid_of(host, index), "start_s": base + 10800 * (rid // 10),
            "end_s": base + 10800 * (rid // 10) + 7200, "title": title, "created_s": base,
            **extra,
        }  # fmt: skip

    rows = [
        *(row(rid, "alice", "gpu01", i, "llama") for i, rid in enumerate((3, 4, 5, 7))),
        row(8, "alice", "gpu01", 4, "other title"),
        row(9, "bob", "gpu01", 5, "llama"),
        row(2, "alice", "gpu02", 0, "llama"),
        row(6, "alice", "gpu01", 6, "llama", cancelled_s=base),
        row(15, "alice", "gpu01", 0, "llama"),  # later times: another booking
        row(16, "alice", "gpu01", 1, "llama"),
    ]
    async with engine.begin() as conn:
        await conn.execute(
            insert(db.reservations), [{**r, "cancelled_s": r.get("cancelled_s")} for r in rows]
        )
        if engine.dialect.name == "postgresql":  # ids given by hand: move the sequence past them
            sequence = "pg_get_serial_sequence('reservations', 'id')"
            await conn.execute(text(f"SELECT setval({sequence}, 99)"))
    await db.upgrade(engine)
    assert await db.current_revision(engine) == db.head_revision()
    async with engine.connect() as conn:
        found = (
            await conn.execute(select(db.reservations.c.id, db.reservations.c.booking_id))
        ).all()
    assert dict(found) == {3: 3, 4: 3, 5: 3, 7: 3, 8: 8, 9: 9, 2: 2, 6: 6, 15: 15, 16: 15}
    store = ReservationStore(engine, clock=fixed(NOW))
    assert [r.id for r in await store.booking(5)] == [3, 4, 5, 7]
    # After the upgrade: new bookings, the overlap guard, and rows written by hand.
    made = await store.add("carol", FOUR[:2], NOW + 5 * H, NOW + 6 * H)
    assert {r.booking for r in made} == {made[0].id} and made[0].id > 16
    with pytest.raises(Conflict, match="reserved by alice"):
        await store.add("carol", [GpuRef("gpu01", 0, uuid_of("gpu01", 0))], NOW, NOW + 3 * H)
    async with engine.begin() as conn:
        with pytest.raises(IntegrityError):
            overlap = row(50, "eve", "gpu01", 0, "", start_s=base + 3600, end_s=base + 9000)
            await conn.execute(insert(db.reservations).values(overlap))
    async with engine.begin() as conn:
        await conn.execute(insert(db.reservations).values(row(40, "eve", "gpu09", 0, "by hand")))
    assert (await store.get(40)).booking == 40
    await engine.dispose()


async def test_open_store_upgrades_only_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = await open_store(Config())
    assert str(store.engine.url).startswith("sqlite+aiosqlite:///" + str(tmp_path / "data"))
    assert await db.current_revision(store.engine) == db.head_revision()
    await store.engine.dispose()
    # A shared database named in the config is never migrated behind people's backs.
    with pytest.raises(db.DatabaseError, match="hivetui db upgrade"):
        await open_store(Config(database=database_url))


async def test_unreachable_database_is_a_clear_error(postgres: PostgresCluster) -> None:
    url = postgres.url("postgres").replace(str(postgres.port), "1")
    with pytest.raises(db.DatabaseError, match="cannot open the database"):
        await asyncio.wait_for(open_store(Config(database=url)), 30)
