"""The host report script and its parser, run through a real local shell."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hivetui.backends.probe import (
    Owner,
    ReportParser,
    cpu_percent,
    follow_command,
    parse_reports,
    sweep_command,
)


def test_report_parser_reads_every_section() -> None:
    lines = [
        "@gpus",
        "0, GPU-a, 100, 19818, 81559, 59, 631.95, NVIDIA H100 80GB HBM3",
        "@rc 0",
        "@apps",
        "GPU-a, 11345, 15690, ./gpu_burn",
        "@rc 0",
        "@ps",
        "  11345 alice    ./gpu_burn -d 3600",
        "@stat",
        "cpu  100 0 50 800 50 0 0 0 0 0",
        "0.52 0.40 0.30 2/85 3401",
        "MemTotal: 2048000",
        "MemAvailable: 1024000",
        "@end",
    ]
    (report,) = parse_reports(lines)
    assert report.gpu_lines == ["0, GPU-a, 100, 19818, 81559, 59, 631.95, NVIDIA H100 80GB HBM3"]
    assert report.gpu_rc == 0 and report.app_rc == 0
    assert report.app_lines == ["GPU-a, 11345, 15690, ./gpu_burn"]
    assert report.owners == {11345: Owner("alice", "./gpu_burn -d 3600")}
    assert report.cpu_ticks == (150, 1000)
    assert report.load1 == 0.52
    assert (report.mem_total_kib, report.mem_available_kib) == (2048000, 1024000)


def test_parser_returns_one_report_per_end_marker() -> None:
    parser = ReportParser()
    assert parser.feed("@nosmi") is None
    first = parser.feed("@end")
    assert first is not None and not first.have_smi
    second = parser.feed("@end")
    assert second is not None and second.have_smi


def test_unchanged_pids_skip_ps() -> None:
    (report,) = parse_reports(["@apps", "GPU-a, 5, 10, x", "@rc 0", "@ps same", "@end"])
    assert report.owners_unchanged and report.owners == {}
    assert report.app_lines == ["GPU-a, 5, 10, x"]


def test_follow_script_runs_ps_only_when_pids_change(tmp_path: Path) -> None:
    """Three reports from the real loop: ps runs for the first only."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU-a, 1, 100, init'\n")
    fake.chmod(0o755)
    proc = subprocess.Popen(
        follow_command(0.05),
        shell=True,
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
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
    assert not first.owners_unchanged and first.owners[1].user == "root"
    assert second.owners_unchanged and third.owners_unchanged
    assert third.app_lines == ["GPU-a, 1, 100, init"]


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
