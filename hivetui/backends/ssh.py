"""One persistent asyncssh connection per host, with every command multiplexed over it.

Host keys are checked against ``known_hosts`` like OpenSSH does; an unknown or
changed key is refused with the fingerprint and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from hivetui.backends import ssh_policy
from hivetui.backends.ssh_policy import ConnectPlan
from hivetui.backends.transport import EXIT_MARK, CommandResult, CommandTimeout, HostUnavailable
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
        """What to connect to; an IPv6 address may be written ``[::1]`` as in URLs."""
        host = self.address or self.name
        return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _expand(path: str) -> str:
    return str(Path(path).expanduser())


class SshTransport:
    """Runs commands on one host over a single, reused SSH connection."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()

    def _options(self, plan: ConnectPlan) -> dict[str, Any]:
        t = self.target
        opts: dict[str, Any] = {
            "connect_timeout": t.connect_timeout,
            "login_timeout": t.connect_timeout,
            "keepalive_interval": t.keepalive_interval,
            "keepalive_count_max": 3,
            "username": plan.username,
            "known_hosts": plan.known_hosts,
        }
        if t.port is not None:
            opts["port"] = t.port
        if plan.client_keys is not None:
            opts["client_keys"] = plan.client_keys
        if t.ssh_config is not None:
            opts["config"] = [_expand(t.ssh_config)]
        return opts

    def _plan(self) -> ConnectPlan:
        t = self.target
        try:
            return ssh_policy.plan(
                host=t.host,
                port=t.port,
                user=t.user,
                identity_file=t.identity_file,
                ssh_config=t.ssh_config,
                known_hosts=t.known_hosts,
            )
        except ssh_policy.ConnectRefused as exc:
            raise HostUnavailable(exc.status, str(exc)) from None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        async with self._lock:
            if self.connected:
                return
            plan = self._plan()
            options = self._options(plan)
            agent = None
            if plan.client_keys == []:
                # asyncssh reads an empty key list as "the default keys", the very
                # files just refused: offer the agent's keys, or none at all.
                agent, keys = await ssh_policy.agent_keys()
                options["client_keys"] = keys or None
            try:
                self._conn = await asyncssh.connect(self.target.host, **options)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise await self._host_key_problem(exc, plan) from None
            except asyncssh.PermissionDenied:
                ignored = "".join(
                    f"; ignored {ssh_policy.unprotected_key(p)}" for p in plan.ignored_keys
                )
                raise HostUnavailable(
                    HostStatus.AUTH_FAILED,
                    f"authentication failed as {plan.username}@{self.target.host}: check "
                    f"identity_file, ssh-agent (ssh-add -l) and the host's authorized_keys"
                    f"{ignored}",
                ) from None
            except (TimeoutError, asyncssh.Error, OSError, ValueError) as exc:
                raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
            finally:
                if agent is not None:
                    agent.close()

    def _endpoint(self) -> str:
        return ssh_policy.openssh_name(self.target.host, self.target.port)

    async def _host_key_problem(self, exc: Exception, plan: ConnectPlan) -> HostUnavailable:
        """Tell an unknown key from a changed or revoked one, with the key the server showed."""
        files = plan.known_hosts_found
        known = files[0] if len(files) == 1 else (" or ".join(files) or "no known_hosts file")
        fingerprint = await self._server_fingerprint()
        shown = f" (server key {fingerprint})" if fingerprint else ""
        if "revoked" in str(exc):
            return HostUnavailable(
                HostStatus.HOST_KEY_REVOKED,
                f"host key of {self._endpoint()}{shown} is marked @revoked in {known}: refused. "
                "Ask the host's admin for its new key",
            )
        trusted = plan.known_hosts(self.target.host, "", self.target.port)[0]
        if trusted:
            return HostUnavailable(
                HostStatus.HOST_KEY_CHANGED,
                f"HOST KEY CHANGED for {self._endpoint()}{shown}: refused. This may be an "
                f"attack. If the host was really reinstalled, remove the old key with "
                f"`ssh-keygen -f {known} -R '{self._endpoint()}'` and verify the new one",
            )
        if not files:
            where = ", ".join(plan.known_hosts_files) or "none (UserKnownHostsFile none)"
            known = f"any known_hosts file (looked in: {where})"
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
        try:
            result = await asyncio.wait_for(
                conn.run(command, check=False, errors="replace"), timeout
            )
        except TimeoutError:
            raise CommandTimeout(f"no answer in {timeout:g} s") from None
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
        return CommandResult(result.exit_status, _text(result.stdout), _text(result.stderr))

    async def stream(self, command: str) -> AsyncIterator[str]:
        conn = await self._require()
        try:
            process = await conn.create_process(command, stderr=asyncssh.STDOUT, errors="replace")
        except (asyncssh.Error, OSError) as exc:
            await self._drop()
            raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
        try:
            try:
                async for line in process.stdout:
                    yield line.rstrip("\n")
            except (asyncssh.Error, OSError) as exc:
                await self._drop()
                raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
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


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


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
