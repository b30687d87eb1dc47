"""CPU time of a benchmark's servers by role (gateway processes, Redis, PostgreSQL),
sampled in the background so a window (the loadgen's ``window_unix``: the calls
placed, set-up and verification excluded) can be cut out of a longer step."""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
ROLES = ("gateway", "redis", "postgres")


def _processes() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds used so far)."""
    found: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (comm, int(rest[1]), (int(rest[11]) + int(rest[12])) * TICK_S)
    return found


def by_role(gateway_pid: int) -> dict[str, float]:
    """CPU seconds so far of the gateway's process tree and of every Redis and
    PostgreSQL server process on the machine (a benchmark runs alone)."""
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [gateway_pid]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    totals = dict.fromkeys(ROLES, 0.0)
    for pid, (comm, _, cpu) in procs.items():
        if comm.startswith("redis-server"):
            totals["redis"] += cpu
        elif comm in ("postgres", "postmaster"):
            totals["postgres"] += cpu
        elif pid in tree:
            totals["gateway"] += cpu
    return totals


class CpuSampler:
    """Samples ``by_role`` every ``every_s`` in a thread until ``stop``."""

    def __init__(self, gateway_pid: int, every_s: float = 0.25) -> None:
        self.gateway_pid = gateway_pid
        self.every_s = every_s
        self.times: list[float] = []
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = by_role(self.gateway_pid)
            self.times.append(time.time())
            self.samples.append(sample)
            self._stop.wait(self.every_s)

    def _at(self, when: float) -> dict[str, float]:
        """Totals at ``when``, interpolated between the samples around it."""
        i = bisect.bisect_left(self.times, when)
        if i <= 0:
            return self.samples[0]
        if i >= len(self.times):
            return self.samples[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        share = (when - t0) / (t1 - t0) if t1 > t0 else 0.0
        a, b = self.samples[i - 1], self.samples[i]
        return {role: a[role] + (b[role] - a[role]) * share for role in ROLES}

    def used(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each role used between the two wall-clock times."""
        a, b = self._at(start), self._at(end)
        return {role: b[role] - a[role] for role in ROLES}
