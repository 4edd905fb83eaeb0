"""The one-shot commands, run as a user would: the real entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.sshd import TestFleet


def hivetui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    if not env or "HIVETUI_CONFIG" not in env:
        full_env.pop("HIVETUI_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "hivetui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def test_gpus_json_has_the_documented_schema(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("gpu01", "h100_load")
    ssh_fleet.add("gone", start=False)
    config = ssh_fleet.write_config()
    result = hivetui("--config", str(config), "gpus", "--json", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == 1
    by_name = {h["name"]: h for h in doc["hosts"]}
    assert set(by_name) == {"gpu01", "gone"}
    gone = by_name["gone"]
    assert gone["status"] == "offline" and gone["error"] == "connection refused"
    host = by_name["gpu01"]
    assert host["status"] == "online" and host["error"] is None
    assert set(host) >= {"name", "status", "error", "gpu_status", "gpu_error", "gpus"}
    gpu = host["gpus"][0]
    assert set(gpu) == {
        "index",
        "uuid",
        "name",
        "utilization_pct",
        "memory_used_mib",
        "memory_total_mib",
        "temperature_c",
        "power_w",
        "free",
        "processes",
    }
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert isinstance(gpu["memory_total_mib"], float)
    proc = gpu["processes"][0]
    assert set(proc) == {"pid", "user", "gpu_memory_mib", "command"}


def test_gpus_table_and_hosts_table(ssh_fleet: TestFleet) -> None:
    ssh_fleet.add("gpu01", "h200x8")
    config = ssh_fleet.write_config()
    table = hivetui("--config", str(config), "gpus")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["HOST", "GPU", "NAME"]
    assert sum(1 for line in lines if line.startswith("gpu01")) == 8
    hosts = hivetui("--config", str(config), "hosts")
    assert hosts.returncode == 0
    assert hosts.stdout.splitlines()[1].split()[:3] == ["gpu01", "online", "8"]


def test_bad_config_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[hosts]]\nname = "a"\nport = "x"\n')
    for args in (["gpus"], ["hosts", "--json"], ["config", "check"], []):
        result = hivetui("--config", str(path), *args)
        assert result.returncode == 2, args
        assert f"{path}:3: hosts[0].port" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_missing_named_config_and_env_var(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    result = hivetui("gpus", env={"HIVETUI_CONFIG": str(missing)})
    assert result.returncode == 2
    assert "no such config file" in result.stderr and "config init" in result.stderr


def test_config_init_then_check(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.toml"
    made = hivetui("--config", str(path), "config", "init")
    assert made.returncode == 0 and path.exists()
    again = hivetui("--config", str(path), "config", "init")
    assert again.returncode == 2 and "already exists" in again.stderr
    check = hivetui("--config", str(path), "config", "check")
    assert check.returncode == 0 and "OK, 1 host" in check.stdout


def test_bad_arguments_are_usage_errors() -> None:
    result = hivetui("gpus", "--timeout", "soon")
    assert result.returncode == 2 and "invalid float value" in result.stderr
    result = hivetui("gpus", "--timeout", "0")
    assert result.returncode == 2 and "--timeout must be more than 0" in result.stderr


def test_no_config_shows_the_local_machine(tmp_path: Path) -> None:
    """The embedded default: no file anywhere, the local machine, read without SSH."""
    from tests.sshd import FAKE_BIN, STATES

    env = {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PATH": f"{FAKE_BIN}:{os.environ['PATH']}",
        "FAKE_NVIDIA_SMI_STATE": str(STATES / "v100x8.json"),
    }
    result = hivetui("gpus", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["name"] == "localhost" and host["status"] == "online"
    assert [g["name"] for g in host["gpus"]] == ["Tesla V100-SXM2-32GB"] * 8
    assert host["memory_total_mib"] > 0
    # Without nvidia-smi on the PATH the machine has "no NVIDIA GPU", still with CPU and memory.
    env["PATH"] = "/usr/bin:/bin"
    result = hivetui("hosts", "--json", env=env)
    (host,) = json.loads(result.stdout)["hosts"]
    assert host["gpu_status"] == "no NVIDIA GPU" and host["memory_total_mib"] > 0
