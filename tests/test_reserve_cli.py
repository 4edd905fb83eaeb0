"""``hivetui reserve`` and ``hivetui db``, run as a user would.

The real entry point in a subprocess, real sshd hosts for the GPU uuids, and
a SQLite file the test migrates itself with ``hivetui db upgrade``. Users are
told apart the way :func:`hivetui.core.current_user` does: by uid (each command
runs as that account, see tests/accounts.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hivetui.db import head_revision
from tests.accounts import as_account
from tests.sshd import TestFleet, free_port, load_state

TZ = "Asia/Kolkata"  # +05:30 all year: local times differ from UTC, and by a half hour


def hivetui(config: Path, *args: str, user: str, tz: str = TZ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOGNAME": user, "USER": user, "TZ": tz}
    env.pop("HIVETUI_CONFIG", None)
    result = subprocess.run(
        as_account(user, [sys.executable, "-m", "hivetui", "--config", str(config), *args]),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@dataclass
class Rig:
    config: Path
    uuids: dict[str, list[str]]  # host -> GPU uuids by index
    database: str

    def run(
        self, *args: str, user: str = "alice", tz: str = TZ
    ) -> subprocess.CompletedProcess[str]:
        return hivetui(self.config, *args, user=user, tz=tz)

    def ok(self, *args: str, user: str = "alice") -> str:
        result = self.run(*args, user=user)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def listed(self, *extra: str, user: str = "alice") -> list[dict[str, Any]]:
        doc = json.loads(self.ok("reserve", "list", "--json", *extra, user=user))
        assert doc["schema"] == 1
        rows: list[dict[str, Any]] = doc["reservations"]
        return rows

    def add(self, target: str, *times: str, user: str = "alice", title: str = "") -> list[int]:
        out = self.ok("reserve", "add", target, *times, "--title", title, user=user)
        assert out.startswith("booked "), out
        found = re.search(r"reservations? ([\d, ]+)$", out.strip())
        assert found, out
        return [int(i) for i in found.group(1).split(", ")]


def _uuids(state: str) -> list[str]:
    return [g["uuid"] for g in sorted(load_state(state)["gpus"], key=lambda g: g["index"])]


@pytest.fixture
def rig(ssh_fleet: TestFleet, tmp_path: Path) -> Rig:
    """gpu01 with 4 GPUs, gpu02 with 1, an empty SQLite file migrated by `db upgrade`."""
    ssh_fleet.add("gpu01", "a10x4")
    ssh_fleet.add("gpu02", "h100_load")
    ssh_fleet.add("gone", start=False)
    database = f"sqlite+aiosqlite:///{tmp_path / 'team.db'}"
    config = ssh_fleet.write_config(database=database, admins=["carol"])
    rig = Rig(config, {"gpu01": _uuids("a10x4"), "gpu02": _uuids("h100_load")}, database)
    upgraded = rig.ok("db", "upgrade")
    assert f"upgraded from nothing to {head_revision()}" in upgraded
    return rig


def test_db_upgrade_and_status(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    ssh_fleet.add("gpu01", "a10x4")
    database = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    rig = Rig(ssh_fleet.write_config(database=database), {}, database)
    head = head_revision()
    # A configured database is never migrated behind the team's back.
    refused = rig.run("reserve", "list")
    assert refused.returncode == 2
    assert "hivetui db upgrade" in refused.stderr and "at nothing" in refused.stderr
    status = rig.run("db", "status")
    assert status.returncode == 1
    assert "none (empty database)" in status.stdout and f"needed:   {head}" in status.stdout
    assert f"upgraded from nothing to {head}" in rig.ok("db", "upgrade")
    assert f"already at {head}" in rig.ok("db", "upgrade")
    status = rig.run("db", "status")
    assert status.returncode == 0 and "up to date" in status.stdout
    assert "no current or coming reservations" in rig.ok("reserve", "list")


def test_bad_database_url_is_a_clear_error(ssh_fleet: TestFleet, tmp_path: Path) -> None:
    """A database that cannot be opened: the same clear message on every run.

    A SQLite "file" that is a folder used to fail inside aiosqlite's thread, which
    printed that thread's traceback on some runs; it now fails before the thread.
    URLs that are not database URLs are config errors (tests/test_cli_guards.py).
    """
    ssh_fleet.add("gpu01", "a10x4")
    closed = f"postgresql+asyncpg://hive:s3cret@127.0.0.1:{free_port()}/team"
    cases = {f"sqlite+aiosqlite:///{tmp_path}": "unable to open database file", closed: "***"}
    for url, why in cases.items():
        rig = Rig(ssh_fleet.write_config(database=url), {}, url)
        for args in (("db", "upgrade"), ("db", "status"), ("reserve", "list")) * 2:
            result = rig.run(*args)  # asserts that no traceback was printed
            assert result.returncode == 2, (url, args, result.stdout)
            assert "hivetui: database error: " in result.stderr and why in result.stderr
            assert "s3cret" not in result.stderr  # passwords are never printed
            assert "Exception in thread" not in result.stderr


def test_add_list_json_env_cancel(rig: Rig) -> None:
    ids = rig.add("gpu01:0,1", "--from", "+1h", "--for", "2h", title="train llama")
    assert len(ids) == 2
    solo = rig.add("gpu01:2", "--from", "+1h", "--for", "2h", title="other")
    rows = rig.listed()
    assert [r["id"] for r in rows] == [*ids, *solo]
    first = rows[0]
    assert first["user"] == "alice" and first["title"] == "train llama"
    assert (first["host"], first["gpu_index"], first["gpu_uuid"]) == (
        "gpu01",
        0,
        rig.uuids["gpu01"][0],
    )
    start = datetime.fromisoformat(first["start"])
    end = datetime.fromisoformat(first["end"])
    assert start.utcoffset() == timedelta(0) and first["start"].endswith("+00:00")
    assert end - start == timedelta(hours=2)
    assert abs(start - datetime.now(UTC) - timedelta(hours=1)) < timedelta(minutes=1)

    # The table shows local times (TZ is +05:30).
    table = rig.ok("reserve", "list").splitlines()
    assert table[0].split() == ["ID", "USER", "GPU", "FROM", "TO", "TITLE"]
    local = start.astimezone(ZoneInfo(TZ))
    line = next(row for row in table if row.startswith(f"{ids[0]} "))
    assert "gpu01:0" in line and f"{local:%Y-%m-%d %H:%M} IST" in line
    assert f"{start:%Y-%m-%d %H:%M} " not in line  # not UTC

    # env: the GPUs booked together, not the other booking of the same times.
    expected = f"CUDA_VISIBLE_DEVICES={rig.uuids['gpu01'][0]},{rig.uuids['gpu01'][1]}\n"
    assert rig.ok("reserve", "env", str(ids[1])) == expected
    assert (
        rig.ok("reserve", "env", str(solo[0])) == f"CUDA_VISIBLE_DEVICES={rig.uuids['gpu01'][2]}\n"
    )

    out = rig.ok("reserve", "cancel", str(ids[0]), "--gpu", "0")
    assert out.startswith("cancelled gpu01:0 ")
    assert [r["id"] for r in rig.listed()] == [ids[1], *solo]
    again = rig.run("reserve", "cancel", str(ids[0]))
    assert again.returncode == 2 and f"no reservation {ids[0]}" in again.stderr


def test_a_booking_is_edited_cancelled_and_listed_together(rig: Rig) -> None:
    ids = rig.add("gpu01:0-3", "--from", "+1h", "--for", "2h", title="four")
    (solo,) = rig.add("gpu02:0", "--from", "+1h", "--for", "2h", title="four")
    table = rig.ok("reserve", "list").splitlines()
    assert len(table) == 3  # the header, one line per booking
    assert table[1].split()[:3] == [str(ids[0]), "alice", "gpu01:0,1,2,3"]
    assert table[2].split()[:3] == [str(solo), "alice", "gpu02:0"]
    rows = rig.listed()  # --json keeps one row per GPU, and says which booking
    assert [(r["id"], r["booking_id"]) for r in rows] == [(i, ids[0]) for i in ids] + [(solo, solo)]
    start = datetime.fromisoformat(rows[0]["start"])

    # Any reservation of the booking stands for all of it.
    out = rig.ok("reserve", "edit", str(ids[1]), "--for", "12h")
    assert out.startswith("changed gpu01:0,1,2,3 for alice ") and out.rstrip().endswith(
        "reservations " + ", ".join(map(str, ids))
    )
    ends = {r["gpu_index"]: datetime.fromisoformat(r["end"]) for r in rig.listed()[:4]}
    assert ends == {i: start + timedelta(hours=12) for i in range(4)}
    uuids = rig.uuids["gpu01"]
    assert rig.ok("reserve", "env", str(ids[3])) == f"CUDA_VISIBLE_DEVICES={','.join(uuids)}\n"

    # --gpu: only that GPU, which then is a booking of its own.
    out = rig.ok("reserve", "edit", str(ids[0]), "--gpu", "3", "--for", "1h")
    assert out.startswith("changed gpu01:3 for alice ") and out.rstrip().endswith(str(ids[3]))
    by_id = {r["id"]: r for r in rig.listed()}
    assert by_id[ids[3]]["booking_id"] == ids[3]
    assert datetime.fromisoformat(by_id[ids[3]]["end"]) == start + timedelta(hours=1)
    assert {by_id[i]["booking_id"] for i in ids[:3]} == {ids[0]}
    assert rig.ok("reserve", "env", str(ids[0])) == f"CUDA_VISIBLE_DEVICES={','.join(uuids[:3])}\n"
    assert rig.ok("reserve", "env", str(ids[3])) == f"CUDA_VISIBLE_DEVICES={uuids[3]}\n"
    assert len(rig.ok("reserve", "list").splitlines()) == 4

    out = rig.ok("reserve", "cancel", str(ids[2]), "--gpu", "1")
    assert out.startswith("cancelled gpu01:1 for alice ")
    assert [r["gpu_index"] for r in rig.listed() if r["booking_id"] == ids[0]] == [0, 2]
    out = rig.ok("reserve", "cancel", str(ids[2]))
    assert out.startswith("cancelled gpu01:0,2 for alice ")
    assert [r["id"] for r in rig.listed()] == [ids[3], solo]

    wrong = rig.run("reserve", "cancel", str(ids[3]), "--gpu", "5")
    assert wrong.returncode == 2
    assert f"reservation {ids[3]} has no GPU 5 (it holds gpu01:3)" in wrong.stderr
    typo = rig.run("reserve", "edit", str(ids[3]), "--gpu", "x", "--for", "1h")
    assert typo.returncode == 2 and "--gpu 'x': 'x' is not a GPU index" in typo.stderr
    assert len(rig.listed()) == 2


def test_list_mine_and_hosts_outside_the_config(rig: Rig, ssh_fleet: TestFleet) -> None:
    rig.add("gpu01:0", "--for", "1h")
    rig.add("gpu02:0", "--for", "1h", user="bob")
    assert [r["user"] for r in rig.listed("--mine")] == ["alice"]
    assert [r["user"] for r in rig.listed("--mine", user="bob")] == ["bob"]
    assert len(rig.listed()) == 2
    # A config without gpu02 (same database) hides it unless --all-hosts.
    narrow = rig.config.with_name("narrow.toml")
    narrow.write_text(ssh_fleet.config_toml(["gpu01"], database=rig.database))
    other = Rig(narrow, rig.uuids, rig.database)
    assert [r["host"] for r in other.listed()] == ["gpu01"]
    assert sorted(r["host"] for r in other.listed("--all-hosts")) == ["gpu01", "gpu02"]


def test_human_times_and_iso(rig: Rig) -> None:
    zone = ZoneInfo(TZ)
    local_now = datetime.now(zone)
    tomorrow = local_now.date() + timedelta(days=1)
    ids = rig.add("gpu01:0", "--from", "tomorrow 9:00", "--to", "tomorrow 11:30")
    (row,) = [r for r in rig.listed() if r["id"] == ids[0]]
    want = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 9, 0, tzinfo=zone)
    assert datetime.fromisoformat(row["start"]) == want
    assert datetime.fromisoformat(row["end"]) == want + timedelta(hours=2, minutes=30)

    ahead = (4 - local_now.weekday()) % 7 or 7  # the next Friday, never today
    friday = local_now.date() + timedelta(days=ahead)
    ids = rig.add("gpu01:1", "--from", "fri 14:30", "--for", "90m")
    (row,) = [r for r in rig.listed() if r["id"] == ids[0]]
    want = datetime(friday.year, friday.month, friday.day, 14, 30, tzinfo=zone)
    assert datetime.fromisoformat(row["start"]) == want
    assert datetime.fromisoformat(row["end"]) == want + timedelta(minutes=90)

    at = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    iso = at.astimezone(ZoneInfo("America/New_York")).isoformat()  # an explicit offset wins
    ids = rig.add("gpu01:2", "--from", iso, "--to", (at + timedelta(hours=3)).isoformat())
    (row,) = [r for r in rig.listed() if r["id"] == ids[0]]
    assert row["start"] == at.isoformat()
    assert row["end"] == (at + timedelta(hours=3)).isoformat()


def test_conflict_names_the_holder_and_books_nothing(rig: Rig) -> None:
    (held,) = rig.add("gpu01:1", "--from", "+1h", "--for", "2h", title="alice's run")
    result = rig.run("reserve", "add", "gpu01:0,1", "--from", "+2h", "--for", "2h", user="bob")
    assert result.returncode == 1
    assert "refused" in result.stderr and "gpu01:1 is reserved by alice" in result.stderr
    assert f"(reservation {held})" in result.stderr
    assert [r["id"] for r in rig.listed()] == [held]  # all or nothing: gpu01:0 stayed free
    # Back to back is fine: the booking ends where the next starts.
    rows = rig.listed()
    end = rows[0]["end"]
    rig.add("gpu01:1", "--from", end, "--for", "1h", user="bob")


def test_only_the_owner_or_an_admin_may_change_a_reservation(rig: Rig) -> None:
    (res,) = rig.add("gpu02:0", "--from", "+1h", "--for", "1h")
    for args in (("cancel", str(res)), ("edit", str(res), "--for", "3h")):
        result = rig.run("reserve", *args, user="bob")
        assert result.returncode == 1, args
        assert f"reservation {res} belongs to alice" in result.stderr
    assert len(rig.listed()) == 1
    rig.ok("reserve", "edit", str(res), "--title", "by carol", user="carol")
    assert rig.listed()[0]["title"] == "by carol"
    assert rig.ok("reserve", "cancel", str(res), user="carol").startswith("cancelled gpu02:0")
    assert rig.listed() == []


def test_edit_moves_extends_and_retitles(rig: Rig) -> None:
    (res,) = rig.add("gpu01:3", "--from", "+1h", "--for", "2h", title="a")
    before = rig.listed()[0]
    start = datetime.fromisoformat(before["start"])
    rig.ok("reserve", "edit", str(res), "--for", "3h")
    row = rig.listed()[0]
    assert datetime.fromisoformat(row["end"]) == start + timedelta(hours=3)
    rig.ok("reserve", "edit", str(res), "--from", before["end"])  # moved: keeps its length
    row = rig.listed()[0]
    moved = datetime.fromisoformat(before["end"])
    assert datetime.fromisoformat(row["start"]) == moved
    assert datetime.fromisoformat(row["end"]) == moved + timedelta(hours=3)
    rig.ok(
        "reserve",
        "edit",
        str(res),
        "--title",
        "b",
        "--to",
        (moved + timedelta(hours=1)).isoformat(),
    )
    row = rig.listed()[0]
    assert row["title"] == "b" and row["end"] == (moved + timedelta(hours=1)).isoformat()
    nothing = rig.run("reserve", "edit", str(res))
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    # Editing into someone else's slot is a conflict naming them.
    rig.add("gpu01:3", "--from", row["end"], "--for", "1h", user="bob")
    clash = rig.run("reserve", "edit", str(res), "--for", "2h")
    assert clash.returncode == 1 and "reserved by bob" in clash.stderr


def test_free_finds_the_earliest_slot_and_books_it(rig: Rig) -> None:
    rig.add("gpu01:0,1", "--from", "now", "--for", "2h")
    rig.add("gpu01:2,3", "--from", "now", "--for", "3h")
    rows = rig.listed()
    ends = sorted({datetime.fromisoformat(r["end"]) for r in rows})
    # Any host: gpu02 is free right away.
    out = rig.ok("reserve", "free", "--gpus", "1", "--hours", "1")
    assert out.startswith("gpu02:0 free from ")
    # Two on gpu01: when the first pair ends.
    local = ends[0].astimezone(ZoneInfo(TZ))
    out = rig.ok("reserve", "free", "--gpus", "2", "--hours", "1", "--host", "gpu01")
    assert out.startswith(f"gpu01:0,1 free from {local:%a %Y-%m-%d %H:%M}"), out
    # Three: when the second pair ends too; --book books exactly that.
    out = rig.ok(
        "reserve", "free", "--gpus", "3", "--hours", "1.5", "--host", "gpu01", "--book",
        "--title", "found",
    )  # fmt: skip
    assert "booked gpu01:0,1,2 for alice" in out
    booked = [r for r in rig.listed() if r["title"] == "found"]
    assert [r["gpu_index"] for r in booked] == [0, 1, 2]
    assert {datetime.fromisoformat(r["start"]) for r in booked} == {ends[1]}
    assert {datetime.fromisoformat(r["end"]) for r in booked} == {ends[1] + timedelta(hours=1.5)}
    # More GPUs than any host has: refused, exit 1.
    none = rig.run("reserve", "free", "--gpus", "5", "--hours", "1")
    assert none.returncode == 1 and "no 5 GPUs on one host are free together" in none.stderr
    assert "skipping host gone, which is offline: connection refused" in none.stderr


def busy_a10x4(busy: tuple[int, ...]) -> dict[str, Any]:
    """The a10x4 host with GPUs ``busy`` at 100 % and running a process each, nobody's booking."""
    state = load_state("a10x4")
    for gpu in state["gpus"]:
        if gpu["index"] in busy:
            gpu.update({"utilization.gpu": "100", "memory.used": "20000", "memory.free": "2528"})
            state["apps"].append(
                {
                    "gpu_uuid": gpu["uuid"],
                    "pid": 40000 + gpu["index"],
                    "process_name": "python train.py",
                    "used_gpu_memory": "19990",
                }
            )
    return state


def test_free_now_offers_idle_gpus_first_and_says_when_one_is_busy(
    rig: Rig, ssh_fleet: TestFleet
) -> None:
    ssh_fleet.hosts["gpu01"].set_state(busy_a10x4((0, 1, 3)))
    one = rig.run("reserve", "free", "--gpus", "1", "--hours", "1")
    assert one.returncode == 0 and one.stdout.startswith("gpu01:2 free from "), one
    assert "note" not in one.stderr
    # Two on gpu01: only one is idle, so a busy one comes along, and it says which.
    two = rig.run("reserve", "free", "--gpus", "2", "--hours", "1", "--host", "gpu01")
    assert two.returncode == 0 and two.stdout.startswith("gpu01:0,2 free from "), two
    assert "note: gpu01:0 (1 process, 100 % busy, 87 % memory) is in use right now" in two.stderr
    assert "gpu01:2 (" not in two.stderr
    # --book takes the idle GPU, not the first index.
    booked = rig.run("reserve", "free", "--gpus", "1", "--hours", "1", "--book", "--title", "x")
    assert booked.returncode == 0 and "booked gpu01:2 for alice" in booked.stdout
    assert [(r["host"], r["gpu_index"]) for r in rig.listed()] == [("gpu01", 2)]
    # Later slots know nothing of who will run then: plain index order, no note.
    later = rig.run("reserve", "free", "--gpus", "1", "--hours", "1", "--after", "+2h")
    assert later.stdout.startswith("gpu01:0 free from ") and "note" not in later.stderr


def test_free_wording_for_one_gpu_and_hosts_without_gpus(rig: Rig, ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("cpu01", "no_devices")
    config = ssh_fleet.write_config(database=rig.database, admins=["carol"])
    with config.open("a") as fh:
        fh.write("[reservations]\nmax_days_ahead = 1\nmax_hours = 24\n")
    rig.add("gpu02:0", "--for", "24h")
    rig.add("gpu02:0", "--from", rig.listed()[0]["end"], "--for", "24h")
    none = rig.run("reserve", "free", "--gpus", "1", "--hours", "1", "--host", "gpu02")
    assert none.returncode == 1, none
    assert "refused: no GPU on gpu02 is free for 1 h within the next 1 day\n" in none.stderr
    two = rig.run("reserve", "free", "--gpus", "2", "--hours", "1", "--host", "gpu02")
    assert "no 2 GPUs on gpu02 are free together for 1 h within the next 1 day\n" in two.stderr
    skipped = rig.run("reserve", "free", "--gpus", "1", "--hours", "1")
    assert skipped.returncode == 0 and skipped.stdout.startswith("gpu01:0 free from ")
    assert "hivetui: skipping host cpu01, which has no NVIDIA GPU" in skipped.stderr
    named = rig.run("reserve", "free", "--gpus", "1", "--hours", "1", "--host", "cpu01")
    assert named.returncode == 2
    assert "host cpu01 has no NVIDIA GPU" in named.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gpu01:0", "--from", "yesterday noon", "--for", "1h"), "--from 'yesterday noon'"),
        (("gpu01:0", "--from", "25:00", "--for", "1h"), "--from '25:00'"),
        (("gpu01:0", "--for", "2 fortnights"), "--for '2 fortnights'"),
        (("gpu01:0", "--to", "soonish"), "--to 'soonish'"),
        (("gpu01:0",), "--to WHEN or --for DURATION"),
        (("gpu01:0", "--from", "+3h", "--to", "+1h"), "must come after the start"),
        (("gpu01:0", "--from", "2001-01-01 10:00", "--for", "1h"), "would end in the past"),
        (("gpu01", "--for", "1h"), "HOST:GPU[,GPU]"),
        (("gpu01:x", "--for", "1h"), "'x' is not a GPU index"),
        (("gpu09:0", "--for", "1h"), "no host 'gpu09' in the config (hosts: gpu01, gpu02, gone)"),
        (("gpu01:1,7", "--for", "1h"), "host gpu01 has no GPU 7 (it has 0, 1, 2, 3)"),
        (("gone:0", "--for", "1h"), "host gone is offline: connection refused"),
    ],
)
def test_bad_input_exits_2_and_says_why(rig: Rig, args: tuple[str, ...], message: str) -> None:
    result = rig.run("reserve", "add", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    if "--from '" in message or "--to '" in message:
        assert '"tomorrow 9:00"' in result.stderr and "ISO 8601" in result.stderr
    assert rig.listed() == []


def test_limits_refuse_with_exit_1(rig: Rig) -> None:
    too_long = rig.run("reserve", "add", "gpu01:0", "--for", "8d")
    assert too_long.returncode == 1 and "longest reservation allowed (168 h)" in too_long.stderr
    too_far = rig.run("reserve", "add", "gpu01:0", "--from", "+40d", "--for", "1h")
    assert too_far.returncode == 1 and "30 days ahead" in too_far.stderr
    missing = rig.run("reserve", "env", "999")
    assert missing.returncode == 2 and "no reservation 999" in missing.stderr
