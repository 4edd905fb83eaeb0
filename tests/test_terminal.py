"""The real `hivetui` entry point in a real terminal (tmux), read from the screen."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import TestFleet, _descendants
from tests.test_bounded_output import RSS_LIMIT_KIB, peak_rss_kib

HIVETUI = Path(sys.executable).parent / "hivetui"


class Terminal:
    """A tmux server of our own, with one window running one command."""

    def __init__(self, socket: str, home: Path) -> None:
        self.socket = socket
        self.home = home  # XDG data and state go here, not into the real home

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def start(
        self, command: list[str], width: int = 120, height: int = 40, own_home: bool = False
    ) -> None:
        """Run ``command``; with ``own_home`` its HOME and every XDG dir are fresh (no config)."""
        home = str(self.home / "home") if own_home else os.environ.get("HOME", "/root")
        env = [
            "env",
            "-u",
            "HIVETUI_CONFIG",
            f"HOME={home}",
            f"XDG_CONFIG_HOME={self.home / 'config'}",
            f"XDG_DATA_HOME={self.home / 'data'}",
            f"XDG_STATE_HOME={self.home / 'state'}",
            f"XDG_CACHE_HOME={self.home / 'cache'}",
            "TERM=xterm-256color",
        ]
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), *env, *command)
        self.tmux("set-option", "-g", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def pane_dead(self) -> bool:
        return self.tmux("display-message", "-p", "#{pane_dead}").strip() == "1"

    def wait_dead(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.pane_dead() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert self.pane_dead(), self.screen()

    def hivetui_pid(self) -> int:
        """The hivetui process in the pane (tmux may run it under a shell)."""
        pane = int(self.tmux("display-message", "-p", "#{pane_pid}").strip())
        for pid in sorted({pane} | _descendants(pane)):
            with contextlib.suppress(OSError):
                if b"hivetui" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        raise AssertionError("no hivetui process in the pane")


def _alive(pid: int, started: bytes) -> bool:
    """Whether ``pid`` is still the process that had start time ``started``, unreaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = stat.rsplit(b")", 1)[1].split()
    return fields[19] == started and fields[0] != b"Z"


def _start_time(pid: int) -> bytes:
    return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19]


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    assert shutil.which("tmux"), "tmux is needed (scripts/test installs it)"
    term = Terminal(f"hivetui-test-{os.getpid()}", tmp_path)
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True)


def test_real_entry_point_shows_hosts_and_quits(terminal: Terminal, ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("gpu01", "h100_load")
    ssh_fleet.add("gpu02", "v100x8")
    ssh_fleet.add("gone", start=False)
    config = ssh_fleet.write_config()
    terminal.start([str(HIVETUI), "--config", str(config)])
    terminal.wait_for("V100-SXM2-32GB")
    terminal.wait_for("H100 80GB")  # the hosts answer in any order
    screen = terminal.wait_for("connection refused")
    assert "gpu01" in screen and "gpu02" in screen
    assert "Traceback" not in screen
    terminal.keys("?")
    help_screen = terminal.wait_for("esc, q or ? closes")
    assert "Filter" in help_screen and "Quit" in help_screen
    terminal.keys("Escape")
    # A bare ESC followed at once by "q" reads as alt+q: let the help close first.
    deadline = time.monotonic() + 10
    while "esc, q or ? closes" in terminal.screen() and time.monotonic() < deadline:
        time.sleep(0.1)
    terminal.keys("q")
    deadline = time.monotonic() + 10
    while not terminal.pane_dead() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert terminal.pane_dead(), terminal.screen()
    assert "Traceback" not in terminal.screen()


def test_bad_config_in_a_terminal_is_one_clear_message(terminal: Terminal, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[hosts]]\nname = "gpu01"\nprot = 22\n')
    terminal.start([str(HIVETUI), "--config", str(config)])
    screen = terminal.wait_for("unknown key")
    assert f"{config}:3: unknown key 'hosts[0].prot'" in screen
    assert "Traceback" not in screen


def test_reservation_grid_from_the_real_entry_point(
    terminal: Terminal, ssh_fleet: TestFleet
) -> None:
    """The default database is created on first start; `r` opens the grid on it."""
    ssh_fleet.add("gpu01", "h100_load")
    config = ssh_fleet.write_config()
    terminal.start([str(HIVETUI), "--config", str(config)])
    terminal.wait_for("H100 80GB")
    terminal.keys("r")
    screen = terminal.wait_for("gpu01:0")
    assert "no database" not in screen and "Traceback" not in screen
    assert (terminal.home / "data" / "hivetui" / "hivetui.db").exists()


def test_q_ends_hivetui_and_every_child_on_the_local_machine(terminal: Terminal) -> None:
    """The README's first scenario: no config, the local machine, then q."""
    terminal.start([str(HIVETUI)], own_home=True)
    terminal.wait_for("localhost")
    terminal.wait_for("online")
    pid = terminal.hivetui_pid()
    deadline = time.monotonic() + 20
    children: set[int] = set()
    while time.monotonic() < deadline and len(children) < 2:  # the report loop: sh + sh
        children = _descendants(pid)
        time.sleep(0.2)
    assert children, "the local sampler started no process"
    started = {child: _start_time(child) for child in children if Path(f"/proc/{child}").exists()}
    terminal.keys("q")
    terminal.wait_dead()
    me = {pid: _start_time(pid)} if Path(f"/proc/{pid}").exists() else {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(c, s) for c, s in (started | me).items()):
        time.sleep(0.1)
    assert not any(_alive(c, s) for c, s in me.items())  # hivetui itself has exited
    left = [c for c, s in started.items() if _alive(c, s)]
    assert left == [], [Path(f"/proc/{c}/cmdline").read_bytes() for c in left]
    assert "Traceback" not in terminal.screen()


def test_tui_memory_is_bounded_against_a_host_that_prints_without_end(
    terminal: Terminal, ssh_fleet: TestFleet
) -> None:
    ssh_fleet.add("flood", {"mode": "flood"})
    ssh_fleet.add("gpu02", "h100_load")
    config = ssh_fleet.write_config()
    terminal.start([str(HIVETUI), "--config", str(config)])
    terminal.wait_for("H100 80GB")
    # The report loop's nvidia-smi floods until the host's own timeout (8 s) stops it.
    terminal.wait_for("GPU error: output", timeout=60)
    pid = terminal.hivetui_pid()
    # Several rounds of the flooding host's streams being stopped and started again.
    time.sleep(20)
    screen = terminal.wait_for("H100 80GB")  # the other host kept going
    assert "Traceback" not in screen
    peak = peak_rss_kib(pid)
    assert peak < RSS_LIMIT_KIB, f"peak RSS {peak} KiB"
    terminal.keys("q")
    terminal.wait_dead()
