"""Plain immutable values that the core hands to every front end.

Widgets, the CLI and the agent only ever see these: never asyncssh objects,
never raw command output.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HostStatus(StrEnum):
    """Where the connection to one host stands."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    AUTH_FAILED = "auth failed"
    HOST_KEY_UNKNOWN = "host key unknown"
    HOST_KEY_CHANGED = "host key changed"
    HOST_KEY_REVOKED = "host key revoked"  # marked @revoked in known_hosts

    @property
    def is_up(self) -> bool:
        return self is HostStatus.ONLINE


class GpuAvailability(StrEnum):
    """What the host's NVIDIA driver said, independent of the connection."""

    UNKNOWN = "unknown"  # not asked yet
    OK = "ok"
    NO_GPU = "no NVIDIA GPU"  # no nvidia-smi, no driver, or no devices
    ERROR = "error"  # nvidia-smi hung or printed something we could not read


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A compute process on one GPU, with its owner from the host's process table.

    ``start_time`` (clock ticks after the host's boot, field 22 of
    ``/proc/PID/stat``) and ``uid`` tell this process from a later one that
    reuses its PID; both are ``None`` where the host's /proc does not show the
    PID (another PID namespace). ``seen_at`` is when the host reported it.
    """

    pid: int
    user: str | None
    gpu_memory_mib: float | None
    command: str
    start_time: int | None = None
    uid: int | None = None
    seen_at: float = 0.0


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of one GPU. ``None`` means the driver could not say (``[N/A]``)."""

    index: int
    uuid: str
    name: str
    utilization_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    temperature_c: float | None
    power_w: float | None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_pct(self) -> float | None:
        if self.memory_used_mib is None or not self.memory_total_mib:
            return None
        return 100.0 * self.memory_used_mib / self.memory_total_mib

    @property
    def is_free(self) -> bool:
        """No compute process and (nearly) idle: anyone could start work here."""
        if self.processes:
            return False
        util_idle = self.utilization_pct is None or self.utilization_pct < 5
        mem = self.memory_pct
        mem_idle = mem is None or mem < 5
        return util_idle and mem_idle

    @property
    def users(self) -> tuple[str, ...]:
        """Owners of the processes on this GPU, each once, in order of first appearance."""
        seen: dict[str, None] = {}
        for proc in self.processes:
            seen.setdefault(proc.user or "?", None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class HostLoad:
    """CPU and memory of a host, read from ``/proc`` over the same connection."""

    cpu_pct: float | None
    load1: float
    mem_total_mib: float
    mem_available_mib: float

    @property
    def mem_used_mib(self) -> float:
        return self.mem_total_mib - self.mem_available_mib

    @property
    def mem_pct(self) -> float:
        return 100.0 * self.mem_used_mib / self.mem_total_mib if self.mem_total_mib else 0.0


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """Everything known about one host at one moment."""

    name: str
    status: HostStatus
    error: str | None = None
    gpu_availability: GpuAvailability = GpuAvailability.UNKNOWN
    gpu_error: str | None = None
    gpus: tuple[GpuSample, ...] = ()
    load: HostLoad | None = None
    updated_at: float = 0.0

    @property
    def free_gpus(self) -> int:
        return sum(1 for gpu in self.gpus if gpu.is_free)
