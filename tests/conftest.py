"""Shared fixtures: real sshd hosts on loopback with a fake nvidia-smi on their PATH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd import TestFleet


@pytest.fixture
def ssh_fleet(tmp_path: Path) -> Iterator[TestFleet]:
    """A client key and known_hosts; tests add the sshd hosts they need."""
    fleet = TestFleet(tmp_path / "ssh")
    try:
        yield fleet
    finally:
        fleet.stop_all()
