"""Deterministic fleets for the TUI tests: fixed times, fixed values, no collectors.

Tests reach the helpers through the ``tui`` fixture rather than importing this
module, so they work whatever import mode pytest runs in.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from hivetui.app import HiveApp, make_app
from hivetui.fleet import Fleet
from hivetui.model import (
    GpuAvailability,
    GpuProcess,
    GpuSample,
    HostLoad,
    HostSnapshot,
    HostStatus,
)

T0 = 1_700_000_000.0  # first reading
STEPS = 180  # three minutes of history, one reading a second
NOW = T0 + STEPS  # the pinned clock: one second after the last reading
H100_MIB = 81559.0
BIG = "hopper-01"
OFFLINE = "volta-02"
NO_GPU = "cpu-03"

# GPU index -> (user, pid, GPU MiB, command) of its processes; absent: free GPU.
PROCESSES: dict[int, tuple[tuple[str, int, float, str], ...]] = {
    0: (
        ("alice", 4101, 40960.0, "python train.py --model llama"),
        ("alice", 4102, 2048.0, "python eval.py"),
    ),
    1: (("bob", 5120, 70000.0, "torchrun --nproc 1 finetune.py"),),
    3: (("alice", 4200, 10240.0, "jupyter-kernel"), ("bob", 5200, 20480.0, "python sweep.py")),
    4: (("alice", 4300, 60000.0, "python train.py --model vit"),),
    7: (("bob", 5300, 30000.0, "python serve.py"),),
}


def h100(index: int, step: int) -> GpuSample:
    """GPU ``index`` of the big host at ``step``: smooth, exactly repeatable values."""
    procs = tuple(
        GpuProcess(pid=pid, user=user, gpu_memory_mib=mib, command=cmd)
        for user, pid, mib, cmd in PROCESSES.get(index, ())
    )
    if not procs:
        return GpuSample(
            index,
            f"GPU-{index:08x}-0000-4000-8000-000000000000",
            "NVIDIA H100 80GB HBM3",
            0.0,
            512.0,
            H100_MIB,
            31.0,
            70.0,
        )
    wave = math.sin(step / 12.0 + index)
    util: float | None = float(round(60 + 35 * wave))
    if index == 0 and 100 <= step < 110:
        util = None  # a stretch of [N/A]: the chart must show a gap
    return GpuSample(
        index=index,
        uuid=f"GPU-{index:08x}-0000-4000-8000-000000000000",
        name="NVIDIA H100 80GB HBM3",
        utilization_pct=util,
        memory_used_mib=sum(p.gpu_memory_mib or 0.0 for p in procs) + 512.0,
        memory_total_mib=H100_MIB,
        temperature_c=float(round(55 + 15 * wave)),
        power_w=None if index == 7 else float(round(400 + 250 * wave)),
        processes=procs,
    )


def big_host(step: int = STEPS - 1) -> HostSnapshot:
    return HostSnapshot(
        name=BIG,
        status=HostStatus.ONLINE,
        gpu_availability=GpuAvailability.OK,
        gpus=tuple(h100(i, step) for i in range(8)),
        load=HostLoad(
            cpu_pct=42.0, load1=12.5, mem_total_mib=2_063_000.0, mem_available_mib=1_500_000.0
        ),
        updated_at=T0 + step,
    )


def offline_host() -> HostSnapshot:
    return HostSnapshot(
        name=OFFLINE,
        status=HostStatus.OFFLINE,
        error="connection refused",
        updated_at=T0 + STEPS - 1,
    )


def no_gpu_host() -> HostSnapshot:
    return HostSnapshot(
        name=NO_GPU,
        status=HostStatus.ONLINE,
        gpu_availability=GpuAvailability.NO_GPU,
        load=HostLoad(cpu_pct=3.0, load1=0.2, mem_total_mib=64_000.0, mem_available_mib=60_000.0),
        updated_at=T0 + STEPS - 1,
    )


def filled_fleet(steps: int = STEPS) -> Fleet:
    """The three hosts, with ``steps`` seconds of history for the big one."""
    fleet = Fleet([])
    for step in range(steps):
        fleet.record(big_host(step))
    fleet.record(offline_host())
    fleet.record(no_gpu_host())
    return fleet


def quiet_app(fleet: Fleet) -> HiveApp:
    """The app as the CLI builds it, minus collectors and the wall clock."""
    return make_app(fleet, start_fleet=False, show_clock=False, clock=lambda: NOW)


def screen_text(app: HiveApp) -> str:
    """What the terminal shows, as plain text (from the SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def with_gpu(snap: HostSnapshot, gpu: GpuSample, at: float) -> HostSnapshot:
    """``snap`` with one GPU replaced, read at ``at``."""
    gpus = tuple(gpu if g.index == gpu.index else g for g in snap.gpus)
    return replace(snap, gpus=gpus, updated_at=at)


@dataclass(frozen=True)
class TuiData:
    """The helpers above, handed to tests as one fixture."""

    big: str = BIG
    offline: str = OFFLINE
    no_gpu: str = NO_GPU
    t0: float = T0
    steps: int = STEPS
    now: float = NOW
    h100: Callable[[int, int], GpuSample] = h100
    big_host: Callable[[int], HostSnapshot] = big_host
    with_gpu: Callable[[HostSnapshot, GpuSample, float], HostSnapshot] = with_gpu
    filled_fleet: Callable[[int], Fleet] = filled_fleet
    quiet_app: Callable[[Fleet], HiveApp] = quiet_app
    screen_text: Callable[[HiveApp], str] = screen_text


@pytest.fixture
def tui() -> TuiData:
    return TuiData()


@pytest.fixture
def fleet() -> Fleet:
    return filled_fleet()


@pytest.fixture
def app(fleet: Fleet) -> HiveApp:
    return quiet_app(fleet)
