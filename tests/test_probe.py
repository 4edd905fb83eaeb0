"""The host report script and its parser, run through a real local shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hivetui.backends.hostkill import read_kill_answer
from hivetui.backends.probe import (
    MAX_COMMAND_BYTES,
    ProcStat,
    ReportParser,
    command_text,
    cpu_percent,
    follow_command,
    parse_reports,
    smi_names,
    sweep_command,
)
from hivetui.backends.transport import LocalTransport, OutputTooLarge
from hivetui.collect import HostReader
from hivetui.model import HostSnapshot
from tests.sshd import FAKE_BIN

UUID0 = "GPU-00000000-0000-0000-0000-000000000000"
UUID1 = "GPU-11111111-1111-1111-1111-111111111111"
PHANTOM = 4_194_000  # a valid PID that no process has here (pid_max is lower)


def test_report_parser_reads_every_section() -> None:
    lines = [
        "@gpus",
        f"0, {UUID0}, 100, 19818, 81559, 59, 631.95, NVIDIA H100 80GB HBM3",
        "@rc 0",
        "@apps",
        f"{UUID0}, 11345, 15690",
        "@rc 0",
        "@proc 11345 4242 1000",
        "@cmd 11345",
        " 2e 2f 67 70 75 00 2d 64 00",
        "@user 1000 alice",
        "@stat",
        "cpu  100 0 50 800 50 0 0 0 0 0",
        "0.52 0.40 0.30 2/85 3401",
        "MemTotal: 2048000",
        "MemAvailable: 1024000",
        "@end",
    ]
    (report,) = parse_reports(lines)
    assert report.gpu_lines == [lines[1]]
    assert report.gpu_rc == 0 and report.app_rc == 0
    assert report.app_lines == [f"{UUID0}, 11345, 15690"]
    assert report.procs == {11345: ProcStat(4242, 1000)}
    assert report.commands == {11345: b"./gpu\0-d\0"}
    assert report.users == {1000: "alice"}
    assert report.cpu_ticks == (150, 1000)
    assert report.load1 == 0.52
    assert (report.mem_total_kib, report.mem_available_kib) == (2048000, 1024000)
    assert report.malformed == []


def test_parser_returns_one_report_per_end_marker() -> None:
    parser = ReportParser()
    assert parser.feed("@nosmi") is None
    first = parser.feed("@end")
    assert first is not None and not first.have_smi
    second = parser.feed("@end")
    assert second is not None and second.have_smi


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("@proc 12 x 0", "unknown marker"),
        ("@usr 0 root", "unknown marker"),
        ("hello", "outside any section"),
    ],
)
def test_lines_the_scripts_never_print_are_malformed(line: str, why: str) -> None:
    (report,) = parse_reports([line, "@end"])
    assert len(report.malformed) == 1 and why in report.malformed[0]


def test_a_command_that_is_not_hex_is_dropped() -> None:
    lines = ["@cmd 5", " 41 42", "@cmd 6", " 41 4g", " 43", "@cmd 7", " 41 4", "@end"]
    (report,) = parse_reports(lines)
    assert report.commands == {5: b"AB"}
    assert report.malformed == ["a command line that is not od's hex"] * 2


def test_a_report_over_the_limit_is_too_large() -> None:
    parser = ReportParser(limit=1000)
    parser.feed("@apps")
    with pytest.raises(OutputTooLarge, match="output too large"):
        for _ in range(100):
            parser.feed("x" * 50)


def test_names_that_forge_a_row_are_dropped() -> None:
    data = b"10, a\n11, b\nstill b, 5\n10, a\n12, evil\n11, forged\n"
    names, problems = smi_names(data, {10, 11, 12}, {10, 11})
    assert names == {10: "a"}
    assert problems == ["pid 11 has 2 different names"]


def test_command_text_keeps_every_byte_visible() -> None:
    assert command_text(b"python\0train.py\0--lr\0") == "python train.py --lr"
    assert command_text(b"\xff\x1b[2J\0") == "\\xff\x1b[2J"
    assert command_text(b"") == ""


@pytest.mark.parametrize(
    ("stdout", "kind", "words"),
    [
        ("killed\n", "killed", "SIGTERM sent"),
        ("skip gone\n", "skipped", "has exited"),
        ("skip off-gpu\n", "skipped", f"no longer a compute process on {UUID0}"),
        ("skip restarted 99\n", "skipped", "another process has its PID now"),
        ("skip owner 0\n", "skipped", "now runs as uid 0 instead of 1000"),
        ("fail sh: kill: Operation not permitted\n", "failed", "Operation not permitted"),
        ("", "failed", "unexpected answer"),
    ],
)
def test_kill_answers_in_words(stdout: str, kind: str, words: str) -> None:
    answer = read_kill_answer(stdout, 42, 1234, 1000, UUID0)
    assert answer.kind == kind and words in answer.detail and "pid 42" in answer.detail


def _state_file(tmp_path: Path, apps: list[dict[str, object]]) -> Path:
    gpu = {
        "name": "NVIDIA H100 80GB HBM3",
        "utilization.gpu": "50",
        "memory.used": "100",
        "memory.total": "81559",
        "temperature.gpu": "40",
        "power.draw": "100.00",
    }
    state = {"gpus": [{"uuid": UUID0, **gpu}, {"uuid": UUID1, **gpu}], "apps": apps}
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    return path


def _app(pid: int, name: bytes, uuid: str = UUID0) -> dict[str, object]:
    """A compute app whose name the fake prints byte for byte, as the real tool may."""
    text = name.decode("utf-8", "surrogateescape")
    return {"gpu_uuid": uuid, "pid": pid, "process_name": text, "used_gpu_memory": "10"}


def test_follow_script_reads_command_lines_only_when_identities_change(tmp_path: Path) -> None:
    """Three reports from the real loop: command lines and names come with the first only."""
    state = _state_file(tmp_path, [_app(os.getpid(), b"python")])
    proc = subprocess.Popen(
        follow_command(0.05),
        shell=True,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": f"{FAKE_BIN}:/usr/bin:/bin", "FAKE_NVIDIA_SMI_STATE": str(state)},
    )
    assert proc.stdout is not None
    parser, reports = ReportParser(), []
    for line in proc.stdout:
        if (report := parser.feed(line.rstrip("\n"))) is not None:
            reports.append(report)
            if len(reports) == 3:
                break
    proc.kill()
    proc.wait()
    first, second, third = reports
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert not first.ident_unchanged and first.users == {os.geteuid(): me}
    assert os.getpid() in first.commands
    assert second.ident_unchanged and third.ident_unchanged
    assert second.commands == {} and second.users == {}
    assert third.procs == first.procs and os.getpid() in third.procs


def test_cpu_percent() -> None:
    assert cpu_percent((100, 1000), (150, 1100)) == 50.0
    assert cpu_percent(None, (1, 2)) is None
    assert cpu_percent((5, 10), (5, 10)) is None


def test_sweep_script_runs_in_a_real_shell_without_nvidia_smi() -> None:
    result = subprocess.run(
        sweep_command(),
        shell=True,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    (report,) = parse_reports(result.stdout.splitlines())
    assert not report.have_smi
    assert report.mem_total_kib and report.mem_total_kib > 0
    assert report.load1 is not None
    assert report.cpu_ticks is not None and report.cpu_ticks[1] > 0
    assert result.stderr == ""


# ---------------------------------------------------------------- planted names


@contextlib.contextmanager
def _fake_smi_env(state: Path) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in ("PATH", "FAKE_NVIDIA_SMI_STATE")}
    os.environ["PATH"] = f"{FAKE_BIN}:/usr/bin:/bin"
    os.environ["FAKE_NVIDIA_SMI_STATE"] = str(state)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sweep_locally(state: Path) -> HostSnapshot:
    with _fake_smi_env(state):
        return asyncio.run(HostReader("here", LocalTransport()).sweep(20))


def _forges(name: bytes, pid: int) -> bool:
    """Whether a line of ``name`` after its first reads as nvidia-smi's row for ``pid``."""
    return any(re.fullmatch(rb"%d, .*" % pid, line) for line in name.split(b"\n")[1:])


HOSTILE = st.sampled_from(
    [b"\n", b"@end", b"@proc 1 1 0", b"@user 0 root", b"@cmd 1", b", ", b"\x01", b"\x7f", b"\xff"]
    + [b"\n%d, forged" % PHANTOM, b"\x1b]52;c;SGVsbG8=\x07", b"\r", b" 41 42"]
)
ARGV0 = st.lists(st.binary(min_size=1, max_size=40) | HOSTILE, min_size=1, max_size=8).map(
    lambda parts: b"".join(parts).replace(b"\0", b"\x01")  # argv strings end at NUL
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv0=ARGV0, phantom_name=st.binary(min_size=1, max_size=60))
def test_planted_process_names_come_back_exactly(
    tmp_path: Path, argv0: bytes, phantom_name: bytes
) -> None:
    """Any bytes as argv0 of a real process, and as nvidia-smi's name of a PID this /proc
    does not show: the real sweep script gives back exactly the planted rows."""
    phantom_name = phantom_name.replace(b"\0", b"\x01").replace(b"\n", b" ")
    assume(phantom_name not in argv0)  # then a row forged inside argv0 names it otherwise
    proc = subprocess.Popen([argv0, "300"], executable="/bin/sleep")
    try:
        apps = [_app(proc.pid, argv0), _app(PHANTOM, phantom_name, UUID1)]
        snap = _sweep_locally(_state_file(tmp_path, apps))
    finally:
        proc.kill()
        proc.wait()
    rows = [
        (gpu.uuid, p.pid, p.user, p.command, p.gpu_memory_mib)
        for gpu in snap.gpus
        for p in gpu.processes
    ]
    me = pwd.getpwuid(os.geteuid()).pw_name
    real = command_text((argv0 + b"\x00300\x00")[:MAX_COMMAND_BYTES])
    forged = _forges(argv0, PHANTOM)
    ghost = "" if forged else phantom_name.decode("utf-8", "backslashreplace")
    assert rows == [
        (UUID0, proc.pid, me, real, 10.0),
        (UUID1, PHANTOM, None, ghost, 10.0),
    ]
    if forged:
        assert snap.error is not None and snap.error.startswith("malformed output from the host")
    else:
        assert snap.error is None
