"""How much a reservation uses its GPU: running sums, idle stretches, and their table.

The guard feeds one sample per fresh snapshot of the reserved GPU. Sums live in
``reservation_usage`` so an agent restart keeps counting where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hivetui import db
from hivetui.model import GpuSample

U = db.reservation_usage


@dataclass(frozen=True, slots=True)
class Usage:
    """GPU use seen during one reservation so far."""

    reservation_id: int
    samples: int = 0
    util_sum: float = 0.0
    mem_sum: float = 0.0  # MiB
    last_s: int = 0
    idle_since_s: int | None = None  # below the idle threshold since then

    @property
    def mean_util_pct(self) -> float | None:
        return self.util_sum / self.samples if self.samples else None

    @property
    def mean_mem_mib(self) -> float | None:
        return self.mem_sum / self.samples if self.samples else None

    def idle_for(self, now_s: int) -> float:
        """Seconds the GPU has stayed below the threshold (0 when busy)."""
        return 0.0 if self.idle_since_s is None else float(now_s - self.idle_since_s)

    def add(self, gpu: GpuSample, now_s: int, idle_util_pct: float) -> Usage:
        """This usage with one more sample of the reserved GPU taken in."""
        if gpu.utilization_pct is None:
            return self  # the driver could not say: neither busy nor idle
        idle = gpu.utilization_pct < idle_util_pct
        since = (self.idle_since_s if self.idle_since_s is not None else now_s) if idle else None
        return replace(
            self,
            samples=self.samples + 1,
            util_sum=self.util_sum + gpu.utilization_pct,
            mem_sum=self.mem_sum + (gpu.memory_used_mib or 0.0),
            last_s=now_s,
            idle_since_s=since,
        )


class UsageTable:
    """``reservation_usage`` rows in and out, as :class:`Usage` values."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def load(self, reservation_ids: Iterable[int]) -> dict[int, Usage]:
        ids = list(reservation_ids)
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(U).where(U.c.reservation_id.in_(ids)))).all()
        return {
            r.reservation_id: Usage(
                r.reservation_id, r.samples, r.util_sum, r.mem_sum, r.last_s, r.idle_since_s
            )
            for r in rows
        }

    async def save(self, usages: Iterable[Usage]) -> None:
        """Write these rows (update, else insert), all in one transaction."""
        items = list(usages)
        if not items:
            return
        async with self.engine.connect() as raw:
            conn = await db.writing(raw)
            async with conn.begin():
                for u in items:
                    values = {
                        "samples": u.samples,
                        "util_sum": u.util_sum,
                        "mem_sum": u.mem_sum,
                        "last_s": u.last_s,
                        "idle_since_s": u.idle_since_s,
                    }
                    result = await conn.execute(
                        update(U).where(U.c.reservation_id == u.reservation_id).values(**values)
                    )
                    if result.rowcount == 0:
                        await conn.execute(
                            insert(U).values(reservation_id=u.reservation_id, **values)
                        )
