"""The headless agent against a real sshd host, a real SQLite file and a real SMTP server."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from hivetui import db
from hivetui.agent import agent_name, heartbeats, run_agent
from hivetui.booking import ReservationStore
from hivetui.config import parse_config
from tests.guard_rig import one_app, reserve, smtp_sink, spawn
from tests.sshd import TestFleet, load_state


async def test_agent_guards_and_beats_until_stopped(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    sleeper = spawn(["sleep", "300"])
    try:
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), sleeper.pid))
        url = f"sqlite+aiosqlite:///{tmp_path / 'team.db'}"
        engine = db.make_engine(url)
        await db.upgrade(engine)
        store = ReservationStore(engine)
        res = await reserve(store, "alice", "gpu01")
        with smtp_sink() as (sink, port):
            text = ssh_fleet.config_toml(database=url) + (
                f'[protection]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n'
                'emails = { root = "ops@example.org" }\n'
            )
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_agent(parse_config(text, "agent.toml"), stop=stop, interval=0.2)
            )
            for _ in range(150):
                if sink.messages and await store.events(kind="violation"):
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.wait_for(task, 15)
        (event,) = await store.events(kind="violation")
        assert event.reservation_id == res.id and event.user == "root"
        assert sink.recipients == [["ops@example.org"]]
        beat_at, detail = (await heartbeats(engine))[agent_name()]
        assert "1/1 hosts online" in detail and "1 violation," in detail
        assert abs((beat_at - store.now()).total_seconds()) < 30
        await engine.dispose()
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_agent_refuses_a_database_behind_the_schema(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    ssh_fleet.add("gpu01")
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    await db.upgrade(engine, "0001")
    await engine.dispose()
    config = parse_config(ssh_fleet.config_toml(database=url), "agent.toml")
    try:
        await run_agent(config, stop=asyncio.Event())
    except db.DatabaseError as exc:
        assert "hivetui db upgrade" in str(exc)
    else:
        raise AssertionError("the agent ran on an old schema")


async def test_main_agent_stops_cleanly_on_sigterm(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    ssh_fleet.add("gpu01")
    url = f"sqlite+aiosqlite:///{tmp_path / 'team.db'}"
    config = tmp_path / "config.toml"
    config.write_text(ssh_fleet.config_toml(database=url))
    engine = db.make_engine(url)
    await db.upgrade(engine)
    code = (
        "import sys; from hivetui.config import load_config; from hivetui.agent import main_agent;"
        " sys.exit(main_agent(load_config(sys.argv[1]).config))"
    )
    log = tmp_path / "agent.log"
    with log.open("wb") as sink:
        proc = spawn([sys.executable, "-c", code, str(config)], stderr=sink)
    try:
        for _ in range(150):
            if agent_name() in await heartbeats(engine):
                break
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await engine.dispose()
    err = log.read_text()
    assert proc.returncode == 0, err
    assert "guarding 1 host\n" in err and "stopped" in err


async def test_agent_stops_when_its_database_file_is_replaced(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    """A file moved over the database (a restore, a second `db upgrade` elsewhere) is
    not the file the agent opened: it stops instead of writing to the old one."""
    ssh_fleet.add("gpu01")
    path = tmp_path / "team.db"
    url = f"sqlite+aiosqlite:///{path}"
    for target in (path, tmp_path / "restored.db"):
        engine = db.make_engine(f"sqlite+aiosqlite:///{target}")
        await db.upgrade(engine)
        await engine.dispose()
    config = parse_config(ssh_fleet.config_toml(database=url), "agent.toml")
    task = asyncio.create_task(run_agent(config, stop=asyncio.Event(), interval=0.2))
    engine = db.make_engine(url)
    try:
        for _ in range(150):
            if agent_name() in await heartbeats(engine):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the agent never wrote a heartbeat")
    finally:
        await engine.dispose()
    (tmp_path / "restored.db").replace(path)
    try:
        await asyncio.wait_for(task, 30)
    except db.DatabaseError as exc:
        assert f"the database file {path} was replaced by another file" in str(exc)
        assert "Start it again" in str(exc)
    else:
        raise AssertionError("the agent kept running on a replaced file")
