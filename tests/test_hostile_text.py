"""Text written by hosts, teammates and servers is shown as data by the CLI.

A real sshd host whose fake ``nvidia-smi`` reports a GPU name and a process
name holding terminal escapes, bidi overrides and Textual markup; a real
SQLite database with rows a hostile teammate inserted with SQL; a server that
answers on a host's address with a disconnect message full of escapes. Tables
and messages show ``\\x1b`` instead of ESC; ``--json`` keeps the exact text;
``reserve env`` stays inert in ``eval``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from hivetui import db
from tests.sshd import TestFleet, load_state

OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # would write the reader's clipboard
CLEAR = "\x1b[2J"
RLO = "\u202e"  # right-to-left override: reorders what the reader sees
C1_CSI = "\x9b31m"  # the 8-bit CSI
HOSTILE = f"{OSC52}H100{CLEAR}{RLO}evil{C1_CSI} [@click=app.quit] [/nope]"
SHOWN = "\\x1b]52;c;aGVsbG8=\\x07H100\\x1b[2J\\u202eevil\\x9b31m [@click=app.quit] [/nope]"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e")
GOOD_UUID = "GPU-12345678-1234-1234-1234-123456789abc"


def hivetui(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("HIVETUI_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "hivetui", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def assert_inert(text: str) -> None:
    for char in UNSAFE:
        assert char not in text, f"{char!r} reached the terminal"


def hostile_state() -> dict[str, object]:
    state = load_state("h100_load")
    (gpu,) = state["gpus"]
    gpu["name"] = HOSTILE
    # A PID that is not on the host: the command is nvidia-smi's process_name, as raw
    # as the real tool prints it.
    state["apps"] = [
        {"gpu_uuid": gpu["uuid"], "pid": 4000001, "process_name": HOSTILE, "used_gpu_memory": "9"}
    ]
    return state


def test_gpus_and_hosts_tables_escape_what_the_host_wrote(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("gpu01", hostile_state())
    config = ssh_fleet.write_config()
    table = hivetui(config, "gpus", "--timeout", "10")
    assert table.returncode == 0, table.stderr
    assert_inert(table.stdout)
    assert SHOWN in table.stdout
    hosts = hivetui(config, "hosts", "--timeout", "10")
    assert hosts.returncode == 0 and "online" in hosts.stdout
    assert_inert(hosts.stdout)
    doc = json.loads(hivetui(config, "gpus", "--json", "--timeout", "10").stdout)
    (gpu,) = doc["hosts"][0]["gpus"]
    assert gpu["name"] == HOSTILE  # JSON is for programs: exact
    assert gpu["processes"][0]["command"] == HOSTILE


def test_host_error_text_is_escaped(ssh_fleet: TestFleet) -> None:
    state = {
        "mode": "custom",
        "stdout": "",
        "stderr": f"{CLEAR}{RLO}driver says no\n",
        "exit_code": 3,
    }
    ssh_fleet.add("gpu01", state)
    config = ssh_fleet.write_config()
    for command in ("gpus", "hosts"):
        result = hivetui(config, command, "--timeout", "10")
        assert result.returncode == 0, result.stderr
        assert_inert(result.stdout)
        assert "\\x1b[2J\\u202edriver says no" in result.stdout


# -- a disconnect message from whoever answers on a host's address ---------------


def _packet(payload: bytes) -> bytes:
    padding = 8 - (len(payload) + 5) % 8
    padding += 8 if padding < 4 else 0
    return struct.pack(">IB", len(payload) + padding + 1, padding) + payload + bytes(padding)


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


@pytest.fixture
def disconnecting_server() -> Iterator[int]:
    """Speaks SSH far enough to disconnect with a hostile reason, before any key exchange."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = listener.getsockname()[1]
    reason = (HOSTILE + "A" * 5000).encode()
    # SSH_MSG_DISCONNECT (1), reason code 2 (protocol error), description, language.
    message = _packet(b"\x01" + struct.pack(">I", 2) + _ssh_string(reason) + _ssh_string(b""))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                conn.settimeout(5)
                try:
                    conn.recv(4096)  # the client's version line
                    conn.sendall(message)
                    conn.recv(4096)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        listener.close()
        thread.join(10)


def test_a_servers_disconnect_message_is_escaped(
    ssh_fleet: TestFleet, disconnecting_server: int, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[[hosts]]\n"
        'name = "evil"\n'
        'address = "127.0.0.1"\n'
        f"port = {disconnecting_server}\n"
        f'identity_file = "{ssh_fleet.client_key}"\n'
        f'[ssh]\nknown_hosts = "{ssh_fleet.known_hosts}"\nconfig = "{ssh_fleet.ssh_config}"\n'
    )
    for args in (("hosts",), ("gpus",)):
        result = hivetui(config, *args, "--timeout", "10")
        assert result.returncode == 0, result.stderr
        assert_inert(result.stdout)
        assert f"disconnected: {SHOWN}" in result.stdout, result.stdout
    # The message is ours, quoting the server: escaped and bounded even in JSON.
    (host,) = json.loads(hivetui(config, "hosts", "--json", "--timeout", "10").stdout)["hosts"]
    assert host["status"] == "offline"
    assert host["error"].startswith(f"disconnected: {SHOWN}")
    assert_inert(host["error"])
    assert len(host["error"]) < 400


# -- rows a teammate wrote into the shared database -------------------------------


def _insert(database: Path, **row: object) -> None:
    async def go() -> None:
        engine = db.make_engine(f"sqlite+aiosqlite:///{database}")
        async with engine.begin() as conn:
            await conn.execute(insert(db.reservations).values(**row))
        await engine.dispose()

    asyncio.run(go())


def _row(
    rid: int, uuid: str, title: str, user: str = "mallory", index: int = 0
) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": rid,
        "user": user,
        "host": "gpu01",
        "gpu_index": index,
        "gpu_uuid": uuid,
        "start_s": int(now.timestamp()) - 60,
        "end_s": int((now + timedelta(hours=2)).timestamp()),
        "title": title,
        "created_s": int(now.timestamp()) - 120,
    }


@pytest.fixture
def team_db(tmp_path: Path) -> tuple[Path, Path]:
    """An empty config with a migrated SQLite database of its own."""
    database = tmp_path / "team.db"
    config = tmp_path / "c.toml"
    config.write_text(
        f'database = "sqlite+aiosqlite:///{database}"\n[[hosts]]\nname = "gpu01"\n'
        'address = "127.0.0.1"\nport = 1\n'
    )
    assert hivetui(config, "db", "upgrade").returncode == 0
    return config, database


def test_reserve_list_escapes_titles_and_users(team_db: tuple[Path, Path]) -> None:
    config, database = team_db
    _insert(database, **_row(1, GOOD_UUID, HOSTILE, user=f"mal{CLEAR}lory"))
    table = hivetui(config, "reserve", "list")
    assert table.returncode == 0, table.stderr
    assert_inert(table.stdout)
    assert SHOWN in table.stdout and "mal\\x1b[2Jlory" in table.stdout
    (row,) = json.loads(hivetui(config, "reserve", "list", "--json").stdout)["reservations"]
    assert (row["title"], row["user"]) == (HOSTILE, f"mal{CLEAR}lory")


def test_reserve_env_is_safe_to_eval(team_db: tuple[Path, Path], tmp_path: Path) -> None:
    config, database = team_db
    pwned = tmp_path / "PWNED"
    _insert(database, **_row(1, f"GPU-x$(touch {pwned})", 'it\'s "quoted" `here`'))
    _insert(database, **_row(2, GOOD_UUID, 'it\'s "quoted" `here`', user="alice", index=1))

    def in_sh(rid: int) -> subprocess.CompletedProcess[str]:
        script = (
            f'eval "export $("$PY" -m hivetui --config "$CONFIG" reserve env {rid})"'
            ' && printf "%s\\n" "$CUDA_VISIBLE_DEVICES"'
        )
        env = {**os.environ, "PY": sys.executable, "CONFIG": str(config)}
        env.pop("HIVETUI_CONFIG", None)
        return subprocess.run(
            ["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env
        )

    in_sh(1)
    assert not pwned.exists()
    refused = hivetui(config, "reserve", "env", "1")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "reservation 1" in refused.stderr and "malformed GPU uuid" in refused.stderr
    # One bad row does not hide the others from the team: it is left out, and said so.
    listed = hivetui(config, "reserve", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("2 ")
    assert "reservation 1" in listed.stderr and "left out" in listed.stderr
    assert_inert(listed.stderr)
    good = in_sh(2)
    assert good.returncode == 0, good.stderr
    assert good.stdout == f"{GOOD_UUID}\n"
    assert not pwned.exists()
