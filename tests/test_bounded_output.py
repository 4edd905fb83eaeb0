"""A host that prints too much costs bounded memory and time; the other hosts go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hivetui.backends.transport import (
    MAX_LINE_BYTES,
    LineSplitter,
    LocalTransport,
    OutputTooLarge,
)
from tests.sshd import TestFleet

HIVETUI = Path(sys.executable).parent / "hivetui"
RSS_LIMIT_KIB = 300 * 1024
TIMEOUT_S = 5
MARGIN_S = 20  # start-up, closing connections, a loaded machine: a bound, not a timing

FLOODS = {
    "50 MB": {"mode": "flood", "flood_bytes": 50 * 1024 * 1024},
    "without end": {"mode": "flood"},
    "one endless line": {"mode": "flood", "flood_line": "y" * 4096},
}


def peak_rss_kib(pid: int) -> int:
    """VmHWM (the peak resident size so far) of a live process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def _run_with_peak(argv: list[str], env: dict[str, str]) -> tuple[str, int, float]:
    """stdout, the peak RSS (KiB) and the seconds a command took."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else b""))
    reader.start()
    # wait4 reports the child's own peak RSS, the same figure as its last VmHWM.
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    assert proc.returncode == 0, out
    return out[0].decode(), usage.ru_maxrss, elapsed


@pytest.mark.parametrize("flood", FLOODS.values(), ids=FLOODS.keys())
def test_one_shot_gpus_is_bounded(
    ssh_fleet: TestFleet, flood: dict[str, object], tmp_path: Path
) -> None:
    ssh_fleet.add("flood", flood)
    ssh_fleet.add("gpu02", "h100_load")
    config = ssh_fleet.write_config()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    argv = [str(HIVETUI), "--config", str(config), "gpus", "--json", "--timeout", str(TIMEOUT_S)]
    out, peak_kib, elapsed = _run_with_peak(argv, env)
    hosts = {host["name"]: host for host in json.loads(out)["hosts"]}
    assert hosts["flood"]["status"] == "online"
    assert hosts["flood"]["error"].startswith("output too large"), hosts["flood"]
    assert hosts["flood"]["gpus"] == []
    assert len(hosts["gpu02"]["gpus"]) == 1 and hosts["gpu02"]["error"] is None
    assert peak_kib < RSS_LIMIT_KIB, f"peak RSS {peak_kib} KiB"
    assert elapsed < TIMEOUT_S + MARGIN_S


def test_timeout_holds_for_a_host_that_never_answers(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    ssh_fleet.add("hung", "hang")
    config = ssh_fleet.write_config()
    argv = [str(HIVETUI), "--config", str(config), "gpus", "--json", "--timeout", "2"]
    out, _, elapsed = _run_with_peak(argv, {**os.environ, "XDG_DATA_HOME": str(tmp_path)})
    (host,) = json.loads(out)["hosts"]
    assert host["gpu_error"] == "the host did not answer in 2 s (nvidia-smi hung?)"
    assert elapsed < 2 + MARGIN_S


def test_a_line_over_the_limit_is_refused() -> None:
    lines = LineSplitter(limit=10)
    assert lines.feed(b"short\nlonger") == ["short"]
    with pytest.raises(OutputTooLarge):
        lines.feed(b" and longer")


async def test_local_commands_are_capped_too() -> None:
    local = LocalTransport()
    with pytest.raises(OutputTooLarge, match="output too large: one command"):
        await local.run("yes", 30)
    with pytest.raises(OutputTooLarge, match="output too large: a line"):
        async for _ in local.stream(f"head -c {2 * MAX_LINE_BYTES} /dev/zero"):
            pass
    result = await local.run("echo ok; echo err >&2", 10)
    assert (result.exit_status, result.stdout, result.stderr) == (0, "ok\n", "err\n")
