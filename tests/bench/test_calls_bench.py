"""Benchmark: whole calls through `gateway run --workers 2`, driven by `gateway loadgen`.

Run with `make bench`; prints figures, asserts only correctness (every step's
billing verified: no call lost, none billed twice, every balance exact).

Each step places calls for BENCH_SECONDS (default 20) at a target rate: an
Access-Request, Accounting Start and Stop per call (simulated lengths 0..300 s, the
Stop sent 100 ms after the Start's answer), 5% of the calls meant to be refused.
Two set-ups: the local PostgreSQL and Redis (as `make test` uses them), and the
embedded servers the gateway starts itself when no URL is configured. The table
shows where the gateway saturates: achieved calls/s falling behind the target,
latency climbing, timeouts. The generator's own CPU is shown to prove it is not
what limits.

BENCH_RATES (e.g. "500,1000") and BENCH_SECONDS override the steps.

A third bench measures the generator alone against a trivial responder (another
process that answers every request at once): its ceiling, far above the gateway's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import select
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.balance.keys import Keys
from gateway.loadgen.engine import Engine, EngineOptions, Target, prepare
from gateway.loadgen.packets import RequestBuilder
from gateway.loadgen.plan import Caller, Population, plan_calls
from gateway.loadgen.stats import summary
from tests.bench.cpu import ROLES, CpuSampler
from tests.e2e.test_loadgen import GatewayProcess, clean_env, free_port, run_loadgen, write_config

RATES = tuple(int(r) for r in os.environ.get("BENCH_RATES", "500,1000,2000,3000").split(","))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
CUSTOMERS = 100


def _step(
    config: Path, rate: int, env: dict[str, str], call: tuple[str, ...] = ("--duration", "0:300")
) -> dict[str, Any]:
    code, report, stderr = run_loadgen(
        config,
        "--setup",
        str(CUSTOMERS),
        "--rate",
        str(rate),
        "--seconds",
        str(SECONDS),
        *call,
        "--hold-ms",
        "100",
        "--refuse-share",
        "0.05",
        "--sockets",
        "16",
        "--verify",
        "--quiet",
        timeout_s=SECONDS * 3 + 180,
        env=env,
    )
    verify = report["verify"]
    assert verify["ok"], (json.dumps(verify, indent=2), stderr)
    assert verify["lost"] == 0 and verify["double_billed"] == 0
    assert code == 0, stderr
    return report


def _row(report: dict[str, Any]) -> str:
    lat, calls = report["latency"], report["calls"]
    timeouts = sum(report["timeouts"].values())
    retrans = sum(report["retransmits"].values())
    return (
        f"{report['target_calls_per_s']:>7g} {report['calls_per_s']:>8.0f} "
        f"{report['requests_per_s']:>8.0f} "
        f"{lat['auth']['p50_ms']:>7.1f} {lat['auth']['p99_ms']:>7.1f} "
        f"{lat['start']['p50_ms']:>7.1f} {lat['start']['p99_ms']:>7.1f} "
        f"{lat['stop']['p50_ms']:>7.1f} {lat['stop']['p99_ms']:>7.1f} "
        f"{timeouts:>6d} {retrans:>7d} {calls['refused_unexpected']:>6d} "
        f"{report['generator']['cpu_percent']:>5.0f}% "
        f"{report['generator']['cpu_us_per_request']:>6.1f} "
        + " ".join(f"{report['cpu_us_per_call'][role]:>6.0f}" for role in (*ROLES, "loadgen"))
    )


HEADER = (
    " target  calls/s    req/s   auth    auth   start   start    stop    stop "
    "timeout retrans unexp.   gen  gen µs  CPU µs per call:\n"
    "                           p50 ms  p99 ms  p50 ms  p99 ms  p50 ms  p99 ms "
    "                      CPU   /req gatewy  redis  pgsql loadgn"
)


def _stop_leftovers(state: Path) -> None:
    """Had the supervisor to be killed, its embedded servers would live on: stop them
    by the pid files they wrote (PostgreSQL: fast shutdown; Redis: flush and exit)."""
    for pidfile, name, signum in (
        (state / "postgres" / "data" / "postmaster.pid", b"postgres", signal.SIGINT),
        (state / "redis" / "redis.pid", b"redis-server", signal.SIGTERM),
    ):
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pidfile.read_text().split()[0])
            if name in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a reused pid
                os.kill(pid, signum)


def _bench(
    title: str,
    config: Path,
    *,
    embedded: bool,
    rates: tuple[int, ...] = RATES,
    call: tuple[str, ...] = ("--duration", "0:300"),
) -> list[dict[str, Any]]:
    gw = GatewayProcess(config)
    log = gw.start()
    reports = []
    env = clean_env()
    try:
        if embedded:  # the loadgen needs the URL of the PostgreSQL the gateway started
            found = re.search(
                r"\"event\":\"embedded.postgres.started\"[^\n]*?\"url\":\"([^\"]+)\"", log
            )
            assert found, log
            env = {**env, "GATEWAY_DATABASE_URL": found.group(1)}
        assert gw.proc is not None
        with CpuSampler(gw.proc.pid) as sampler:
            for rate in rates:
                report = _step(config, rate, env, call)
                # What each call cost in CPU, by role, over the window the calls were
                # placed in: where the machine's two cores go.
                used = sampler.used(*report["window_unix"])
                used["loadgen"] = report["generator"]["cpu_s"]
                calls = max(report["calls"]["finished"], 1)
                report["cpu_us_per_call"] = {k: v / calls * 1e6 for k, v in used.items()}
                reports.append(report)
                print(f"{title}: {rate} calls/s done", flush=True)
    finally:
        gw.stop()
        if embedded:
            _stop_leftovers(config.parent / "state")
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{title}: gateway run --workers 2, {cpus} CPUs, {SECONDS:g} s per step "
        f"(load average at the end {load}: anything else running skews the figures)"
    )
    print(HEADER)
    for report in reports:
        print(_row(report))
    saturated = [r for r in reports if r["calls_per_s"] < 0.95 * r["target_calls_per_s"]]
    if saturated:
        first = saturated[0]
        print(
            f"saturated at target {first['target_calls_per_s']:g} calls/s: "
            f"{first['calls_per_s']:.0f} achieved"
        )
    best = max(reports, key=lambda r: r["calls_per_s"])
    print(
        f"best: {best['calls_per_s']:.0f} calls/s, {best['requests_per_s']:.0f} req/s, "
        f"auth p99 {best['latency']['auth']['p99_ms']:.1f} ms"
    )
    return reports


@pytest.mark.slow
def test_calls_external_servers(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
    )
    _bench("external PostgreSQL and Redis", config, embedded=False)


GRANT_RATES = tuple(int(r) for r in os.environ.get("BENCH_GRANT_RATES", "3000").split(","))
GRANT_INTERIMS = int(os.environ.get("BENCH_GRANT_INTERIMS", "2"))


@pytest.mark.slow
@pytest.mark.parametrize("grant", ["whole", "slice"])
def test_calls_by_grant_mode(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, grant: str
) -> None:
    """Slice mode next to whole mode: 180 s calls (simulated) with an Interim-Update
    every 60 s (BENCH_GRANT_INTERIMS=2, the default; 0 for Start and Stop only), so
    slice calls extend their hold as they run."""
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
        # A CoA port makes the switch slice-capable; no call here runs out of money,
        # so nothing is ever sent to it.
        client_extra=f"coa_port = {free_port()}",
        sections=f'[balance]\ngrant = "{grant}"',
    )
    call = ("--duration", "180", "--interims", str(GRANT_INTERIMS))
    title = f"grant = {grant}, {GRANT_INTERIMS} interims per 180 s call"
    _bench(title, config, embedded=False, rates=GRANT_RATES, call=call)


RULES_RATES = tuple(int(r) for r in os.environ.get("BENCH_RULES_RATES", "3000").split(","))


@pytest.mark.slow
@pytest.mark.parametrize("rules", ["without", "with"])
def test_calls_with_call_rules(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, rules: str
) -> None:
    """What call rules cost: the same calls with no rules, then with rules of every kind
    on every account (block and allow lists, price limit, margin check, hour/day/call
    spend caps, attempt rates; none refuses a planned call: loadgen --call-rules).
    Compare the gateway and Redis CPU µs per call of the two tables."""
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
    )
    call = ("--duration", "0:300", *(("--call-rules",) if rules == "with" else ()))
    _bench(f"{rules} call rules", config, embedded=False, rates=RULES_RATES, call=call)


@pytest.mark.slow
def test_calls_embedded_servers(tmp_path: Path) -> None:
    config = write_config(tmp_path, auth_port=free_port(), acct_port=free_port())
    _bench("embedded PostgreSQL and Redis", config, embedded=True)


def _respond(socks: list[socket.socket], secret: bytes) -> None:
    """Accept every Access-Request, acknowledge every Accounting-Request."""
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    md5 = hashlib.md5
    while True:
        for fd, _ in poller.poll():
            sock = by_fd[fd]
            while True:
                try:
                    data, addr = sock.recvfrom(4096)
                except BlockingIOError:
                    break
                header = bytes((2 if data[0] == 1 else 5, data[1], 0, 20))
                sock.sendto(header + md5(header + data[4:20] + secret).digest(), addr)


@pytest.mark.slow
def test_generator_ceiling() -> None:
    secret = b"bench-secret"
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    responder = multiprocessing.get_context("fork").Process(
        target=_respond, args=(socks, secret), daemon=True
    )
    responder.start()
    callers = (Caller(1, "ext1", "pw1", ("442071230001",), ("4930",)),)
    population = Population(callers, ("99912",), 7, {}, {})
    print("\ngenerator alone (a trivial responder on the other core), whole calls of 3 requests")
    print(" target  calls/s    req/s  gen CPU  µs/req  auth p99 ms  timeouts")
    try:
        for rate in (5_000, 10_000, 20_000):
            specs = plan_calls(
                population, rate * 5, run_id="b", durations=(0, 300), refuse_share=0, seed=1
            )
            calls = prepare(specs, RequestBuilder(secret), 16, 0)
            options = EngineOptions(rate=rate, hold_s=0.05, sockets=16)
            engine = Engine(calls, Target("127.0.0.1", ports[0], ports[1]), options, secret)
            try:
                result = engine.run()
            finally:
                engine.close()
            data = summary(
                result.counters,
                result.latencies,
                planned=len(calls),
                target_rate=rate,
                wall_s=result.wall_s,
                cpu_s=result.cpu_s,
                precompute_s=0,
            )
            assert data["calls"]["stops_acked"] + data["calls"]["stops_unacked"] == len(calls)
            gen = data["generator"]
            print(
                f"{rate:>7d} {data['calls_per_s']:>8.0f} {data['requests_per_s']:>8.0f} "
                f"{gen['cpu_percent']:>7.0f}% {gen['cpu_us_per_request']:>7.1f} "
                f"{data['latency']['auth']['p99_ms']:>12.2f} {sum(data['timeouts'].values()):>9d}"
            )
    finally:
        responder.kill()
        responder.join(10)
        for sock in socks:
            sock.close()
