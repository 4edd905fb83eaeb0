"""One persistent asyncssh connection per host, with every command multiplexed over it.

Host keys are checked against ``known_hosts`` like OpenSSH does; an unknown or
changed key is refused with the fingerprint and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from hivetui.backends.transport import (
    EXIT_MARK,
    READ_CHUNK,
    CommandResult,
    CommandTimeout,
    HostUnavailable,
    LineSplitter,
    OutputBudget,
    read_both,
)
from hivetui.model import HostStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where and how to reach one host. ``None`` fields fall back to ``~/.ssh/config``."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    ssh_config: str | None = None
    known_hosts: str | None = None
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0

    @property
    def host(self) -> str:
        return self.address or self.name


def _expand(path: str) -> str:
    return str(Path(path).expanduser())


class SshTransport:
    """Runs commands on one host over a single, reused SSH connection."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()

    def _options(self) -> dict[str, Any]:
        t = self.target
        opts: dict[str, Any] = {
            "connect_timeout": t.connect_timeout,
            "login_timeout": t.connect_timeout,
            "keepalive_interval": t.keepalive_interval,
            "keepalive_count_max": 3,
        }
        if t.port is not None:
            opts["port"] = t.port
        if t.user is not None:
            opts["username"] = t.user
        if t.identity_file is not None:
            opts["client_keys"] = [_expand(t.identity_file)]
        if t.ssh_config is not None:
            opts["config"] = [_expand(t.ssh_config)]
        if t.known_hosts is not None:
            opts["known_hosts"] = _expand(t.known_hosts)
        return opts

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        async with self._lock:
            if self.connected:
                return
            try:
                self._conn = await asyncssh.connect(self.target.host, **self._options())
            except asyncssh.HostKeyNotVerifiable as exc:
                raise await self._host_key_problem(exc) from None
            except asyncssh.PermissionDenied:
                raise HostUnavailable(
                    HostStatus.AUTH_FAILED,
                    f"authentication failed as {self._user_at()}: check identity_file, "
                    "ssh-agent (ssh-add -l) and the host's authorized_keys",
                ) from None
            except (TimeoutError, asyncssh.Error, OSError, ValueError) as exc:
                raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None

    def _user_at(self) -> str:
        user = self.target.user
        return f"{user}@{self.target.host}" if user else self.target.host

    def _endpoint(self) -> str:
        port = self.target.port
        return f"[{self.target.host}]:{port}" if port and port != 22 else self.target.host

    async def _host_key_problem(self, exc: Exception) -> HostUnavailable:
        """Tell an unknown key from a changed one, with the key the server showed."""
        known = self.target.known_hosts or "~/.ssh/known_hosts"
        changed = _known_hosts_has(_expand(known), self.target.host, self.target.port)
        fingerprint = await self._server_fingerprint()
        shown = f" (server key {fingerprint})" if fingerprint else ""
        if changed:
            return HostUnavailable(
                HostStatus.HOST_KEY_CHANGED,
                f"HOST KEY CHANGED for {self._endpoint()}{shown}: refused. This may be an "
                f"attack. If the host was really reinstalled, remove the old key with "
                f"`ssh-keygen -f {known} -R '{self._endpoint()}'` and verify the new one",
            )
        return HostUnavailable(
            HostStatus.HOST_KEY_UNKNOWN,
            f"host key of {self._endpoint()} is not in {known}{shown}: refused. Verify it "
            f"with the host's admin, then connect once with `ssh` to add it",
        )

    async def _server_fingerprint(self) -> str | None:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(self.target.host, self.target.port or 22),
                self.target.connect_timeout,
            )
        except (TimeoutError, asyncssh.Error, OSError):
            return None
        return None if key is None else f"{key.get_algorithm()} {key.get_fingerprint()}"

    async def _require(self) -> asyncssh.SSHClientConnection:
        if not self.connected:
            await self.connect()
        assert self._conn is not None
        return self._conn

    async def run(self, command: str, timeout: float) -> CommandResult:
        conn = await self._require()
        budget = OutputBudget()
        try:
            async with asyncio.timeout(timeout):
                process = await conn.create_process(command, encoding=None)
                try:
                    out, err = await read_both(process.stdout, process.stderr, budget)
                    await process.wait_closed()
                finally:
                    # Closing the channel ends the remote command (SIGPIPE on its next write).
                    process.close()
        except TimeoutError:
            raise CommandTimeout(f"no answer in {timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
        return CommandResult(
            process.exit_status, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def stream(self, command: str) -> AsyncGenerator[str, None]:
        conn = await self._require()
        try:
            process = await conn.create_process(command, stderr=asyncssh.STDOUT, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
        lines = LineSplitter()
        try:
            try:
                while chunk := await process.stdout.read(READ_CHUNK):
                    for line in lines.feed(chunk):
                        yield line
            except (asyncssh.Error, OSError) as exc:
                await self._drop()
                raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
            for line in lines.rest():
                yield line
            if self._conn is None or self._conn.is_closed():
                raise HostUnavailable(HostStatus.OFFLINE, "connection lost")
            await process.wait_closed()
            yield f"{EXIT_MARK}{process.exit_status}"
        finally:
            # Closing the channel ends the remote command (SIGPIPE on its next write).
            process.close()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 2)

    async def close(self) -> None:
        await self._drop()


def _cause(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncssh.ConnectionLost):
        return "connection lost"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"disconnected: {exc.reason}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _known_hosts_has(path: str, host: str, port: int | None) -> bool:
    """Whether known_hosts holds any key for this host (then a mismatch means "changed")."""
    if not os.path.exists(path):
        return False
    try:
        known = asyncssh.read_known_hosts(path)
        name = host if not port or port == 22 else f"[{host}]:{port}"
        trusted = known.match(name, "", port or 22)[0]
    except (asyncssh.Error, OSError, ValueError):
        return False
    return bool(trusted)
