"""Validators for identifiers that arrive from hosts, the database or other users.

Everything a host prints or a teammate stores is hostile data (DESIGN.md,
"Trust"). Values that hivetui acts on (GPU uuids that end up in
``CUDA_VISIBLE_DEVICES``, user names that receive warnings, PIDs that may be
signalled) are checked here, where they enter, against the forms the platform
allows. Pure functions, no I/O.
"""

from __future__ import annotations

import re

# ``GPU-`` plus the driver's hex uuid; ``MIG-`` plus a uuid (R470 and later) or the
# older ``MIG-GPU-<uuid>/<gi>/<ci>`` form.
_HEX_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GPU_UUID = re.compile(rf"GPU-{_HEX_UUID}|MIG-{_HEX_UUID}|MIG-GPU-{_HEX_UUID}/\d{{1,4}}/\d{{1,4}}")

# POSIX portable user names (letters, digits, ``.``, ``_``, ``-``; not starting with
# ``-``), as shadow-utils accepts them, plus the trailing ``$`` of Samba machine
# accounts. 32 characters is the Linux utmp limit.
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")

MAX_PID = 2**22  # the Linux ceiling of /proc/sys/kernel/pid_max


def is_gpu_uuid(text: str) -> bool:
    """Whether ``text`` is a GPU or MIG uuid as NVIDIA drivers print them."""
    return _GPU_UUID.fullmatch(text) is not None


def is_user_name(text: str) -> bool:
    """Whether ``text`` is a user name the platform could have issued."""
    return _USER_NAME.fullmatch(text) is not None and text not in (".", "..")


def is_pid(value: int) -> bool:
    """Whether ``value`` could be a process id on Linux (never 0 or negative)."""
    return 0 < value <= MAX_PID
