"""How commands reach a host: the shared interface and the local implementation.

What a host prints is bounded here, for every command: a line longer than
:data:`MAX_LINE_BYTES` or a command that prints more than
:data:`MAX_OUTPUT_BYTES` is stopped and raises :class:`OutputTooLarge`, so a
host that prints without end costs a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from hivetui.model import HostStatus

MAX_LINE_BYTES = 64 * 1024  # no line of ours comes near; od prints 48 characters a line
MAX_OUTPUT_BYTES = 8 * 1024 * 1024  # a sweep of a busy 8-GPU host prints well under 1 MiB
READ_CHUNK = 64 * 1024
END_WAIT_S = 5.0  # for a killed local command's pipes to close


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


class OutputTooLarge(CommandTimeout):
    """A command printed more than we read (it was stopped).

    A :class:`CommandTimeout`: whoever handles a stopped command handles this too.
    """


def too_large(what: str, limit: int) -> OutputTooLarge:
    return OutputTooLarge(f"output too large: {what} over {limit // 1024} KiB (stopped)")


class LineSplitter:
    """Bytes in, decoded lines out; a line over ``limit`` bytes raises :class:`OutputTooLarge`."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[str]:
        self._pending += chunk
        *lines, rest = self._pending.split(b"\n")
        self._pending = bytearray(rest)
        if len(rest) > self._limit or any(len(line) > self._limit for line in lines):
            raise too_large("a line", self._limit)
        return [line.decode(errors="replace") for line in lines]

    def rest(self) -> list[str]:
        """The unterminated last line, if any."""
        rest, self._pending = bytes(self._pending), bytearray()
        return [rest.decode(errors="replace")] if rest else []


class OutputBudget:
    """Counts the bytes of one command's output against :data:`MAX_OUTPUT_BYTES`."""

    def __init__(self, limit: int = MAX_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def take(self, chunk: bytes) -> bytes:
        self.used += len(chunk)
        if self.used > self.limit:
            raise too_large("one command", self.limit)
        return chunk


class Transport(Protocol):
    """Runs shell command lines on one host (already quoted with :mod:`shlex`)."""

    async def connect(self) -> None:
        """Open the connection; raise :class:`HostUnavailable` when that fails."""

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run to completion; raise :class:`CommandTimeout` (or :class:`OutputTooLarge`)
        or :class:`HostUnavailable`."""
        ...

    def stream(self, command: str) -> AsyncGenerator[str, None]:
        """Yield the command's output lines (stdout and stderr merged) as they come.

        When the command ends, the last item is ``"\\0exit N"``. A line over
        :data:`MAX_LINE_BYTES` raises :class:`OutputTooLarge`.
        """
        ...

    async def close(self) -> None: ...


EXIT_MARK = "\0exit "


class ByteReader(Protocol):
    """What asyncio's and asyncssh's stream readers have in common."""

    async def read(self, n: int = -1) -> bytes: ...


async def _read_all(reader: ByteReader, budget: OutputBudget) -> bytes:
    parts: list[bytes] = []
    while chunk := await reader.read(READ_CHUNK):
        parts.append(budget.take(chunk))
    return b"".join(parts)


async def read_both(out: ByteReader, err: ByteReader, budget: OutputBudget) -> tuple[bytes, bytes]:
    """stdout and stderr read together (neither may stall the other), within one budget."""
    tasks = [
        asyncio.ensure_future(_read_all(out, budget)),
        asyncio.ensure_future(_read_all(err, budget)),
    ]
    try:
        first, second = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        # Until both are done, nobody else may read these streams (to drain them).
        await asyncio.gather(*tasks, return_exceptions=True)
    return first, second


class LocalTransport:
    """The local machine, through ``/bin/sh``: no SSH involved.

    Every command runs in a process group of its own, and the whole group is
    killed when the command is stopped or the transport closed: a shell's own
    children (the report loop's inner ``sh``) must not outlive hivetui.
    """

    def __init__(self) -> None:
        self._running: set[asyncio.subprocess.Process] = set()

    async def connect(self) -> None:
        return None

    async def _start(self, command: str, stderr: int) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        self._running.add(proc)
        return proc

    async def _end(self, proc: asyncio.subprocess.Process) -> None:
        """Kill the command's whole process group and reap the command.

        asyncio reports the exit only once the pipes are closed too, and a pipe
        whose reading was paused (we stopped reading a flood) is never seen to
        close: drain what is left, then wait, each for a bounded time.
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, OSError, RuntimeError, ValueError):
            async with asyncio.timeout(END_WAIT_S):
                for reader in (proc.stdout, proc.stderr):
                    while reader is not None and await reader.read(READ_CHUNK):
                        pass
                await proc.wait()
        self._running.discard(proc)

    async def run(self, command: str, timeout: float) -> CommandResult:
        proc = await self._start(command, asyncio.subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        budget = OutputBudget()
        try:
            async with asyncio.timeout(timeout):
                out, err = await read_both(proc.stdout, proc.stderr, budget)
                status = await proc.wait()
        except TimeoutError:
            raise CommandTimeout(f"no answer in {timeout:g} s") from None
        finally:
            await self._end(proc)
        return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))

    async def stream(self, command: str) -> AsyncGenerator[str, None]:
        proc = await self._start(command, asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines = LineSplitter()
        try:
            while chunk := await proc.stdout.read(READ_CHUNK):
                for line in lines.feed(chunk):
                    yield line
            for line in lines.rest():
                yield line
            yield f"{EXIT_MARK}{await proc.wait()}"
        finally:
            await self._end(proc)

    async def close(self) -> None:
        for proc in list(self._running):
            await self._end(proc)
