"""Benchmark: authorization alone, the gateway side by side with FreeRADIUS 3.2.

One generator (the loadgen's engine, Access-Requests only: ``gateway loadgen
--auth-only``) against, in turn and on this machine in this run:

1. FreeRADIUS accepting everything without a look: the ceiling of a RADIUS server
   (and of the generator) here;
2. FreeRADIUS with the usual prepaid set-up: rlm_sql on PostgreSQL (radcheck,
   radreply), PAP, and rlm_sqlcounter's ``noresetcounter`` summing the user's past
   calls in radacct, answering the remaining seconds as Session-Timeout (a database
   of its own, dropped at the end);
3. ``gateway run --workers 2`` on the local PostgreSQL and Redis: identify the
   caller, rate the destination on every level of the chain and hold the money in
   Redis, the hold left to expire (``auth-hold``), and with the hold given back at
   once (``auth-release``: reserve + release, two scripts).

Each gets a capacity run (far more offered than answered, at most WINDOW requests
in flight: the answers per second are the capacity) and a paced run at the same rate
for all (half the slowest capacity) for the latency a switch sees. The figures are
printed as a table with the gateway's ratios to FreeRADIUS; nothing is asserted but
that every request was answered and every caller accepted.

BENCH_AUTH_SECONDS (default 4) sets the length of each run. Skipped when freeradius
is not installed; the PostgreSQL driver module (freeradius-postgresql) is installed
on demand through scripts/ensure-debian-tools.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.loadgen import population as population_mod
from gateway.loadgen.engine import AUTH_HOLD, AUTH_RELEASE, Engine, EngineOptions, Target
from gateway.loadgen.packets import RequestBuilder
from gateway.loadgen.plan import CallSpec, Population
from tests.bench import freeradius as fr
from tests.bench.authload import HEADER, SOCKETS, WINDOW, Measured, drive
from tests.deploy.test_freeradius import port_pair
from tests.e2e.test_loadgen import SECRET, GatewayProcess, free_port, write_config

SECONDS = float(os.environ.get("BENCH_AUTH_SECONDS", "4"))
CUSTOMERS = 100
# Requests planned per capacity run: above what each server can answer in SECONDS.
CEILING_PER_S = {"freeradius": 70_000, "gateway": 30_000}


def _capacity(
    label: str, target: Target, population: Population, kind: str, **kw: object
) -> Measured:
    ceiling = CEILING_PER_S[kind]
    return drive(
        label,
        target,
        SECRET.encode(),
        population,
        rate=ceiling * 4,
        seconds=SECONDS,
        calls=int(ceiling * SECONDS),
        window=WINDOW,
        **kw,  # type: ignore[arg-type]
    )


def _check(m: Measured) -> None:
    calls = m.report["calls"]
    assert calls["auth_failed"] == 0, m.report
    assert calls["refused"] == 0, m.report["refusals"]
    assert calls["accepted"] == calls["finished"] > 0, m.report


def _probe_spec(population: Population, k: int) -> CallSpec:
    caller = population.callers[k % len(population.callers)]
    return CallSpec(
        index=-1,
        session_id="",
        username=caller.extension,
        password=caller.password,
        calling=caller.caller_ids[0],
        called=caller.destinations[0] + "1234567",
        dial_prefix=caller.destinations[0],
        customer_id=caller.account_id,
        duration_s=0,
    )


def _wait_accepting(target: Target, population: Population) -> None:
    """Until the gateway accepts the population's callers (it hears of them by NOTIFY)."""
    secret = SECRET.encode()
    builder = RequestBuilder(secret, nas_ip="127.0.0.1")
    engine = Engine([], target, EngineOptions(rate=1, sockets=SOCKETS), secret)
    try:
        trouble = engine.probe(
            lambda k, attempt: builder.probe(
                attempt % 256, os.urandom(16), _probe_spec(population, k)
            ),
            30.0,
        )
    finally:
        engine.close()
    assert trouble is None, trouble


async def _create_population(url: str) -> Population:
    conn = await asyncpg.connect(url)
    try:
        return await population_mod.create(conn, CUSTOMERS, f"frb{os.getpid() % 10000}")
    finally:
        await conn.close()


@pytest.mark.slow
def test_authorization_against_freeradius(
    database_url: str, redis_url: str, postgres_server_url: str, keys: Keys, tmp_path: Path
) -> None:
    if fr.binary() is None:
        pytest.skip("freeradius is not installed (Debian package freeradius)")
    missing = fr.ensure_postgresql_module()
    if missing is not None:
        pytest.skip(missing)
    population = asyncio.run(_create_population(database_url))
    capacity: dict[str, Measured] = {}
    results: list[Measured] = []
    secret = SECRET.encode()

    # 1. FreeRADIUS accept-all.
    accept_all = fr.FreeRadius(tmp_path / "accept-all", port_pair(), SECRET)
    accept_all.configure(**fr.ACCEPT_ALL)
    fr_target = Target("127.0.0.1", accept_all.port, accept_all.port + 1)
    with fr.running(accept_all):
        m = _capacity(
            "FreeRADIUS accept-all",
            fr_target,
            population,
            "freeradius",
            server_cpu=accept_all.cpu_s,
        )
    _check(m)
    capacity["accept-all"] = m

    # 2. FreeRADIUS + rlm_sql + rlm_sqlcounter on PostgreSQL, in a database of its own.
    database = fr.SqlCounterDatabase(postgres_server_url)
    asyncio.run(database.create(population.callers))
    try:
        counter = fr.FreeRadius(tmp_path / "sqlcounter", port_pair(), SECRET)
        counter.configure(modules=database.modules(), **fr.SQL_COUNTER)
        counter_target = Target("127.0.0.1", counter.port, counter.port + 1)
        with fr.running(counter):
            m = _capacity(
                "FreeRADIUS sql + sqlcounter",
                counter_target,
                population,
                "freeradius",
                server_cpu=counter.cpu_s,
            )
            _check(m)
            capacity["sqlcounter"] = m
            pace = round(0.5 * min(c.answered_per_s for c in capacity.values()), -2)
            m = drive(
                "FreeRADIUS sql + sqlcounter, paced",
                counter_target,
                secret,
                population,
                rate=pace,
                seconds=SECONDS,
                server_cpu=counter.cpu_s,
            )
            _check(m)
            results.append(m)
    finally:
        asyncio.run(database.drop())

    # 3. The gateway, authorization with its reservation.
    gw_target = Target("127.0.0.1", free_port(), free_port())
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=gw_target.auth_port,
        acct_port=gw_target.acct_port,
    )
    gw = GatewayProcess(config)
    gw.start()
    assert gw.proc is not None
    pid = gw.proc.pid

    def gw_cpu() -> float:
        return fr.tree_cpu_s(pid)  # the supervisor and its workers (not Redis, PostgreSQL)

    try:
        _wait_accepting(gw_target, population)
        for mode in (AUTH_HOLD, AUTH_RELEASE):
            m = _capacity(
                f"gateway {mode}", gw_target, population, "gateway", mode=mode, server_cpu=gw_cpu
            )
            _check(m)
            capacity[mode] = m
        m = drive(
            f"gateway {AUTH_HOLD}, paced",
            gw_target,
            secret,
            population,
            rate=pace,
            seconds=SECONDS,
            server_cpu=gw_cpu,
        )
        _check(m)
        results.append(m)
    finally:
        gw.stop()

    # FreeRADIUS accept-all, paced, for its latency at the same rate.
    with fr.running(accept_all):
        m = drive(
            "FreeRADIUS accept-all, paced",
            fr_target,
            secret,
            population,
            rate=pace,
            seconds=SECONDS,
            server_cpu=accept_all.cpu_s,
        )
    _check(m)
    results.append(m)

    cpus = os.cpu_count()
    print(
        f"\nauthorization alone, {CUSTOMERS} callers, one generator on the same machine "
        f"({cpus} CPUs), {SECONDS:g} s per run; capacity runs keep {WINDOW} requests in "
        f"flight, paced runs offer {pace:.0f}/s (half the slowest capacity)"
    )
    print(HEADER)
    for m in capacity.values():
        print(m.row())
    for m in results:
        print(m.row())
    gateway = capacity[AUTH_HOLD].answered_per_s
    release = capacity[AUTH_RELEASE].answered_per_s
    sql = capacity["sqlcounter"].answered_per_s
    ceiling = capacity["accept-all"].answered_per_s
    print(
        f"gateway auth-hold / FreeRADIUS sqlcounter = {gateway / sql:.2f}x (target >= 1.5x); "
        f"auth-release / sqlcounter = {release / sql:.2f}x; "
        f"gateway auth-hold / FreeRADIUS accept-all (ceiling) = {gateway / ceiling:.2f}x"
    )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
