"""The real `hivetui` entry point in a real terminal (tmux), read from the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import TestFleet

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

    def start(self, command: list[str], width: int = 120, height: int = 40) -> None:
        env = [
            "env",
            f"HOME={os.environ.get('HOME', '/root')}",
            f"XDG_DATA_HOME={self.home / 'data'}",
            f"XDG_STATE_HOME={self.home / 'state'}",
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
    screen = terminal.wait_for("V100-SXM2-32GB")
    assert "H100 80GB" in screen
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
