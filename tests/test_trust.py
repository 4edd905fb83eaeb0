"""The validators that guard identifiers arriving from hosts and the database."""

from __future__ import annotations

import pytest

from hivetui.trust import is_gpu_uuid, is_pid, is_user_name


@pytest.mark.parametrize(
    "text",
    [
        "GPU-a44622e3-2296-6285-0a86-84d0f6c67900",
        "GPU-A44622E3-2296-6285-0A86-84D0F6C67900",
        "MIG-0e8f9d1c-4b1a-5c3e-9f2d-1a2b3c4d5e6f",
        "MIG-GPU-a44622e3-2296-6285-0a86-84d0f6c67900/7/0",
    ],
)
def test_gpu_uuids_in_driver_forms_pass(text: str) -> None:
    assert is_gpu_uuid(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "GPU-...",
        "GPU-a44622e3-2296-6285-0a86-84d0f6c67900,GPU-b",
        "GPU-a44622e3-2296-6285-0a86-84d0f6c67900;reboot",
        "GPU-a44622e3-2296-6285-0a86-84d0f6c67900\n",
        "$(reboot)",
        "gpu-a44622e3-2296-6285-0a86-84d0f6c67900x",
    ],
)
def test_anything_else_is_not_a_gpu_uuid(text: str) -> None:
    assert not is_gpu_uuid(text)


@pytest.mark.parametrize("text", ["alice", "bob_2", "john.doe", "svc-ci", "_apt", "host$"])
def test_platform_user_names_pass(text: str) -> None:
    assert is_user_name(text)


@pytest.mark.parametrize(
    "text",
    ["", "-rf", ".", "..", "a b", "alice\nbob", "root;id", "x" * 33, "al/ice", "é", "a@b.org"],
)
def test_other_strings_are_not_user_names(text: str) -> None:
    assert not is_user_name(text)


def test_pid_range() -> None:
    assert is_pid(1) and is_pid(4_194_304)
    assert not is_pid(0) and not is_pid(-1) and not is_pid(4_194_305)
