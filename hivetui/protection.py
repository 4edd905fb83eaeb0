"""Reserved GPUs are protected: who is running where they should not. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hivetui.model import GpuProcess, HostSnapshot
from hivetui.reservations import Reservation


@dataclass(frozen=True, slots=True)
class Violation:
    """A process of ``intruder`` on a GPU that ``reservation`` gives to someone else."""

    reservation: Reservation
    host: str
    gpu_index: int
    process: GpuProcess

    @property
    def intruder(self) -> str:
        return self.process.user or "?"

    @property
    def key(self) -> tuple[str, int, str]:
        """One warning stream per intruder per GPU (rate limits count by this)."""
        return (self.host, self.gpu_index, self.intruder)

    def describe(self) -> str:
        res = self.reservation
        return (
            f"{self.intruder} runs pid {self.process.pid} ({self.process.command[:80]}) on "
            f"{self.host}:{self.gpu_index}, reserved by {res.user} until "
            f"{res.end.astimezone():%a %H:%M} (reservation {res.id})"
        )


def violations(
    snapshots: Iterable[HostSnapshot], active: Mapping[str, Reservation]
) -> list[Violation]:
    """Every process on a GPU reserved now by someone other than its owner.

    ``active`` maps GPU uuid to the reservation holding it now. A process whose
    owner cannot be seen (another PID namespace) counts: the GPU is not the
    holder's to share.
    """
    found: list[Violation] = []
    for snap in snapshots:
        for gpu in snap.gpus:
            res = active.get(gpu.uuid)
            if res is None:
                continue
            found.extend(
                Violation(res, snap.name, gpu.index, proc)
                for proc in gpu.processes
                if proc.user != res.user
            )
    return found
