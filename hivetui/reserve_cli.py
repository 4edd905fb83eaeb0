"""``hivetui reserve ...`` and ``hivetui db ...``: reservations from the command line.

Same core as the TUI: :func:`hivetui.core.open_store` for the database, the
fleet for GPU uuids. Exit status: 0 done; 1 refused by the rules (the slot is
taken, not yours to change, over a limit, no free slot); 2 bad input (times,
hosts, GPUs, arguments), an unreachable host or an unusable database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.config import Config, HostConfig, LoadedConfig
from hivetui.core import current_user, open_store
from hivetui.hosts import build_fleet
from hivetui.model import GpuAvailability, HostSnapshot
from hivetui.report import text_table
from hivetui.reservations import (
    Conflict,
    GpuRef,
    LimitExceeded,
    NotAllowed,
    Reservation,
    ReservationError,
    cuda_visible_devices,
    gpus_in_use,
    in_use_note,
    plural,
)
from hivetui.safe_text import printable
from hivetui.timeparse import parse_duration, parse_when

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

WHEN_HELP = 'ISO 8601 or "now", "+2h", "tomorrow 9:00", "fri 14:30" (local time)'


class UsageError(Exception):
    """Bad input the user can fix: exit 2 with this message."""


def add_parsers(sub: Any) -> None:
    """The ``reserve`` and ``db`` subcommands, added to the main parser's subparsers."""
    reserve = sub.add_parser("reserve", help="book, list, edit and cancel GPU reservations")
    rsub = reserve.add_subparsers(dest="reserve_command", metavar="ACTION", required=True)

    add = rsub.add_parser("add", help="book GPUs of one host")
    add.add_argument("target", metavar="HOST:GPU[,GPU]", help="e.g. gpu01:0 or gpu01:0,1")
    _times(add, "start (default: now): ")
    add.add_argument("--title", default="", help="what the GPUs are for")
    _timeout(add)

    lst = rsub.add_parser("list", help="current and coming reservations")
    lst.add_argument("--mine", action="store_true", help="only mine")
    lst.add_argument("--json", action="store_true", help="print JSON (times in UTC)")
    lst.add_argument(
        "--all-hosts", action="store_true", help="hosts this config does not name, too"
    )

    cancel = rsub.add_parser("cancel", help="cancel a booking (every GPU booked with it)")
    cancel.add_argument("id", type=int, metavar="ID")
    _only_gpus(cancel, "cancel only these GPUs of the booking")

    edit = rsub.add_parser("edit", help="move, extend or retitle a booking (all its GPUs)")
    edit.add_argument("id", type=int, metavar="ID")
    _only_gpus(edit, "change only these GPUs: they become a booking of their own")
    _times(edit, "new start (the length is kept unless --to/--for): ")
    edit.add_argument("--title", default=None, help="the new title")

    free = rsub.add_parser("free", help="the earliest slot where N GPUs of one host are free")
    free.add_argument("--gpus", type=int, required=True, metavar="N", help="how many GPUs")
    free.add_argument("--hours", type=float, required=True, metavar="H", help="for how long")
    free.add_argument("--host", default=None, help="only this host")
    free.add_argument("--after", default=None, metavar="WHEN", help=f"not before: {WHEN_HELP}")
    free.add_argument("--book", action="store_true", help="book the slot found")
    free.add_argument("--title", default="", help="title of the booking (with --book)")
    _timeout(free)

    env = rsub.add_parser("env", help="print CUDA_VISIBLE_DEVICES=... for a booking's GPUs")
    env.add_argument("id", type=int, metavar="ID")

    dbp = sub.add_parser("db", help="the reservation database's schema")
    dsub = dbp.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    dsub.add_parser("upgrade", help="migrate the configured database to this release's schema")
    dsub.add_parser("status", help="the schema revision of the database and the one needed")


def _times(parser: argparse.ArgumentParser, start: str) -> None:
    parser.add_argument("--from", dest="start", metavar="WHEN", help=start + WHEN_HELP)
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--to", dest="end", metavar="WHEN", help=WHEN_HELP)
    until.add_argument("--for", dest="duration", metavar="DURATION", help="2h, 90m, 1d12h")


def _only_gpus(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--gpu", dest="gpus", metavar="N[,N]", default=None, help=help_text)


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for a host")


# -- entry points ---------------------------------------------------------------


def run(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """Run ``reserve ...`` or ``db ...``; print a message and return 1 or 2 on failure."""
    try:
        if args.command == "db":
            return asyncio.run(_db(args.db_command, loaded.config))
        return asyncio.run(_with_store(loaded.config, _RESERVE[args.reserve_command], args))
    except (Conflict, NotAllowed, LimitExceeded, NoSlot) as exc:
        print(f"hivetui: refused: {printable(str(exc))}", file=sys.stderr)
        return EXIT_REFUSED
    except (ReservationError, UsageError) as exc:
        print(f"hivetui: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except db.DatabaseError as exc:
        print(f"hivetui: database error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


class NoSlot(Exception):
    """``reserve free`` found nothing within the booking horizon."""


Handler = Callable[[ReservationStore, Config, argparse.Namespace], Awaitable[int]]


async def _with_store(config: Config, handler: Handler, args: argparse.Namespace) -> int:
    store = await open_store(config)
    try:
        return await handler(store, config, args)
    finally:
        await store.engine.dispose()


# -- reserve ----------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _when(text: str, flag: str, now: datetime) -> datetime:
    try:
        return parse_when(text, now)
    except ReservationError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None


def _length(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ReservationError as exc:
        raise UsageError(f"--for {text!r}: {exc}") from None


def _local(when: datetime) -> str:
    return f"{when.astimezone():%a %Y-%m-%d %H:%M %Z}"


def _describe(res: Sequence[Reservation]) -> str:
    """One line about a booking, escaped for the terminal (users and titles are data)."""
    return printable(_describe_raw(res))


def _describe_raw(res: Sequence[Reservation]) -> str:
    first = res[0]
    gpus = ",".join(str(r.gpu.index) for r in res)
    ids = ", ".join(str(r.id) for r in res)
    what = f" ({first.title})" if first.title else ""
    return (
        f"{first.gpu.host}:{gpus} for {first.user} from {_local(first.start)} to "
        f"{_local(first.end)}{what}: reservation{'s' if len(res) > 1 else ''} {ids}"
    )


def _parse_target(text: str) -> tuple[str, list[int]]:
    host, sep, gpus = text.rpartition(":")
    if not sep or not host or not gpus:
        raise UsageError(f"{text!r}: name the host and GPUs as HOST:GPU[,GPU], e.g. gpu01:0,1")
    return host, _indices(gpus, repr(text))


def _indices(text: str, where: str) -> list[int]:
    """``0,2`` or ``0-3`` as GPU indices, each once; ``where`` names the input in errors."""
    indices: list[int] = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise UsageError(f"{where}: {part!r} is not a GPU index (0, 1, 0-3)") from None
        if first < 0 or last < first:
            raise UsageError(f"{where}: {part!r} is not a GPU index (0, 1, 0-3)")
        indices.extend(i for i in range(first, last + 1) if i not in indices)
    return indices


def _only(args: argparse.Namespace) -> list[int] | None:
    return None if args.gpus is None else _indices(args.gpus, f"--gpu {args.gpus!r}")


def _host_config(config: Config, name: str) -> HostConfig:
    for host in config.effective_hosts:
        if host.name == name:
            return host
    names = ", ".join(h.name for h in config.effective_hosts)
    raise UsageError(f"no host {name!r} in the config (hosts: {names})")


async def _sweep(
    config: Config, hosts: Sequence[HostConfig], timeout: float | None
) -> list[HostSnapshot]:
    fleet = build_fleet(config.model_copy(update={"hosts": list(hosts)}))
    try:
        return await fleet.sweep(timeout if timeout is not None else config.ssh.connect_timeout)
    finally:
        await fleet.stop()


def _unbookable(snap: HostSnapshot) -> str | None:
    """Why the GPUs of ``snap`` cannot be booked (a phrase after "host NAME"), or None."""
    if not snap.status.is_up:
        return f"is {snap.status.value}" + (f": {snap.error}" if snap.error else "")
    if snap.gpu_availability is GpuAvailability.OK and snap.gpus:
        return None
    if snap.gpu_availability in (GpuAvailability.OK, GpuAvailability.NO_GPU):
        return "has no NVIDIA GPU" + (f" ({snap.gpu_error})" if snap.gpu_error else "")
    return f"did not list its GPUs: {snap.gpu_error or snap.gpu_availability.value}"


def _gpus_of(snap: HostSnapshot) -> list[GpuRef]:
    """The host's GPUs; a UsageError saying why when they cannot be read."""
    why = _unbookable(snap)
    if why is not None:
        raise UsageError(f"host {snap.name} {why}: nothing there can be booked now")
    return [GpuRef(snap.name, g.index, g.uuid) for g in snap.gpus]


def _check_timeout(args: argparse.Namespace) -> None:
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")


async def _add(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    _check_timeout(args)
    host_name, indices = _parse_target(args.target)
    now = _now()
    start = _when(args.start, "--from", now) if args.start is not None else now
    if args.end is not None:
        end = _when(args.end, "--to", now)
    elif args.duration is not None:
        end = start + _length(args.duration)
    else:
        raise UsageError("say until when: --to WHEN or --for DURATION")
    (snap,) = await _sweep(config, [_host_config(config, host_name)], args.timeout)
    by_index = {g.index: g for g in _gpus_of(snap)}
    missing = [i for i in indices if i not in by_index]
    if missing:
        have = ", ".join(str(i) for i in sorted(by_index))
        raise UsageError(
            f"host {host_name} has no GPU {', '.join(map(str, missing))} (it has {have})"
        )
    made = await store.add(current_user(), [by_index[i] for i in indices], start, end, args.title)
    print(f"booked {_describe(made)}")
    return EXIT_OK


def _as_json(res: Reservation) -> dict[str, Any]:
    return {
        "id": res.id,
        "booking_id": res.booking,
        "user": res.user,
        "host": res.gpu.host,
        "gpu_index": res.gpu.index,
        "gpu_uuid": res.gpu.uuid,
        "start": res.start.astimezone(UTC).isoformat(),
        "end": res.end.astimezone(UTC).isoformat(),
        "title": res.title,
        "created_at": res.created_at.astimezone(UTC).isoformat(),
    }


def _bookings(rows: Sequence[Reservation]) -> list[list[Reservation]]:
    """``rows`` grouped by booking, in the order each booking first appears."""
    grouped: dict[int, list[Reservation]] = {}
    for res in rows:
        grouped.setdefault(res.booking, []).append(res)
    return list(grouped.values())


def _gpu_list(booking: Sequence[Reservation]) -> str:
    hosts = dict.fromkeys(r.gpu.host for r in booking)
    return " ".join(
        f"{host}:" + ",".join(str(r.gpu.index) for r in booking if r.gpu.host == host)
        for host in hosts
    )


def _table(bookings: Sequence[Sequence[Reservation]]) -> str:
    head = ("ID", "USER", "GPU", "FROM", "TO", "TITLE")
    body = [
        (
            str(b[0].booking),
            b[0].user,
            _gpu_list(b),
            _local(b[0].start),
            _local(b[0].end),
            b[0].title,
        )
        for b in bookings
    ]
    return text_table([head, *body])


async def _list(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    hosts = None if args.all_hosts else [h.name for h in config.effective_hosts]
    user = current_user() if args.mine else None
    rows = await store.list_reservations(start=store.now(), user=user, hosts=hosts)
    if args.json:
        print(json.dumps({"schema": 1, "reservations": [_as_json(r) for r in rows]}, indent=2))
    elif rows:
        print(_table(_bookings(rows)))
    else:
        print("no current or coming reservations")
    return EXIT_OK


async def _cancel(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    gone = await store.cancel(args.id, current_user(), gpus=_only(args))
    print(f"cancelled {_describe(gone)}")
    return EXIT_OK


async def _edit(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    if args.start is None and args.end is None and args.duration is None and args.title is None:
        raise UsageError("nothing to change: give --from, --to, --for or --title")
    only = _only(args)
    res = await store.get(args.id)
    now = _now()
    start = _when(args.start, "--from", now) if args.start is not None else None
    end = None
    if args.end is not None:
        end = _when(args.end, "--to", now)
    elif args.duration is not None:
        end = (start or res.start) + _length(args.duration)
    elif start is not None:
        end = start + (res.end - res.start)  # a moved reservation keeps its length
    changed = await store.edit(
        args.id, current_user(), start=start, end=end, title=args.title, gpus=only
    )
    print(f"changed {_describe(changed)}")
    return EXIT_OK


async def _free(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    _check_timeout(args)
    if args.gpus < 1:
        raise UsageError("--gpus must be 1 or more")
    if args.hours <= 0:
        raise UsageError("--hours must be more than 0")
    after = _when(args.after, "--after", _now()) if args.after else None
    hosts = [_host_config(config, args.host)] if args.host is not None else config.effective_hosts
    snaps = await _sweep(config, hosts, args.timeout)
    gpus: list[GpuRef] = []
    for snap in snaps:
        why = _unbookable(snap)
        if why is not None and args.host is None:
            print(f"hivetui: skipping host {snap.name}, which {printable(why)}", file=sys.stderr)
            continue
        gpus += _gpus_of(snap)
    duration = timedelta(hours=args.hours)
    busy = gpus_in_use(snaps)
    slot = await store.find_free(gpus, args.gpus, duration, after=after, in_use=busy)
    if slot is None:
        where = f"on {args.host}" if args.host else "on one host"
        what = "no GPU" if args.gpus == 1 else f"no {args.gpus} GPUs"
        verb = "is free" if args.gpus == 1 else "are free together"
        raise NoSlot(
            f"{what} {where} {verb} for {args.hours:g} h within the next "
            f"{plural(store.limits.max_days_ahead, 'day')}"
        )
    gpu_list = ",".join(str(g.index) for g in slot.gpus)
    print(f"{slot.host}:{gpu_list} free from {_local(slot.start)} to {_local(slot.end)}")
    note = in_use_note(slot, busy)
    if note is not None:
        print(f"hivetui: note: {note}", file=sys.stderr)
    if args.book:
        made = await store.add(current_user(), slot.gpus, slot.start, slot.end, args.title)
        print(f"booked {_describe(made)}")
    return EXIT_OK


async def _env(store: ReservationStore, config: Config, args: argparse.Namespace) -> int:
    together = await store.booking(args.id)
    print(_assignment(cuda_visible_devices(sorted(together, key=lambda r: r.gpu.index))))
    return EXIT_OK


def _assignment(line: str) -> str:
    """``NAME=value`` with the value shell-quoted: ``reserve env`` is documented for eval.

    The uuids were checked on their way out of the database; quoting keeps the
    line inert in a shell even so.
    """
    name, _, value = line.partition("=")
    return f"{name}={shlex.quote(value)}"


_RESERVE: dict[str, Handler] = {
    "add": _add,
    "list": _list,
    "cancel": _cancel,
    "edit": _edit,
    "free": _free,
    "env": _env,
}


# -- db ---------------------------------------------------------------------------


async def _db(action: str, config: Config) -> int:
    url = config.database or db.default_database_url()
    safe = db.shown_url(url)
    engine = db.make_engine(url)
    try:
        before = await db.current_revision(engine)
        head = db.head_revision()
        if action == "status":
            print(f"database: {safe}")
            print(f"schema:   {before or 'none (empty database)'}")
            print(f"needed:   {head}")
            if before == head:
                print("up to date")
                return EXIT_OK
            print("run `hivetui db upgrade` to migrate it (rows are kept)")
            return EXIT_REFUSED
        await db.upgrade(engine)
        after = await db.current_revision(engine)
        if before == after:
            print(f"{safe}: already at {after}, nothing to do")
        else:
            print(f"{safe}: upgraded from {before or 'nothing'} to {after}")
        return EXIT_OK
    except db.DatabaseError:
        raise
    except Exception as exc:  # driver errors: refused, auth, unknown database, read-only
        raise db.DatabaseError(f"cannot use the database {safe}: {db.explain(exc)}") from None
    finally:
        await engine.dispose()
