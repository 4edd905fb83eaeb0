"""The core and the backends never import Textual: the agent and CLI run without it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import hivetui
import hivetui.backends

UI_PACKAGES = ("hivetui.app", "hivetui.screens", "hivetui.widgets")


def headless_modules() -> list[str]:
    names = [f"hivetui.{m.name}" for m in pkgutil.iter_modules(hivetui.__path__)]
    names += [f"hivetui.backends.{m.name}" for m in pkgutil.iter_modules(hivetui.backends.__path__)]
    return sorted(n for n in names if not n.startswith(UI_PACKAGES) and n != "hivetui.__main__")


def test_there_are_headless_modules_to_check() -> None:
    modules = headless_modules()
    assert "hivetui.fleet" in modules and "hivetui.backends.ssh" in modules
    assert "hivetui.cli" in modules


@pytest.mark.parametrize("module", headless_modules())
def test_module_does_not_import_textual(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} pulls in {result.stdout.strip()}"
