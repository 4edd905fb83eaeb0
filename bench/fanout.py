"""Fan-out: hivetui's asyncssh pool against OpenSSH ControlMaster, on N loopback hosts.

For N hosts (all served by real sshd on 127.0.0.1, 8 GPUs each), in one run:

* sweep: one full fresh snapshot of every host (GPU table, compute processes
  with owners, CPU and memory), the connections already open. hivetui sends the
  sweep script over its pool; the peer runs the same script with one
  ``ssh -S <ControlPath> host ...`` per host, in parallel, over ControlMaster
  connections opened beforehand. Median of several rounds.
* follow: CPU of the collecting process while following every host at 1 Hz
  (hivetui: ``Fleet.start()`` headless; peer: the same per-host ssh commands
  every second, counting the ssh clients' CPU), and how many fresh snapshots a
  second each side actually got.

The hosts' ``nvidia-smi`` is a small shell script that prints bytes rendered
once by the test fake (tests/fake_nvidia_smi, itself checked against real
captures), so that 100 "hosts" sharing this machine's cores do not spend them
starting Python.

    .venv/bin/python bench/fanout.py            # N = 1, 10, 50, 100
    .venv/bin/python bench/fanout.py 1 10       # chosen sizes
"""

from __future__ import annotations

import asyncio
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hostbin import render_static_fake  # noqa: E402
from hivetui.backends.nvidia import gpu_query_argv  # noqa: E402
from hivetui.backends.probe import sweep_command  # noqa: E402
from hivetui.backends.ssh import SshTransport  # noqa: E402
from hivetui.config import parse_config  # noqa: E402
from hivetui.fleet import Fleet  # noqa: E402
from hivetui.hosts import build_fleet, transport_for  # noqa: E402
from tests.sshd import STATES, TestFleet  # noqa: E402

STATE = "h200x8"
GPU_COMMAND = shlex.join(gpu_query_argv())
CLIENT_CPUS = {0}  # hivetui, or the ssh clients: the "laptop"
HOST_CPUS = {1}  # every sshd and what it runs: the "GPU hosts"
SWEEP_ROUNDS = 5
FOLLOW_SECONDS = 20.0
WARMUP_SECONDS = 5.0


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the CPUs the hosts run on, from /proc/stat."""
    busy = total = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name in {f"cpu{n}" for n in HOST_CPUS}:
                ticks = [int(f) for f in fields[:8]]
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def cpu_seconds(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class ControlMasters:
    """One OpenSSH master connection per host name, opened before timing starts."""

    def __init__(self, rig: TestFleet, port: int, names: list[str], root: Path) -> None:
        self.rig, self.port, self.names = rig, port, names
        self.config = root / "ssh_config"
        self.config.write_text(
            "Host *\n"
            "  HostName 127.0.0.1\n"
            f"  Port {port}\n"
            f"  User {rig.user}\n"
            f"  IdentityFile {rig.client_key}\n"
            f"  UserKnownHostsFile {rig.known_hosts}\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
            f"  ControlPath {root}/cm-%n\n"
            "  LogLevel ERROR\n"
        )

    def ssh(self, name: str, *extra: str) -> list[str]:
        return ["ssh", "-F", str(self.config), *extra, name]

    def open(self) -> None:
        procs = [
            subprocess.Popen(self.ssh(name, "-M", "-f", "-N", "-o", "ControlPersist=yes"))
            for name in self.names
        ]
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("could not open an OpenSSH ControlMaster")

    def close(self) -> None:
        for name in self.names:
            subprocess.run(self.ssh(name, "-O", "exit"), capture_output=True)

    async def sweep(self, command: str = GPU_COMMAND) -> int:
        """Run ``command`` on every host in parallel; return how many answered."""
        procs = [
            await asyncio.create_subprocess_exec(
                *self.ssh(name),
                command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for name in self.names
        ]
        outs = await asyncio.gather(*(p.communicate() for p in procs))
        return sum(1 for out, _ in outs if out.strip())


async def time_sweeps(
    fleet: Fleet, pool: list[SshTransport], masters: ControlMasters, hosts: int
) -> dict[str, float]:
    """Median seconds of each kind of sweep, interleaved round by round."""
    times: dict[str, list[float]] = {"full": [], "gpu": [], "peer_gpu": [], "peer_full": []}
    host_busy: dict[str, list[tuple[int, int]]] = {key: [] for key in times}
    client_cpu: dict[str, list[float]] = {key: [] for key in times}

    async def pool_gpu() -> None:
        results = await asyncio.gather(*(t.run(GPU_COMMAND, 30) for t in pool))
        assert all(r.stdout.count("\n") == 8 for r in results), "a host did not answer"

    async def full() -> None:
        snaps = await fleet.sweep(30)
        assert sum(1 for s in snaps if len(s.gpus) == 8) == hosts, "a host did not answer"

    async def peer_gpu() -> None:
        assert await masters.sweep(GPU_COMMAND) == hosts, "a ControlMaster host did not answer"

    async def peer_full() -> None:
        assert await masters.sweep(sweep_command()) == hosts, "a ControlMaster host failed"

    runs = {"full": full, "gpu": pool_gpu, "peer_gpu": peer_gpu, "peer_full": peer_full}
    for _ in range(SWEEP_ROUNDS):
        for key, run in runs.items():
            ticks = host_cpu_ticks()
            cpu = cpu_seconds() + cpu_seconds(children=True)
            start = time.perf_counter()
            await run()
            times[key].append(time.perf_counter() - start)
            client_cpu[key].append(cpu_seconds() + cpu_seconds(children=True) - cpu)
            after = host_cpu_ticks()
            host_busy[key].append((after[0] - ticks[0], after[1] - ticks[1]))
    medians = {key: statistics.median(values) for key, values in times.items()}
    for key, values in client_cpu.items():
        medians[f"{key}_client_cpu"] = statistics.median(values)
    for key, pairs in host_busy.items():
        busy, total = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        medians[f"{key}_host_busy"] = 100 * busy / total if total else 0.0
    return medians


async def follow_ours(fleet: Fleet, hosts: int) -> tuple[float, float]:
    fresh = 0
    fleet.subscribe(lambda snap: None)
    seen: dict[str, float] = {}

    await fleet.start()
    await asyncio.sleep(WARMUP_SECONDS)
    for snap in fleet.snapshots():
        seen[snap.name] = snap.updated_at
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    end = t0 + FOLLOW_SECONDS
    while time.perf_counter() < end:
        await asyncio.sleep(0.5)
        for snap in fleet.snapshots():
            if snap.gpus and snap.updated_at != seen.get(snap.name):
                seen[snap.name] = snap.updated_at
                fresh += 1
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    await fleet.stop()
    return 100 * cpu / elapsed, fresh / elapsed / hosts


async def follow_peer(masters: ControlMasters, hosts: int) -> tuple[float, float]:
    cpu0, kids0, t0 = cpu_seconds(), cpu_seconds(children=True), time.perf_counter()
    answered = 0
    end = t0 + FOLLOW_SECONDS
    while time.perf_counter() < end:
        tick = time.perf_counter()
        answered += await masters.sweep(sweep_command())
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0 + cpu_seconds(children=True) - kids0
    return 100 * cpu / elapsed, answered / elapsed / hosts


async def run_size(rig: TestFleet, port_host: str, hosts: int, root: Path) -> dict[str, float]:
    names = [f"h{i:03d}" for i in range(hosts)]
    aliases = dict.fromkeys(names, port_host)
    # Keepalives as shipped (every 5 s), not the tests' fast 1 s.
    text = rig.config_toml([], aliases=aliases).replace(
        "keepalive_interval = 1.0", "keepalive_interval = 5.0"
    )
    config = parse_config(text, "bench.toml")
    fleet = build_fleet(config)
    pool = [cast(SshTransport, transport_for(host, config)) for host in config.hosts]
    masters = ControlMasters(rig, rig.hosts[port_host].port, names, root)
    masters.open()
    try:
        start = time.perf_counter()
        await fleet.sweep(60)  # opens every connection
        cold = time.perf_counter() - start
        await asyncio.gather(*(t.connect() for t in pool))
        sweeps = await time_sweeps(fleet, pool, masters, hosts)
        await asyncio.gather(*(t.close() for t in pool))
        peer_cpu, peer_rate = await follow_peer(masters, hosts)
        our_cpu, our_rate = await follow_ours(fleet, hosts)
    finally:
        masters.close()
        await fleet.stop()
    return {
        "hosts": hosts,
        "cold": cold,
        **sweeps,
        "our_cpu": our_cpu,
        "our_rate": our_rate,
        "peer_cpu": peer_cpu,
        "peer_rate": peer_rate,
    }


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10, 50, 100]
    pinned = len(os.sched_getaffinity(0)) >= 2
    if pinned:
        os.sched_setaffinity(0, CLIENT_CPUS)
    with tempfile.TemporaryDirectory(prefix="hivetui-fanout-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        render_static_fake(root / "bin", STATES / f"{STATE}.json")
        rig = TestFleet(root / "rig")
        rig.add("sshd", STATE, bin_dir=root / "bin", cpus=HOST_CPUS if pinned else None)
        rows = []
        try:
            for n in sizes:
                rows.append(asyncio.run(run_size(rig, "sshd", n, root)))
                print(f"  done: {n} hosts", file=sys.stderr)
        finally:
            rig.stop_all()
    where = "client on CPU 0, all hosts on CPU 1" if pinned else "unpinned (one CPU)"
    print(f"fan-out over loopback sshd, {STATE} (8 GPUs a host), {where}")
    print("sweep = one fresh snapshot of every host over open connections (median of 5)")
    head = (
        f"{'hosts':>5} | {'connect+full':>12} | {'full hivetui':>12} | {'full ssh -S':>11} | "
        f"{'ratio':>5} | {'GPU hivetui':>11} | {'GPU ssh -S':>10} | {'ratio':>5} | "
        f"{'follow CPU hivetui':>18} | {'ssh -S':>6} | {'snaps/s/host':>12} | {'ssh -S':>6} | "
        f"{'host CPU busy in GPU sweep: hivetui':>35} | {'ssh -S':>6} | "
        f"{'client CPU per GPU sweep: hivetui':>33} | {'ssh -S':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['hosts']:>5.0f} | {r['cold'] * 1000:>9.0f} ms | {r['full'] * 1000:>9.1f} ms"
            f" | {r['peer_full'] * 1000:>8.1f} ms | {r['peer_full'] / r['full']:>4.2f}x"
            f" | {r['gpu'] * 1000:>8.1f} ms | {r['peer_gpu'] * 1000:>7.1f} ms"
            f" | {r['peer_gpu'] / r['gpu']:>4.2f}x"
            f" | {r['our_cpu']:>16.1f} % | {r['peer_cpu']:>4.1f} %"
            f" | {r['our_rate']:>12.2f} | {r['peer_rate']:>6.2f}"
            f" | {r['gpu_host_busy']:>33.0f} % | {r['peer_gpu_host_busy']:>4.0f} %"
            f" | {r['gpu_client_cpu'] * 1000:>30.0f} ms"
            f" | {r['peer_gpu_client_cpu'] * 1000:>5.0f} ms"
        )
    print(
        "full: GPUs + processes with owners + CPU/memory (hivetui's sweep script on both sides);"
        " GPU: one `nvidia-smi --query-gpu` per host.\nratio = ssh -S time / hivetui time."
        " CPU: % of one core of the collecting side (ssh -S: its ssh clients too),"
        " following every host at 1 Hz.\nhost CPU busy: how busy the hosts' CPU was during"
        " the GPU sweeps; near 100 % the hosts, not the client, set the time.\nclient CPU:"
        " CPU seconds the collecting side spent on one GPU sweep (ssh -S: its ssh clients)."
    )


if __name__ == "__main__":
    main()
