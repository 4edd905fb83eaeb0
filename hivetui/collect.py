"""Reading one host: a streaming GPU query plus a report loop, over one transport.

Per host, while following: one long-running ``nvidia-smi --loop-ms`` stream for
the GPU table, and one shell loop for compute processes, their owners, CPU and
memory. A snapshot is published every interval from the latest of both.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from hivetui.backends import nvidia
from hivetui.backends.nvml import NvmlReader
from hivetui.backends.probe import (
    SMI_TIMEOUT_EXIT,
    IdentityBook,
    ProbeReport,
    ReportParser,
    cpu_percent,
    follow_command,
    parse_reports,
    sweep_command,
)
from hivetui.backends.transport import (
    EXIT_MARK,
    CommandTimeout,
    HostUnavailable,
    OutputTooLarge,
    Transport,
)
from hivetui.model import (
    GpuAvailability,
    GpuProcess,
    GpuSample,
    HostLoad,
    HostSnapshot,
    HostStatus,
)
from hivetui.trust import is_gpu_uuid, is_pid

Publish = Callable[[HostSnapshot], None]

NO_GPU_RECHECK_S = 60.0  # a host with no driver is asked again this often, not every second
MAX_BACKOFF_S = 5.0
HOST_KEY_RETRY_S = 30.0
# Statuses that only a person can clear: retried slowly, not with the usual backoff.
HOST_KEY_TROUBLE = (
    HostStatus.HOST_KEY_CHANGED,
    HostStatus.HOST_KEY_UNKNOWN,
    HostStatus.HOST_KEY_REVOKED,
)
MAX_NOISE_LINES = 50  # lines in a row from the GPU stream that are not GPU rows


@dataclass(slots=True)
class _Live:
    """What is known right now about a connected host."""

    rows: list[nvidia.GpuRow] = field(default_factory=list)
    rows_at: float = 0.0
    availability: GpuAvailability = GpuAvailability.UNKNOWN
    gpu_error: str | None = None
    report: ProbeReport | None = None
    procs: dict[str, list[GpuProcess]] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)  # of the latest report and GPU rows
    gpu_malformed: list[str] = field(default_factory=list)
    too_large: str | None = None  # the report stream was stopped for printing too much
    cpu_pct: float | None = None
    expected: int = 0  # GPUs in a complete sample, once known


def _processes(
    report: ProbeReport, book: IdentityBook, seen_at: float
) -> dict[str, list[GpuProcess]]:
    """Compute processes keyed by GPU uuid, each field checked on arrival.

    A compute-apps row that fails is dropped and named in ``report.malformed``;
    a row whose owner cannot be established is kept with no owner, so that
    nobody can hide a process from the guard by spoiling its owner.
    """
    apps: list[nvidia.AppRow] = []
    listed: set[int] = set()  # PIDs of rows dropped too: their /proc lines are no news
    if report.app_rc == 0:
        for line in report.app_lines:
            if not line.strip():
                continue
            try:
                app = nvidia.parse_app_line(line)
            except nvidia.NvidiaOutputError:
                report.malformed.append(f"compute-apps row {line[:60]!r}")
                continue
            listed.add(app.pid)
            if not is_gpu_uuid(app.gpu_uuid) or not is_pid(app.pid):
                report.malformed.append(f"compute-apps row {line[:60]!r}")
                continue
            apps.append(app)
    identities = book.read(report, {app.pid for app in apps}, listed)
    by_gpu: dict[str, list[GpuProcess]] = {}
    for app in apps:
        who = identities.get(app.pid)
        by_gpu.setdefault(app.gpu_uuid, []).append(
            GpuProcess(
                pid=app.pid,
                user=who.user if who else None,
                gpu_memory_mib=app.used_memory_mib,
                command=who.command if who else "",
                start_time=who.start_time if who else None,
                uid=who.uid if who else None,
                seen_at=seen_at,
            )
        )
    return by_gpu


def _valid_rows(rows: list[nvidia.GpuRow]) -> tuple[list[nvidia.GpuRow], list[str]]:
    """GPU rows whose uuid has a driver's form; the others are dropped and named."""
    good = [row for row in rows if is_gpu_uuid(row.uuid)]
    bad = [f"GPU {row.index} uuid {row.uuid[:60]!r}" for row in rows if not is_gpu_uuid(row.uuid)]
    return good, bad


def malformed_message(problems: list[str]) -> str | None:
    """What the host's row says when some of its output was dropped."""
    if not problems:
        return None
    count = len(problems)
    return (
        f"malformed output from the host: {count} item{'s' if count != 1 else ''} dropped "
        f"({problems[0]})"
    )


def _load(report: ProbeReport | None, cpu_pct: float | None) -> HostLoad | None:
    if report is None or report.mem_total_kib is None or report.load1 is None:
        return None
    available = report.mem_available_kib or 0
    return HostLoad(
        cpu_pct=cpu_pct,
        load1=report.load1,
        mem_total_mib=report.mem_total_kib / 1024,
        mem_available_mib=available / 1024,
    )


def _samples(
    rows: list[nvidia.GpuRow], procs: dict[str, list[GpuProcess]]
) -> tuple[GpuSample, ...]:
    return tuple(
        GpuSample(
            index=row.index,
            uuid=row.uuid,
            name=row.name,
            utilization_pct=row.utilization_pct,
            memory_used_mib=row.memory_used_mib,
            memory_total_mib=row.memory_total_mib,
            temperature_c=row.temperature_c,
            power_w=row.power_w,
            processes=tuple(procs.get(row.uuid, ())),
        )
        for row in rows
    )


def _row_of(gpu: GpuSample) -> nvidia.GpuRow:
    return nvidia.GpuRow(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        utilization_pct=gpu.utilization_pct,
        memory_used_mib=gpu.memory_used_mib,
        memory_total_mib=gpu.memory_total_mib,
        temperature_c=gpu.temperature_c,
        power_w=gpu.power_w,
    )


def _gpu_verdict(
    have_smi: bool, rc: int | None, lines: list[str]
) -> tuple[GpuAvailability, str | None, list[nvidia.GpuRow]]:
    """What a finished one-shot GPU query means: availability, error, rows (not yet checked)."""
    if not have_smi:
        return GpuAvailability.NO_GPU, "no NVIDIA GPU (nvidia-smi not found)", []
    if rc == SMI_TIMEOUT_EXIT:
        return GpuAvailability.ERROR, "nvidia-smi did not answer (timed out)", []
    if rc != 0:
        availability, message = nvidia.classify_failure(rc, "\n".join(lines))
        return availability, message, []
    try:
        rows = nvidia.parse_gpu_rows(lines)
    except nvidia.NvidiaOutputError as exc:
        return GpuAvailability.ERROR, str(exc), []
    if not rows:
        return GpuAvailability.NO_GPU, "no NVIDIA GPU (nvidia-smi listed none)", []
    return GpuAvailability.OK, None, rows


class HostReader:
    """Follows or sweeps one host through a :class:`Transport` (SSH or local)."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        interval: float = 1.0,
        command_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        nvml: NvmlReader | None = None,
    ) -> None:
        self.name = name
        self.nvml = nvml
        self.transport = transport
        self.interval = interval
        self.command_timeout = command_timeout
        self.stale_after = max(5.0, 5 * interval)
        self._clock = clock

    # -- one-shot ---------------------------------------------------------
    async def sweep(self, timeout: float) -> HostSnapshot:
        """One fresh snapshot within ``timeout`` in all; failures become statuses."""
        connected = False
        try:
            async with asyncio.timeout(timeout):
                await self.transport.connect()
                connected = True
                result = await self.transport.run(sweep_command(), timeout)
                nvml_rows = await asyncio.to_thread(self.nvml.read) if self.nvml else None
        except TimeoutError:
            if not connected:
                return self._down(HostStatus.OFFLINE, f"no answer in {timeout:g} s")
            return self._gpu_trouble(f"the host did not answer in {timeout:g} s (nvidia-smi hung?)")
        except HostUnavailable as exc:
            return self._down(exc.status, exc.message)
        except OutputTooLarge as exc:
            return self._gpu_trouble(str(exc), error=str(exc))
        except CommandTimeout:
            return self._gpu_trouble(f"the host did not answer in {timeout:g} s (nvidia-smi hung?)")
        reports = parse_reports(result.stdout.split("\n"))
        if not reports:
            detail = (result.stderr or result.stdout).strip().splitlines()
            return HostSnapshot(
                self.name,
                HostStatus.ONLINE,
                error="unexpected answer from the host: "
                + (detail[0][:160] if detail else f"exit {result.exit_status}"),
                updated_at=self._clock(),
            )
        report = reports[0]
        availability, gpu_error, rows = _gpu_verdict(
            report.have_smi, report.gpu_rc, report.gpu_lines or []
        )
        if nvml_rows is not None:
            rows, availability, gpu_error = nvml_rows, GpuAvailability.OK, None
        rows, bad_rows = _valid_rows(rows)
        now = self._clock()
        procs = _processes(report, IdentityBook(), now)
        return HostSnapshot(
            self.name,
            HostStatus.ONLINE,
            error=malformed_message(bad_rows + report.malformed),
            gpu_availability=availability,
            gpu_error=gpu_error,
            gpus=_samples(rows, procs),
            load=_load(report, None),
            updated_at=now,
        )

    def _gpu_trouble(self, gpu_error: str, error: str | None = None) -> HostSnapshot:
        return HostSnapshot(
            self.name,
            HostStatus.ONLINE,
            error=error,
            gpu_availability=GpuAvailability.ERROR,
            gpu_error=gpu_error,
            updated_at=self._clock(),
        )

    def _down(self, status: HostStatus, message: str) -> HostSnapshot:
        return HostSnapshot(self.name, status, error=message, updated_at=self._clock())

    # -- following --------------------------------------------------------
    async def follow(self, publish: Publish) -> None:
        """Publish snapshots until cancelled; reconnect with capped backoff."""
        backoff = 1.0
        publish(HostSnapshot(self.name, HostStatus.CONNECTING, updated_at=self._clock()))
        while True:
            try:
                await self.transport.connect()
            except HostUnavailable as exc:
                publish(self._down(exc.status, exc.message))
                host_key = exc.status in HOST_KEY_TROUBLE
                await asyncio.sleep(HOST_KEY_RETRY_S if host_key else backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            try:
                await self._follow_online(publish)
            except* HostUnavailable as group:
                first = group.exceptions[0]
                message = first.message if isinstance(first, HostUnavailable) else "lost"
                publish(self._down(HostStatus.OFFLINE, message))
            await self.transport.close()
            await asyncio.sleep(1.0)

    async def _follow_online(self, publish: Publish) -> None:
        # One sweep first: the screen gets data at once instead of after the
        # streams' first full period, and the stream learns how many GPUs
        # make a complete sample.
        first = await self.sweep(self.command_timeout)
        if first.status is not HostStatus.ONLINE:
            raise HostUnavailable(first.status, first.error or "lost")
        publish(first)
        live = _Live(
            rows=[_row_of(gpu) for gpu in first.gpus],
            rows_at=self._clock(),
            availability=first.gpu_availability,
            gpu_error=first.gpu_error,
            procs={gpu.uuid: list(gpu.processes) for gpu in first.gpus},
            expected=len(first.gpus),
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow_reports(live))
            gpu_task = group.create_task(self._gpu_source(live))
            while True:
                await asyncio.sleep(self.interval)
                now = self._clock()
                if live.availability is not GpuAvailability.NO_GPU and (
                    now - live.rows_at > self.stale_after
                ):
                    live.availability = GpuAvailability.ERROR
                    live.gpu_error = f"nvidia-smi has not answered for {now - live.rows_at:.0f} s"
                    live.rows_at = now  # restart the stream, then wait a full period again
                    gpu_task.cancel()
                    gpu_task = group.create_task(self._gpu_source(live))
                publish(self._assemble(live, now))

    def _assemble(self, live: _Live, now: float) -> HostSnapshot:
        error = live.too_large or malformed_message(live.gpu_malformed + live.malformed)
        availability, gpu_error = live.availability, live.gpu_error
        if live.too_large and availability is not GpuAvailability.NO_GPU:
            # Its processes are unknown: the GPUs must not look free or unguarded.
            availability, gpu_error = GpuAvailability.ERROR, live.too_large
        return HostSnapshot(
            self.name,
            HostStatus.ONLINE,
            error=error,
            gpu_availability=availability,
            gpu_error=gpu_error,
            gpus=_samples(live.rows, live.procs),
            load=_load(live.report, live.cpu_pct),
            updated_at=now,
        )

    async def _follow_reports(self, live: _Live) -> None:
        book = IdentityBook()
        previous: tuple[int, int] | None = None
        while True:
            parser = ReportParser()
            try:
                async with contextlib.aclosing(
                    self.transport.stream(follow_command(self.interval))
                ) as lines:
                    async for line in lines:
                        report = parser.feed(line)
                        if report is None:
                            continue
                        live.cpu_pct = cpu_percent(previous, report.cpu_ticks)
                        previous = report.cpu_ticks
                        live.procs = _processes(report, book, self._clock())
                        live.report, live.malformed, live.too_large = report, report.malformed, None
                        if not report.have_smi:
                            live.availability = GpuAvailability.NO_GPU
                            live.gpu_error = "no NVIDIA GPU (nvidia-smi not found)"
            except OutputTooLarge as exc:
                # What we knew of its processes can no longer be vouched for.
                live.too_large, live.procs = str(exc), {}
                book = IdentityBook()
                await asyncio.sleep(self.stale_after)
                continue
            await asyncio.sleep(self.interval)  # the loop ended (killed on the host?): restart

    def _gpu_source(self, live: _Live) -> Coroutine[None, None, None]:
        return self._poll_nvml(live) if self.nvml is not None else self._follow_gpus(live)

    async def _poll_nvml(self, live: _Live) -> None:
        assert self.nvml is not None
        while True:
            rows = await asyncio.to_thread(self.nvml.read)
            self._take(live, {row.index: row for row in rows})
            await asyncio.sleep(self.interval)

    async def _follow_gpus(self, live: _Live) -> None:
        argv = nvidia.gpu_query_argv(loop_ms=max(100, int(self.interval * 1000)))
        command = shlex.join(argv) + " 2>&1"
        while True:
            batch: dict[int, nvidia.GpuRow] = {}
            expected = len(live.rows) or live.expected
            noise: list[str] = []  # the first lines that were not rows, for the message
            noisy = 0  # such lines since the last row
            rc: int | None = None
            try:
                async with contextlib.aclosing(self.transport.stream(command)) as lines:
                    async for line in lines:
                        if line.startswith(EXIT_MARK):
                            code = line[len(EXIT_MARK) :]
                            rc = int(code) if code.isdigit() else None
                            break
                        try:
                            row = nvidia.parse_gpu_line(line)
                        except nvidia.NvidiaOutputError:
                            # Xid/ECC event lines may come between rows; lasting noise is an
                            # error, and a host that prints only noise is not read on.
                            noisy += 1
                            if len(noise) < MAX_NOISE_LINES:
                                noise.append(line)
                            if noisy > MAX_NOISE_LINES:
                                break
                            continue
                        noisy = 0
                        if not is_gpu_uuid(row.uuid):
                            live.gpu_malformed = _valid_rows([row])[1]
                            continue
                        if row.index in batch:
                            expected = len(batch)
                            self._take(live, batch)
                            batch = {}
                        batch[row.index] = row
                        if len(batch) == expected:
                            self._take(live, batch)
                            batch = {}
            except OutputTooLarge as exc:
                noise, rc = [], None
                live.availability, live.gpu_error = GpuAvailability.ERROR, str(exc)
                live.rows, live.rows_at = [], self._clock()
                await asyncio.sleep(self.stale_after)
                continue
            if batch:
                self._take(live, batch)
            if rc == 0 and not noise:
                await asyncio.sleep(self.interval)  # the loop ended cleanly: start it again
                continue
            availability, message, _ = _gpu_verdict(True, rc, noise)
            live.availability, live.gpu_error = availability, message
            live.rows = []
            live.rows_at = self._clock()
            wait = NO_GPU_RECHECK_S if availability is GpuAvailability.NO_GPU else self.stale_after
            await asyncio.sleep(wait)

    def _take(self, live: _Live, batch: dict[int, nvidia.GpuRow]) -> None:
        live.rows = [batch[i] for i in sorted(batch)]
        live.rows_at = self._clock()
        live.availability = GpuAvailability.OK
        live.gpu_error = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.transport.close()
