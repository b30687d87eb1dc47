"""Benchmark: INVITEs/s that `gateway run` answers 302, driven by SIPp (real Redis and
PostgreSQL, the gateway on uvloop in its own processes).

Run with `make bench`; prints, per offered rate, the rate answered, failed calls,
SIPp's INVITE->302 response time (rtd, 1 ms resolution) at p50 and p99, and the
gateway's CPU per INVITE. Each set-up steps the rate up until calls fail or the
answered rate falls behind. One worker takes SIPp's single socket (-t u1); with two
workers SIPp uses a socket per call (-t un) so the kernel spreads calls over both.
BENCH_SIP_RATES (e.g. "500,1000") and BENCH_SIP_SECONDS override the steps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.db.carriers import set_route
from tests import factories
from tests.sip.harness import CARRIERS, NAS, message, sipp, status, udp_exchange

RATES = tuple(
    int(r)
    for r in os.environ.get("BENCH_SIP_RATES", "500,1000,2000,3000,4000,5000,6000").split(",")
)
SECONDS = int(os.environ.get("BENCH_SIP_SECONDS", "5"))
NUMBER = "004930123456"
GATEWAY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "gateway"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def _config(folder: Path, database_url: str, redis_url: str, prefix: str, sip_port: int) -> Path:
    path = folder / "gateway.toml"
    path.write_text(
        f'[service]\nstate_dir = "{folder / "state"}"\nlog_level = "warning"\n\n'
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\n\n'
        f'[database]\nurl = "{database_url}"\n\n'
        "[metrics]\nenabled = false\n\n"
        f'[radius]\nbind = ["127.0.0.1"]\nauth_port = {_free_port()}\n'
        f"acct_port = {_free_port()}\n\n"
        f'[[radius.clients]]\nname = "{NAS}"\naddress = "127.0.0.1"\nsecret = "bench"\n'
        'profile = "standard"\nrequire_message_authenticator = false\n\n'
        f'[sip]\nenabled = true\nbind = ["127.0.0.1"]\nport = {sip_port}\n'
        f'accounting_nas = "{NAS}"\n'
    )
    return path


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (from /proc)."""
    total = 0.0
    pending = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


async def _customer(pool: asyncpg.Pool) -> str:
    """A funded customer rated and routed for 49; its extension."""
    async with pool.acquire() as conn:
        retail = await factories.rate_group(conn, [factories.rate(60_000, prefix="49")])
        wholesale = await factories.rate_group(conn, [factories.rate(30_000, prefix="49")])
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=10**15, rate_group_id=wholesale
        )
        customer = await factories.account(conn, parent=agent, balance=10**15, rate_group_id=retail)
        extension = f"sipbench{customer}"
        await conn.execute(
            "INSERT INTO extensions (account_id, username) VALUES ($1, $2)", customer, extension
        )
        await set_route(conn, retail, "49", CARRIERS)
    return extension


async def _until_routed(port: int, extension: str) -> None:
    for attempt in range(200):
        probe = message(
            "INVITE",
            caller=extension,
            number=NUMBER,
            call_id=f"probe-{attempt}",
            branch=f"z9hG4bK-probe-{attempt}",
        )
        answers = await udp_exchange(port, [probe], wanted=1, timeout_s=0.5)
        if answers and status(answers[0]) == 302:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the gateway did not answer 302 within 20 s")


async def _bench(
    workers: int,
    transport: str,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    keys: Keys,
    db_pool: asyncpg.Pool,
) -> None:
    port = _free_port()
    config = _config(tmp_path, database_url, redis_url, keys.prefix, port)
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
        [str(GATEWAY), "--config", str(config), "run", "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    rows = []
    try:
        extension = await _customer(db_pool)
        await _until_routed(port, extension)
        for rate in RATES:
            calls = rate * SECONDS
            cpu0, t0 = _cpu_s(proc.pid), time.perf_counter()
            run = await sipp(
                "uac_load.xml",
                port,
                tmp_path / f"w{workers}-r{rate}",
                caller=extension,
                number=NUMBER,
                transport=transport,
                calls=calls,
                rate=rate,
                timeout_s=SECONDS * 8,
                extra=("-l", str(rate * 4), "-max_socket", "10000"),
            )
            wall, cpu = time.perf_counter() - t0, _cpu_s(proc.pid) - cpu0
            assert run.successful + run.failed > 0, run.output
            answered = run.successful / wall
            rows.append(
                f"  {rate:>6}/s {run.successful:>7} {run.failed:>6} {answered:>9,.0f}/s "
                f"{run.percentile(50):>6.0f} {run.percentile(99):>7.0f} "
                f"{cpu / max(run.successful + run.failed, 1) * 1e6:>7.0f}"
            )
            if run.failed or answered < rate * 0.8:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        log.close()
    print(
        f"\nSIP front, gateway run --workers {workers}, SIPp -t {transport}, {SECONDS} s per "
        f"step, {os.cpu_count()} CPUs shared with SIPp, Redis and PostgreSQL:\n"
        "  offered      ok failed   answered  p50 ms  p99 ms  µs CPU/INVITE"
    )
    print("\n".join(rows))


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "transport"), [(1, "u1"), (2, "un")])
async def test_sip_invites_per_second(
    workers: int,
    transport: str,
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    keys: Keys,
    db_pool: asyncpg.Pool,
) -> None:
    await _bench(workers, transport, tmp_path, database_url, redis_url, keys, db_pool)
