"""How connections are made and lost: ProxyJump, ssh-agent, silent and frozen hosts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivetui.model import GpuAvailability, HostStatus
from tests.helpers import following, sweep_config, wait_for
from tests.sshd import SshdHost, TestFleet, _descendants


def ssh_config_fleet(rig: TestFleet, ssh_config: str, names: list[str]) -> str:
    """A hivetui config whose hosts are bare aliases resolved by an OpenSSH config."""
    rig.ssh_config.write_text(ssh_config)
    hosts = "".join(f'[[hosts]]\nname = "{name}"\n' for name in names)
    return (
        hosts + f'[ssh]\nconfig = "{rig.ssh_config}"\nknown_hosts = "{rig.known_hosts}"\n'
        "connect_timeout = 5.0\nkeepalive_interval = 1.0\n"
    )


def alias(name: str, host: SshdHost, rig: TestFleet, *extra: str) -> str:
    lines = [
        f"Host {name}",
        "  HostName 127.0.0.1",
        f"  Port {host.port}",
        f"  User {rig.user}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


async def test_proxyjump_from_the_ssh_config(ssh_fleet: TestFleet) -> None:
    jump = ssh_fleet.add("bastion")
    target = ssh_fleet.add("gpu01", "h200x8")
    key = f"  IdentityFile {ssh_fleet.client_key}"
    # The jump connection is made from the SSH config alone, as OpenSSH does:
    # its host key is checked against the config's UserKnownHostsFile.
    known = f"  UserKnownHostsFile {ssh_fleet.known_hosts}"
    text = ssh_config_fleet(
        ssh_fleet,
        alias("bastion", jump, ssh_fleet, key, known)
        + alias("gpu01", target, ssh_fleet, key, "  ProxyJump bastion"),
        ["gpu01"],
    )
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.ONLINE and len(snap.gpus) == 8, snap.error
    # The jump host really carries the connection: without it, gpu01 is unreachable.
    jump.stop()
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.OFFLINE


@pytest.fixture
def agent(ssh_fleet: TestFleet, tmp_path: Path) -> Iterator[str]:
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": sock}
        subprocess.run(
            ["ssh-add", "-q", str(ssh_fleet.client_key)], env=env, check=True, capture_output=True
        )
        yield sock
    finally:
        proc.kill()
        proc.wait()


async def test_keys_from_ssh_agent(
    ssh_fleet: TestFleet, agent: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = ssh_fleet.add("gpu01")
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    monkeypatch.setenv("HOME", str(tmp_path))  # no default keys in ~/.ssh to fall back on
    text = ssh_config_fleet(ssh_fleet, alias("gpu01", host, ssh_fleet), ["gpu01"])
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.ONLINE, snap.error
    monkeypatch.delenv("SSH_AUTH_SOCK")
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.AUTH_FAILED


async def test_agent_keys_still_work_when_the_key_file_is_unprotected(
    ssh_fleet: TestFleet, agent: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The default key file is refused (mode 0644), as OpenSSH does; the agent's key is not."""
    host = ssh_fleet.add("gpu01")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    key.write_bytes(ssh_fleet.client_key.read_bytes())
    key.chmod(0o644)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    text = ssh_config_fleet(ssh_fleet, alias("gpu01", host, ssh_fleet), ["gpu01"])
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.ONLINE, snap.error
    monkeypatch.delenv("SSH_AUTH_SOCK")
    (snap,) = await sweep_config(text, 10)
    assert snap.status is HostStatus.AUTH_FAILED
    assert f"ignored UNPROTECTED PRIVATE KEY FILE {key}" in (snap.error or "")


async def test_host_that_accepts_but_never_answers_times_out_alone(
    ssh_fleet: TestFleet,
) -> None:
    ssh_fleet.add("good")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        text = ssh_fleet.config_toml() + (
            f'[[hosts]]\nname = "silent"\naddress = "127.0.0.1"\nport = {port}\n'
        )
        text = text.replace("connect_timeout = 5.0", "connect_timeout = 2.0")
        started = time.monotonic()
        good, stuck = await sweep_config(text, 10)
    assert time.monotonic() - started < 6
    assert good.status is HostStatus.ONLINE and good.gpus
    assert stuck.status is HostStatus.OFFLINE and stuck.error


def signal_if_alive(pid: int, signum: int) -> None:
    """Short-lived session processes (the report loop's sleep) may be gone by now."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


async def test_frozen_host_goes_offline_then_recovers(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    ssh_fleet.add("gpu02")
    assert host.proc is not None
    frozen: set[int] = set()
    async with following(ssh_fleet.config_toml()) as fleet:
        try:
            await wait_for(fleet, "gpu01", lambda s: bool(s.gpus))
            # Stop every process of the host: TCP stays open, nothing answers.
            frozen = _descendants(host.proc.pid) | {host.proc.pid}
            for pid in frozen:
                signal_if_alive(pid, signal.SIGSTOP)
            await wait_for(fleet, "gpu01", lambda s: s.status is not HostStatus.ONLINE, 20)
            assert fleet.snapshot("gpu02").gpu_availability is GpuAvailability.OK
            before = fleet.snapshot("gpu02").updated_at
            await asyncio.sleep(1.5)
            assert fleet.snapshot("gpu02").updated_at > before, "the frozen host held up another"
        finally:
            for pid in frozen:
                signal_if_alive(pid, signal.SIGCONT)
        await wait_for(fleet, "gpu01", lambda s: s.status is HostStatus.ONLINE and bool(s.gpus), 20)
