"""The live state of every host: latest snapshots and per-GPU history.

The fleet owns one collector per host. Collectors push snapshots in; front
ends (TUI, CLI, agent) read plain values out. Nothing here imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from hivetui.history import DEFAULT_POINTS, GpuHistory
from hivetui.model import HostSnapshot, HostStatus

if TYPE_CHECKING:
    from hivetui.backends.transport import Transport

UpdateListener = Callable[[HostSnapshot], None]


class HostCollector(Protocol):
    """Reads one host. Implemented for SSH hosts and for the local machine."""

    name: str

    async def follow(self, publish: UpdateListener) -> None:
        """Publish a snapshot about once a second until cancelled. Never raises."""

    async def sweep(self, timeout: float) -> HostSnapshot:
        """Connect if needed and take one fresh snapshot. Never raises."""

    async def close(self) -> None:
        """Drop the connection and everything running over it."""


class Fleet:
    """Latest snapshot and history of every host, fed by collectors."""

    def __init__(
        self, collectors: Sequence[HostCollector], history_points: int = DEFAULT_POINTS
    ) -> None:
        self._collectors = {c.name: c for c in collectors}
        self._snapshots: dict[str, HostSnapshot] = {
            c.name: HostSnapshot(name=c.name, status=HostStatus.CONNECTING) for c in collectors
        }
        self._history: dict[tuple[str, int], GpuHistory] = {}
        self._history_points = history_points
        self._listeners: list[UpdateListener] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.version = 0  # bumped on every recorded snapshot; readers skip work when unchanged

    @property
    def host_names(self) -> list[str]:
        return list(self._snapshots)

    def snapshots(self) -> list[HostSnapshot]:
        return list(self._snapshots.values())

    def snapshot(self, host: str) -> HostSnapshot:
        return self._snapshots[host]

    def history(self, host: str, gpu_index: int) -> GpuHistory | None:
        return self._history.get((host, gpu_index))

    def transport(self, host: str) -> Transport | None:
        """The connection ``host`` is read through, for commands of its own (the guard's).

        ``None`` for an unknown host or a collector without a transport.
        """
        found: Transport | None = getattr(self._collectors.get(host), "transport", None)
        return found

    def subscribe(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    def record(self, snapshot: HostSnapshot) -> None:
        """Take in one host's new snapshot (collectors call this)."""
        previous = self._snapshots.get(snapshot.name)
        self._snapshots[snapshot.name] = snapshot
        self.version += 1
        if previous is None or snapshot.updated_at != previous.updated_at:
            for gpu in snapshot.gpus:
                key = (snapshot.name, gpu.index)
                hist = self._history.get(key)
                if hist is None:
                    hist = self._history[key] = GpuHistory(self._history_points)
                hist.append(snapshot.updated_at, gpu)
        for listener in self._listeners:
            listener(snapshot)

    async def start(self) -> None:
        """Follow every host concurrently; a slow host delays only itself."""
        for collector in self._collectors.values():
            task = asyncio.create_task(
                collector.follow(self.record), name=f"follow:{collector.name}"
            )
            self._tasks.append(task)

    async def sweep(self, timeout: float = 10.0) -> list[HostSnapshot]:
        """One fresh snapshot of every host, taken concurrently."""
        results = await asyncio.gather(*(c.sweep(timeout) for c in self._collectors.values()))
        for snap in results:
            self.record(snap)
        return list(results)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.gather(*(c.close() for c in self._collectors.values()))
