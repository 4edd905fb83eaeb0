"""Who you are, private files and the errors the README promises: the real ``hivetui``.

Each test runs the command in a subprocess against real files (SQLite, a real
PostgreSQL server) and checks what a person sees: a clear message, never a
traceback, never a password.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from hivetui import db
from hivetui.booking import ReservationStore
from hivetui.reservations import GpuRef
from tests.accounts import as_account
from tests.postgres import PostgresCluster
from tests.sshd import TestFleet, free_port

UUID = "GPU-a44622e3-2296-6285-0a86-84d0f6c67900"


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose config, data and log folders are all under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "HIVETUI_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), **extra)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_STATE_HOME"] = str(home / "state")
    return env


def hivetui(
    *args: str,
    env: dict[str, str],
    account: str | None = None,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hivetui", *args]
    return subprocess.run(
        as_account(account, argv) if account else argv,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env=env,
    )


def clean(result: subprocess.CompletedProcess[str]) -> str:
    """Its stderr, after checking that nothing in it is a traceback or internal noise."""
    err = result.stderr
    for noise in ("Traceback", "Exception ignored", "sqlalche.me", "Context impl", "Will assume"):
        assert noise not in err + (result.stdout or ""), err
    return err


def myself() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


async def booked_for(url: str, user: str) -> int:
    engine = db.make_engine(url)
    await db.upgrade(engine)
    store = ReservationStore(engine)
    start = store.now() + timedelta(hours=1)
    (res,) = await store.add(
        user, [GpuRef("localhost", 0, UUID)], start, start + timedelta(hours=2)
    )
    await engine.dispose()
    return res.id


async def live_ids(url: str) -> list[int]:
    engine = db.make_engine(url)
    rows = await ReservationStore(engine).list_reservations()
    await engine.dispose()
    return [r.id for r in rows]


# -- identity ------------------------------------------------------------------------


def test_logname_and_user_do_not_make_you_someone_else(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'team.db'}"
    config = tmp_path / "config.toml"
    config.write_text(f'database = "{url}"\n')
    victim = "hivetui-victim" if myself() != "hivetui-victim" else "hivetui-other"
    rid = asyncio.run(booked_for(url, victim))
    spoofed = home_env(tmp_path, LOGNAME=victim, USER=victim, LNAME=victim, USERNAME=victim)
    for args in (("cancel", str(rid)), ("edit", str(rid), "--title", "mine now")):
        result = hivetui("--config", str(config), "reserve", *args, env=spoofed)
        assert result.returncode == 1, result.stdout
        assert "refused" in clean(result) and victim in result.stderr
    assert asyncio.run(live_ids(url)) == [rid]
    mine = hivetui("--config", str(config), "reserve", "list", "--mine", "--json", env=spoofed)
    assert json.loads(mine.stdout)["reservations"] == []
    # The account itself (its uid) may cancel: identity is the uid's name.
    result = hivetui("--config", str(config), "reserve", "cancel", str(rid), env=spoofed,
                     account=victim)  # fmt: skip
    assert result.returncode == 0, clean(result)
    assert asyncio.run(live_ids(url)) == []


def test_admins_must_be_user_names(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('admins = ["alice", "root; rm -rf /"]\n')
    result = hivetui("--config", str(config), "config", "check", env=home_env(tmp_path))
    assert result.returncode == 2
    assert f"{config}:1: admins: 'root; rm -rf /' is not a user name" in clean(result)


# -- the default database: private, and clear errors when its folder is unusable --------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_database_and_folder_are_private(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    folder = tmp_path / "data" / "hivetui"
    result = hivetui("reserve", "list", env=env)
    assert result.returncode == 0, clean(result)
    assert mode(folder) == 0o700 and mode(folder / "hivetui.db") == 0o600
    # Made by an older hivetui (or by hand) with the umask's modes: tightened on start.
    folder.chmod(0o755)
    for name in ("hivetui.db", "hivetui.db-wal", "hivetui.db-shm"):
        if (folder / name).exists():
            (folder / name).chmod(0o644)
    result = hivetui("reserve", "list", env=env)
    assert result.returncode == 0, clean(result)
    assert mode(folder) == 0o700
    for path in folder.iterdir():
        assert mode(path) == 0o600, path


def test_data_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hivetui").write_text("not a folder")
    env = home_env(tmp_path)
    for args in (("reserve", "list"), ("db", "upgrade"), ("db", "status")):
        result = hivetui(*args, env=env)
        assert result.returncode == 2, args
        assert "is a file, not a folder" in clean(result)
        assert str(tmp_path / "data" / "hivetui") in result.stderr
    agent = hivetui("agent", env=env)
    assert agent.returncode == 1 and "is a file, not a folder" in clean(agent)


def test_data_folder_that_is_not_writable(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o555)
    env = home_env(tmp_path)
    # Run as another account (in a user namespace, without capabilities) so that the
    # mode binds even when the tests run as root.
    other = "nobody" if os.getuid() == 0 else myself()
    result = hivetui("reserve", "list", env=env, account=other)
    assert result.returncode == 2
    err = clean(result)
    assert f"cannot create the folder {tmp_path / 'data' / 'hivetui'}" in err
    assert "not writable" in err and "database" in err


# -- database URLs ------------------------------------------------------------------


def test_database_url_errors_name_the_line_and_hide_the_password(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    cases = {
        "postgresql://hive:s3cret@db.example:five432/team": "the port 'five432' is not a number",
        "nonsense": "not a database URL",
        "mysql://hive:s3cret@db.example/team": "hivetui keeps reservations in SQLite or",
    }
    for url, message in cases.items():
        config.write_text(f'refresh_interval = 1.0\ndatabase = "{url}"\n')
        for args in (("reserve", "list"), ("db", "status"), ("config", "check")):
            result = hivetui("--config", str(config), *args, env=home_env(tmp_path))
            assert result.returncode == 2, (url, args)
            err = clean(result)
            assert f"{config}:2: database: {message}" in err, err
            assert "postgresql+asyncpg://USER@HOST:PORT/DATABASE" in err
            assert "s3cret" not in err


def test_postgresql_url_without_a_driver_uses_asyncpg(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.create_database().replace("postgresql+asyncpg://", "postgresql://")
    config = tmp_path / "config.toml"
    config.write_text(f'database = "{url}"\n')
    upgraded = hivetui("--config", str(config), "db", "upgrade", env=home_env(tmp_path))
    assert upgraded.returncode == 0, clean(upgraded)
    assert "upgraded from nothing to" in upgraded.stdout
    listed = hivetui("--config", str(config), "reserve", "list", env=home_env(tmp_path))
    assert listed.returncode == 0 and "no current or coming" in listed.stdout


def test_passwords_in_urls_and_queries_never_shown(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = tmp_path / "config.toml"
    for url in (
        f"postgresql+asyncpg://hive:s3cret@127.0.0.1:{port}/team",
        f"postgresql://hive@127.0.0.1:{port}/team?password=s3cret",
    ):
        config.write_text(f'database = "{url}"\n')
        for args in (("db", "status"), ("db", "upgrade"), ("reserve", "list")):
            result = hivetui("--config", str(config), *args, env=home_env(tmp_path))
            assert result.returncode == 2, (url, args)
            err = clean(result)
            assert "hivetui: database error: " in err and "s3cret" not in err + result.stdout
            assert "***" in err


# -- pipes and the last guard ---------------------------------------------------------


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    assert hivetui("reserve", "list", env=env).returncode == 0  # the database exists
    for args in (("reserve", "list"), ("config", "path"), ("reserve", "list", "--json")):
        read, write = os.pipe()
        os.close(read)  # like `| head -1` that has already exited
        try:
            result = hivetui(*args, env=env, stdout=write)
        finally:
            os.close(write)
        assert result.stderr == "", result.stderr
        assert result.returncode == 141, args


def test_unexpected_error_is_one_line_and_the_traceback_goes_to_the_log(tmp_path: Path) -> None:
    # A fault planted in hivetui's own code (no real input reaches an unhandled error
    # any more): the guard around the entry point must still keep the screen clean.
    code = (
        "import sys, hivetui.cli as cli\n"
        "def broken(args):\n"
        "    raise RuntimeError('planted fault, password=s3cret')\n"
        "cli._config_command = broken\n"
        "sys.exit(cli.main(['config', 'check']))\n"
    )
    env = home_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 70
    err = clean(result)
    assert len(err.strip().splitlines()) == 1, err
    log = tmp_path / "state" / "hivetui" / "log" / "hivetui.log"
    assert "unexpected error: RuntimeError: planted fault, password=*** " in err
    assert f"the traceback is in {log}" in err and "s3cret" not in err
    text = log.read_text()
    assert "Traceback" in text and "planted fault" in text


# -- the agent --------------------------------------------------------------------------


def test_agent_stops_when_its_database_file_is_deleted(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    """The real ``hivetui agent`` with the default database, guarding a real sshd host."""
    ssh_fleet.add("gpu01")
    config = ssh_fleet.write_config()
    env = home_env(tmp_path)
    path = tmp_path / "data" / "hivetui" / "hivetui.db"
    log = tmp_path / "agent.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hivetui", "--config", str(config), "agent"],
            stderr=sink,
            env=env,
            text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "guarding 1 host" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    err = log.read_text()
    assert code == 1, err
    assert f"the database file {path} was deleted while the agent ran" in err
    for noise in ("Traceback", "Context impl", "Will assume"):
        assert noise not in err, err
