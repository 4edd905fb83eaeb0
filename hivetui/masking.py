"""Masking secrets before anything is shown, logged or put in an error message.

One function, :func:`mask_secrets`, for every database URL, config value and
driver message that may hold a password: the password of a URL's userinfo
(``postgresql://hive:s3cret@db/team``), the values of secret-looking query
parameters and keys (``?password=...``, ``smtp_password = "..."``, ``token``),
and, given the key it came from, the whole value of a secret-looking config key.
Pure text in, text out; no I/O.
"""

from __future__ import annotations

import re

MASK = "***"

# Key names whose values are secrets: password, passwd, pwd, secret, token, api key,
# credentials; anywhere in the name (smtp_password, PGPASSWORD, auth_token).
_SECRET_KEY = (
    r"[A-Za-z0-9_.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|credential)"
    r"[A-Za-z0-9_.-]*"
)
_IS_SECRET_KEY = re.compile(_SECRET_KEY, re.IGNORECASE)

# scheme://user:PASSWORD@host; the password runs to the last "@" before the host part.
_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)(?P<secret>[^\s'\"]*)(?=@)"
)

# key=value (query strings, libpq and TOML style) and 'key': 'value' (Python reprs).
_KEY_VALUE = re.compile(
    rf"(?P<head>\b{_SECRET_KEY}['\"]?\s*[:=]\s*(?P<quote>['\"]?))(?P<secret>[^\s'\"&;,}})]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a config or query key names a secret (its value is never shown)."""
    return _IS_SECRET_KEY.fullmatch(key) is not None


def mask_secrets(text: str, key: str | None = None) -> str:
    """``text`` with every password in it replaced by ``***``.

    ``key``: the config key (or query parameter) ``text`` is the value of; a
    secret-looking key masks the whole value.
    """
    if key is not None and is_secret_key(key):
        return MASK
    text = _USERINFO.sub(lambda m: m["head"] + MASK, text)
    return _KEY_VALUE.sub(lambda m: m["head"] + MASK, text)
