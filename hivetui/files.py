"""Local files hivetui keeps: made private where they are ours alone, checked before use.

Errors are :class:`FileProblem`, whose message names the file, says what is
wrong and what to do; callers wrap it in their own error type.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class FileProblem(Exception):
    """A file or folder cannot be used; the message names it and what to do."""


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _tighten(path: Path, allowed: int) -> None:
    """Remove group and other bits from ``path``, refusing if that cannot be done."""
    try:
        info = path.stat()
    except OSError as exc:
        raise FileProblem(f"cannot read {path}: {_reason(exc)}") from None
    mode = stat.S_IMODE(info.st_mode)
    if not mode & ~allowed:
        return
    try:
        path.chmod(mode & allowed)
    except OSError as exc:
        raise FileProblem(
            f"{path} is open to others (mode {mode:04o}) and cannot be made private: "
            f"{_reason(exc)}; run `chmod {allowed:o} {path}` as its owner"
        ) from None


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return path


def prepare_sqlite_file(path: Path, *, private: bool) -> None:
    """Make sure SQLite can create or open ``path``; with ``private``, 0600 in a 0700 folder.

    Existing files and folders with looser modes are tightened (SQLite's ``-wal``
    and ``-shm`` files take the database file's mode when they are created).
    """
    folder = path.parent
    for part in [folder, *folder.parents]:
        if part.exists() and not part.is_dir():
            raise FileProblem(
                f"{part} is a file, not a folder, so the database {path} cannot be kept there: "
                "move that file away, or set `database` in the config"
            )
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR if private else 0o777)
    except OSError as exc:
        blocked = _nearest_existing(folder)
        raise FileProblem(
            f"cannot create the folder {folder} for the database: {_reason(exc)} "
            f"({blocked} is not writable); make it writable, or set `database` in the config"
        ) from None
    if private:
        _tighten(folder, PRIVATE_DIR)
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise FileProblem(
            f"the folder {folder} is not writable, so the database {path.name} cannot be "
            "created there: make it writable, or set `database` in the config"
        )
    if not private:
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    except OSError as exc:
        raise FileProblem(f"cannot open the database {path}: {_reason(exc)}") from None
    os.close(fd)
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if each.exists():
            _tighten(each, PRIVATE_FILE)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a path named when it was opened (device and inode)."""

    path: Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        info = path.stat()
        return cls(path, info.st_dev, info.st_ino)

    def problem(self) -> str | None:
        """Why the path no longer names this file (deleted or replaced), or ``None``."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return f"the database file {self.path} was deleted"
        except OSError as exc:
            return f"the database file {self.path} cannot be read: {_reason(exc)}"
        if (info.st_dev, info.st_ino) != (self.device, self.inode):
            return f"the database file {self.path} was replaced by another file"
        return None
