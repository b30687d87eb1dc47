"""One generator for every RADIUS server the benches compare: the loadgen's engine
placing Access-Requests only (``gateway loadgen --auth-only``), in this process.

``capacity`` offers far more than any server answers, bounded by a window of
requests in flight, so the answers per second are the server's capacity (latency
then is the window divided by that rate, Little's law). ``paced`` offers a fixed rate
below it and reports the latency a switch would see.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.loadgen.engine import AUTH_HOLD, Engine, EngineOptions, Target, prepare
from gateway.loadgen.packets import RequestBuilder
from gateway.loadgen.plan import Population, plan_calls
from gateway.loadgen.stats import summary
from tests.bench.freeradius import machine_busy_s

SOCKETS = 4
WINDOW = 512  # requests in flight during a capacity run


@dataclass
class Measured:
    label: str
    report: dict[str, Any]
    server_cpu_s: float | None
    load: tuple[float, float, float]
    answering_s: float  # from the first request to the last answer
    machine_busy_s: float  # CPU seconds of all cores (everything running) meanwhile

    @property
    def answered_per_s(self) -> float:
        return float(self.report["requests"]["replies"]) / max(self.answering_s, 1e-9)

    @property
    def server_cpu_percent(self) -> float | None:
        if self.server_cpu_s is None:
            return None
        return self.server_cpu_s / max(float(self.report["elapsed_s"]), 1e-9) * 100

    @property
    def machine_percent(self) -> float:
        return self.machine_busy_s / max(float(self.report["elapsed_s"]), 1e-9) * 100

    def row(self) -> str:
        lat = self.report["latency"]["auth"]
        calls = self.report["calls"]
        gen = self.report["generator"]
        server = self.server_cpu_percent
        server_text = f"{server:>5.0f}%" if server is not None else "     -"
        lost = calls["auth_failed"]
        return (
            f"{self.label:<34} {self.report['target_calls_per_s']:>8.0f} "
            f"{self.answered_per_s:>8.0f} {lat['p50_ms']:>7.2f} {lat['p99_ms']:>7.2f} "
            f"{calls['accepted']:>8d} {calls['refused']:>6d} {lost:>5d} "
            f"{sum(self.report['retransmits'].values()):>6d} "
            f"{gen['cpu_percent']:>4.0f}% {gen['cpu_us_per_request']:>5.1f} {server_text} "
            f"{self.machine_percent:>6.0f}% {self.load[0]:>5.2f}"
        )


HEADER = (
    f"{'server / run':<34} {'offered':>8} {'answered':>8} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'accepted':>8} {'reject':>6} {'lost':>5} {'retr':>6} {'gen':>5} {'µs/r':>5} "
    f"{'server':>6} {'machine':>7} {'load1':>5}\n"
    f"{'':<34} {'req/s':>8} {'req/s':>8} {'':>7} {'':>7} {'':>8} {'':>6} {'':>5} "
    f"{'':>6} {'CPU':>5} {'':>5} {'CPU':>6} {'CPU':>7}"
)


def drive(
    label: str,
    target: Target,
    secret: bytes,
    population: Population,
    *,
    rate: float,
    seconds: float,
    calls: int | None = None,
    window: int = 0,
    mode: str = AUTH_HOLD,
    server_cpu: Callable[[], float] | None = None,
    seed: int = 1,
) -> Measured:
    """Place Access-Requests at ``rate`` for ``seconds`` (at most ``calls`` of them)."""
    count = calls if calls is not None else int(rate * seconds) + 1
    run_id = f"{label[:3].lower()}{os.getpid() % 1000}{seed}"
    specs = plan_calls(
        population, count, run_id=run_id, durations=(0, 0), refuse_share=0.0, seed=seed
    )
    prepared = prepare(specs, RequestBuilder(secret, nas_ip="127.0.0.1"), SOCKETS, 0, mode)
    options = EngineOptions(
        rate=rate, seconds=seconds, timeout_s=2.0, retries=2, sockets=SOCKETS, max_in_flight=window
    )
    engine = Engine(prepared, target, options, secret)
    cpu0 = server_cpu() if server_cpu is not None else None
    busy0 = machine_busy_s()
    try:
        result = engine.run()
    finally:
        engine.close()
    busy = machine_busy_s() - busy0
    used = server_cpu() - cpu0 if server_cpu is not None and cpu0 is not None else None
    report = summary(
        result.counters,
        result.latencies,
        planned=count,
        target_rate=rate,
        wall_s=result.wall_s,
        cpu_s=result.cpu_s,
        precompute_s=0.0,
    )
    time.sleep(0.5)  # let late answers land before the next run opens its sockets
    answering = result.last_reply_s or result.wall_s
    return Measured(label, report, used, os.getloadavg(), answering, busy)
