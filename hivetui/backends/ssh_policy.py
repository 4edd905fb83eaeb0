"""What an SSH connection trusts, decided the way OpenSSH decides it.

asyncssh is looser than OpenSSH in three places, so hivetui resolves them
itself before it connects:

- ``UserKnownHostsFile none`` in an ssh config turns asyncssh's host key check
  off (any key is accepted). OpenSSH then reads only the global known_hosts
  files; so does hivetui.
- asyncssh lets a known_hosts entry without a port vouch for any port. OpenSSH
  looks up ``[host]:port`` for a port other than 22, and only that.
- asyncssh reads private keys whatever their mode. OpenSSH refuses a key that
  its owner left readable by others ("UNPROTECTED PRIVATE KEY FILE").

The local user name (the default login name) comes from the uid, as OpenSSH's
does, never from ``LOGNAME``/``USER``.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.config import SSHClientConfig

from hivetui.model import HostStatus

DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# The keys OpenSSH and asyncssh try when nothing names one.
DEFAULT_KEYS = ("id_ed25519_sk", "id_ecdsa_sk", "id_ed448", "id_ed25519", "id_ecdsa", "id_rsa")

KnownHostsMatch = Callable[[str, str, int | None], tuple[list[Any], ...]]


class ConnectRefused(Exception):
    """A local file makes the connection unsafe or impossible; the message names it."""

    def __init__(self, message: str, status: HostStatus = HostStatus.AUTH_FAILED) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ConnectPlan:
    """The options hivetui itself resolved for one connection."""

    username: str
    hostname: str  # the HostName the ssh config gives (else the name itself)
    port: int | None
    proxy_jump: str | None
    known_hosts_files: list[str]  # where trusted keys were looked for
    known_hosts_found: list[str]  # those of them that exist
    known_hosts: KnownHostsMatch
    # None: asyncssh's default keys (all of them safe); []: every key file was unsafe,
    # only the ssh-agent's keys may be tried.
    client_keys: list[str] | None
    ignored_keys: list[str] = field(default_factory=list)  # left out: readable by others


def local_user() -> str:
    """The account name of our uid: OpenSSH's default login name."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        raise ConnectRefused(
            f"uid {os.getuid()} has no account name: set `user` for this host in the config"
        ) from None


def openssh_name(host: str, port: int | None) -> str:
    """How OpenSSH writes this endpoint in known_hosts: ``host``, or ``[host]:port``."""
    return host if port in (None, 22) else f"[{host}]:{port}"


def unprotected_key(path: str) -> str | None:
    """OpenSSH's refusal of a private key its owner left readable by group or others."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if info.st_uid != os.getuid() or not info.st_mode & 0o077:
        return None
    mode = stat.S_IMODE(info.st_mode)
    return (
        f"UNPROTECTED PRIVATE KEY FILE {path}: permissions {mode:04o} are too open, so the "
        f"key is refused (as OpenSSH refuses it); run `chmod 600 {path}`"
    )


def _ssh_config(config_path: str | None, user: str | None, host: str, port: int | None) -> Any:
    if config_path is not None:
        paths = [str(Path(config_path).expanduser())]
    else:
        default = Path("~/.ssh/config").expanduser()
        paths = [str(default)] if os.access(default, os.R_OK) else []
    try:
        return SSHClientConfig.load(
            None, paths, False, False, False, local_user(), user or (), host, port or ()
        )
    except (OSError, asyncssh.Error, ValueError) as exc:
        raise ConnectRefused(
            f"cannot read the ssh config {', '.join(paths)}: {exc}", HostStatus.OFFLINE
        ) from None


def _known_hosts_files(known_hosts: str | None, config: Any) -> list[str]:
    if known_hosts is not None:
        path = str(Path(known_hosts).expanduser())
        if not os.path.exists(path):
            raise ConnectRefused(
                f"known_hosts file {path} does not exist: fix [ssh] known_hosts in the config, "
                "or create it by connecting once with `ssh` and checking the key it shows",
                HostStatus.HOST_KEY_UNKNOWN,
            )
        return [path]
    # "UserKnownHostsFile none" reads as [] here: no user file, the global ones still.
    user_files = config.get("UserKnownHostsFile", None)
    global_files = config.get("GlobalKnownHostsFile", None)
    chosen = list(DEFAULT_USER_KNOWN_HOSTS if user_files is None else user_files)
    chosen += list(GLOBAL_KNOWN_HOSTS if global_files is None else global_files)
    return [str(Path(p).expanduser()) for p in chosen]


def read_tables(paths: Sequence[str]) -> list[asyncssh.SSHKnownHosts]:
    """The known_hosts files that exist, parsed."""
    tables = []
    for path in paths:
        if not os.path.isfile(path):
            continue  # /dev/null and missing files trust nothing
        try:
            tables.append(asyncssh.read_known_hosts(path))
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise ConnectRefused(
                f"cannot read known_hosts file {path}: {exc}", HostStatus.HOST_KEY_UNKNOWN
            ) from None
    return tables


def match_tables(
    tables: Sequence[asyncssh.SSHKnownHosts], host: str, addr: str, port: int | None
) -> tuple[list[Any], ...]:
    """Keys of every table for this endpoint, looked up as OpenSSH does (no port fallback).

    The seven lists asyncssh expects: trusted keys, CA keys, revoked keys, then
    X.509 trusted and revoked certificates and subjects.
    """
    found: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    for table in tables:
        # SSHKnownHosts.match() retries without the port when nothing matches with
        # it; _match() is the same lookup without that retry.
        for bucket, items in zip(found, table._match(host, addr, port), strict=True):
            bucket.extend(items)
    return found


def _client_keys(identity_file: str | None, config: Any) -> tuple[list[str] | None, list[str]]:
    if identity_file is not None:
        path = str(Path(identity_file).expanduser())
        if not os.path.exists(path):
            raise ConnectRefused(
                f"identity file {path} does not exist: fix identity_file in the config, or "
                "create a key with `ssh-keygen` and add its .pub to the host's authorized_keys"
            )
        if problem := unprotected_key(path):
            raise ConnectRefused(problem)
        return [path], []
    named = config.get("IdentityFile", None)
    candidates = [str(Path(p).expanduser()) for p in named] if named else []
    if not candidates:
        candidates = [str(Path("~/.ssh", name).expanduser()) for name in DEFAULT_KEYS]
    present = [p for p in candidates if os.path.exists(p)]
    ignored = [p for p in present if unprotected_key(p)]
    if not ignored:
        return None, []  # asyncssh loads the same keys itself
    return [p for p in present if p not in ignored], ignored


async def agent_keys() -> tuple[asyncssh.SSHAgentClient | None, list[Any]]:
    """The ssh-agent's keys, and the open agent client that signs with them (close it)."""
    if not os.environ.get("SSH_AUTH_SOCK"):
        return None, []
    try:
        agent = await asyncssh.connect_agent()
    except (OSError, asyncssh.Error, ValueError):
        return None, []
    if agent is None:
        return None, []
    try:
        return agent, list(await agent.get_keys())
    except (OSError, asyncssh.Error, ValueError):
        agent.close()
        return None, []


def plan(
    *,
    host: str,
    port: int | None,
    user: str | None,
    identity_file: str | None,
    ssh_config: str | None,
    known_hosts: str | None,
) -> ConnectPlan:
    """Resolve login name, trusted host keys and client keys for one host.

    Raises :class:`ConnectRefused` for a missing or unprotected key file or a
    missing known_hosts file named in hivetui's config.
    """
    config = _ssh_config(ssh_config, user, host, port)
    files = _known_hosts_files(known_hosts, config)
    tables = read_tables(files)

    def trusted(host: str, addr: str, port: int | None) -> tuple[list[Any], ...]:
        return match_tables(tables, host, addr, port)

    keys, ignored = _client_keys(identity_file, config)
    username = user or config.get("User", None) or local_user()
    found = [f for f in files if os.path.isfile(f)]
    hostname = str(config.get("Hostname", None) or host)
    real_port = port or config.get("Port", None)
    jump = config.get("ProxyJump", None)
    return ConnectPlan(
        str(username),
        hostname,
        int(real_port) if real_port else None,
        str(jump) if jump else None,
        files,
        found,
        trusted,
        keys,
        ignored,
    )
