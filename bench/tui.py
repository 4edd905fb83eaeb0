"""TUI cost: the real ``hivetui`` with 64 GPUs changing every second, beside a naive peer.

Both run as real processes in a real terminal (tmux, 160x50) against 8 loopback
sshd hosts x 8 GPUs whose values change every sample (the test fake's stepping
state). For each we report:

* first frame: from the command to the first screen showing GPU rows;
* CPU: % of one core used by the process over 20 s of 1 Hz updates, once
  data flows.

The peer is the naive design the dashboard avoids: the same core and fleet,
but one plotext chart per GPU (64), all mounted and redrawn at start.

    .venv/bin/python bench/tui.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hostbin import render_static_fake  # noqa: E402
from tests.sshd import TestFleet, load_state  # noqa: E402

HOSTS = 8
MEASURE_S = 20.0
TICK = os.sysconf("SC_CLK_TCK")
PYTHON = sys.executable
NAIVE = ROOT / "bench" / "naive_dashboard.py"


def stepping_state() -> dict[str, Any]:
    """h200x8 with utilisation, memory, temperature and power moving every sample."""
    state = load_state("h200x8")
    for gpu in state["gpus"]:
        base = int(gpu["index"])
        gpu["utilization.gpu"] = [str((base * 13 + k * 7) % 101) for k in range(30)]
        gpu["memory.used"] = [str(20000 + ((base + k) * 3001) % 100000) for k in range(30)]
        gpu["temperature.gpu"] = [str(40 + (base + k) % 30) for k in range(30)]
        gpu["power.draw"] = [f"{150 + ((base * 5 + k * 11) % 500)}.00" for k in range(30)]
    return state


def tmux(socket: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, check=True
    ).stdout


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_for(socket: str, text: str, start: float) -> float:
    """Seconds from ``start`` until the screen matches the regular expression ``text``."""
    while not re.search(text, tmux(socket, "capture-pane", "-p")):
        if time.perf_counter() - start > 60:
            raise RuntimeError(f"{text!r} not on screen after 60 s")
        time.sleep(0.01)
    return time.perf_counter() - start


def measure(command: list[str], frame_text: str, data_text: str) -> tuple[float, float, float]:
    """Start ``command`` in a fresh tmux: (first frame s, first data s, CPU % of a core)."""
    socket = f"hivetui-bench-{os.getpid()}-{time.monotonic_ns()}"
    start = time.perf_counter()
    tmux(socket, "new-session", "-d", "-x", "160", "-y", "50", *command)
    try:
        pid = int(tmux(socket, "display-message", "-p", "#{pane_pid}").strip())
        frame = wait_for(socket, frame_text, start)
        data = wait_for(socket, data_text, start)
        time.sleep(3)  # let the history fill and the first redraws pass
        t0, c0 = time.perf_counter(), cpu_ticks(pid)
        time.sleep(MEASURE_S)
        cpu = (cpu_ticks(pid) - c0) / TICK / (time.perf_counter() - t0)
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    return frame, data, 100 * cpu


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hivetui-tuibench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        state = root / "state.json"
        state.write_text(json.dumps(stepping_state()))
        render_static_fake(root / "bin", state, stream_from_fake=True)
        rig = TestFleet(root / "rig")
        rig.add("sshd", stepping_state(), bin_dir=root / "bin")
        try:
            names = {f"gpu{i:02d}": "sshd" for i in range(HOSTS)}
            config = root / "config.toml"
            config.write_text(rig.config_toml([], aliases=names))
            env = ["env", f"HOME={os.environ.get('HOME', '/root')}"]
            ours = measure(
                [*env, PYTHON, "-m", "hivetui", "--config", str(config)], "gpu07", "H200"
            )
            # The naive charts show their titles at once and their data as a
            # line of braille dots once the history has points.
            naive = measure([*env, PYTHON, str(NAIVE), str(config)], "gpu07/7", "[\u2801-\u28ff]")
        finally:
            rig.stop_all()
    print(f"TUI with {HOSTS * 8} GPUs updating at 1 Hz, 160x50 terminal, {os.cpu_count()} cores")
    print(f"{'':28} | {'first frame':>11} | {'first data':>10} | {'CPU (% of a core)':>17}")
    for label, (frame, data, cpu) in (
        ("hivetui dashboard", ours),
        ("naive: 64 plotext charts", naive),
    ):
        print(f"{label:28} | {frame * 1000:>8.0f} ms | {data * 1000:>7.0f} ms | {cpu:>15.1f} %")
    print(
        f"{'ratio naive / hivetui':28} | {naive[0] / ours[0]:>9.2f}x | {naive[1] / ours[1]:>8.2f}x"
        f" | {naive[2] / ours[2]:>16.2f}x"
    )
    print("first frame: command to the first screen naming the hosts; first data: to GPU values.")


if __name__ == "__main__":
    main()
