"""Telling an intruder: a message on their terminals on the host, and an e-mail.

Both are best effort and never raise: they return what happened, in words the
guard records as an event. Nothing here imports Textual.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from hivetui.backends.transport import CommandTimeout, HostUnavailable, Transport
from hivetui.config import ProtectionSettings
from hivetui.safe_text import printable

# Runs on the host as the SSH login account. Every tty a process of USER sits on
# gets the message: directly when the device is writable by us, else through
# write(1) (setgid tty, honours `mesg n`). Prints "tty pts/N" per terminal
# reached, or "none". A user with no terminal at all is not an error.
TERMINAL_SCRIPT = r"""
user=$1 msg=$2 n=0
for t in $(ps -o tty= -u "$user" 2>/dev/null | sort -u); do
  case $t in ''|'?'|-) continue ;; esac
  d=/dev/$t
  if [ -w "$d" ] && printf '\r\n%s\r\n' "$msg" >"$d" 2>/dev/null; then
    echo "tty $t"; n=$((n+1))
  elif command -v write >/dev/null 2>&1 &&
       printf '%s\n' "$msg" | write "$user" "$t" >/dev/null 2>&1; then
    echo "tty $t"; n=$((n+1))
  fi
done
[ "$n" -gt 0 ] || echo none
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one warning attempt did: ``ok`` when the channel worked at all."""

    ok: bool
    detail: str


def terminal_command(user: str, message: str) -> str:
    """The shell command line that writes ``message`` to ``user``'s terminals."""
    return shlex.join(["sh", "-c", TERMINAL_SCRIPT, "sh", user, printable(message)])


async def warn_terminals(transport: Transport, user: str, message: str, timeout: float) -> Outcome:
    """Write to every terminal of ``user`` on the host; say which were reached."""
    try:
        result = await transport.run(terminal_command(user, message), timeout)
    except (CommandTimeout, HostUnavailable) as exc:
        return Outcome(False, f"terminal warning failed: {exc}")
    ttys = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line.startswith("tty ")]
    if result.exit_status != 0:
        err = result.stderr.strip()[:200]
        return Outcome(False, f"terminal warning failed: exit {result.exit_status}: {err}")
    if not ttys:
        return Outcome(True, f"terminal: no writable terminal of {user}")
    return Outcome(True, "terminal: wrote to " + ", ".join(ttys))


def email_address(settings: ProtectionSettings, user: str) -> str | None:
    """Where ``user``'s mail goes: ``emails[user]``, else ``user@email_domain``."""
    if user in settings.emails:
        return settings.emails[user]
    if settings.email_domain and user and user != "?":
        return f"{user}@{settings.email_domain}"
    return None


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str


def _send(settings: ProtectionSettings, mail: Mail, timeout: float) -> None:
    assert settings.smtp_host is not None
    msg = EmailMessage()
    msg["From"] = settings.email_from
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg.set_content(mail.body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            # The password lives in the environment only; it is never logged.
            password = os.environ.get(settings.smtp_password_env or "", "")
            smtp.login(settings.smtp_user, password)
        smtp.send_message(msg)


async def send_mail(settings: ProtectionSettings, mail: Mail, timeout: float = 15.0) -> Outcome:
    """Send through the configured SMTP server (in a thread); say what happened."""
    if not settings.smtp_host:
        return Outcome(False, "no SMTP server configured")
    try:
        await asyncio.to_thread(_send, settings, mail, timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return Outcome(False, f"e-mail to {mail.to} failed: {type(exc).__name__}: {str(exc)[:200]}")
    return Outcome(True, f"e-mailed {mail.to}")
