"""The fleet against real OpenSSH sshd hosts on loopback, faults included."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hivetui.backends.probe import MAX_COMMAND_BYTES, command_text
from hivetui.model import GpuAvailability, HostSnapshot, HostStatus
from tests.helpers import following, sweep_config, wait_for
from tests.sshd import TestFleet, account, load_state


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose PID the fake nvidia-smi reports as a GPU user."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


async def test_sweep_reads_gpus_processes_and_load(
    ssh_fleet: TestFleet, sleeper: subprocess.Popen[bytes]
) -> None:
    state = load_state("h100_load")
    state["apps"][0]["pid"] = sleeper.pid
    ssh_fleet.add("gpu01", state)
    ssh_fleet.add("gpu02", "h200x8")
    one, two = await sweep_config(ssh_fleet.config_toml(), 10)
    assert one.status is HostStatus.ONLINE and one.error is None
    assert one.gpu_availability is GpuAvailability.OK
    gpu = one.gpus[0]
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.memory_total_mib == float(state["gpus"][0]["memory.total"])
    assert gpu.utilization_pct == float(state["gpus"][0]["utilization.gpu"])
    owned = [p for p in gpu.processes if p.pid == sleeper.pid]
    assert owned and owned[0].user == "root" and owned[0].command == "sleep 300"
    # A PID that no longer exists on the host keeps nvidia-smi's name and no owner.
    ghosts = [p for p in gpu.processes if p.pid != sleeper.pid]
    assert all(p.user is None for p in ghosts)
    assert len(two.gpus) == 8 and two.gpus[7].index == 7
    assert one.load is not None and one.load.mem_total_mib > 0


async def test_host_down_at_start_is_offline(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("up")
    ssh_fleet.add("down", start=False)
    up, down = await sweep_config(ssh_fleet.config_toml(), 5)
    assert up.status is HostStatus.ONLINE
    assert down.status is HostStatus.OFFLINE
    assert down.error == "connection refused"


async def test_killed_host_goes_offline_and_comes_back(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    ssh_fleet.add("gpu02")
    async with following(ssh_fleet.config_toml()) as fleet:
        await wait_for(fleet, "gpu01", lambda s: bool(s.gpus))
        host.stop()
        down = await wait_for(fleet, "gpu01", lambda s: s.status is HostStatus.OFFLINE)
        assert down.error
        # The other host kept updating meanwhile.
        before = fleet.snapshot("gpu02").updated_at
        await wait_for(fleet, "gpu02", lambda s: s.updated_at > before and bool(s.gpus))
        host.start()
        back = await wait_for(
            fleet, "gpu01", lambda s: s.status is HostStatus.ONLINE and bool(s.gpus)
        )
        assert back.gpus[0].name == "NVIDIA H100 80GB HBM3"


async def test_wrong_key_is_auth_failed(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    ssh_fleet.add("gpu01")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    text = ssh_fleet.config_toml().replace(str(ssh_fleet.client_key), str(other))
    (snap,) = await sweep_config(text, 5)
    assert snap.status is HostStatus.AUTH_FAILED
    assert snap.error and "authentication failed" in snap.error


async def test_unknown_host_key_is_refused_with_fingerprint(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01", known=False)
    (snap,) = await sweep_config(ssh_fleet.config_toml(), 5)
    assert snap.status is HostStatus.HOST_KEY_UNKNOWN
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", f"{host.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert snap.error and fingerprint in snap.error and "refused" in snap.error
    assert not snap.gpus


async def test_changed_host_key_is_refused(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    host.stop()
    host.regenerate_host_key()  # known_hosts still holds the old key
    host.start()
    (snap,) = await sweep_config(ssh_fleet.config_toml(), 5)
    assert snap.status is HostStatus.HOST_KEY_CHANGED
    assert snap.error and "HOST KEY CHANGED" in snap.error and "ssh-keygen" in snap.error


async def test_host_without_nvidia_smi_says_no_gpu(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("cpu01", with_nvidia_smi=False)
    (snap,) = await sweep_config(ssh_fleet.config_toml(), 5)
    async with following(ssh_fleet.config_toml()) as fleet:
        followed = await wait_for(
            fleet, "cpu01", lambda s: s.load is not None and s.load.cpu_pct is not None
        )
    for seen in (snap, followed):
        assert seen.status is HostStatus.ONLINE
        assert seen.gpu_availability is GpuAvailability.NO_GPU
        assert seen.error is None
        assert seen.load is not None and seen.load.mem_total_mib > 0


@pytest.mark.parametrize(
    ("state", "availability", "words"),
    [
        ("no_devices", GpuAvailability.NO_GPU, "No devices were found"),
        ("driver_not_loaded", GpuAvailability.NO_GPU, "couldn't communicate"),
        ("garbage", GpuAvailability.ERROR, "unexpected nvidia-smi output"),
    ],
)
async def test_driver_faults_stay_on_their_host(
    ssh_fleet: TestFleet, state: str, availability: GpuAvailability, words: str
) -> None:
    ssh_fleet.add("bad", state)
    ssh_fleet.add("good")
    bad, good = await sweep_config(ssh_fleet.config_toml(), 5)
    assert bad.status is HostStatus.ONLINE
    assert bad.gpu_availability is availability
    assert bad.gpu_error and words in bad.gpu_error
    assert good.gpu_availability is GpuAvailability.OK and good.gpus


async def test_hanging_nvidia_smi_times_out_alone(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("stuck", "hang")
    ssh_fleet.add("good")
    started = time.monotonic()
    stuck, good = await sweep_config(ssh_fleet.config_toml(), 3)
    assert time.monotonic() - started < 6
    assert stuck.status is HostStatus.ONLINE
    assert stuck.gpu_availability is GpuAvailability.ERROR
    assert stuck.gpu_error and "did not answer" in stuck.gpu_error
    assert good.gpus


async def test_followed_host_that_starts_hanging_is_marked(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    ssh_fleet.add("gpu02")
    async with following(ssh_fleet.config_toml()) as fleet:
        await wait_for(fleet, "gpu01", lambda s: bool(s.gpus))
        host.set_state("hang")
        stuck = await wait_for(
            fleet, "gpu01", lambda s: s.gpu_availability is GpuAvailability.ERROR, timeout=20
        )
        assert stuck.gpu_error and "not answered" in stuck.gpu_error
        assert fleet.snapshot("gpu02").gpu_availability is GpuAvailability.OK
        host.set_state("h100_load")
        await wait_for(fleet, "gpu01", lambda s: s.gpu_availability is GpuAvailability.OK, 20)


async def test_live_changes_reach_the_fleet_and_history(ssh_fleet: TestFleet) -> None:
    host = ssh_fleet.add("gpu01")
    async with following(ssh_fleet.config_toml()) as fleet:
        await wait_for(fleet, "gpu01", lambda s: bool(s.gpus))
        state = load_state("h100_load")
        state["gpus"][0]["utilization.gpu"] = "7"
        host.set_state(state)
        await wait_for(fleet, "gpu01", lambda s: bool(s.gpus) and s.gpus[0].utilization_pct == 7)
        history = fleet.history("gpu01", 0)
        assert history is not None and len(history) >= 2
        assert history.utilization[-1] == 7


# ---------------------------------------------------------------- hostile process names

HOSTILE_ARGV0 = [
    b"train\n@end\n@apps\nGPU-00000000-0000-0000-0000-000000000000, 1, 99\n@rc 0",
    b"x\n@proc 1 1 0\n@user 0 root\n@cmd 1\n 41 41\n@ident same\n@stat\n",
    b"python, 1, 2, GPU-11111111-1111-1111-1111-111111111111, evil, 0, 0, 0, 0, NVIDIA",
    b"\x01\x02\x1b[2J\x1b]52;c;SGVsbG8=\x07\x7f\xc2\x85\xe2\x80\xae\xff\xfe",
    b"A" * 10_000,
]


def _start_as(user: str, argv0: bytes) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [argv0, "300"],
        executable="/bin/sleep",
        user=user if os.geteuid() == 0 else None,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def hostile() -> Iterator[list[tuple[subprocess.Popen[bytes], str, bytes]]]:
    """Real processes of two real accounts, whose argv0 attack the report framing."""
    users = [account("hvt-alice"), account("hvt-bob")]
    procs = []
    try:
        for n, argv0 in enumerate(HOSTILE_ARGV0):
            user = users[n % 2]
            procs.append((_start_as(user, argv0), user, argv0))
        yield procs
    finally:
        for proc, _, _ in procs:
            proc.kill()
            proc.wait()


def _hostile_state(procs: list[tuple[subprocess.Popen[bytes], str, bytes]]) -> dict[str, Any]:
    """Two GPUs; each hostile process a compute app, its name printed as raw as nvidia-smi may."""
    state = load_state("h100_load")
    second = dict(state["gpus"][0], index=1, uuid="GPU-11111111-1111-1111-1111-111111111111")
    state["gpus"].append(second)
    state["apps"] = [
        {
            "gpu_uuid": state["gpus"][n % 2]["uuid"],
            "pid": proc.pid,
            "process_name": argv0.decode("utf-8", "surrogateescape"),
            "used_gpu_memory": str(100 + n),
        }
        for n, (proc, _, argv0) in enumerate(procs)
    ]
    return state


def _expected(
    procs: list[tuple[subprocess.Popen[bytes], str, bytes]], gpu: int
) -> list[tuple[int, str, str, float]]:
    return [
        (proc.pid, user, command_text((argv0 + b"\x00300\x00")[:MAX_COMMAND_BYTES]), 100.0 + n)
        for n, (proc, user, argv0) in enumerate(procs)
        if n % 2 == gpu
    ]


def _rows(snap: HostSnapshot, gpu: int) -> list[tuple[int, str | None, str, float | None]]:
    return [(p.pid, p.user, p.command, p.gpu_memory_mib) for p in snap.gpus[gpu].processes]


async def test_hostile_process_names_cannot_forge_rows(
    ssh_fleet: TestFleet, hostile: list[tuple[subprocess.Popen[bytes], str, bytes]]
) -> None:
    """Newlines, our own markers, commas, control bytes and 10,000 characters in argv0:
    each process comes back once, with its real owner and its real command line, and
    nothing else; in a sweep and while following (where command lines are read once)."""
    ssh_fleet.add("gpu01", _hostile_state(hostile))
    (snap,) = await sweep_config(ssh_fleet.config_toml(), 10)
    assert snap.status is HostStatus.ONLINE and snap.error is None
    assert len(snap.gpus) == 2
    assert _rows(snap, 0) == _expected(hostile, 0)
    assert _rows(snap, 1) == _expected(hostile, 1)
    async with following(ssh_fleet.config_toml()) as fleet:
        first = await wait_for(fleet, "gpu01", lambda s: len(s.gpus) == 2)
        later = await wait_for(fleet, "gpu01", lambda s: s.updated_at > first.updated_at + 2)
    for followed in (first, later):
        assert followed.error is None
        assert _rows(followed, 0) == _expected(hostile, 0)
        assert _rows(followed, 1) == _expected(hostile, 1)


async def test_rows_that_fail_their_checks_are_dropped_and_said(ssh_fleet: TestFleet) -> None:
    """A GPU uuid not in the driver's form: that GPU and its processes are dropped."""
    state = load_state("h100_load")
    second = dict(state["gpus"][0], index=1, uuid="GPU-...")
    state["gpus"].append(second)
    state["apps"].append(dict(state["apps"][0], gpu_uuid="GPU-...", pid=12))
    ssh_fleet.add("gpu01", state)
    (snap,) = await sweep_config(ssh_fleet.config_toml(), 10)
    assert [gpu.uuid for gpu in snap.gpus] == [state["gpus"][0]["uuid"]]
    assert 12 not in {p.pid for p in snap.gpus[0].processes}
    assert snap.error == ("malformed output from the host: 2 items dropped (GPU 1 uuid 'GPU-...')")
