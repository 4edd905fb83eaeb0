"""The text helpers every front end uses for what hosts and teammates wrote."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len

from hivetui.reserve_cli import _assignment
from hivetui.safe_text import chunk_cells, fit_cells, literal, pad_cells, printable

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\nb\tc\rd", "a\\x0ab\\x09c\\x0dd"),
        ("\x7f\x9b\x85", "\\x7f\\x9b\\x85"),
        ("\u202eevil\u202c", "\\u202eevil\\u202c"),
        ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
        ("line\u2028sep", "line\\u2028sep"),
        ("[@click=app.quit] [/nope]", "[@click=app.quit] [/nope]"),
        ("日本語 👩‍👩‍👧 café", "日本語 👩‍👩‍👧 café"),  # ZWJ emoji and accents are text
    ],
)
def test_printable_escapes_controls_and_bidi_only(raw: str, shown: str) -> None:
    assert printable(raw) == shown


@given(st.text())
def test_printable_leaves_nothing_unsafe_and_is_idempotent(text: str) -> None:
    shown = printable(text)
    assert UNSAFE.search(shown) is None
    assert printable(shown) == shown
    if UNSAFE.search(text) is None:
        assert shown == text


def test_literal_is_never_markup() -> None:
    text = literal("oops [/nope] x [@click=app.quit] \x1b[2J", "bold")
    assert text.plain == "oops [/nope] x [@click=app.quit] \\x1b[2J"
    assert not text.spans and str(text.style) == "bold"


@given(st.text(), st.integers(min_value=0, max_value=40))
def test_fit_cells_never_exceeds_its_width(text: str, cells: int) -> None:
    fitted = fit_cells(printable(text), cells)
    assert cell_len(fitted) <= cells
    if cell_len(printable(text)) <= cells:
        assert fitted == printable(text)


def test_wide_characters_are_cut_by_cells() -> None:
    assert fit_cells("日本語のGPU", 6) == "日本 …"
    assert cell_len(fit_cells("👍👍👍👍", 5)) == 5
    assert pad_cells("日本", 6) == "日本  "


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs"))))
def test_chunks_line_up_with_the_columns(text: str) -> None:
    pieces = chunk_cells(text, 3)
    assert pieces and all(cell_len(piece) == 3 for piece in pieces)


def test_env_line_is_quoted_for_the_shell() -> None:
    assert _assignment("CUDA_VISIBLE_DEVICES=GPU-a,GPU-b") == "CUDA_VISIBLE_DEVICES=GPU-a,GPU-b"
    assert _assignment("X=a$(touch /tmp/p) 'b'") == "X='a$(touch /tmp/p) '\"'\"'b'\"'\"''"


def test_log_lines_escape_what_hosts_wrote_and_keep_tracebacks() -> None:
    """The agent logs violations that quote a host's command line: no escape may pass."""
    import io
    import logging

    from hivetui.safe_text import PrintableFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("hivetui.test.escape")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("violation: %s", "x\x1b]52;c;aGk=\x07\u202ey")
        try:
            raise ValueError("ours")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "\x1b" not in text and "\u202e" not in text
    assert "violation: x\\x1b]52;c;aGk=\\x07\\u202ey" in text
    assert "Traceback (most recent call last):\n" in text  # our own lines keep their breaks
