"""Command line: starts the TUI or runs a one-shot command over the same core."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from platformdirs import user_log_path

from hivetui import __version__, reserve_cli
from hivetui.booking import ReservationStore
from hivetui.config import (
    Config,
    ConfigError,
    LoadedConfig,
    load_config,
    resolve_config_path,
    write_starter_config,
)
from hivetui.core import open_store
from hivetui.db import DatabaseError
from hivetui.guard import Guard
from hivetui.hosts import build_fleet
from hivetui.masking import mask_secrets
from hivetui.model import HostSnapshot
from hivetui.report import gpus_table, hosts_table, to_json
from hivetui.safe_text import PrintableFormatter, stderr_handler

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_BUG = 70  # sysexits' EX_SOFTWARE: an error hivetui did not expect
EXIT_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cat` when `head` stops reading


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hivetui",
        description="Watch and share the NVIDIA GPUs of many hosts, over SSH.",
    )
    parser.add_argument("--version", action="version", version=f"hivetui {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $HIVETUI_CONFIG, else ~/.config/hivetui/config.toml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tui", help="the full-screen dashboard (the default)")

    gpus = sub.add_parser("gpus", help="one snapshot of every GPU of every host")
    gpus.add_argument("--json", action="store_true", help="print JSON (schema in the README)")
    gpus.add_argument("--timeout", type=float, default=None, help="seconds to wait per host")

    hosts = sub.add_parser("hosts", help="connection status of each host")
    hosts.add_argument("--json", action="store_true", help="print JSON")
    hosts.add_argument("--timeout", type=float, default=None, help="seconds to wait per host")

    config = sub.add_parser("config", help="create, check or locate the config file")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    init = config_sub.add_parser("init", help="write a commented starter config")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    config_sub.add_parser("check", help="validate the config without connecting")
    config_sub.add_parser("path", help="print where the config is read from")
    reserve_cli.add_parsers(sub)
    sub.add_parser(
        "agent",
        help="run headless: follow the hosts, guard reservations, warn intruders",
    )
    return parser


def log_file() -> Path:
    """Where the TUI logs, and where every command writes a traceback it did not expect."""
    return user_log_path("hivetui") / "hivetui.log"


def _file_handler() -> logging.Handler | None:
    try:
        log_file().parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file())
    except OSError:
        return None
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def _setup_logging(to_file: bool, level: int | None = None) -> None:
    """Log to a file: a TUI must never get log lines or tracebacks on its screen."""
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    # Alembic's "Context impl SQLiteImpl." and "Will assume ..." are for its own CLI.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not to_file:
        logging.basicConfig(
            level=level or logging.ERROR, handlers=[stderr_handler("hivetui: %(message)s")]
        )
        return
    handler = _file_handler() or logging.NullHandler()
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _one_shot(loaded: LoadedConfig, as_json: bool, timeout: float | None, hosts: bool) -> int:
    config = loaded.config
    fleet = build_fleet(config)
    wait = timeout if timeout is not None else config.ssh.connect_timeout

    async def take() -> list[HostSnapshot]:
        try:
            return await fleet.sweep(wait)
        finally:
            await fleet.stop()

    snaps = asyncio.run(take())
    if as_json:
        print(to_json(snaps))
    else:
        print(hosts_table(snaps) if hosts else gpus_table(snaps))
    return EXIT_OK


def _config_command(args: argparse.Namespace) -> int:
    path, _ = resolve_config_path(args.config)
    if args.config_command == "path":
        print(path)
        return EXIT_OK
    if args.config_command == "init":
        write_starter_config(Path(path), force=args.force)
        print(f"wrote {path}")
        return EXIT_OK
    loaded = load_config(args.config)
    where = loaded.path or "built-in defaults (no config file)"
    count = len(loaded.config.effective_hosts)
    print(f"{where}: OK, {count} host{'s' if count != 1 else ''}")
    return EXIT_OK


async def _open_store_for_tui(config: Config) -> ReservationStore:
    store = await open_store(config)
    # The app runs its own event loop: leave no pooled connection bound to this one.
    await store.engine.dispose()
    return store


def _run_tui(loaded: LoadedConfig) -> int:
    from hivetui.app import make_app

    config = loaded.config
    fleet = build_fleet(config)
    store: ReservationStore | None = None
    notice = None
    try:
        store = asyncio.run(_open_store_for_tui(config))
    except DatabaseError as exc:
        notice = f"reservations are off: {exc}"
    guard = None
    if store is not None and config.protection.enabled and config.protection.warn_from_tui:
        guard = Guard(fleet, store, config.protection, command_timeout=config.ssh.command_timeout)
    idle = config.protection.idle_minutes
    make_app(fleet, store=store, notice=notice, guard=guard, idle_minutes=idle).run()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The ``hivetui`` command: its exit status. Never shows a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        return _pipe_closed()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _unexpected(exc)
    return code


def _pipe_closed() -> int:
    """The reader of our output went away (`| head`): stop quietly, as Unix tools do."""
    # Python would flush stdout again at exit and complain about the closed pipe.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE


def _unexpected(exc: Exception) -> int:
    """One line on stderr; the traceback goes to the log file, never to the screen."""
    log = logging.getLogger("hivetui")
    handler = _file_handler()
    if handler is not None:
        log.addHandler(handler)
    try:
        log.propagate = False  # not to a stderr handler
        log.error("unexpected error", exc_info=exc)
    finally:
        log.propagate = True
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
    what = mask_secrets(str(exc).splitlines()[0][:200] if str(exc) else "")
    where = f"the traceback is in {log_file()}" if handler else "and the log cannot be written"
    print(
        f"hivetui: unexpected error: {type(exc).__name__}{': ' + what if what else ''} "
        f"({where}; please report it)",
        file=sys.stderr,
    )
    return EXIT_BUG


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "tui"
    _setup_logging(to_file=command == "tui", level=logging.INFO if command == "agent" else None)
    try:
        if command == "config":
            return _config_command(args)
        loaded = load_config(args.config)
        if command in ("gpus", "hosts"):
            if args.timeout is not None and args.timeout <= 0:
                print("hivetui: --timeout must be more than 0 seconds", file=sys.stderr)
                return EXIT_CONFIG
            return _one_shot(loaded, args.json, args.timeout, hosts=command == "hosts")
        if command in ("reserve", "db"):
            return reserve_cli.run(args, loaded)
        if command == "agent":
            from hivetui.agent import main_agent

            return main_agent(loaded.config)
        return _run_tui(loaded)
    except ConfigError as exc:
        print(f"hivetui: config error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
