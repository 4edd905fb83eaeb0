"""Shell scripts that read a host's processes and load, and the parser of their output.

The scripts are constants (no user data inside), written for POSIX ``sh`` so
that nothing has to be installed on the hosts. Each report is a series of
``@section`` lines followed by that section's output, ending with ``@end``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from hivetui.backends.nvidia import apps_query_argv, gpu_query_argv

# ``smi`` wraps nvidia-smi in coreutils' timeout where there is one: a hung
# driver must not hang the report (timeout's exit status is 124).
_SMI = """\
smi() {
  if command -v timeout >/dev/null 2>&1; then timeout -k 2 %d nvidia-smi "$@"
  else nvidia-smi "$@"; fi
}
"""
SMI_TIMEOUT_EXIT = 124
_APPS = shlex.join(["smi", *apps_query_argv()[1:]])
_GPUS = shlex.join(["smi", *gpu_query_argv()[1:]])

# Compute apps, then the owners and command lines of their PIDs (``ps`` only
# when the set of PIDs changed since the last report: ``@ps same`` otherwise),
# then CPU, load and memory from /proc. Everything but nvidia-smi and ps is a
# shell builtin, so a report costs the host little.
_REPORT_BODY = """\
if [ -n "$have_smi" ]; then
  apps=$(@APPS@ 2>&1); rc=$?
  echo @apps; printf '%s\\n' "$apps"; echo "@rc $rc"
  pids=""
  while IFS=, read -r uuid pid rest; do
    pid=${pid# }
    case "$pid" in ""|*[!0-9]*) ;; *) pids="$pids${pids:+,}$pid" ;; esac
  done <<EOF_APPS
$apps
EOF_APPS
  if [ -n "$pids" ] && [ "$pids" = "$last_pids" ]; then
    echo "@ps same"
  else
    echo @ps
    [ -n "$pids" ] && ps -ww -o pid= -o user:64= -o args= -p "$pids"
    last_pids=$pids
  fi
else
  echo @nosmi
fi
echo @stat
read -r cpu < /proc/stat; echo "$cpu"
read -r load < /proc/loadavg; echo "$load"
while read -r key value unit; do
  case "$key" in MemTotal:|MemAvailable:) echo "$key $value";; esac
done < /proc/meminfo
echo @end
""".replace("@APPS@", _APPS)

_HAVE_SMI = "command -v nvidia-smi >/dev/null 2>&1 && have_smi=1\n" + _SMI % 8

FOLLOW_SCRIPT = _HAVE_SMI + "while :; do\n" + _REPORT_BODY + "sleep @INTERVAL@\ndone\n"
"""Reports forever, one every ``@INTERVAL@`` seconds."""

SWEEP_SCRIPT = (
    _HAVE_SMI
    + f'if [ -n "$have_smi" ]; then echo @gpus; {_GPUS} 2>&1; echo "@rc $?"; fi\n'
    + _REPORT_BODY
)
"""One report, with the GPU table first (section ``@gpus``)."""


def follow_command(interval: float) -> str:
    return "sh -c " + shlex.quote(FOLLOW_SCRIPT.replace("@INTERVAL@", f"{interval:g}"))


def sweep_command() -> str:
    return "sh -c " + shlex.quote(SWEEP_SCRIPT)


@dataclass(frozen=True, slots=True)
class Owner:
    user: str
    command: str


@dataclass(slots=True)
class ProbeReport:
    """One parsed report. ``have_smi`` is False where no nvidia-smi is installed."""

    have_smi: bool = True
    gpu_lines: list[str] | None = None
    gpu_rc: int | None = None
    app_lines: list[str] = field(default_factory=list)
    app_rc: int | None = None
    owners: dict[int, Owner] = field(default_factory=dict)
    owners_unchanged: bool = False  # "@ps same": the PIDs are those of the last report
    cpu_ticks: tuple[int, int] | None = None  # (busy, total) since boot
    load1: float | None = None
    mem_total_kib: int | None = None
    mem_available_kib: int | None = None


def cpu_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Busy share of all CPUs between two ``/proc/stat`` readings."""
    if before is None or after is None:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * busy / total))


def _parse_cpu(line: str) -> tuple[int, int] | None:
    parts = line.split()
    if not parts or parts[0] != "cpu":
        return None
    try:
        ticks = [int(p) for p in parts[1:]]
    except ValueError:
        return None
    idle = sum(ticks[3:5])  # idle + iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return total - idle, total


class ReportParser:
    """Feeds lines one by one; returns a finished report at each ``@end``."""

    def __init__(self) -> None:
        self._report = ProbeReport()
        self._section = ""

    def feed(self, line: str) -> ProbeReport | None:
        if line.startswith("@"):
            return self._marker(line)
        report = self._report
        if self._section == "gpus":
            assert report.gpu_lines is not None
            report.gpu_lines.append(line)
        elif self._section == "apps":
            report.app_lines.append(line)
        elif self._section == "ps":
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0].isdigit():
                command = parts[2] if len(parts) == 3 else ""
                report.owners[int(parts[0])] = Owner(parts[1], command)
        elif self._section == "stat":
            self._stat(line)
        return None

    def _marker(self, line: str) -> ProbeReport | None:
        tag, _, rest = line[1:].partition(" ")
        report = self._report
        if tag == "rc":
            code = int(rest) if rest.strip().lstrip("-").isdigit() else None
            if self._section == "gpus":
                report.gpu_rc = code
            else:
                report.app_rc = code
            self._section = ""
        elif tag == "gpus":
            report.gpu_lines = []
            self._section = tag
        elif tag == "ps":
            report.owners_unchanged = rest.strip() == "same"
            self._section = "" if report.owners_unchanged else "ps"
        elif tag == "nosmi":
            report.have_smi = False
        elif tag == "end":
            self._report, self._section = ProbeReport(), ""
            return report
        else:
            self._section = tag
        return None

    def _stat(self, line: str) -> None:
        report = self._report
        if line.startswith("cpu"):
            report.cpu_ticks = _parse_cpu(line)
        elif line.startswith("MemTotal:"):
            report.mem_total_kib = _int_field(line)
        elif line.startswith("MemAvailable:"):
            report.mem_available_kib = _int_field(line)
        elif report.load1 is None:
            try:
                report.load1 = float(line.split()[0])
            except (IndexError, ValueError):
                report.load1 = None


def _int_field(line: str) -> int | None:
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def parse_reports(lines: Iterable[str]) -> list[ProbeReport]:
    parser = ReportParser()
    return [r for line in lines if (r := parser.feed(line)) is not None]
