"""Small helpers shared by the tests that drive a fleet against real sshd hosts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from hivetui.config import parse_config
from hivetui.fleet import Fleet
from hivetui.hosts import build_fleet
from hivetui.model import HostSnapshot


async def sweep_config(text: str, timeout: float) -> list[HostSnapshot]:
    """One sweep of every host in this config text, connections closed after."""
    fleet = build_fleet(parse_config(text, "test.toml"))
    try:
        return await fleet.sweep(timeout)
    finally:
        await fleet.stop()


@asynccontextmanager
async def following(text: str) -> AsyncIterator[Fleet]:
    """A fleet following every host of this config text until the block ends."""
    fleet = build_fleet(parse_config(text, "test.toml"))
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.stop()


async def wait_for(
    fleet: Fleet, host: str, predicate: Callable[[HostSnapshot], bool], timeout: float = 15.0
) -> HostSnapshot:
    """The host's first snapshot that satisfies ``predicate``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = fleet.snapshot(host)
        if predicate(snap):
            return snap
        await asyncio.sleep(0.1)
    raise AssertionError(f"{host} never matched; last: {fleet.snapshot(host)}")
