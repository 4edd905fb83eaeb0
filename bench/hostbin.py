"""A cheap ``nvidia-smi`` for benchmark hosts that all share this machine's cores.

It prints the bytes that the test fake (tests/fake_nvidia_smi, itself checked
against real captures) renders once for hivetui's command lines, so that many
"hosts" on one machine do not spend the cores starting Python. With
``stream_from_fake``, the ``--loop-ms`` stream is the real fake instead, so
values can change every sample (its state file steps through lists).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from hivetui.backends.nvidia import apps_query_argv, gpu_query_argv, names_query_argv
from tests.sshd import FAKE_BIN


def render_static_fake(bin_dir: Path, state: Path, stream_from_fake: bool = False) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FAKE_NVIDIA_SMI_STATE": str(state)}
    fake = str(FAKE_BIN / "nvidia-smi")
    gpu = subprocess.run([fake, *gpu_query_argv()[1:]], env=env, capture_output=True, check=True)
    apps = subprocess.run([fake, *apps_query_argv()[1:]], env=env, capture_output=True, check=True)
    (bin_dir / "gpu.txt").write_bytes(gpu.stdout)
    names = subprocess.run(
        [fake, *names_query_argv()[1:]], env=env, capture_output=True, check=True
    )
    (bin_dir / "apps.txt").write_bytes(apps.stdout)
    (bin_dir / "names.txt").write_bytes(names.stdout)
    loop = (
        f'exec {shlex.quote(fake)} "$@"'
        if stream_from_fake
        else 'while cat "$d/gpu.txt"; do sleep 1; done'
    )
    # Shell builtins only for one-shot answers: one process per call, like the real one.
    script = f"""#!/bin/sh
d={shlex.quote(str(bin_dir))}
show() {{ while IFS= read -r line; do printf '%s\\n' "$line"; done < "$1"; }}
case "$*" in
  *--query-gpu=*--loop-ms=*) {loop} ;;
  *--query-gpu=*) show "$d/gpu.txt" ;;
  *--query-compute-apps=pid,process_name*) show "$d/names.txt" ;;
  *--query-compute-apps=*) show "$d/apps.txt" ;;
  *) echo "bench nvidia-smi: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""
    path = bin_dir / "nvidia-smi"
    path.write_text(script)
    path.chmod(0o755)
