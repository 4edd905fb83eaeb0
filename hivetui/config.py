"""The typed configuration: found with platformdirs, loaded once, passed down.

Errors name the file, the line and the key, so a person can fix them at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from platformdirs import user_config_path
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hivetui.db import normalize_url
from hivetui.masking import mask_secrets
from hivetui.trust import is_user_name

CONFIG_ENV = "HIVETUI_CONFIG"
LOCAL_HOST = "localhost"


class ConfigError(Exception):
    """The config file cannot be used; the message says where and why."""


USER_NAME_RULE = "a user name: letters, digits, . _ - (not starting with -), at most 32"


def _user_name(value: str) -> str:
    if not is_user_name(value):
        raise ValueError(f"{value!r} is not {USER_NAME_RULE}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class HostConfig(_Strict):
    """One GPU host. ``name`` is an ``~/.ssh/config`` alias when ``address`` is absent."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    address: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    user: str | None = None
    identity_file: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.@:\[\]-]+", value):
            raise ValueError("use letters, digits and . _ - @ : only (no spaces)")
        return value

    @field_validator("user")
    @classmethod
    def _login_name(cls, value: str | None) -> str | None:
        return None if value is None else _user_name(value)

    @property
    def is_local(self) -> bool:
        """The local machine, read without SSH."""
        return self.name == LOCAL_HOST and self.address is None and self.port is None


class SshSettings(_Strict):
    """Options for every SSH connection."""

    config: str | None = None
    known_hosts: str | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    keepalive_interval: Annotated[float, Field(gt=0, le=300)] = 5.0
    command_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0


class ReservationSettings(_Strict):
    """Limits on one reservation."""

    max_hours: Annotated[float, Field(gt=0, le=24 * 366)] = 7 * 24
    max_days_ahead: Annotated[float, Field(gt=0, le=366)] = 30


class ProtectionSettings(_Strict):
    """What happens when someone else's process runs on a reserved GPU."""

    enabled: bool = True  # detect, show and record violations
    warn_from_tui: bool = False  # the agent warns; set true where no agent runs
    warn_terminal: bool = True  # write a message to the intruder's terminals on that host
    warn_every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 15.0
    kill_after_minutes: Annotated[float, Field(ge=0, le=24 * 60)] = 0.0  # 0: never
    idle_util_pct: Annotated[float, Field(ge=0, le=100)] = 5.0
    idle_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 60.0
    smtp_host: str | None = None  # e-mail warnings only when set
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password_env: str | None = None  # name of the variable holding the password
    email_from: str = "hivetui@localhost"
    email_domain: str | None = None  # user -> user@domain
    emails: dict[str, str] = Field(default_factory=dict)  # user -> address, wins over domain

    @field_validator("emails")
    @classmethod
    def _email_users(cls, emails: dict[str, str]) -> dict[str, str]:
        for user in emails:
            _user_name(user)
        return emails


class Config(_Strict):
    """The whole config file."""

    hosts: list[HostConfig] = Field(default_factory=list)
    ssh: SshSettings = Field(default_factory=SshSettings)
    database: str | None = None  # any SQLAlchemy URL; default: SQLite under the data dir
    admins: list[str] = Field(default_factory=list)
    reservations: ReservationSettings = Field(default_factory=ReservationSettings)
    protection: ProtectionSettings = Field(default_factory=ProtectionSettings)
    refresh_interval: Annotated[float, Field(ge=0.2, le=60)] = 1.0
    history_minutes: Annotated[int, Field(ge=1, le=1440)] = 10

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return None if value is None else normalize_url(value)

    @field_validator("admins")
    @classmethod
    def _admin_names(cls, admins: list[str]) -> list[str]:
        return [_user_name(name) for name in admins]

    @field_validator("hosts")
    @classmethod
    def _unique_names(cls, hosts: list[HostConfig]) -> list[HostConfig]:
        seen: set[str] = set()
        for host in hosts:
            if host.name in seen:
                raise ValueError(f"host name {host.name!r} appears twice")
            seen.add(host.name)
        return hosts

    @property
    def effective_hosts(self) -> list[HostConfig]:
        """The hosts to show: the configured ones, or the local machine alone."""
        return list(self.hosts) or [HostConfig(name=LOCAL_HOST)]


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    path: Path | None  # None: no file, built-in defaults


def default_config_path() -> Path:
    return user_config_path("hivetui") / "config.toml"


def resolve_config_path(cli_path: str | None) -> tuple[Path, bool]:
    """The path to read, and whether the user named it (so it must exist)."""
    if cli_path:
        return Path(cli_path).expanduser(), True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser(), True
    return default_config_path(), False


def load_config(cli_path: str | None = None) -> LoadedConfig:
    """Find and validate the config; raise :class:`ConfigError` with a clear message."""
    path, named = resolve_config_path(cli_path)
    if not path.exists():
        if named:
            raise ConfigError(
                f"{path}: no such config file (run `hivetui config init --config {path}` to "
                "create one)"
            )
        return LoadedConfig(Config(), None)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return LoadedConfig(parse_config(text, str(path)), path)


def parse_config(text: str, source: str) -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, text, source)) from None


def _describe(exc: ValidationError, text: str, source: str) -> str:
    lines = _key_lines(text)
    messages = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _dotted(loc)
        line = _find_line(lines, loc)
        where = f"{source}:{line}" if line else source
        if err["type"] == "extra_forbidden":
            what = f"unknown key {key!r}"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            what = f"{key}: {msg}" if key else msg
            if "input" in err and err["type"] not in ("missing",):
                name = next((str(p) for p in reversed(loc) if isinstance(p, str)), None)
                what += f" (got {mask_secrets(repr(err['input']), name)})"
        messages.append(f"{where}: {what}")
    return "\n".join(messages)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path (as pydantic reports it) to its 1-based line number."""
    found: dict[tuple[Any, ...], int] = {}
    counts: dict[str, int] = {}
    table: tuple[Any, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if match := _TABLE.match(line):
            name = match.group(1)
            if line.lstrip().startswith("[["):
                counts[name] = counts.get(name, -1) + 1
                table = (*name.split("."), counts[name])
            else:
                table = tuple(name.split("."))
            found.setdefault(table, number)
        elif match := _KEY.match(line):
            found.setdefault((*table, match.group(1)), number)
    return found


def _find_line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


STARTER_CONFIG = """\
# hivetui configuration. Every key is optional; see docs/configuration.md.
# With no [[hosts]] at all, hivetui shows the local machine.

# refresh_interval = 1.0   # seconds between samples
# history_minutes = 10     # how much history the charts keep
# database = "postgresql+asyncpg://hive@db.example/hivetui"  # one for the whole team;
#                          # default: a SQLite file under ~/.local/share/hivetui
# admins = ["alice"]       # may edit or cancel anyone's reservation

# One [[hosts]] table per GPU server. `name` is shown in the UI and, when
# `address` is absent, looked up in your ~/.ssh/config like `ssh NAME` would.
#
# [[hosts]]
# name = "gpu01"
# address = "10.0.0.5"                 # optional
# port = 22                            # optional
# user = "alice"                       # optional
# identity_file = "~/.ssh/id_ed25519"  # optional; ssh-agent keys are used too
#
# [[hosts]]
# name = "gpu02"                       # an alias from ~/.ssh/config (ProxyJump works)

[reservations]
# max_hours = 168                    # longest reservation
# max_days_ahead = 30                # how far ahead one may book

[protection]
# enabled = true                     # show and record processes on GPUs others reserved
# warn_from_tui = false              # warnings come from `hivetui agent`; true: from the TUI
# warn_terminal = true               # write to the intruder's terminals on that host
# warn_every_minutes = 15
# kill_after_minutes = 0             # 0: never terminate intruding processes
# idle_util_pct = 5                  # a reservation below this GPU use ...
# idle_minutes = 60                  # ... for this long is shown as idle
# smtp_host = "smtp.example.org"     # e-mail warnings too (off while unset)
# email_domain = "example.org"       # alice -> alice@example.org

[ssh]
# config = "~/.ssh/config"             # OpenSSH client config to honour
# known_hosts = "~/.ssh/known_hosts"   # unknown or changed host keys are refused
# connect_timeout = 10.0
# keepalive_interval = 5.0
# command_timeout = 10.0
"""


def write_starter_config(path: Path, force: bool = False) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists (use --force to overwrite it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STARTER_CONFIG, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc}") from None
