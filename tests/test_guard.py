"""The guard against real services: sshd hosts, a SQLite store, an SMTP server, processes."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from hivetui import db
from hivetui.config import ProtectionSettings
from hivetui.guard import Guard
from hivetui.usage import Usage, UsageTable
from tests.guard_rig import (
    FakeClock,
    make_store,
    one_app,
    reserve,
    smtp_sink,
    spawn,
    swept_fleet,
    wait_until,
)
from tests.sshd import TestFleet, load_state


@pytest.fixture
def root_sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process of this (root) account, which the hosts' login account cannot touch."""
    proc = spawn(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def _child_pid(parent: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{parent}/task/{parent}/children")
    while time.monotonic() < deadline:
        kids = path.read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.02)
    raise AssertionError(f"{parent} started no child")


def _login_user(ssh_fleet: TestFleet) -> str | None:
    """Run as the hosts' login account (so it may signal and write), when we can switch."""
    return ssh_fleet.user if os.geteuid() == 0 else None


async def test_violation_recorded_once_mailed_and_rate_limited(
    ssh_fleet: TestFleet, root_sleeper: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    ssh_fleet.add("gpu01", one_app(load_state("h100_load"), root_sleeper.pid))
    clock = FakeClock()
    store = await make_store(tmp_path / "h.db", clock)
    res = await reserve(store, "alice", "gpu01")
    with smtp_sink() as (sink, port):
        settings = ProtectionSettings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            email_domain="example.org",
            email_from="guard@example.org",
            warn_every_minutes=15,
        )
        async with swept_fleet(ssh_fleet.config_toml()) as fleet:
            guard = Guard(fleet, store, settings, clock=clock)
            found = await guard.check()
            assert [(v.intruder, v.process.pid, v.reservation.id) for v in found] == [
                ("root", root_sleeper.pid, res.id)
            ]
            (event,) = await store.events(kind="violation")
            assert (event.user, event.host, event.reservation_id) == ("root", "gpu01", res.id)
            assert event.gpu_uuid == res.gpu.uuid and str(root_sleeper.pid) in event.detail
            assert event.at == store.now()
            assert len(sink.messages) == 1
            mail = sink.messages[0]
            assert sink.recipients[0] == ["root@example.org"]
            assert mail["From"] == "guard@example.org" and "gpu01" in mail["Subject"]
            body = str(mail.get_payload())
            assert "reserved by alice" in body and str(root_sleeper.pid) in body
            warned = {e.detail for e in await store.events(kind="warned")}
            # No terminal: the warning command ran and said so, without failing.
            assert warned == {"e-mailed root@example.org", "terminal: no writable terminal of root"}
            assert await store.events(kind="warn_failed") == []

            clock.advance(14 * 60)  # inside the window: recorded and warned already
            await fleet.sweep(10)
            assert len(await guard.check()) == 1
            assert len(await store.events(kind="violation")) == 1
            assert len(await store.events(kind="warned")) == 2
            assert len(sink.messages) == 1

            clock.advance(60)  # the window has passed: one more warning, still one violation
            await guard.check()
            assert len(sink.messages) == 2
            assert len(await store.events(kind="warned")) == 4
            assert len(await store.events(kind="violation")) == 1
            # A new guard (an agent restart) does not record the violation again,
            # nor warn again inside the window of the last warning.
            clock.advance(60)
            await Guard(fleet, store, settings, clock=clock).check()
            assert len(await store.events(kind="violation")) == 1
            assert len(sink.messages) == 2
            assert await store.events(kind="killed") == []
    assert root_sleeper.poll() is None  # kill_after_minutes is 0: nothing is killed


async def test_terminal_warning_reaches_the_intruders_tty(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    # `script` gives `sleep` a real pty owned by the intruder; what is written to the
    # pty comes out on script's stdout.
    out = tmp_path / "tty.out"
    os.chmod(tmp_path, 0o777)
    with out.open("wb") as sink_file:
        script = spawn(
            ["script", "-qfc", "sleep 300", "/dev/null"],
            user=_login_user(ssh_fleet),
            stdout=sink_file,
            stderr=subprocess.STDOUT,
        )
    try:
        pid = _child_pid(script.pid)
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), pid))
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        await reserve(store, "alice", "gpu01")
        async with swept_fleet(ssh_fleet.config_toml()) as fleet:
            (found,) = await Guard(fleet, store, ProtectionSettings(), clock=clock).check()
            (event,) = await store.events(kind="warned")
            assert event.detail.startswith("terminal: wrote to pts/"), event.detail
            await wait_until(lambda: b"reserved by alice" in out.read_bytes())
            assert str(pid).encode() in out.read_bytes()
            assert found.intruder == ssh_fleet.user
    finally:
        script.kill()
        script.wait()


async def test_terminal_of_another_account_is_not_reachable(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    # root's pty, written from the hosts' login account: refused (the pty is root's
    # and not in utmp, so write(1) refuses too). The guard says so and goes on.
    script = spawn(["script", "-qfc", "sleep 300", "/dev/null"], stdout=subprocess.DEVNULL)
    try:
        pid = _child_pid(script.pid)
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), pid))
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        await reserve(store, "alice", "gpu01")
        async with swept_fleet(ssh_fleet.config_toml()) as fleet:
            await Guard(fleet, store, ProtectionSettings(), clock=clock).check()
        (event,) = await store.events(kind="warned")
        if os.geteuid() == 0:
            assert event.detail == "terminal: no writable terminal of root"
        else:  # no second account: the pty is the login account's own
            assert event.detail.startswith("terminal: wrote to pts/")
    finally:
        script.kill()
        script.wait()


async def test_kill_after_grace_period(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    victim = spawn(["sleep", "300"], user=_login_user(ssh_fleet))
    try:
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), victim.pid))
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        await reserve(store, "alice", "gpu01")
        settings = ProtectionSettings(kill_after_minutes=5, warn_terminal=False)
        async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
            guard = Guard(fleet, store, settings, clock=clock)
            await guard.check()
            clock.advance(4 * 60)
            await fleet.sweep(10)
            await guard.check()
            assert victim.poll() is None and await store.events(kind="killed") == []
            clock.advance(61)
            await fleet.sweep(10)
            await guard.check()
            assert victim.wait(timeout=10) == -signal.SIGTERM
            (event,) = await store.events(kind="killed")
            assert str(victim.pid) in event.detail and event.user == ssh_fleet.user
            assert await store.events(kind="kill_skipped") == []
    finally:
        victim.kill()
        victim.wait()


async def test_kill_refused_by_the_host_is_recorded(
    ssh_fleet: TestFleet, root_sleeper: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    ssh_fleet.add("gpu01", one_app(load_state("h100_load"), root_sleeper.pid))
    clock = FakeClock()
    store = await make_store(tmp_path / "h.db", clock)
    await reserve(store, "alice", "gpu01")
    settings = ProtectionSettings(kill_after_minutes=1, warn_terminal=False)
    async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
        guard = Guard(fleet, store, settings, clock=clock)
        await guard.check()
        clock.advance(61)
        await fleet.sweep(10)
        await guard.check()
        await guard.check()  # tried once, not every round
    if os.geteuid() == 0:  # the login account may not signal root's process
        (event,) = await store.events(kind="kill_failed")
        assert f"pid {root_sleeper.pid}:" in event.detail and "not permitted" in event.detail
        assert root_sleeper.poll() is None
    else:
        assert len(await store.events(kind="killed")) == 1


# ---------------------------------------------------------------- the kill re-checks


def _kill_settings() -> ProtectionSettings:
    return ProtectionSettings(kill_after_minutes=1, warn_terminal=False)


async def test_a_stale_sighting_is_never_acted_on(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    """Past the grace period, but the last sighting is old: no kill until a fresh one."""
    victim = spawn(["sleep", "300"], user=_login_user(ssh_fleet))
    try:
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), victim.pid))
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        await reserve(store, "alice", "gpu01")
        async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
            guard = Guard(fleet, store, _kill_settings(), clock=clock)
            await guard.check()
            clock.advance(61)  # no sweep: what the guard knows is 61 s old
            await guard.check()
            await guard.check()  # said once
            (skipped,) = await store.events(kind="kill_skipped")
            assert skipped.detail == (
                f"pid {victim.pid}: seen 61 s ago (over 10 s); not killed until seen again"
            )
            assert victim.poll() is None and await store.events(kind="killed") == []
            await fleet.sweep(10)
            await guard.check()
            assert victim.wait(timeout=10) == -signal.SIGTERM
            assert len(await store.events(kind="killed")) == 1
    finally:
        victim.kill()
        victim.wait()


def _force_pid(pid: int, argv: list[str], user: str | None) -> subprocess.Popen[bytes]:
    """A new process that gets ``pid`` (free again), through ``ns_last_pid`` (root only)."""
    for _ in range(50):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        proc = spawn(argv, user=user)
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    raise AssertionError(f"could not get pid {pid} back (other processes took it)")


async def test_a_pid_taken_by_another_process_is_not_killed(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    """The judged process exits and a new one gets its PID: same PID, new start time."""
    if os.geteuid() != 0:
        pytest.skip("reusing a PID on purpose needs root (ns_last_pid)")
    user = _login_user(ssh_fleet)
    judged = spawn(["sleep", "300"], user=user)
    pid = judged.pid
    ssh_fleet.add("gpu01", one_app(load_state("h100_load"), pid))
    clock = FakeClock()
    store = await make_store(tmp_path / "h.db", clock)
    await reserve(store, "alice", "gpu01")
    async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
        guard = Guard(fleet, store, _kill_settings(), clock=clock)
        await guard.check()
        clock.advance(61)
        await fleet.sweep(10)  # judged, fresh
        judged.kill()
        judged.wait()
        time.sleep(0.02)  # the new process must start at a later clock tick
        newcomer = _force_pid(pid, ["sleep", "300"], user)
        try:
            await guard.check()
            assert newcomer.poll() is None
            (skipped,) = await store.events(kind="kill_skipped")
            assert skipped.detail.startswith(f"pid {pid}: started at tick ")
            assert skipped.detail.endswith("another process has its PID now; not killed")
            assert await store.events(kind="killed") == []
        finally:
            newcomer.kill()
            newcomer.wait()


OWNER_SWITCH = """
import os, pwd, sys
account = pwd.getpwnam(sys.argv[1])
sys.stdin.readline()
os.setgid(account.pw_gid)
os.setuid(account.pw_uid)
os.execvp("sleep", ["sleep", "300"])
"""


def _euid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])
    raise AssertionError("no Uid line")


async def test_a_process_that_changed_owner_is_not_killed(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    """Judged as root's, it becomes the login account's (same PID, same start): not killed,
    although the login account could kill it now."""
    if os.geteuid() != 0:
        pytest.skip("a process that changes its owner needs root")
    switcher = spawn([sys.executable, "-c", OWNER_SWITCH, ssh_fleet.user], stdin=subprocess.PIPE)
    try:
        ssh_fleet.add("gpu01", one_app(load_state("h100_load"), switcher.pid))
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        await reserve(store, "alice", "gpu01")
        async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
            guard = Guard(fleet, store, _kill_settings(), clock=clock)
            (found,) = await guard.check()
            assert found.intruder == "root"
            clock.advance(61)
            await fleet.sweep(10)  # judged as root's, fresh
            assert switcher.stdin is not None
            switcher.stdin.write(b"go\n")
            switcher.stdin.flush()
            account = pwd.getpwnam(ssh_fleet.user).pw_uid
            await wait_until(lambda: _euid(switcher.pid) == account)
            await guard.check()
            assert switcher.poll() is None
            (skipped,) = await store.events(kind="kill_skipped")
            assert skipped.detail == (
                f"pid {switcher.pid}: now runs as uid {account} instead of 0; not killed"
            )
    finally:
        switcher.kill()
        switcher.wait()


async def test_a_process_that_left_the_gpu_is_not_killed(
    ssh_fleet: TestFleet, tmp_path: Path
) -> None:
    victim = spawn(["sleep", "300"], user=_login_user(ssh_fleet))
    try:
        state = one_app(load_state("h100_load"), victim.pid)
        other = dict(state["gpus"][0], index=1, uuid="GPU-11111111-1111-1111-1111-111111111111")
        state["gpus"].append(other)
        host = ssh_fleet.add("gpu01", state)
        clock = FakeClock()
        store = await make_store(tmp_path / "h.db", clock)
        res = await reserve(store, "alice", "gpu01")
        async with swept_fleet(ssh_fleet.config_toml(), clock) as fleet:
            guard = Guard(fleet, store, _kill_settings(), clock=clock)
            await guard.check()
            clock.advance(61)
            await fleet.sweep(10)  # judged on GPU 0, fresh
            state["apps"][0]["gpu_uuid"] = other["uuid"]
            host.set_state(state)  # now it runs on GPU 1, which nobody reserved
            await guard.check()
            assert victim.poll() is None
            (skipped,) = await store.events(kind="kill_skipped")
            assert skipped.detail == (
                f"pid {victim.pid}: no longer a compute process on {res.gpu.uuid}; not killed"
            )
    finally:
        victim.kill()
        victim.wait()


async def test_idle_reservation_is_found_once(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    state = load_state("h100_load")
    state["apps"] = []
    state["gpus"][0]["utilization.gpu"] = "1"
    host = ssh_fleet.add("gpu01", state)
    clock = FakeClock()
    store = await make_store(tmp_path / "h.db", clock)
    res = await reserve(store, "alice", "gpu01")
    settings = ProtectionSettings(idle_util_pct=5, idle_minutes=10)
    async with swept_fleet(ssh_fleet.config_toml()) as fleet:
        guard = Guard(fleet, store, settings, clock=clock)
        await guard.check()
        assert guard.idle_reservations() == []
        clock.advance(9 * 60)
        await fleet.sweep(10)
        await guard.check()
        assert guard.idle_reservations() == []
        clock.advance(60)
        await fleet.sweep(10)
        await guard.check()
        await guard.check()  # same snapshot: not counted twice, not recorded twice
        assert guard.idle_reservations() == [res]
        (event,) = await store.events(kind="idle")
        assert event.reservation_id == res.id and event.user == "alice"
        usage = (await UsageTable(store.engine).load([res.id]))[res.id]
        assert usage.samples == 3 and usage.mean_util_pct == 1.0
        assert usage.mean_mem_mib == float(state["gpus"][0]["memory.used"])
        # A restarted guard keeps the sums and does not record the idle stretch again.
        state["gpus"][0]["utilization.gpu"] = "90"
        host.set_state(state)
        await fleet.sweep(10)
        again = Guard(fleet, store, settings, clock=clock)
        await again.check()
        assert again.idle_reservations() == []
        usage2 = again.usage(res.id)
        assert usage2 is not None and usage2.samples == 4 and usage2.util_sum == 93.0
    assert len(await store.events(kind="idle")) == 1


async def test_migration_0002_upgrades_a_filled_database(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    await db.upgrade(engine, "0001")
    async with engine.begin() as conn:
        await conn.execute(
            insert(db.reservations).values(
                id=7,
                user="alice",
                host="gpu01",
                gpu_index=0,
                gpu_uuid="GPU-x",
                start_s=100,
                end_s=200,
                title="old",
                created_s=50,
            )
        )
        await conn.execute(insert(db.events).values(at_s=120, kind="violation", detail="d"))
    await db.upgrade(engine)
    assert await db.current_revision(engine) == db.head_revision()
    async with engine.connect() as conn:
        (row,) = (await conn.execute(select(db.reservations))).all()
        assert (row.id, row.user, row.title) == (7, "alice", "old")
        assert len((await conn.execute(select(db.events))).all()) == 1
    table = UsageTable(engine)
    await table.save([Usage(7, samples=2, util_sum=10.0, mem_sum=4.0, last_s=150)])
    await table.save([Usage(7, samples=3, util_sum=11.0, mem_sum=6.0, last_s=160)])
    assert (await table.load([7]))[7] == Usage(7, 3, 11.0, 6.0, 160, None)
    await engine.dispose()
