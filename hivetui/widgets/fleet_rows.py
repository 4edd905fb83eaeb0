"""Rows of the fleet table, built from host snapshots: one per host, one per GPU.

Pure functions and values only, so the dashboard can rebuild rows for the
hosts that changed and the table can update only the cells that differ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hivetui.model import GpuAvailability, GpuSample, HostSnapshot, HostStatus
from hivetui.protection import violations
from hivetui.reservations import Reservation
from hivetui.safe_text import printable
from hivetui.safe_text import width as cell_width
from hivetui.widgets.cells import (
    DASH,
    EMPTY,
    Cell,
    bar,
    fit,
    host_memory_text,
    memory_text,
    number,
    short_gpu_name,
)

log = logging.getLogger(__name__)

_PAD = 2  # DataTable puts one blank cell on each side of every column
_NAME_MAX = 24
_STATE_MIN = 28  # enough for "offline: connection refused"
_STATE_MAX = 44
_UTIL_SHORT, _UTIL_MIN, _UTIL_MAX = 8, 14, 36  # the bar and " 100%"
_MEM_TEXT = 10  # "140.2/141G"
_MEM_BAR_SHORT, _MEM_BAR_MIN, _MEM_BAR_MAX = 2, 4, 20  # no bar below the shortest


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of the fleet table: its key, header label and width in cells."""

    key: str
    label: str
    width: int


@dataclass(frozen=True, slots=True)
class TableLayout:
    """Which columns fit, how wide, and how long the bars inside them are."""

    columns: tuple[ColumnSpec, ...]
    util_bar: int
    mem_bar: int

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(column.key for column in self.columns)


@dataclass(frozen=True, slots=True)
class TableRow:
    """A host row (``gpu_index`` None) or a GPU row, with one cell per layout column."""

    key: str
    host: str
    gpu_index: int | None
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class GpuMark:
    """A GPU reserved now: by whom, whether by me, and who runs on it uninvited."""

    holder: str
    mine: bool
    intruders: tuple[str, ...] = ()


GpuMarks = Mapping[str, GpuMark]  # by GPU uuid
NO_MARKS: GpuMarks = {}


def gpu_marks(
    snapshots: Iterable[HostSnapshot], active: Mapping[str, Reservation], me: str
) -> dict[str, GpuMark]:
    """Marks for every GPU reserved now, with the intruders ``protection`` finds."""
    if not active:
        return {}
    intruders: dict[str, list[str]] = {}
    for found in violations(snapshots, active):
        names = intruders.setdefault(found.reservation.gpu.uuid, [])
        if found.intruder not in names:
            names.append(found.intruder)
    return {
        uuid: GpuMark(res.user, res.user == me, tuple(intruders.get(uuid, ())))
        for uuid, res in active.items()
    }


# Optional columns, most important first: (key, label, width).
_OPTIONAL = (
    ("mem", "Memory", None),
    ("temp", "Temp", 5),
    ("power", "Power", 5),
    ("procs", "Procs", 5),
)


def gpu_row_key(host: str, index: int) -> str:
    return f"{host}/{index}"


def gpu_label(gpu: GpuSample) -> str:
    return f"  {gpu.index} {short_gpu_name(printable(gpu.name))}"


def host_state(snap: HostSnapshot) -> Cell:
    """What the host's connection and driver say, coloured by how bad it is."""
    status, error = snap.status, None if snap.error is None else printable(snap.error)
    if status is HostStatus.ONLINE:
        cell = _online_state(snap)
        # Online with an error: part of its output was dropped as malformed.
        same = error is None or error == printable(snap.gpu_error or "")
        return cell if same else Cell((*cell.parts, (f" · {error}", "yellow")))
    if status is HostStatus.CONNECTING:
        return Cell.of("connecting…" + (f" ({error})" if error else ""), "dim")
    key_trouble = status in (HostStatus.HOST_KEY_UNKNOWN, HostStatus.HOST_KEY_CHANGED)
    style = "yellow" if key_trouble else "red"  # a revoked key is red: never to be trusted
    return Cell.of(f"{status.value}: {error}" if error else status.value, style)


def _online_state(snap: HostSnapshot) -> Cell:
    avail = snap.gpu_availability
    if avail is GpuAvailability.NO_GPU:
        return Cell((("online", "green"), (" · no NVIDIA GPU", "yellow")))
    if avail is GpuAvailability.ERROR:
        said = printable(snap.gpu_error or "?")
        return Cell((("online", "green"), (f" · GPU error: {said}", "yellow")))
    if avail is GpuAvailability.UNKNOWN and not snap.gpus:
        return Cell((("online", "green"), (" · reading GPUs…", "dim")))
    free = f" · {snap.free_gpus}/{len(snap.gpus)} GPUs free"
    return Cell((("online", "green"), (free, "bold green" if snap.free_gpus else "")))


def no_gpu_reason(snap: HostSnapshot) -> str | None:
    """Why ``snap`` shows no GPU; None when it has some or is still being asked."""
    if snap.gpus or snap.status is HostStatus.CONNECTING:
        return None
    name = printable(snap.name)
    if not snap.status.is_up:
        return f"{name} is {snap.status.value}"
    avail = snap.gpu_availability
    if avail is GpuAvailability.UNKNOWN:
        return None
    if avail is GpuAvailability.ERROR:
        return f"{name}: its GPUs cannot be read ({printable(snap.gpu_error or 'GPU error')})"
    return f"{name} has no NVIDIA GPU"


def fleet_no_gpu_note(snapshots: Sequence[HostSnapshot], most: int = 3) -> str:
    """Why the fleet shows no GPU at all: the first few hosts' reasons."""
    if not snapshots:
        return "no GPU to show: no hosts in the config"
    reasons = [reason for snap in snapshots if (reason := no_gpu_reason(snap))]
    if len(reasons) < len(snapshots):
        return "no GPU yet: reading the hosts' GPUs…"
    more = f"; {len(reasons) - most} more hosts without one" if len(reasons) > most else ""
    return "no GPU to book: " + "; ".join(reasons[:most]) + more


def gpu_state(gpu: GpuSample, mark: GpuMark | None = None) -> Cell:
    """Green ``free``, or the users of a busy GPU; reservations and intruders first."""
    if gpu.is_free:
        usage = Cell.of("free", "bold green")
    else:
        users = [printable(user) for user in gpu.users]
        usage = Cell.of(", ".join(users) if users else "busy", "yellow")
    if mark is None:
        return usage
    holder = printable(mark.holder)
    if mark.intruders:
        whose = "my" if mark.mine else f"{holder}'s"
        intruders = ", ".join(printable(name) for name in mark.intruders)
        return Cell.of(f"⚠ {intruders} on {whose} GPU", "bold red")
    label = ("mine", "bold cyan") if mark.mine else (f"reserved: {holder}", "magenta")
    return Cell((label, (" · ", "dim"), *usage.parts))


def choose_layout(width: int, snapshots: Sequence[HostSnapshot]) -> TableLayout:
    """Fit the most important columns into ``width`` cells, shrinking bars before hiding any.

    Bars are worth less than columns: a narrow terminal first gets short bars
    (Util down to a few cells, Memory as text alone), and only then loses
    columns, least important first. Room left over goes to the State text, the
    bars' usual lengths, then longer bars.
    """
    name_w = min(
        max(
            [len("Host / GPU")]
            + [cell_width(printable(s.name)) for s in snapshots]
            + _gpu_label_widths(snapshots)
        ),
        _NAME_MAX,
    )
    state_content = max([len("State")] + [cell_width(host_state(s).plain) for s in snapshots])
    state_content = max(state_content, 9)  # "bob, carol"
    state_min = min(state_content, _STATE_MIN)
    used = name_w + _PAD + state_min + _PAD + _UTIL_SHORT + _PAD
    optional: list[ColumnSpec] = []
    for key, label, fixed in _OPTIONAL:
        col_w = fixed if fixed is not None else _MEM_TEXT
        if used + col_w + _PAD > width:
            break  # keep the order of importance: never show Temp without Memory
        optional.append(ColumnSpec(key, label, col_w))
        used += col_w + _PAD
    has_mem = any(col.key == "mem" for col in optional)
    spare = max(width - used, 0)
    state_w = min(state_content, state_min + spare, _STATE_MAX)
    spare -= state_w - state_min
    # Back to the usual lengths: Util first, then a Memory bar (with its space).
    util_w = _UTIL_SHORT + min(spare, _UTIL_MIN - _UTIL_SHORT)
    spare -= util_w - _UTIL_SHORT
    mem_bar = 0
    if has_mem and spare >= 1 + _MEM_BAR_SHORT:
        mem_bar = min(spare - 1, _MEM_BAR_MIN)
        spare -= 1 + mem_bar
    if util_w == _UTIL_MIN and (mem_bar == _MEM_BAR_MIN or not has_mem):
        util_extra = min(spare // 2 if has_mem else spare, _UTIL_MAX - _UTIL_MIN)
        util_w += util_extra
        if has_mem:
            mem_bar = min(mem_bar + spare - util_extra, _MEM_BAR_MAX)
    mem_w = _MEM_TEXT + (1 + mem_bar if mem_bar else 0)
    optional = [
        ColumnSpec("mem", col.label, mem_w) if col.key == "mem" else col for col in optional
    ]
    columns = (
        ColumnSpec("name", "Host / GPU", name_w),
        ColumnSpec("state", "State", state_w),
        ColumnSpec("util", "Util", util_w),
        *optional,
    )
    return TableLayout(columns, util_bar=util_w - 5, mem_bar=mem_bar)


def _gpu_label_widths(snapshots: Iterable[HostSnapshot]) -> list[int]:
    return [cell_width(gpu_label(gpu)) for snap in snapshots for gpu in snap.gpus]


def matches(
    snap: HostSnapshot, gpu: GpuSample | None, query: str, mark: GpuMark | None = None
) -> bool:
    """Case-insensitive substring match on host name, GPU name, users or holder."""
    if not query or query in snap.name.lower():
        return True
    if gpu is None:
        return False
    if mark is not None and query in mark.holder.lower():
        return True
    return query in gpu.name.lower() or any(query in user.lower() for user in gpu.users)


def host_rows(
    snap: HostSnapshot, layout: TableLayout, query: str = "", marks: GpuMarks = NO_MARKS
) -> list[TableRow]:
    """The host's row and its GPU rows that match ``query`` (lower-case), in layout order.

    A bug in formatting one host must not take the screen down: the host row
    then says what went wrong and the others still show.
    """
    query = query.lower()
    try:
        gpus = [gpu for gpu in snap.gpus if matches(snap, gpu, query, marks.get(gpu.uuid))]
        if query and not gpus and not matches(snap, None, query):
            return []
        rows = [TableRow(snap.name, snap.name, None, _cells(layout, _host_cells(snap, layout)))]
        for gpu in gpus:
            cells = _cells(layout, _gpu_cells(gpu, layout, marks.get(gpu.uuid)))
            rows.append(TableRow(gpu_row_key(snap.name, gpu.index), snap.name, gpu.index, cells))
        return rows
    except Exception as exc:  # shown in the row, never as a traceback
        log.exception("cannot show host %s", snap.name)
        broken = {
            "name": Cell.of(snap.name, "bold"),
            "state": Cell.of(f"display error: {printable(str(exc))}", "red"),
        }
        return [TableRow(snap.name, snap.name, None, _cells(layout, broken))]


def _cells(layout: TableLayout, by_key: dict[str, Cell]) -> tuple[Cell, ...]:
    out: list[Cell] = []
    for column in layout.columns:
        cell = by_key.get(column.key, EMPTY)
        if len(cell.parts) == 1 and cell_width(cell.parts[0][0]) > column.width:
            text, style = cell.parts[0]  # names and states: cut with an ellipsis
            cell = Cell.of(fit(text, column.width), style)
        out.append(cell)
    return tuple(out)


def _host_cells(snap: HostSnapshot, layout: TableLayout) -> dict[str, Cell]:
    load = snap.load
    cells = {"name": Cell.of(printable(snap.name), "bold"), "state": host_state(snap)}
    if load is None:
        cells["util"] = Cell.of(DASH, "dim")
        cells["mem"] = Cell.of(DASH, "dim")
        return cells
    cpu = f"cpu {number(load.cpu_pct, '3.0f', '%')}"
    with_load = f"{cpu} ld {number(load.load1, '.1f')}"
    cells["util"] = Cell.of(with_load if len(with_load) <= layout.util_bar + 5 else cpu)
    mem = host_memory_text(load.mem_used_mib, load.mem_total_mib).rjust(_MEM_TEXT)
    cells["mem"] = _mem_cell(mem, load.mem_pct, layout)
    cells["procs"] = Cell.of(f"{sum(len(g.processes) for g in snap.gpus):>5}", "dim")
    return cells


def _gpu_cells(gpu: GpuSample, layout: TableLayout, mark: GpuMark | None) -> dict[str, Cell]:
    util = number(gpu.utilization_pct, "3.0f", "%").rjust(4)
    mem = memory_text(gpu.memory_used_mib, gpu.memory_total_mib, 1).rjust(_MEM_TEXT)
    return {
        "name": Cell.of(gpu_label(gpu)),
        "state": gpu_state(gpu, mark),
        "util": Cell((*bar(gpu.utilization_pct, layout.util_bar), (" " + util, ""))),
        "mem": _mem_cell(mem, gpu.memory_pct, layout),
        "temp": Cell.of(number(gpu.temperature_c, ".0f", "°C").rjust(5)),
        "power": Cell.of(number(gpu.power_w, ".0f", "W").rjust(5)),
        "procs": Cell.of(f"{len(gpu.processes):>5}" if gpu.processes else f"{DASH:>5}", "dim"),
    }


def _mem_cell(text: str, pct: float | None, layout: TableLayout) -> Cell:
    if not layout.mem_bar:  # a narrow terminal: the numbers alone
        return Cell.of(text)
    return Cell(((text + " ", ""), *bar(pct, layout.mem_bar)))


class RowCache:
    """Rows per host, rebuilt only for hosts whose snapshot object changed.

    Snapshots are immutable and replaced on every reading, so identity says
    whether anything changed; with hundreds of hosts most are unchanged per tick.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[HostSnapshot, TableLayout, str, object, list[TableRow]]] = {}

    def build(
        self,
        snapshots: Sequence[HostSnapshot],
        layout: TableLayout,
        query: str,
        marks: GpuMarks = NO_MARKS,
    ) -> list[TableRow]:
        out: list[TableRow] = []
        fresh: dict[str, tuple[HostSnapshot, TableLayout, str, object, list[TableRow]]] = {}
        for snap in snapshots:
            cached = self._rows.get(snap.name)
            host_marks = tuple(marks.get(gpu.uuid) for gpu in snap.gpus) if marks else ()
            if (
                cached
                and cached[0] is snap
                and cached[1] == layout
                and cached[2] == query
                and cached[3] == host_marks
            ):
                rows = cached[4]
            else:
                rows = host_rows(snap, layout, query, marks)
            fresh[snap.name] = (snap, layout, query, host_marks, rows)
            out.extend(rows)
        self._rows = fresh
        return out
