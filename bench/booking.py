"""Booking: ReservationStore.add against a big table, alone and with 20 writers racing.

For each database (a fresh SQLite file; PostgreSQL too when
``HIVETUI_BENCH_PG_URL`` names one):

* load: 100,000 reservations bulk-inserted, spread over 64 GPUs (8 hosts of 8)
  and a year centred on now, never overlapping on one GPU (the database's own
  overlap guard is on while they go in);
* single: 200 bookings one after another through ``ReservationStore.add`` (the
  overlap check, the insert and the read-back), each into a free gap of a
  random GPU within the next 30 days: median and p95 of one booking;
* race: 20 separate processes book random, mostly overlapping slots on the
  same 4 GPUs for about 10 s: bookings per second that landed, and then a query
  over every pair of live reservations of one GPU that counts overlaps (it must
  be 0).

    .venv/bin/python bench/booking.py
    HIVETUI_BENCH_PG_URL=postgresql+asyncpg://hive@db/scratch .venv/bin/python bench/booking.py

The PostgreSQL database must be a scratch one: its reservations are deleted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import delete, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from hivetui import db  # noqa: E402
from hivetui.booking import ReservationStore  # noqa: E402
from hivetui.reservations import Conflict, GpuRef, ReservationError  # noqa: E402

ROWS = 100_000
GPUS = 64
SINGLE = 200
WORKERS = 20
RACE_SECONDS = 10.0
HOT = [GpuRef("hot", i, f"GPU-{i:08x}-0000-4000-8000-0000000000ff") for i in range(4)]
YEAR = 365 * 86400
SLOT = YEAR * GPUS // ROWS  # each GPU gets one reservation per slot (about 5.6 h)
T = db.reservations


def gpu(g: int) -> GpuRef:
    return GpuRef(f"node{g // 8:02d}", g % 8, f"GPU-{g:08x}-0000-4000-8000-000000000000")


def layout(now: int, seed: int = 1) -> list[dict[str, Any]]:
    """The bulk rows: per GPU, slot k holds [k*SLOT + up to 10 min, + 1..4 h)."""
    rng = random.Random(seed)
    first = now - YEAR // 2
    rows: list[dict[str, Any]] = []
    for g in range(GPUS):
        ref = gpu(g)
        for k in range(ROWS // GPUS + (1 if g < ROWS % GPUS else 0)):
            start = first + k * SLOT + rng.randrange(0, 600)
            rows.append(
                {
                    "user": f"user{g % 10}",
                    "host": ref.host,
                    "gpu_index": ref.index,
                    "gpu_uuid": ref.uuid,
                    "start_s": start,
                    "end_s": start + rng.randrange(3600, 4 * 3600),
                    "title": "bulk",
                    "created_s": now,
                }
            )
    # Latest first: the SQLite overlap trigger then finds nothing to compare with
    # at each insert (it scans a GPU's rows that start before the new one ends).
    rows.sort(key=lambda r: int(r["start_s"]), reverse=True)
    return rows


async def load(engine: AsyncEngine, rows: list[dict[str, Any]]) -> float:
    began = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(delete(T))
        for at in range(0, len(rows), 5000):
            await conn.execute(insert(T), rows[at : at + 5000])
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE reservations"))
    return time.perf_counter() - began


async def single_bookings(engine: AsyncEngine, rows: list[dict[str, Any]]) -> list[float]:
    """Seconds per ``add`` of SINGLE bookings into gaps of the next 30 days."""
    store = ReservationStore(engine)
    now = int(time.time())
    gaps = [r for r in rows if now + 3600 < r["end_s"] < now + 29 * 86400]
    chosen = random.Random(2).sample(gaps, SINGLE)
    times = []
    for r in chosen:
        ref = GpuRef(r["host"], r["gpu_index"], r["gpu_uuid"])
        start = r["end_s"] + 300  # the gap after each bulk row is over 1.5 h
        began = time.perf_counter()
        await store.add("bench", [ref], db_time(start), db_time(start + 3600), "single")
        times.append(time.perf_counter() - began)
    return times


def db_time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def overlapping_pairs(engine: AsyncEngine) -> int:
    """Live pairs of one GPU that overlap. Every such pair has one member that
    starts inside the other (or both start together), which the index finds."""
    a, b = T.alias("a"), T.alias("b")
    query = (
        select(func.count())
        .select_from(a)
        .join(
            b,
            (a.c.gpu_uuid == b.c.gpu_uuid)
            & (b.c.start_s >= a.c.start_s)
            & (b.c.start_s < a.c.end_s)
            & (a.c.id != b.c.id)
            & ((b.c.start_s > a.c.start_s) | (b.c.id > a.c.id)),
        )
        .where(a.c.cancelled_s.is_(None), b.c.cancelled_s.is_(None))
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def worker(url: str, seed: int, start_at: float, seconds: float) -> dict[str, int]:
    engine = db.make_engine(url)
    store = ReservationStore(engine)
    rng = random.Random(seed)
    counts = {"booked": 0, "conflicts": 0, "errors": 0}
    await store.list_reservations(hosts=["none"])  # connect before the start line
    await asyncio.sleep(max(0.0, start_at - time.time()))
    now = int(time.time()) + 600
    while time.time() < start_at + seconds:
        start = now + rng.randrange(0, 3 * 86400 // 300) * 300
        length = rng.randrange(1, 25) * 300
        try:
            await store.add(f"w{seed}", [rng.choice(HOT)], db_time(start), db_time(start + length))
            counts["booked"] += 1
        except Conflict:
            counts["conflicts"] += 1
        except (ReservationError, db.DatabaseError):
            counts["errors"] += 1
    await engine.dispose()
    return counts


def race(url: str) -> tuple[dict[str, int], float]:
    start_at = time.time() + 3.0  # every worker imported and connected by then
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, str(i), str(start_at), str(RACE_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    total = {"booked": 0, "conflicts": 0, "errors": 0}
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"a booking worker failed ({proc.returncode})")
        for key, value in json.loads(out).items():
            total[key] += value
    return total, RACE_SECONDS


@dataclass
class Result:
    name: str
    load_s: float
    median_ms: float
    p95_ms: float
    race: dict[str, int]
    race_s: float
    overlaps: int


async def prepare(url: str) -> tuple[float, list[float]]:
    engine = db.make_engine(url)
    try:
        await db.upgrade(engine)
        rows = layout(int(time.time()))
        load_s = await load(engine, rows)
        return load_s, await single_bookings(engine, rows)
    finally:
        await engine.dispose()


async def count_overlaps(url: str) -> int:
    engine = db.make_engine(url)
    try:
        return await overlapping_pairs(engine)
    finally:
        await engine.dispose()


def run(name: str, url: str) -> Result:
    load_s, times = asyncio.run(prepare(url))
    counts, seconds = race(url)
    overlaps = asyncio.run(count_overlaps(url))
    ms = sorted(t * 1000 for t in times)
    return Result(
        name,
        load_s,
        statistics.median(ms),
        ms[int(len(ms) * 0.95) - 1],
        counts,
        seconds,
        overlaps,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, seed, start_at, seconds = sys.argv[2:6]
        print(json.dumps(asyncio.run(worker(url, int(seed), float(start_at), float(seconds)))))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="hivetui-bench-") as tmp:
        results.append(run("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"))
    pg = os.environ.get("HIVETUI_BENCH_PG_URL")
    if pg:
        results.append(run("PostgreSQL", pg))
        print(f"PostgreSQL: {make_url(pg).render_as_string(hide_password=True)}", file=sys.stderr)
    print(
        f"{ROWS:,} reservations over {GPUS} GPUs and a year; {SINGLE} single bookings; "
        f"{WORKERS} processes racing on {len(HOT)} GPUs for {RACE_SECONDS:g} s"
    )
    head = (
        f"{'database':<11} {'bulk load':>9} {'book median':>11} {'p95':>8} "
        f"{'race booked/s':>13} {'tries/s':>8} {'conflicts':>9} {'errors':>6} {'overlaps':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        tries = sum(r.race.values())
        print(
            f"{r.name:<11} {r.load_s:>8.1f}s {r.median_ms:>9.2f}ms {r.p95_ms:>6.2f}ms "
            f"{r.race['booked'] / r.race_s:>13.1f} {tries / r.race_s:>8.1f} "
            f"{r.race['conflicts']:>9} {r.race['errors']:>6} {r.overlaps:>8}"
        )
    if any(r.overlaps for r in results):
        sys.exit("overlapping reservations landed")


if __name__ == "__main__":
    main()
