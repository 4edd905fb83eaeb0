"""Running the real ``hivetui`` as another account, to tell users apart by uid.

hivetui takes who you are from the process's uid, never from ``LOGNAME``. To
book as alice and then as bob, a test runs the command in a user namespace
whose uid is alice's account (``unshare --map-user``): ``getuid()`` and the
passwd lookup see alice, while files keep the permissions of the account
running the tests (so the test's interpreter, keys and databases stay usable).
As root the accounts are created once (like ``hivetest`` in tests/sshd.py);
otherwise they must exist already.
"""

from __future__ import annotations

import pwd
import subprocess


def account(name: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, created (no login, no home) where we may."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


def as_account(name: str, argv: list[str]) -> list[str]:
    """``argv`` run with the uid and gid of account ``name`` (in a user namespace)."""
    entry = account(name)
    return [
        "unshare",
        "--user",
        f"--map-user={entry.pw_uid}",
        f"--map-group={entry.pw_gid}",
        "--",
        *argv,
    ]
