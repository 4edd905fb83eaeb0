"""hivetui.backends.nvidia against what real drivers print.

Rows are built from verbatim tokens of the captures in tests/fixtures/nvidia,
and the fake ``nvidia-smi`` (checked byte for byte against the same captures in
test_fake_nvidia_smi.py) is run with exactly the command lines hivetui sends.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hivetui.backends.nvidia import (
    APP_FIELDS,
    GPU_FIELDS,
    AppRow,
    GpuRow,
    NvidiaOutputError,
    apps_query_argv,
    classify_failure,
    gpu_query_argv,
    parse_app_line,
    parse_app_rows,
    parse_gpu_line,
    parse_gpu_rows,
)
from hivetui.backends.probe import smi_names
from hivetui.model import GpuAvailability
from tests.test_fake_nvidia_smi import (
    FAKE,
    STATES,
    fixture_bytes,
    fixture_lines,
    header_fields,
    load_state,
    run_fake,
    write_state,
)

NOT_A_READING = ("[N/A]", "[Not Supported]", "[Unknown Error]", "N/A", "")


def captured_row(fixture: str, row: int) -> dict[str, str]:
    """Field -> verbatim token, for one data row of a captured ``--format=csv`` answer."""
    header, *rows = fixture_lines(fixture)
    names = header_fields(header)
    values = rows[row].split(", ")
    assert len(names) == len(values)
    return dict(zip(names, values, strict=True))


def gpu_line(tokens: dict[str, str]) -> str:
    """A row in hivetui's ``--query-gpu`` order (``name`` may hold ", ")."""
    return ", ".join(tokens[field] for field in GPU_FIELDS)


def app_line(tokens: dict[str, str]) -> str:
    return ", ".join(tokens[field] for field in APP_FIELDS)


# ---------------------------------------------------------------- GPU rows


def test_values_that_carry_units() -> None:
    """The full H100 capture under load, with units (``--format=csv``)."""
    tokens = captured_row("capture_h100_load_all_fields_csv.txt", 0)
    assert tokens["power.draw"] == "631.95 W" and tokens["utilization.gpu"] == "100 %"
    assert parse_gpu_line(gpu_line(tokens)) == GpuRow(
        index=0,
        uuid="GPU-00000000-0000-0000-0000-000000000000",
        name="NVIDIA H100 80GB HBM3",
        utilization_pct=100.0,
        memory_used_mib=19818.0,
        memory_total_mib=81559.0,
        temperature_c=59.0,
        power_w=631.95,
    )


@pytest.mark.parametrize(
    "fixture", ["q17_h100_mig_idle_all_fields_csv.txt", "capture_h200_mig_load_all_fields_csv.txt"]
)
def test_mig_utilization_is_not_available(fixture: str) -> None:
    tokens = captured_row(fixture, 0)
    assert tokens["utilization.gpu"] == "[N/A]"
    row = parse_gpu_line(gpu_line(tokens))
    assert row.utilization_pct is None
    assert row.memory_used_mib == float(tokens["memory.used"].removesuffix(" MiB"))
    assert row.power_w == float(tokens["power.draw"].removesuffix(" W"))


def test_windows_capture_with_bare_na_and_empty_values() -> None:
    tokens = captured_row("q18_rtx2080super_windows_all_fields_csv.txt", 0)
    assert tokens["temperature.memory"] == "N/A"
    assert tokens["platform.chassis_serial_number"] == ""
    tokens["temperature.gpu"] = tokens["temperature.memory"]
    tokens["power.draw"] = tokens["platform.chassis_serial_number"]
    row = parse_gpu_line(gpu_line(tokens))
    assert (row.temperature_c, row.power_w) == (None, None)
    assert (row.name, row.memory_used_mib, row.memory_total_mib) == (
        "NVIDIA GeForce RTX 2080 SUPER",
        702.0,
        8192.0,
    )


def test_not_supported_and_unknown_error() -> None:
    """Q6 (GTX 770) reports ``[Not Supported]``, Q7 (GTX 1080 Ti) ``[Unknown Error]``."""
    (q6,) = fixture_lines("q06_gtx770_noheader.txt")
    name, util, _, temp, power, *_ = q6.split(", ")
    q7_fan = fixture_lines("q07_gtx1080ti_rig_noheader.txt")[0].split(", ")[6]
    assert (util, power, q7_fan) == ("[Not Supported]", "[Not Supported]", "[Unknown Error]")
    line = ", ".join(["0", "GPU-x", util, q7_fan, "2048 MiB", temp, power, name])
    assert parse_gpu_line(line) == GpuRow(
        0, "GPU-x", "GeForce GTX 770", None, None, 2048.0, 52.0, None
    )


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("q10_fan_laptop.txt", [None]),
        ("q10_fan_desktop.txt", [39.0]),
        ("q11_fan_not_supported.txt", [None]),
        ("q13_power_draw_3gpus.txt", [133.91, 189.84, 104.34]),
        ("q16_gb10_memory_na.txt", [None, None, 0.0]),
    ],
)
def test_single_readings(fixture: str, expected: list[float | None]) -> None:
    """Every value of these small captures, read in the power.draw column."""
    tokens = [token for line in fixture_lines(fixture) for token in line.split(", ")]
    rows = parse_gpu_rows(f"0, GPU-x, 0, 0, 0, 0, {token}, GPU" for token in tokens)
    assert [row.power_w for row in rows] == expected


def test_memory_not_available_on_unified_memory() -> None:
    """GB10 (DGX Spark, Q16) has no separate GPU memory."""
    tokens = captured_row("q16_gb10_csv.txt", 0)
    memory = tokens["memory.total"]
    line = f"0, GPU-x, 96, {memory}, {memory}, 71, 43.87, {tokens['name']}"
    row = parse_gpu_line(line)
    assert (row.memory_used_mib, row.memory_total_mib, row.name) == (None, None, "NVIDIA GB10")


def test_names_with_spaces_and_commas() -> None:
    rows = parse_gpu_rows(
        [
            "0, GPU-a, 36, 2856, 11175, 60, 106.56, GeForce GTX 1080 Ti",
            "1, GPU-b, 0, 4, 6078, 49, 5.68, GeForce GTX 1060 6GB\n",
            "",
            "2, GPU-c, 0, 4, 6078, 49, 5.68, Vendor, Model X, rev 2\r\n",
        ]
    )
    assert [row.name for row in rows] == [
        "GeForce GTX 1080 Ti",
        "GeForce GTX 1060 6GB",
        "Vendor, Model X, rev 2",
    ]
    assert [row.index for row in rows] == [0, 1, 2]


@pytest.mark.parametrize(
    "line",
    [
        fixture_lines("q09_rtx2080ti_csv_nounits.txt")[0],  # a header where rows were expected
        fixture_lines("q01_titanx8_noheader_nounits.txt")[0],  # the fields of another query
        "0, GPU-a, 100, lots, 81559, 59, 631.95, NVIDIA H100 80GB HBM3",  # not a number
        "0, GPU-a, 100, 19818, 81559",  # too few fields
        "",
    ],
)
def test_lines_that_are_not_our_rows(line: str) -> None:
    with pytest.raises(NvidiaOutputError):
        parse_gpu_line(line)


def test_value_error_names_the_field() -> None:
    with pytest.raises(NvidiaOutputError, match="memory.used"):
        parse_gpu_line("0, GPU-a, 100, lots, 81559, 59, 631.95, NVIDIA H100 80GB HBM3")


def test_blank_lines_are_skipped() -> None:
    """Q9 shows an empty line between header and row; it must not be a row."""
    lines = ["", "0, GPU-a, 100, 7012, 11264, 56, 228.82, GeForce RTX 2080 Ti", "  "]
    assert [row.index for row in parse_gpu_rows(lines)] == [0]


# ---------------------------------------------------------------- compute processes


def test_process_in_another_pid_namespace() -> None:
    """P7: the last process on the 8x H200 host has no name ``[Not Found]``."""
    header, *rows = fixture_lines("p07_h200x8_apps_csv.txt")
    tokens = dict(zip(header_fields(header), rows[-1].split(", "), strict=True))
    assert parse_app_line(app_line(tokens)) == AppRow(
        gpu_uuid="GPU-28780eb0-24d5-1f13-59b8-ae5c23617a72",
        pid=1758887,
        used_memory_mib=58060.0,
    )
    names_row = f"{tokens['pid']}, {tokens['process_name']}\n".encode()
    assert smi_names(names_row, {1758887}, {1758887}) == ({1758887: "[Not Found]"}, [])


def test_windows_processes_without_memory_and_with_spaces() -> None:
    """P1: WDDM reports no per-process memory; paths contain spaces."""
    header, *rows = fixture_lines("p01_windows_wddm_apps_csv.txt")
    parsed = [
        parse_app_line(app_line(dict(zip(header_fields(header), row.split(", "), strict=True))))
        for row in rows
    ]
    assert all(app.used_memory_mib is None for app in parsed)
    assert parsed[4] == AppRow("GPU-00000000-0000-0000-0000-000000000000", 20372, None)
    tokens = dict(zip(header_fields(header), rows[4].split(", "), strict=True))
    names_row = f"{tokens['pid']}, {tokens['process_name']}".encode()
    assert smi_names(names_row, {20372}, {20372})[0] == {
        20372: r"C:\Program Files\NZXT CAM\NZXT CAM.exe"
    }


def test_insufficient_permissions_as_process_name() -> None:
    pid, name, memory = fixture_lines("p09_windows_insufficient_permissions.txt")[0].split(", ")
    app = parse_app_line(f"GPU-x, {pid}, {memory}")
    assert app == AppRow("GPU-x", 2296, None)
    names = smi_names(f"{pid}, {name}\n".encode(), {2296}, {2296})[0]
    assert names == {2296: "[Insufficient Permissions]"}


def test_process_name_with_comma_space() -> None:
    row = b"4242, python train.py --tags a, b, --lr=0.1\n"
    assert smi_names(row, {4242}, {4242}) == ({4242: "python train.py --tags a, b, --lr=0.1"}, [])


def test_a_name_in_the_app_query_is_not_ours() -> None:
    """hivetui asks for driver-written fields only: a fourth column is not a row of ours."""
    with pytest.raises(NvidiaOutputError):
        parse_app_line("GPU-a, 4242, 1542, python train.py")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("p04_h100_load_apps_csv.txt", [(11327, 2566.0), (11328, 1542.0), (11345, 15690.0)]),
        ("p02_rtx4080super_apps_csv.txt", [(2165, 25.0), (5022, 503.0), (5021, 360.0)]),
    ],
)
def test_units_on_process_memory(fixture: str, expected: list[tuple[int, float]]) -> None:
    header, *rows = fixture_lines(fixture)
    lines = [
        app_line(dict(zip(header_fields(header), row.split(", "), strict=True))) for row in rows
    ]
    assert [(app.pid, app.used_memory_mib) for app in parse_app_rows(lines)] == expected


@pytest.mark.parametrize(
    "line", ["GPU-a, [N/A], 1542", "GPU-a, 12", fixture_lines("p03_no_apps_csv.txt")[0]]
)
def test_app_lines_that_are_not_ours(line: str) -> None:
    with pytest.raises(NvidiaOutputError):
        parse_app_line(line)


# ---------------------------------------------------------------- failures


def _text(fixture: str) -> str:
    return fixture_bytes(fixture).decode()


@pytest.mark.parametrize(
    ("status", "output", "availability", "words"),
    [
        (9, _text("e1_driver_not_loaded.txt"), GpuAvailability.NO_GPU, "couldn't communicate"),
        (9, _text("e1_driver_not_loaded.txt") * 2, GpuAvailability.NO_GPU, "couldn't communicate"),
        (9, _text("e1_driver_not_loaded_plain.txt"), GpuAvailability.NO_GPU, "NVIDIA driver"),
        (18, _text("e2_version_mismatch_535.txt"), GpuAvailability.ERROR, "needs a reboot"),
        (18, _text("e2_version_mismatch_570.txt"), GpuAvailability.ERROR, "needs a reboot"),
        (18, _text("e3_version_mismatch_old.txt"), GpuAvailability.ERROR, "needs a reboot"),
        (6, _text("e4_no_devices.txt"), GpuAvailability.NO_GPU, "No devices were found"),
        (255, _text("e5_no_supported_gpus.txt"), GpuAvailability.NO_GPU, "No supported GPUs"),
        (127, "sh: 1: nvidia-smi: not found\n", GpuAvailability.NO_GPU, "nvidia-smi not found"),
        (
            127,
            "bash: line 1: nvidia-smi: command not found\n",
            GpuAvailability.NO_GPU,
            "nvidia-smi not found",
        ),
        (127, "", GpuAvailability.NO_GPU, "nvidia-smi not found"),
        (
            2,
            _text("e6_invalid_field.txt"),
            GpuAvailability.ERROR,
            "clocks_throttle_reasons.unknown",
        ),
        (2, _text("e7_invalid_combination.txt"), GpuAvailability.ERROR, "exit 2"),
        (255, _text("e8_missing_value.txt"), GpuAvailability.ERROR, "missing its value"),
        (15, "", GpuAvailability.ERROR, "no output"),
    ],
)
def test_classify_failure(
    status: int, output: str, availability: GpuAvailability, words: str
) -> None:
    got, message = classify_failure(status, output)
    assert got is availability
    assert words in message
    assert "\n" not in message


def test_garbage_is_an_error() -> None:
    result = run_fake(gpu_query_argv()[1:], STATES / "garbage.json")
    assert result.returncode == 0
    lines = result.stdout.decode("utf-8", "replace").split("\n")
    with pytest.raises(NvidiaOutputError):
        parse_gpu_rows(lines)
    for line in filter(None, lines):
        with pytest.raises(NvidiaOutputError):
            parse_gpu_line(line)
        with pytest.raises(NvidiaOutputError):
            parse_app_line(line)
    availability, message = classify_failure(result.returncode, lines[0])
    assert availability is GpuAvailability.ERROR and "NVRM" in message


# ---------------------------------------------------------------- our argv, every state

STATE_NAMES = sorted(path.stem for path in STATES.glob("*.json"))


def _expected_number(value: Any) -> float | None:
    text = str(value[0] if isinstance(value, list) else value)
    if text in NOT_A_READING or text.startswith("["):
        return None
    return float(text)


def _expected_gpus(state: dict[str, Any]) -> list[GpuRow]:
    rows = [
        GpuRow(
            index=int(gpu["index"]),
            uuid=gpu["uuid"],
            name=gpu["name"],
            utilization_pct=_expected_number(gpu["utilization.gpu"]),
            memory_used_mib=_expected_number(gpu["memory.used"]),
            memory_total_mib=_expected_number(gpu["memory.total"]),
            temperature_c=_expected_number(gpu["temperature.gpu"]),
            power_w=_expected_number(gpu["power.draw"]),
        )
        for gpu in state["gpus"]
    ]
    return sorted(rows, key=lambda row: row.index)


def _expected_apps(state: dict[str, Any], gpus: list[GpuRow]) -> list[AppRow]:
    return [
        AppRow(app["gpu_uuid"], app["pid"], _expected_number(app["used_gpu_memory"]))
        for gpu in gpus
        for app in state["apps"]
        if app["gpu_uuid"] == gpu.uuid
    ]


def _argv(argv: list[str]) -> list[str]:
    assert argv[0] == "nvidia-smi"
    return [str(FAKE), *argv[1:]]


@pytest.mark.parametrize("name", STATE_NAMES)
def test_our_queries_on_every_shipped_state(name: str) -> None:
    state = load_state(name)
    mode = state.get("mode", "ok")
    path = STATES / f"{name}.json"
    env = {"FAKE_NVIDIA_SMI_STATE": str(path), "PATH": "/usr/bin:/bin"}

    def run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(_argv(argv), env=env, capture_output=True, timeout=5)

    if mode == "hang":
        with pytest.raises(subprocess.TimeoutExpired):
            subprocess.run(_argv(gpu_query_argv()), env=env, capture_output=True, timeout=1)
        return
    gpu_result, app_result = run(gpu_query_argv()), run(apps_query_argv())
    if mode == "garbage":
        assert gpu_result.returncode == 0
        with pytest.raises(NvidiaOutputError):
            parse_gpu_rows(gpu_result.stdout.decode("utf-8", "replace").split("\n"))
        return
    if mode != "ok":
        expected = GpuAvailability.ERROR if mode == "version_mismatch" else GpuAvailability.NO_GPU
        for result in (gpu_result, app_result):
            assert result.returncode != 0
            assert classify_failure(result.returncode, result.stdout.decode())[0] is expected
        return
    assert (gpu_result.returncode, app_result.returncode) == (0, 0)
    assert gpu_result.stderr == app_result.stderr == b""
    gpus = parse_gpu_rows(gpu_result.stdout.decode().split("\n"))
    assert gpus == _expected_gpus(state)
    assert parse_app_rows(app_result.stdout.decode().split("\n")) == _expected_apps(state, gpus)


@pytest.mark.parametrize("name", ["h100_load", "h200x8", "loop_l1"])
def test_our_streaming_query(name: str) -> None:
    """``gpu_query_argv(loop_ms=...)``: rows repeat, every one parses, no header."""
    proc = subprocess.Popen(
        _argv(gpu_query_argv(loop_ms=100)),
        env={"FAKE_NVIDIA_SMI_STATE": str(STATES / f"{name}.json")},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    gpus = len(load_state(name)["gpus"])
    try:
        lines = [proc.stdout.readline().decode() for _ in range(3 * gpus)]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    rows = [parse_gpu_line(line) for line in lines]
    assert [row.index for row in rows] == sorted(row.index for row in rows[:gpus]) * 3
    if name == "loop_l1":  # the utilization sequence of L1 comes through in order
        assert [row.utilization_pct for row in rows] == [6.0, 6.0, 5.0]


# ---------------------------------------------------------------- property

READING_TOKENS = st.sampled_from(NOT_A_READING)


def _reading(numbers: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(numbers, READING_TOKENS)


_ints = st.integers(min_value=0, max_value=2_000_000).map(str)
_temps = st.integers(min_value=-40, max_value=130).map(str)
_watts = st.decimals(min_value=0, max_value=5000, places=2).map(lambda d: f"{d:.2f}")
_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40
).filter(lambda name: name == name.strip() and "\x85" not in name)

GPU_STATES = st.lists(
    st.fixed_dictionaries(
        {
            "uuid": st.uuids().map(lambda u: f"GPU-{u}"),
            "name": _names,
            "utilization.gpu": _reading(st.integers(min_value=0, max_value=100).map(str)),
            "memory.used": _reading(_ints),
            "memory.total": _reading(_ints),
            "temperature.gpu": _reading(_temps),
            "power.draw": _reading(_watts),
        }
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(gpus=GPU_STATES, units=st.booleans())
def test_any_printed_row_parses_back(
    gpus: list[dict[str, str]], units: bool, tmp_path: Path
) -> None:
    state = {"mode": "ok", "gpus": [{"index": i, **gpu} for i, gpu in enumerate(gpus)]}
    path = write_state(tmp_path / "state.json", state)
    argv = gpu_query_argv()
    if units:  # the same query with units on the values: the parser must still cope
        argv = [arg if not arg.startswith("--format=") else "--format=csv,noheader" for arg in argv]
    result = run_fake(argv[1:], path)
    assert result.returncode == 0
    rows = parse_gpu_rows(result.stdout.decode().split("\n"))
    assert rows == _expected_gpus(state)
    for row in rows:
        for value in (row.utilization_pct, row.memory_used_mib, row.temperature_c, row.power_w):
            assert value is None or math.isfinite(value)


@pytest.mark.parametrize("name", STATE_NAMES)
def test_shipped_states_are_complete(name: str) -> None:
    """Every GPU has what hivetui reads; every process sits on a listed GPU; sources noted."""
    data = json.loads((STATES / f"{name}.json").read_text(encoding="utf-8"))
    assert data["_comment"]
    if data.get("mode", "ok") != "ok":
        assert "gpus" not in data
        return
    uuids = [gpu["uuid"] for gpu in data["gpus"]]
    assert len(set(uuids)) == len(uuids)
    assert sorted(int(gpu["index"]) for gpu in data["gpus"]) == list(range(len(uuids)))
    for gpu in data["gpus"]:
        assert set(GPU_FIELDS) <= set(gpu)
    for app in data["apps"]:
        assert app["gpu_uuid"] in uuids
        assert set(app) == {"gpu_uuid", "pid", "process_name", "used_gpu_memory"}
