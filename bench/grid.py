"""Reservation grid: 64 GPUs x 7 days redrawn, with 100,000 reservations in the database.

With the same 100,000-row SQLite database as bench/booking.py (64 GPUs, a year
centred on now), times over 20 rounds, medians:

* query: ``ReservationStore.list_reservations`` for the 7-day window;
* cells: ``visible_cells`` for 64 GPUs x 168 one-hour slots;
* redraw: the real grid widget in a headless app (160x80 terminal) taking the
  new reservations (``grid.update``) and rendering every visible line of
  itself, the work the screen does on every reload (the terminal write that
  follows is Textual's and is not counted).

    .venv/bin/python bench/grid.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.booking import gpu, layout, load  # noqa: E402
from hivetui import db  # noqa: E402
from hivetui.app import make_app  # noqa: E402
from hivetui.booking import ReservationStore  # noqa: E402
from hivetui.fleet import Fleet  # noqa: E402
from hivetui.model import GpuSample, HostSnapshot, HostStatus  # noqa: E402
from hivetui.screens.reservations import ReservationsScreen  # noqa: E402
from hivetui.widgets.grid_cells import local_midnight, visible_cells  # noqa: E402
from hivetui.widgets.reservation_grid import ReservationGrid  # noqa: E402

ROUNDS = 20
WEEK = timedelta(days=7)


def fleet_of_64() -> Fleet:
    fleet = Fleet([])
    for host in range(8):
        gpus = tuple(
            GpuSample(
                i, gpu(host * 8 + i).uuid, "NVIDIA H100 80GB HBM3", 0.0, 0.0, 81559.0, 30.0, 70.0
            )
            for i in range(8)
        )
        fleet.record(HostSnapshot(f"h{host:02d}", HostStatus.ONLINE, gpus=gpus, updated_at=1.0))
    return fleet


async def measure(url: str) -> dict[str, float]:
    engine = db.make_engine(url)
    await db.upgrade(engine)
    now = int(time.time())
    await load(engine, layout(now))
    store = ReservationStore(engine)
    start = local_midnight(datetime.now(UTC))
    gpus = [gpu(g) for g in range(64)]
    query, cells, redraw, shown = [], [], [], 0
    for _ in range(ROUNDS):
        t = time.perf_counter()
        found = await store.list_reservations(start=start, end=start + WEEK)
        query.append(time.perf_counter() - t)
        t = time.perf_counter()
        visible_cells(gpus, found, start, timedelta(hours=1), 168, "u0", datetime.now(UTC))
        cells.append(time.perf_counter() - t)
        shown = len(found)
    app = make_app(fleet_of_64(), start_fleet=False, show_clock=False, store=store, user="u0")
    async with app.run_test(size=(160, 80)) as pilot:
        await pilot.press("r")
        await pilot.pause()
        await app.workers.wait_for_complete()
        screen = app.screen
        assert isinstance(screen, ReservationsScreen)
        grid = screen.query_one(ReservationGrid)
        found = await store.list_reservations(start=start, end=start + WEEK)
        for _ in range(ROUNDS):
            t = time.perf_counter()
            grid.update(screen.ctx.fleet_gpus(), found, datetime.now(UTC))
            for y in range(grid.size.height):
                grid.render_line(y)
            redraw.append(time.perf_counter() - t)
            await pilot.pause()
    await engine.dispose()
    return {
        "query": statistics.median(query),
        "cells": statistics.median(cells),
        "redraw": statistics.median(redraw),
        "shown": shown,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hivetui-grid-") as tmp:
        result = asyncio.run(measure(f"sqlite+aiosqlite:///{Path(tmp) / 'grid.db'}"))
    total = result["query"] + result["cells"] + result["redraw"]
    print("reservation grid, 64 GPUs x 7 days (1 h slots), 100,000 reservations in SQLite")
    print(f"{'step':34} | {'median':>9}")
    print(f"{'query the 7-day window':34} | {result['query'] * 1000:>6.1f} ms")
    print(f"{'visible_cells (64 x 168)':34} | {result['cells'] * 1000:>6.1f} ms")
    print(f"{'widget update + render (160x80)':34} | {result['redraw'] * 1000:>6.1f} ms")
    print(f"{'all three':34} | {total * 1000:>6.1f} ms")
    print(f"reservations in the window: {result['shown']:.0f}")


if __name__ == "__main__":
    main()
