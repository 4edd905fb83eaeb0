"""A host whose output was partly dropped as malformed says so, and still shows the rest."""

from __future__ import annotations

from hivetui.model import GpuAvailability, GpuSample, HostSnapshot, HostStatus
from hivetui.report import gpus_table
from hivetui.widgets.fleet_rows import host_state

GPU = GpuSample(
    index=0,
    uuid="GPU-a44622e3-2296-6285-0a86-84d0f6c67900",
    name="NVIDIA H100 80GB HBM3",
    utilization_pct=3.0,
    memory_used_mib=1.0,
    memory_total_mib=81559.0,
    temperature_c=30.0,
    power_w=70.0,
)
DROPPED = "malformed output from the host: 1 item dropped (user name 'x\x1b[2J' of uid 7)"
SNAP = HostSnapshot(
    "gpu01",
    HostStatus.ONLINE,
    error=DROPPED,
    gpu_availability=GpuAvailability.OK,
    gpus=(GPU,),
)


def test_dashboard_row_names_what_was_dropped() -> None:
    text = host_state(SNAP).to_text().plain
    assert "1/1 GPUs free" in text
    assert "malformed output from the host" in text and "\\x1b[2J" in text
    assert "\x1b" not in text


def test_gpus_table_shows_the_gpus_and_the_error() -> None:
    table = gpus_table([SNAP])
    assert "NVIDIA H100 80GB HBM3" in table
    assert "online: malformed output from the host" in table
    assert "\x1b" not in table


def test_an_error_the_gpu_line_already_says_is_not_repeated() -> None:
    too_large = "output too large: a line over 64 KiB (stopped)"
    snap = HostSnapshot(
        "gpu01",
        HostStatus.ONLINE,
        error=too_large,
        gpu_availability=GpuAvailability.ERROR,
        gpu_error=too_large,
    )
    assert host_state(snap).plain.count("output too large") == 1
