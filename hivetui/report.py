"""Snapshots as JSON (the documented schema) and as a plain text table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hivetui.model import GpuSample, HostSnapshot
from hivetui.safe_text import pad_cells, printable, width

SCHEMA_VERSION = 1


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def gpu_dict(gpu: GpuSample) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "utilization_pct": _round(gpu.utilization_pct),
        "memory_used_mib": _round(gpu.memory_used_mib),
        "memory_total_mib": _round(gpu.memory_total_mib),
        "temperature_c": _round(gpu.temperature_c),
        "power_w": _round(gpu.power_w, 2),
        "free": gpu.is_free,
        "processes": [
            {
                "pid": p.pid,
                "user": p.user,
                "gpu_memory_mib": _round(p.gpu_memory_mib),
                "command": p.command,
            }
            for p in gpu.processes
        ],
    }


def host_dict(snap: HostSnapshot) -> dict[str, Any]:
    load = snap.load
    return {
        "name": snap.name,
        "status": snap.status.value,
        "error": snap.error,
        "gpu_status": snap.gpu_availability.value,
        "gpu_error": snap.gpu_error,
        "cpu_pct": _round(load.cpu_pct) if load else None,
        "load1": load.load1 if load else None,
        "memory_used_mib": _round(load.mem_used_mib) if load else None,
        "memory_total_mib": _round(load.mem_total_mib) if load else None,
        "gpus": [gpu_dict(g) for g in snap.gpus],
    }


def to_json(snapshots: Sequence[HostSnapshot], taken_at: datetime | None = None) -> str:
    when = (taken_at or datetime.now(UTC)).isoformat(timespec="seconds")
    doc = {"schema": SCHEMA_VERSION, "taken_at": when, "hosts": [host_dict(s) for s in snapshots]}
    return json.dumps(doc, indent=2)


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns; every cell escaped with ``printable`` (hosts wrote them)."""
    safe = [[printable(cell) for cell in row] for row in rows]
    widths = [max(width(r[i]) for r in safe) for i in range(len(safe[0]))]
    return "\n".join(
        "  ".join(pad_cells(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in safe
    )


def gpus_table(snapshots: Sequence[HostSnapshot]) -> str:
    rows = [["HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "USERS"]]
    for snap in snapshots:
        problem = snap.error or (snap.gpu_error if not snap.gpus else None)
        if problem or not snap.gpus:
            # Online with GPUs and an error: rows were dropped as malformed; show the rest too.
            rows.append([snap.name, "-", f"{snap.status.value}: {problem or 'no GPUs'}"] + [""] * 5)
        for gpu in snap.gpus:
            mem = f"{_fmt(gpu.memory_used_mib)}/{_fmt(gpu.memory_total_mib)} MiB"
            users = ",".join(gpu.users) if gpu.processes else "free" if gpu.is_free else "-"
            rows.append(
                [
                    snap.name,
                    str(gpu.index),
                    gpu.name,
                    _fmt(gpu.utilization_pct, "%"),
                    mem,
                    _fmt(gpu.temperature_c, "C"),
                    _fmt(gpu.power_w, "W"),
                    users,
                ]
            )
    return text_table(rows)


def hosts_table(snapshots: Sequence[HostSnapshot]) -> str:
    rows = [["HOST", "STATUS", "GPUS", "FREE", "DETAIL"]]
    for snap in snapshots:
        detail = snap.error or snap.gpu_error or ""
        rows.append(
            [
                snap.name,
                snap.status.value,
                str(len(snap.gpus)),
                str(snap.free_gpus),
                detail,
            ]
        )
    return text_table(rows)
