"""Real OpenSSH sshd servers on loopback, used as GPU hosts by the tests and benchmarks.

Each host has its own host key, its own port and its own fake ``nvidia-smi``
state file; the client has one key and a known_hosts file listing every host.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
FAKE_BIN = ROOT / "fake_nvidia_smi"
STATES = FAKE_BIN / "states"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


TEST_USER = "hivetest"


def login_user() -> str:
    """The account the test hosts are reached as.

    As root, a dedicated account whose login shell is ``/bin/sh``: sshd runs
    every command through the login shell, and root's interactive setup here
    (a ``.bashrc`` that starts pyenv) would add ~80 ms to each command and
    swamp what the tests and benchmarks measure. Otherwise: the current user.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            # "*": no password, but not a locked account (sshd refuses those).
            ["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", TEST_USER],
            check=True,
            capture_output=True,
        )
    return TEST_USER


def account(name: str) -> str:
    """A local account ``name`` for processes of "other users" (created once, as root).

    Without root no account can be made or switched to: the current user's name.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hivetui-test", "-f", str(path)],
        check=True,
    )


def load_state(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((STATES / f"{name}.json").read_text())
    return data


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(proc_dir.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class SshdHost:
    """One sshd process playing one GPU host."""

    name: str
    root: Path
    authorized_keys: Path
    with_nvidia_smi: bool = True
    bin_dir: Path = FAKE_BIN  # where this host's nvidia-smi lives
    cpus: set[int] | None = None  # pin sshd and its sessions to these CPUs (benchmarks)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.host_key = self.root / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key)
        self.state_file = self.root / "gpu-state.json"
        if not self.state_file.exists():
            self.set_state("h100_load")

    @property
    def public_host_key(self) -> str:
        return (self.root / "ssh_host_ed25519_key.pub").read_text().split()[1]

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} ssh-ed25519 {self.public_host_key}\n"

    def set_state(self, state: str | dict[str, Any]) -> None:
        """Change what the fake nvidia-smi on this host reports (read live)."""
        data = load_state(state) if isinstance(state, str) else state
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.state_file)

    def regenerate_host_key(self) -> None:
        for suffix in ("", ".pub"):
            Path(f"{self.host_key}{suffix}").unlink()
        keygen(self.host_key)

    def _write_config(self) -> Path:
        path_dirs = ([str(self.bin_dir)] if self.with_nvidia_smi else []) + [
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
        ]
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "MaxStartups 500",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    f"SetEnv PATH={':'.join(path_dirs)} FAKE_NVIDIA_SMI_STATE={self.state_file}",
                    "",
                ]
            )
        )
        return config

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = (self.root / "sshd.log").open("ab")
        cpus = self.cpus

        def pin() -> None:
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=pin,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sshd for {self.name} exited: {(self.root / 'sshd.log').read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not start on port {self.port}")

    def stop(self) -> None:
        """Kill sshd, its per-connection children and what their sessions run.

        sshd puts each connection and each session in a session of its own, so
        killing its process group is not enough to make the host vanish.
        """
        if self.proc is None:
            return
        victims = _descendants(self.proc.pid) | {self.proc.pid}
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        self._kill_sessions()

    def _kill_sessions(self) -> None:
        """Kill what this host's sessions left behind (found by their environment)."""
        marker = f"FAKE_NVIDIA_SMI_STATE={self.state_file}".encode()
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                environ = (proc_dir / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc_dir.name), signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class TestFleet:
    """A client key, a known_hosts file and any number of sshd hosts."""

    __test__ = False  # a helper, not a test class

    root: Path
    hosts: dict[str, SshdHost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # the test account reads its host's state file
        self.user = login_user()
        self.client_key = self.root / "id_ed25519"
        if not self.client_key.exists():
            keygen(self.client_key)
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text((self.root / "id_ed25519.pub").read_text())
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.write_text("")
        self.ssh_config = self.root / "ssh_config"
        self.ssh_config.write_text("")

    def add(
        self,
        name: str,
        state: str | dict[str, Any] = "h100_load",
        *,
        known: bool = True,
        with_nvidia_smi: bool = True,
        start: bool = True,
        bin_dir: Path = FAKE_BIN,
        cpus: set[int] | None = None,
    ) -> SshdHost:
        host = SshdHost(
            name,
            self.root / name,
            self.authorized_keys,
            with_nvidia_smi=with_nvidia_smi,
            bin_dir=bin_dir,
            cpus=cpus,
        )
        host.set_state(state)
        self.hosts[name] = host
        if start:
            host.start()
        if known:
            with self.known_hosts.open("a") as fh:
                fh.write(host.known_hosts_line())
        return host

    def config_toml(
        self,
        names: list[str] | None = None,
        aliases: dict[str, str] | None = None,
        **extra: Any,
    ) -> str:
        """A hivetui config for these hosts; ``aliases`` maps more names to one host."""
        lines = []
        for key, value in extra.items():
            lines.append(f"{key} = {json.dumps(value)}")
        entries = [(name, name) for name in (names if names is not None else list(self.hosts))]
        entries += list((aliases or {}).items())
        for name, target in entries:
            host = self.hosts[target]
            lines += [
                "[[hosts]]",
                f'name = "{name}"',
                'address = "127.0.0.1"',
                f"port = {host.port}",
                f'user = "{self.user}"',
                f'identity_file = "{self.client_key}"',
            ]
        lines += [
            "[ssh]",
            f'config = "{self.ssh_config}"',
            f'known_hosts = "{self.known_hosts}"',
            "connect_timeout = 5.0",
            "keepalive_interval = 1.0",
        ]
        return "\n".join(lines) + "\n"

    def write_config(self, names: list[str] | None = None, **extra: Any) -> Path:
        path = self.root / "config.toml"
        path.write_text(self.config_toml(names, **extra))
        return path

    def stop_all(self) -> None:
        for host in self.hosts.values():
            host.stop()
