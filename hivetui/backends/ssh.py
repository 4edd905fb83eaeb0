"""One persistent asyncssh connection per host, with every command multiplexed over it.

Host keys are checked against ``known_hosts`` like OpenSSH does; an unknown or
changed key is refused with the fingerprint and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from hivetui.backends import ssh_policy
from hivetui.backends.ssh_policy import ConnectPlan
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

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        async with self._lock:
            if self.connected:
                return
            self._conn = await _open(self.target)

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


MAX_JUMPS = 8  # ProxyJump chains longer than this are a loop in the ssh config


def _options(t: SshTarget, plan: ConnectPlan) -> dict[str, Any]:
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
        # Our list stands in for asyncssh's defaults, which skip keys with a passphrase.
        opts["ignore_encrypted"] = t.identity_file is None
    if t.ssh_config is not None:
        opts["config"] = [_expand(t.ssh_config)]
    return opts


def _plan(t: SshTarget) -> ConnectPlan:
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


async def _open(
    t: SshTarget, tunnel: asyncssh.SSHClientConnection | None = None, jumps: int = 0
) -> asyncssh.SSHClientConnection:
    """One connection to ``t``, its ProxyJump hosts opened under the same rules first.

    asyncssh would open a ProxyJump host from the ssh config alone, with its
    looser host key and key file rules; hivetui opens each hop itself.
    """
    plan = _plan(t)
    options = _options(t, plan)
    if tunnel is None and plan.proxy_jump and jumps < MAX_JUMPS:
        tunnel = await _open_jumps(t, plan.proxy_jump, jumps)
    if tunnel is not None:
        options["tunnel"] = tunnel
    agent = None
    if plan.client_keys == []:
        # asyncssh reads an empty key list as "the default keys", the very files
        # just refused: offer the agent's keys, or none at all.
        agent, keys = await ssh_policy.agent_keys()
        options["client_keys"] = keys or None
    try:
        conn = await asyncssh.connect(t.host, **options)
    except BaseException as exc:
        if tunnel is not None:
            tunnel.close()
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            raise await _host_key_problem(t, exc, plan) from None
        if isinstance(exc, asyncssh.PermissionDenied):
            ignored = "".join(
                f"; ignored {ssh_policy.unprotected_key(p)}" for p in plan.ignored_keys
            )
            raise HostUnavailable(
                HostStatus.AUTH_FAILED,
                f"authentication failed as {plan.username}@{t.host}: check identity_file, "
                f"ssh-agent (ssh-add -l) and the host's authorized_keys{ignored}",
            ) from None
        if isinstance(exc, (TimeoutError, asyncssh.Error, OSError, ValueError)):
            raise HostUnavailable(HostStatus.OFFLINE, _cause(exc)) from None
        raise
    finally:
        if agent is not None:
            agent.close()
    if tunnel is not None:
        conn.set_tunnel(tunnel)  # closed with the connection it carries
    return conn


async def _open_jumps(t: SshTarget, spec: str, jumps: int) -> asyncssh.SSHClientConnection:
    conn: asyncssh.SSHClientConnection | None = None
    for hop in spec.split(","):
        user, _, where = hop.strip().rpartition("@")
        host, port = _host_port(where)
        hop_target = SshTarget(
            name=host,
            port=port,
            user=user or None,
            ssh_config=t.ssh_config,
            connect_timeout=t.connect_timeout,
            keepalive_interval=t.keepalive_interval,
        )
        try:
            next_conn = await _open(hop_target, conn, jumps + 1)
        except HostUnavailable as exc:
            if conn is not None:
                conn.close()
            raise HostUnavailable(exc.status, f"jump host {hop}: {exc.message}") from None
        if conn is not None:
            next_conn.set_tunnel(conn)
        conn = next_conn
    assert conn is not None
    return conn


def _host_port(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``[v6]:port``, as ProxyJump writes them."""
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, colon, port = text.partition(":")
    return (host, int(port)) if colon and port.isdigit() else (text, None)


async def _host_key_problem(t: SshTarget, exc: Exception, plan: ConnectPlan) -> HostUnavailable:
    """Tell an unknown key from a changed or revoked one, with the key the server showed."""
    endpoint = ssh_policy.openssh_name(plan.hostname, plan.port)
    files = plan.known_hosts_found
    known = files[0] if len(files) == 1 else (" or ".join(files) or "no known_hosts file")
    fingerprint = await _server_fingerprint(plan.hostname, plan.port, t.connect_timeout)
    shown = f" (server key {fingerprint})" if fingerprint else ""
    if "revoked" in str(exc):
        return HostUnavailable(
            HostStatus.HOST_KEY_REVOKED,
            f"host key of {endpoint}{shown} is marked @revoked in {known}: refused. "
            "Ask the host's admin for its new key",
        )
    if plan.known_hosts(plan.hostname, "", plan.port)[0]:
        return HostUnavailable(
            HostStatus.HOST_KEY_CHANGED,
            f"HOST KEY CHANGED for {endpoint}{shown}: refused. This may be an "
            f"attack. If the host was really reinstalled, remove the old key with "
            f"`ssh-keygen -f {known} -R '{endpoint}'` and verify the new one",
        )
    if not files:
        where = ", ".join(plan.known_hosts_files) or "none (UserKnownHostsFile none)"
        known = f"any known_hosts file (looked in: {where})"
    return HostUnavailable(
        HostStatus.HOST_KEY_UNKNOWN,
        f"host key of {endpoint} is not in {known}{shown}: refused. Verify it "
        f"with the host's admin, then connect once with `ssh` to add it",
    )


async def _server_fingerprint(host: str, port: int | None, timeout: float) -> str | None:
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(host, port or 22), timeout)
    except (TimeoutError, asyncssh.Error, OSError):
        return None
    return None if key is None else f"{key.get_algorithm()} {key.get_fingerprint()}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def _cause(exc: BaseException) -> str:
    from hivetui.safe_text import fit_cells, printable

    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncssh.ConnectionLost):
        return "connection lost"
    if isinstance(exc, asyncssh.DisconnectError):
        # The server's own words, sent before its host key is checked: anyone who
        # answers on the address writes them. Bounded and escaped here, once.
        return f"disconnected: {printable(fit_cells(exc.reason, 200))}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    # Protocol errors may quote what the peer sent (a version line, say).
    return printable(fit_cells(str(exc), 200)) or type(exc).__name__
