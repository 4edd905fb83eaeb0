"""The kill that re-checks on the host what was judged, and its answer in words.

A kill is one shell script run as the SSH login account. At the moment of the
kill it checks that the PID is still a compute app on that GPU, with the start
time and owner it had when it was judged; otherwise nothing is signalled.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hivetui.backends.probe import SMI_FUNCTION, SMI_TIMEOUT_S

# Prints one line: "killed", "skip WHY" or "fail WHY". A PID could still be reused
# between the checks and kill(1), but only within those microseconds, not over a
# whole report period.
_KILL_BODY = """\
pid=$1 start=$2 uid=$3 gpu=$4 on=""
apps=$(@APPS@ 2>&1) || { echo "fail nvidia-smi failed"; exit 0; }
while IFS=', ' read -r u p rest; do
  [ "$u" = "$gpu" ] && [ "$p" = "$pid" ] && on=1
done <<EOF_APPS
$apps
EOF_APPS
[ -n "$on" ] || { echo "skip off-gpu"; exit 0; }
s=""
{ while IFS= read -r l || [ -n "$l" ]; do s="$s$l"; done < /proc/$pid/stat; } 2>/dev/null
[ -n "$s" ] || { echo "skip gone"; exit 0; }
set -- ${s##*)}
[ "${20}" = "$start" ] || { echo "skip restarted ${20}"; exit 0; }
now=-
{ while read -r key real eff rest; do
    [ "$key" = Uid: ] && { now=$eff; break; }
  done < /proc/$pid/status; } 2>/dev/null
[ "$now" = "$uid" ] || { echo "skip owner $now"; exit 0; }
if err=$(kill -TERM "$pid" 2>&1); then echo killed; else echo "fail $err"; fi
"""
KILL_SCRIPT = SMI_FUNCTION % SMI_TIMEOUT_S + _KILL_BODY.replace(
    "@APPS@", shlex.join(["smi", "--query-compute-apps=gpu_uuid,pid", "--format=csv,noheader"])
)


def kill_command(pid: int, start_time: int, uid: int, gpu_uuid: str) -> str:
    """The command line that sends SIGTERM to ``pid`` only if it is still what was judged."""
    args = [str(pid), str(start_time), str(uid), gpu_uuid]
    return shlex.join(["sh", "-c", KILL_SCRIPT, "sh", *args])


@dataclass(frozen=True, slots=True)
class KillAnswer:
    """What the kill script did: ``kind`` is ``killed``, ``skipped`` or ``failed``."""

    kind: str
    detail: str


def read_kill_answer(stdout: str, pid: int, start_time: int, uid: int, gpu_uuid: str) -> KillAnswer:
    """The kill script's one line, in words for the event log."""
    word, _, rest = (stdout.strip().splitlines() or [""])[0].partition(" ")
    rest = rest[:200]
    if word == "killed":
        return KillAnswer("killed", f"pid {pid}: SIGTERM sent")
    if word == "skip":
        why = {
            "off-gpu": f"no longer a compute process on {gpu_uuid}",
            "gone": "has exited",
        }.get(rest)
        if why is None and rest.startswith("restarted"):
            why = (
                f"started at tick {rest.partition(' ')[2]} instead of {start_time}: "
                "another process has its PID now"
            )
        if why is None and rest.startswith("owner"):
            why = f"now runs as uid {rest.partition(' ')[2]} instead of {uid}"
        return KillAnswer("skipped", f"pid {pid}: {why or rest}; not killed")
    if word == "fail":
        return KillAnswer("failed", f"pid {pid}: {rest or 'refused'}")
    return KillAnswer("failed", f"pid {pid}: unexpected answer {stdout.strip()[:80]!r}")
