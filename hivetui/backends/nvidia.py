"""Build ``nvidia-smi`` command lines and read what real drivers print.

Pure functions over text: no I/O here, so every quirk seen on real machines
(``[N/A]``, ``[Not Supported]``, "No devices were found", names with spaces,
error text on stdout) is unit-tested against captured output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hivetui.model import GpuAvailability

# The name goes last so that no comma inside it can shift the other columns.
GPU_FIELDS = (
    "index",
    "uuid",
    "utilization.gpu",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
    "name",
)
# Only fields the driver writes: a process name is chosen by whoever starts the
# process, may hold newlines and commas, and nvidia-smi prints it unescaped. Names
# come from /proc on the host instead (see backends/probe.py).
APP_FIELDS = ("gpu_uuid", "pid", "used_gpu_memory")
# nvidia-smi's names, asked only for PIDs that /proc does not show, and read as hex.
NAME_FIELDS = ("pid", "process_name")

CSV_FORMAT = "--format=csv,noheader,nounits"


def gpu_query_argv(loop_ms: int | None = None) -> list[str]:
    """``nvidia-smi`` arguments for the GPU table, optionally as a streaming loop."""
    argv = ["nvidia-smi", "--query-gpu=" + ",".join(GPU_FIELDS), CSV_FORMAT]
    if loop_ms is not None:
        argv.append(f"--loop-ms={loop_ms}")
    return argv


def apps_query_argv() -> list[str]:
    """``nvidia-smi`` arguments for the compute processes of every GPU."""
    return ["nvidia-smi", "--query-compute-apps=" + ",".join(APP_FIELDS), CSV_FORMAT]


def names_query_argv() -> list[str]:
    """``nvidia-smi`` arguments for each compute process's PID and name (raw text)."""
    return ["nvidia-smi", "--query-compute-apps=" + ",".join(NAME_FIELDS), CSV_FORMAT]


class NvidiaOutputError(ValueError):
    """nvidia-smi printed something that is not the CSV we asked for."""


@dataclass(frozen=True, slots=True)
class GpuRow:
    index: int
    uuid: str
    name: str
    utilization_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    temperature_c: float | None
    power_w: float | None


@dataclass(frozen=True, slots=True)
class AppRow:
    gpu_uuid: str
    pid: int
    used_memory_mib: float | None


def _number(value: str, field_name: str, line: str) -> float | None:
    """A numeric CSV value, or ``None`` for the tokens drivers use for "cannot say"."""
    value = value.strip()
    if not value or value == "N/A" or (value.startswith("[") and value.endswith("]")):
        return None
    # Values carry a unit after a space when ``nounits`` was not honoured.
    head = value.split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        raise NvidiaOutputError(
            f"nvidia-smi gave {value!r} for {field_name} in line {line.strip()!r}"
        ) from None


def parse_gpu_line(line: str) -> GpuRow:
    """One ``--query-gpu`` row in :data:`GPU_FIELDS` order."""
    parts = line.rstrip("\r\n").split(", ", len(GPU_FIELDS) - 1)
    if len(parts) != len(GPU_FIELDS):
        raise NvidiaOutputError(f"unexpected nvidia-smi output: {line.strip()[:120]!r}")
    index_text, uuid, util, used, total, temp, power, name = parts
    try:
        index = int(index_text)
    except ValueError:
        raise NvidiaOutputError(f"unexpected nvidia-smi output: {line.strip()[:120]!r}") from None
    return GpuRow(
        index=index,
        uuid=uuid.strip(),
        name=name.strip(),
        utilization_pct=_number(util, "utilization.gpu", line),
        memory_used_mib=_number(used, "memory.used", line),
        memory_total_mib=_number(total, "memory.total", line),
        temperature_c=_number(temp, "temperature.gpu", line),
        power_w=_number(power, "power.draw", line),
    )


def parse_gpu_rows(lines: Iterable[str]) -> list[GpuRow]:
    """All rows of a one-shot ``--query-gpu`` answer; blank lines are ignored."""
    return [parse_gpu_line(line) for line in lines if line.strip()]


def parse_app_line(line: str) -> AppRow:
    """One ``--query-compute-apps`` row in :data:`APP_FIELDS` order."""
    parts = line.rstrip("\r\n").split(", ", len(APP_FIELDS) - 1)
    if len(parts) != len(APP_FIELDS):
        raise NvidiaOutputError(f"unexpected nvidia-smi output: {line.strip()[:120]!r}")
    uuid, pid_text, used = parts
    try:
        pid = int(pid_text)
    except ValueError:
        raise NvidiaOutputError(f"unexpected nvidia-smi output: {line.strip()[:120]!r}") from None
    return AppRow(
        gpu_uuid=uuid.strip(),
        pid=pid,
        used_memory_mib=_number(used, "used_gpu_memory", line),
    )


def parse_app_rows(lines: Iterable[str]) -> list[AppRow]:
    return [parse_app_line(line) for line in lines if line.strip()]


# Messages the driver prints (on stdout) instead of CSV, and what they mean for us.
_NO_GPU_MARKERS = (
    "No devices were found",
    "couldn't communicate with the NVIDIA driver",
    "No supported GPUs were found",
    "nvidia-smi: not found",
    "nvidia-smi: command not found",
)


def classify_failure(exit_status: int | None, output: str) -> tuple[GpuAvailability, str]:
    """Turn a failed ``nvidia-smi`` run into an availability and a message for people.

    Exit status 127 is the shell's "command not found": a host with no driver,
    which is a normal state, not an error.
    """
    text = output.strip()
    first = text.splitlines()[0].strip() if text else ""
    if exit_status == 127 or any(marker in text for marker in _NO_GPU_MARKERS):
        if exit_status == 127 or ("not found" in first.lower() and "nvidia-smi" in first):
            return GpuAvailability.NO_GPU, "no NVIDIA GPU (nvidia-smi not found)"
        return GpuAvailability.NO_GPU, f"no NVIDIA GPU ({first})"
    if "Driver/library version mismatch" in text:
        return (
            GpuAvailability.ERROR,
            "NVIDIA driver/library version mismatch: the host needs a reboot or a driver reload",
        )
    detail = first[:160] or "no output"
    return GpuAvailability.ERROR, f"nvidia-smi failed (exit {exit_status}): {detail}"
