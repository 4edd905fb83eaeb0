"""Shared fixtures: real sshd hosts on loopback with a fake nvidia-smi on their PATH."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresCluster
from tests.sshd import TestFleet


@pytest.fixture
def ssh_fleet() -> Iterator[TestFleet]:
    """A client key and known_hosts; tests add the sshd hosts they need.

    Its folder is outside pytest's private tmp dir: the hosts' login account
    (see ``login_user``) must read its state files.
    """
    root = Path(tempfile.mkdtemp(prefix="hivetui-rig-"))
    fleet = TestFleet(root)
    try:
        yield fleet
    finally:
        fleet.stop_all()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One real PostgreSQL server for the whole run; tests take fresh databases."""
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
