"""Shell scripts that read a host's processes and load, and the parser of their output.

The scripts are constants (no user data inside), written for POSIX ``sh`` so
that nothing has to be installed on the hosts. Each report is a series of
``@section`` lines followed by that section's output, ending with ``@end``.

The framing holds against the host's users: every line the scripts print is
written by the kernel, the driver or the script itself, except a process's
command line and nvidia-smi's process name, which arrive only as hex from
``od`` (``0-9a-f`` and spaces). No byte a user controls can therefore start a
marker, end a field or add a row. Every field is checked again on arrival
(:func:`hivetui.trust.is_pid` and friends); what fails is dropped and named in
:attr:`ProbeReport.malformed`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from hivetui.backends.nvidia import apps_query_argv, gpu_query_argv, names_query_argv
from hivetui.backends.transport import MAX_OUTPUT_BYTES, too_large
from hivetui.trust import is_pid, is_user_name

MAX_COMMAND_BYTES = 4096  # of /proc/PID/cmdline: enough to tell processes apart
MAX_NAMES_BYTES = 256 * 1024  # of nvidia-smi's process names, when some are needed

# ``smi`` wraps nvidia-smi in coreutils' timeout where there is one: a hung
# driver must not hang the report (timeout's exit status is 124).
SMI_TIMEOUT_S = 8
SMI_FUNCTION = """\
smi() {
  if command -v timeout >/dev/null 2>&1; then timeout -k 2 %d nvidia-smi "$@"
  else nvidia-smi "$@"; fi
}
"""
SMI_TIMEOUT_EXIT = 124
_APPS = shlex.join(["smi", *apps_query_argv()[1:]])
_GPUS = shlex.join(["smi", *gpu_query_argv()[1:]])
_NAMES = shlex.join(["smi", *names_query_argv()[1:]])

# Compute apps (driver-written fields only: uuid, pid, memory), then for each PID
# its start time (field 22 of /proc/PID/stat, read after the last ")" since the
# name may hold any byte) and uid, with shell builtins only. Only when that
# (pid, start, uid) set changed since the last report ("@ident same" otherwise):
# each command line and, for PIDs /proc does not show (another PID namespace),
# nvidia-smi's names, both as hex; and the user names of the uids. Then CPU,
# load and memory from /proc.
_REPORT_BODY = """\
if [ -n "$have_smi" ]; then
  apps=$(@APPS@ 2>&1); rc=$?
  echo @apps; printf '%s\\n' "$apps"; echo "@rc $rc"
  pids=" "
  while IFS=, read -r uuid pid rest; do
    pid=${pid# }
    case "$pid" in ""|*[!0-9]*) ;; *)
      case "$pids" in *" $pid "*) ;; *) pids="$pids$pid " ;; esac ;;
    esac
  done <<EOF_APPS
$apps
EOF_APPS
  ident="" uids=" " missing=""
  for pid in $pids; do
    start=- uid=- s=""
    { while IFS= read -r l || [ -n "$l" ]; do s="$s$l"; done < /proc/$pid/stat; } 2>/dev/null
    if [ -n "$s" ]; then
      set -- ${s##*)}
      start=${20:--}
      { while read -r key real eff rest; do
          [ "$key" = Uid: ] && { uid=$eff; break; }
        done < /proc/$pid/status; } 2>/dev/null
    else
      missing=1
    fi
    echo "@proc $pid $start $uid"
    ident="$ident $pid:$start:$uid"
    case "$uid$uids" in -*|*" $uid "*) ;; *) uids="$uids$uid " ;; esac
  done
  if [ "$ident" = "$last_ident" ]; then
    echo "@ident same"
  else
    last_ident=$ident
    for pid in $pids; do
      echo "@cmd $pid"
      od -An -v -tx1 -N @CMDMAX@ /proc/$pid/cmdline 2>/dev/null
    done
    for u in $uids; do
      name=""
      while IFS=: read -r n pw id rest; do
        [ "$id" = "$u" ] && { name=$n; break; }
      done < /etc/passwd
      if [ -z "$name" ] && command -v getent >/dev/null 2>&1; then
        IFS=: read -r name rest <<EOF_PW
$(getent passwd "$u" 2>/dev/null)
EOF_PW
      fi
      echo "@user $u $name"
    done
    if [ -n "$missing" ]; then
      echo @names
      @NAMES@ 2>/dev/null | od -An -v -tx1 -N @NAMESMAX@
    fi
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
"""
_REPORT_BODY = (
    _REPORT_BODY.replace("@APPS@", _APPS)
    .replace("@NAMES@", _NAMES)
    .replace("@CMDMAX@", str(MAX_COMMAND_BYTES))
    .replace("@NAMESMAX@", str(MAX_NAMES_BYTES))
)

_HAVE_SMI = "command -v nvidia-smi >/dev/null 2>&1 && have_smi=1\n" + SMI_FUNCTION % SMI_TIMEOUT_S

FOLLOW_SCRIPT = (
    _HAVE_SMI + 'last_ident=""\nwhile :; do\n' + _REPORT_BODY + "sleep @INTERVAL@\ndone\n"
)
"""Reports forever, one every ``@INTERVAL@`` seconds."""

SWEEP_SCRIPT = (
    _HAVE_SMI
    + 'last_ident=""\n'
    + f'if [ -n "$have_smi" ]; then echo @gpus; {_GPUS} 2>&1; echo "@rc $?"; fi\n'
    + _REPORT_BODY
)
"""One report, with the GPU table first (section ``@gpus``)."""


def follow_command(interval: float) -> str:
    return "sh -c " + shlex.quote(FOLLOW_SCRIPT.replace("@INTERVAL@", f"{interval:g}"))


def sweep_command() -> str:
    return "sh -c " + shlex.quote(SWEEP_SCRIPT)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What /proc said about one PID: ``None`` where the host could not see it."""

    start_time: int | None  # clock ticks after boot, field 22 of /proc/PID/stat
    uid: int | None  # effective uid, as ps shows


@dataclass(slots=True)
class ProbeReport:
    """One parsed report. ``have_smi`` is False where no nvidia-smi is installed."""

    have_smi: bool = True
    gpu_lines: list[str] | None = None
    gpu_rc: int | None = None
    app_lines: list[str] = field(default_factory=list)
    app_rc: int | None = None
    procs: dict[int, ProcStat] = field(default_factory=dict)
    commands: dict[int, bytes] = field(default_factory=dict)  # raw /proc/PID/cmdline
    users: dict[int, str] = field(default_factory=dict)  # uid -> user name
    smi_names: bytes | None = None  # nvidia-smi's "pid, name" rows, when asked
    ident_unchanged: bool = False  # "@ident same": commands and users as last time
    cpu_ticks: tuple[int, int] | None = None  # (busy, total) since boot
    load1: float | None = None
    mem_total_kib: int | None = None
    mem_available_kib: int | None = None
    malformed: list[str] = field(default_factory=list)  # why lines were dropped


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


_HEX_LINE = re.compile(r"[0-9a-f ]*")
_MAX_HEX_CHARS = 3 * max(MAX_COMMAND_BYTES, MAX_NAMES_BYTES) + 4096


def _number(text: str) -> int | None:
    """A decimal integer as the scripts print them; ``-`` (unknown) is ``None``."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


class ReportParser:
    """Feeds lines one by one; returns a finished report at each ``@end``.

    A report larger than ``limit`` bytes raises :class:`OutputTooLarge`.
    """

    def __init__(self, limit: int = MAX_OUTPUT_BYTES) -> None:
        self._limit = limit
        self._reset()

    def _reset(self) -> None:
        self._report = ProbeReport()
        self._section = ""
        self._size = 0
        self._hex: list[str] = []
        self._hex_chars = 0
        self._hex_for: int | None = None  # PID of the "@cmd" being read; -1: "@names"

    def feed(self, line: str) -> ProbeReport | None:
        self._size += len(line) + 1
        if self._size > self._limit:
            self._reset()
            raise too_large("one report", self._limit)
        if line.startswith("@"):
            return self._marker(line)
        report = self._report
        if self._section == "gpus":
            assert report.gpu_lines is not None
            report.gpu_lines.append(line)
        elif self._section == "apps":
            report.app_lines.append(line)
        elif self._section == "hex":
            self._hex_line(line)
        elif self._section == "stat":
            self._stat(line)
        elif self._section == "skip":
            pass  # the rest of a section already reported as malformed
        elif line.strip():
            report.malformed.append(f"a line outside any section: {line[:60]!r}")
        return None

    def _hex_line(self, line: str) -> None:
        self._hex_chars += len(line)
        if _HEX_LINE.fullmatch(line) is None or self._hex_chars > _MAX_HEX_CHARS:
            self._report.malformed.append("a command line that is not od's hex")
            self._hex_for, self._hex, self._hex_chars = None, [], 0  # drop this one
            self._section = "skip"
        else:
            self._hex.append(line)

    def _close_hex(self) -> None:
        target, self._hex_for = self._hex_for, None
        hex_text, self._hex, self._hex_chars = "".join(self._hex), [], 0
        if target is None:
            return
        try:
            data = bytes.fromhex(hex_text.replace(" ", ""))
        except ValueError:  # an odd number of digits
            self._report.malformed.append("a command line that is not od's hex")
            return
        if target == -1:
            self._report.smi_names = data
        else:
            self._report.commands[target] = data

    def _marker(self, line: str) -> ProbeReport | None:
        self._close_hex()
        tag, _, rest = line[1:].partition(" ")
        report = self._report
        words = rest.split(" ")
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
        elif (
            tag == "proc"
            and len(words) == 3
            and (pid := _number(words[0])) is not None
            and all(w == "-" or _number(w) is not None for w in words[1:])
        ):
            report.procs[pid] = ProcStat(_number(words[1]), _number(words[2]))
            self._section = ""
        elif tag == "cmd" and len(words) == 1 and (pid := _number(words[0])) is not None:
            self._hex_for, self._section = pid, "hex"
        elif tag == "names" and not rest:
            self._hex_for, self._section = -1, "hex"
        elif tag == "user" and len(words) == 2 and (uid := _number(words[0])) is not None:
            if words[1]:  # an empty name: the host has no name for this uid
                report.users[uid] = words[1]
            self._section = ""
        elif tag == "ident" and rest == "same":
            report.ident_unchanged = True
        elif tag == "nosmi":
            report.have_smi = False
        elif tag == "end":
            self._reset()
            return report
        elif tag in ("apps", "stat") and not rest:
            self._section = tag
        else:
            report.malformed.append(f"an unknown marker: {line[:60]!r}")
            self._section = "skip"
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
    return _number(parts[1]) if len(parts) > 1 else None


def parse_reports(lines: Iterable[str]) -> list[ProbeReport]:
    parser = ReportParser()
    return [r for line in lines if (r := parser.feed(line)) is not None]


def command_text(cmdline: bytes) -> str:
    """``/proc/PID/cmdline`` as ps shows it: arguments joined by spaces.

    Bytes that are not UTF-8 stay visible as ``\\xNN``; nothing is lost or invented.
    """
    args = cmdline.split(b"\0")
    if args and args[-1] == b"":
        args.pop()
    return b" ".join(args).decode("utf-8", "backslashreplace")


_NAME_ROW = re.compile(rb"(\d{1,7}), (.*)", re.DOTALL)


def smi_names(data: bytes, known: set[int], wanted: set[int]) -> tuple[dict[int, str], list[str]]:
    """nvidia-smi's ``pid, process_name`` rows: names of the PIDs in ``wanted``.

    ``known`` holds every PID of the compute-apps table. A name may hold
    newlines, so a line that does not start with a known PID continues the
    name before it. A name that forges the row of a wanted PID gives that PID
    two different names: both are dropped and reported.
    """
    found: dict[int, list[bytes]] = {}
    order: list[int] = []
    stray = False
    for raw in data.removesuffix(b"\n").split(b"\n") if data else []:
        match = _NAME_ROW.fullmatch(raw)
        if match and int(match[1]) in known:
            pid = int(match[1])
            found.setdefault(pid, []).append(match[2])
            order.append(pid)
        elif order:
            last = found[order[-1]]
            last[-1] += b"\n" + raw
        else:
            stray = True
    names: dict[int, str] = {}
    problems = ["nvidia-smi process names that do not start with a PID"] if stray else []
    for pid, spellings in found.items():
        if pid not in wanted:
            continue
        if len(set(spellings)) == 1:
            names[pid] = spellings[0].decode("utf-8", "backslashreplace")
        else:
            problems.append(f"pid {pid} has {len(set(spellings))} different names")
    return names, problems


@dataclass(frozen=True, slots=True)
class Identity:
    """Who one PID is: checked on arrival, kept while its (start, uid) stay the same."""

    pid: int
    start_time: int | None
    uid: int | None
    user: str | None
    command: str


class IdentityBook:
    """What the reports said about each PID, kept across ``@ident same`` reports."""

    def __init__(self) -> None:
        self._commands: dict[int, str] = {}
        self._users: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._problems: list[str] = []  # found in the last full report, still true

    def read(
        self, report: ProbeReport, app_pids: set[int], listed: set[int] | None = None
    ) -> dict[int, Identity]:
        """Identities of ``app_pids`` (this report's valid compute apps).

        ``listed`` holds every PID of the compute-apps table, rows dropped
        included (already reported): lines about other PIDs are malformed.
        Problems go to ``report.malformed``.
        """
        bad = report.malformed
        listed = app_pids if listed is None else listed | app_pids
        for pid in set(report.procs) - listed:
            bad.append(f"pid {pid} is not a compute app")
        for pid in set(report.commands) - listed:
            bad.append(f"a command line for pid {pid}, not a compute app")
        seen_uids = {p.uid for p in report.procs.values() if p.uid is not None}
        if not report.ident_unchanged:
            bad = self._problems = []
            self._commands = {
                pid: command_text(data)
                for pid, data in report.commands.items()
                if pid in app_pids and is_pid(pid)
            }
            self._users = {}
            for uid, name in report.users.items():
                if uid not in seen_uids:
                    bad.append(f"a user name for uid {uid}, which no process has")
                elif not is_user_name(name):
                    bad.append(f"user name {name[:40]!r} of uid {uid} is not a valid name")
                else:
                    self._users[uid] = name
            missing = {pid for pid in app_pids if pid not in report.procs or not _seen(report, pid)}
            self._names = {}
            if report.smi_names is not None:
                self._names, problems = smi_names(report.smi_names, app_pids, missing)
                bad.extend(problems)
            bad = report.malformed
        report.malformed.extend(self._problems)
        identities = {}
        for pid in app_pids:
            stat = report.procs.get(pid)
            if stat is None:
                bad.append(f"no /proc line for pid {pid}")
                continue
            if stat.start_time is None:  # not in this PID namespace: no owner to name
                identities[pid] = Identity(pid, None, None, None, self._names.get(pid, ""))
                continue
            user = None if stat.uid is None else self._users.get(stat.uid)
            identities[pid] = Identity(
                pid, stat.start_time, stat.uid, user, self._commands.get(pid, "")
            )
        return identities


def _seen(report: ProbeReport, pid: int) -> bool:
    stat = report.procs.get(pid)
    return stat is not None and stat.start_time is not None
