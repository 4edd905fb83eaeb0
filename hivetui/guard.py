"""The guard: watches reserved GPUs, records and warns intruders, counts usage.

Each :meth:`Guard.check` reads the fleet's latest snapshots and the
reservations active now, then

* records every new violation once (per reservation and intruder) as an event;
* warns the intruder, at most once per ``warn_every_minutes`` per
  :attr:`Violation.key`: on their terminals on that host and by e-mail;
* optionally sends ``SIGTERM`` after ``kill_after_minutes`` of continuous
  violation (off while 0), through a script that checks on the host, at that
  moment, that the PID is still the process judged (start time, owner, GPU);
  a sighting older than ``max_age`` is never acted on. ``kill_skipped`` and
  ``kill_failed`` events say why a kill was not done;
* adds one usage sample per fresh snapshot of each reserved GPU, and records
  a reservation whose GPU stays idle for ``idle_minutes`` once.

Everything reaches the hosts as shlex-quoted commands over the fleet's own
connections. Failures become events, never exceptions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from hivetui.backends.hostkill import kill_command, read_kill_answer
from hivetui.backends.transport import CommandTimeout, HostUnavailable
from hivetui.booking import ReservationStore
from hivetui.config import ProtectionSettings
from hivetui.fleet import Fleet
from hivetui.model import HostSnapshot, HostStatus
from hivetui.notify import Mail, Outcome, email_address, send_mail, warn_terminals
from hivetui.protection import Violation, violations
from hivetui.reservations import Reservation
from hivetui.usage import Usage, UsageTable

log = logging.getLogger(__name__)

Key = tuple[str, int, str]  # Violation.key: (host, GPU index, intruder)
WarnKey = tuple[str, str, str]  # (host, GPU uuid, intruder): as warning events record it
# A process seen longer ago than this is never killed on that sighting: it may
# have exited and its PID gone to someone else. Hosts report every second.
MAX_OBSERVATION_AGE_S = 10.0
SEED_WINDOW = timedelta(days=2)  # events older than this cannot belong to a live reservation


class Guard:
    """Protects reserved GPUs of one fleet; call :meth:`check` every few seconds."""

    def __init__(
        self,
        fleet: Fleet,
        store: ReservationStore,
        settings: ProtectionSettings,
        *,
        clock: Callable[[], float] = time.time,
        command_timeout: float = 10.0,
        max_age: float = MAX_OBSERVATION_AGE_S,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.settings = settings
        self.usage_table = UsageTable(store.engine)
        self._clock = clock
        self._timeout = command_timeout
        self.max_age = max_age
        self._active: dict[str, Reservation] = {}
        self._recorded: set[tuple[int, str]] = set()  # (reservation id, intruder)
        self._warned_at: dict[WarnKey, float] = {}
        self._since: dict[Key, float] = {}  # start of the current unbroken violation
        self._kill_tried: set[tuple[str, int, int | None]] = set()  # (host, pid, start time)
        self._stale_noted: set[tuple[str, int, int | None]] = set()
        self._usage: dict[int, Usage] = {}
        self._counted_at: dict[int, float] = {}  # snapshot time last counted, per reservation
        self._idle_recorded: set[int] = set()
        self._seeded = False

    # -- public --------------------------------------------------------------
    async def check(self) -> list[Violation]:
        """One round: usage, violations, events, warnings, kills. Returns the violations."""
        now = self._clock()
        if not self._seeded:
            await self._seed()
        self._active = await self.store.active_now()
        snaps = self.fleet.snapshots()
        await self._account(snaps, now)
        if not self.settings.enabled:
            return []
        found = violations(snaps, self._active)
        groups: dict[Key, list[Violation]] = {}
        for v in found:
            groups.setdefault(v.key, []).append(v)
        for key in list(self._since):
            if key not in groups:
                del self._since[key]  # the intruder left: the grace period starts over
        await asyncio.gather(*(self._handle(key, group, now) for key, group in groups.items()))
        return found

    def idle_reservations(self) -> list[Reservation]:
        """Reservations active now whose GPU stayed below ``idle_util_pct`` long enough."""
        now_s = int(self._clock())
        limit = self.settings.idle_minutes * 60
        return [
            res
            for res in self._active.values()
            if (u := self._usage.get(res.id)) is not None and u.idle_for(now_s) >= limit
        ]

    def usage(self, reservation_id: int) -> Usage | None:
        """GPU use seen so far during a reservation active at the last check."""
        return self._usage.get(reservation_id)

    # -- violations ------------------------------------------------------------
    async def _handle(self, key: Key, group: Sequence[Violation], now: float) -> None:
        first = group[0]
        res = first.reservation
        since = self._since.setdefault(key, now)
        if (res.id, first.intruder) not in self._recorded:
            self._recorded.add((res.id, first.intruder))
            await self._event("violation", _describe(group), group)
            log.warning("violation: %s", _describe(group))
        warn_key = (first.host, res.gpu.uuid, first.intruder)
        last = self._warned_at.get(warn_key)
        if last is None or now - last >= self.settings.warn_every_minutes * 60:
            self._warned_at[warn_key] = now
            await self._warn(group, since)
        kill_after = self.settings.kill_after_minutes * 60
        if kill_after > 0 and now - since >= kill_after:
            await self._kill(group)

    async def _warn(self, group: Sequence[Violation], since: float) -> None:
        first = group[0]
        text = self._message(group, since)
        tasks: list[asyncio.Future[Outcome]] = []
        transport = self.fleet.transport(first.host)
        if self.settings.warn_terminal and first.process.user is not None:
            if transport is None:
                tasks.append(_done(Outcome(False, f"no connection to {first.host}")))
            else:
                coro = warn_terminals(transport, first.intruder, text, self._timeout)
                tasks.append(asyncio.ensure_future(coro))
        if self.settings.smtp_host:
            address = email_address(self.settings, first.intruder)
            if address is None:
                missing = f"no e-mail address for {first.intruder} (set emails or email_domain)"
                tasks.append(_done(Outcome(False, missing)))
            else:
                subject = f"[hivetui] {first.host} GPU {first.gpu_index} is reserved"
                mail = send_mail(self.settings, Mail(address, subject, text))
                tasks.append(asyncio.ensure_future(mail))
        for outcome in await asyncio.gather(*tasks):
            kind = "warned" if outcome.ok else "warn_failed"
            await self._event(kind, outcome.detail, group)
            log.info("%s %s: %s", kind, first.intruder, outcome.detail)

    def _message(self, group: Sequence[Violation], since: float) -> str:
        first = group[0]
        res = first.reservation
        pids = ", ".join(str(v.process.pid) for v in group)
        text = (
            f"hivetui: {first.host} GPU {first.gpu_index} is reserved by {res.user} until "
            f"{res.end.astimezone():%a %d %b %H:%M} (reservation {res.id}). "
            f"Your process(es) {pids} run on it: please stop them or move to a free GPU."
        )
        if self.settings.kill_after_minutes > 0:
            at = since + self.settings.kill_after_minutes * 60
            text += f" They will be terminated from {time.strftime('%H:%M', time.localtime(at))}."
        return text

    async def _kill(self, group: Sequence[Violation]) -> None:
        for v in group:
            await self._kill_one(v)

    async def _kill_one(self, v: Violation) -> None:
        """SIGTERM through the host's kill script, which re-checks what was judged."""
        proc = v.process
        key = (v.host, proc.pid, proc.start_time)
        if key in self._kill_tried:
            return
        if proc.start_time is None or proc.uid is None:
            self._kill_tried.add(key)
            why = "the host's /proc does not show it, so it cannot be checked; not killed"
            await self._event("kill_skipped", f"pid {proc.pid}: {why}", [v])
            return
        age = self._clock() - proc.seen_at
        if age > self.max_age:
            # Not tried: the next fresh observation may be acted on.
            if key not in self._stale_noted:
                self._stale_noted.add(key)
                why = f"seen {age:.0f} s ago (over {self.max_age:g} s); not killed until seen again"
                await self._event("kill_skipped", f"pid {proc.pid}: {why}", [v])
            return
        self._kill_tried.add(key)
        transport = self.fleet.transport(v.host)
        if transport is None:
            await self._event("kill_failed", f"no connection to {v.host}", [v])
            return
        uuid = v.reservation.gpu.uuid
        command = kill_command(proc.pid, proc.start_time, proc.uid, uuid)
        try:
            result = await transport.run(command, self._timeout)
        except (CommandTimeout, HostUnavailable) as exc:
            await self._event("kill_failed", f"pid {proc.pid}: {exc}", [v])
            return
        answer = read_kill_answer(result.stdout, proc.pid, proc.start_time, proc.uid, uuid)
        if answer.kind == "killed":
            await self._event("killed", f"SIGTERM sent: {_describe([v])}", [v])
            log.warning("killed pid %s on %s", proc.pid, v.host)
        else:
            await self._event(f"kill_{answer.kind}", answer.detail, [v])
            log.warning("kill of pid %s on %s %s: %s", proc.pid, v.host, answer.kind, answer.detail)

    async def _event(self, kind: str, detail: str, group: Sequence[Violation]) -> None:
        v = group[0]
        await self.store.record_event(
            kind,
            detail,
            user=v.intruder,
            host=v.host,
            gpu_uuid=v.reservation.gpu.uuid,
            reservation_id=v.reservation.id,
        )

    async def _seed(self) -> None:
        """Take in what an earlier run recorded, so a restart does not repeat it."""
        since = self.store.now() - SEED_WINDOW
        for ev in await self.store.events(since=since, kind="violation"):
            if ev.reservation_id is not None and ev.user is not None:
                self._recorded.add((ev.reservation_id, ev.user))
        # The rate limit holds across restarts: the last warning of each stream counts.
        for ev in await self.store.events(since=since, kind="warned"):
            if ev.host is not None and ev.gpu_uuid is not None and ev.user is not None:
                key = (ev.host, ev.gpu_uuid, ev.user)
                self._warned_at[key] = max(self._warned_at.get(key, 0.0), ev.at.timestamp())
        for ev in await self.store.events(since=since, kind="idle"):
            if ev.reservation_id is not None:
                self._idle_recorded.add(ev.reservation_id)
        self._seeded = True

    # -- usage ---------------------------------------------------------------
    async def _account(self, snaps: Sequence[HostSnapshot], now: float) -> None:
        now_s = int(now)
        live = {res.id for res in self._active.values()}
        for gone in set(self._usage) - live:
            del self._usage[gone]
            self._counted_at.pop(gone, None)
        missing = live - set(self._usage)
        self._usage.update(await self.usage_table.load(missing))
        changed: list[Usage] = []
        for snap in snaps:
            if snap.status is not HostStatus.ONLINE:
                continue
            for gpu in snap.gpus:
                res = self._active.get(gpu.uuid)
                if res is None or snap.updated_at <= self._counted_at.get(res.id, 0.0):
                    continue
                self._counted_at[res.id] = snap.updated_at
                before = self._usage.get(res.id, Usage(res.id))
                after = before.add(gpu, now_s, self.settings.idle_util_pct)
                if after != before:
                    self._usage[res.id] = after
                    changed.append(after)
        await self.usage_table.save(changed)
        limit = self.settings.idle_minutes * 60
        for res in self._active.values():
            usage = self._usage.get(res.id)
            if usage is None or res.id in self._idle_recorded or usage.idle_for(now_s) < limit:
                continue
            self._idle_recorded.add(res.id)
            mean = usage.mean_util_pct or 0.0
            await self.store.record_event(
                "idle",
                f"reservation {res.id} of {res.user} on {res.gpu.label}: GPU below "
                f"{self.settings.idle_util_pct:g}% for {usage.idle_for(now_s) / 60:.0f} min "
                f"(mean {mean:.0f}% over {usage.samples} samples)",
                user=res.user,
                host=res.gpu.host,
                gpu_uuid=res.gpu.uuid,
                reservation_id=res.id,
            )


def _describe(group: Sequence[Violation]) -> str:
    if len(group) == 1:
        return group[0].describe()
    pids = ", ".join(str(v.process.pid) for v in group)
    return f"{group[0].describe()}; all pids: {pids}"


def _done(outcome: Outcome) -> asyncio.Future[Outcome]:
    future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    future.set_result(outcome)
    return future
