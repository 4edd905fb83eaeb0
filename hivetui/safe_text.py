"""Text from hosts, the database and other users, made safe to show.

Everything outside hivetui writes is data (DESIGN.md, "Trust"): a GPU name, a
process command, a reservation title may hold terminal escapes (OSC 52 writes
the reader's clipboard, ``ESC[2J`` clears the screen), bidi overrides that
reorder what a reader sees, or Textual markup. Two helpers, one per kind of
front end:

* :func:`printable` for anything printed as a plain string (CLI tables and
  messages): C0 and C1 controls, DEL and the bidi controls are shown as
  ``\\x1b`` / ``\\u202e`` escapes, never emitted.
* :func:`literal` for the TUI: the same escaping, as a Rich ``Text``, which
  Textual never parses as markup.

``--json`` output stays exact: ``json.dumps`` escapes every control itself.
Widths are terminal cells (CJK and emoji take two), so cutting text never
spills into the next column.
"""

from __future__ import annotations

import logging
import re

from rich.cells import cell_len, set_cell_size
from rich.text import Text

# C0, DEL and C1 controls (ESC starts every escape sequence; C1 has 8-bit CSI and
# OSC), the Unicode line and paragraph separators, and the bidi controls:
# ALM, LRM/RLM, LRE/RLE/PDF/LRO/RLO, LRI/RLI/FSI/PDI.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ELLIPSIS = "…"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with controls and bidi overrides written as escapes (``\\x1b``, ``\\u202e``).

    Idempotent: what it returns holds nothing it would change again.
    """
    if text.isprintable():  # every character it escapes is non-printable: the common case
        return text
    return _UNSAFE.sub(_escape, text)


def literal(text: str, style: str = "") -> Text:
    """``text`` for a widget: escaped like :func:`printable`, never read as markup."""
    return Text(printable(text), style=style)


def width(text: str) -> int:
    """How many terminal cells ``text`` takes."""
    return cell_len(text)


def fit_cells(text: str, cells: int) -> str:
    """``text`` cut to at most ``cells`` terminal cells, the cut marked with an ellipsis."""
    if cell_len(text) <= cells:
        return text
    if cells <= 0:
        return ""
    # set_cell_size pads where a wide character would straddle the cut.
    return set_cell_size(text, cells - 1) + ELLIPSIS


def pad_cells(text: str, cells: int) -> str:
    """``text`` padded with spaces on the right to ``cells`` terminal cells."""
    return text + " " * max(cells - cell_len(text), 0)


def chunk_cells(text: str, size: int) -> list[str]:
    """``text`` split into pieces of exactly ``size`` cells each (the last one padded).

    A wide character that would straddle two pieces starts the next one (the
    piece it left is padded), so every piece lines up with its grid column.
    """
    pieces: list[str] = []
    current, used = "", 0
    for char in text:
        char_w = cell_len(char)
        if used + char_w > size:
            pieces.append(current + " " * (size - used))
            current, used = "", 0
        if char_w > size:
            char, char_w = " " * size, size
        current += char
        used += char_w
    if current or not pieces:
        pieces.append(current + " " * (size - used))
    return pieces


class PrintableFormatter(logging.Formatter):
    """Log lines whose message is escaped like :func:`printable`.

    Log messages quote hosts (a process's command line in a violation, an error
    a host printed); the agent's log usually goes to a terminal. Tracebacks,
    which are ours, keep their lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))


def stderr_handler(fmt: str) -> logging.Handler:
    """A stderr log handler whose messages never drive the terminal."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(fmt))
    return handler
