"""How commands reach a host: the shared interface and the local implementation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from hivetui.model import HostStatus


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int | None
    stdout: str
    stderr: str


class HostUnavailable(Exception):
    """The host cannot be reached or refuses us; ``status`` says which way."""

    def __init__(self, status: HostStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CommandTimeout(Exception):
    """A command on the host gave no answer in time (it was stopped)."""


class Transport(Protocol):
    """Runs shell command lines on one host (already quoted with :mod:`shlex`)."""

    async def connect(self) -> None:
        """Open the connection; raise :class:`HostUnavailable` when that fails."""

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run to completion; raise :class:`CommandTimeout` or :class:`HostUnavailable`."""
        ...

    def stream(self, command: str) -> AsyncIterator[str]:
        """Yield the command's output lines (stdout and stderr merged) as they come.

        When the command ends, the last item is ``"\\0exit N"``.
        """
        ...

    async def close(self) -> None: ...


EXIT_MARK = "\0exit "


class LocalTransport:
    """The local machine, through ``/bin/sh``: no SSH involved."""

    async def connect(self) -> None:
        return None

    async def run(self, command: str, timeout: float) -> CommandResult:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise CommandTimeout(f"no answer in {timeout:g} s") from None
        return CommandResult(
            proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    async def stream(self, command: str) -> AsyncIterator[str]:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                yield raw.decode(errors="replace").rstrip("\n")
            yield f"{EXIT_MARK}{await proc.wait()}"
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def close(self) -> None:
        return None
