"""SIPp against an in-process gateway: a SIP-enabled config, routes, runs and their figures.

The scenario files live next to this module; a run copies its scenario into the
test's folder and runs there, so SIPp's statistics files land in that folder.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from gateway.calls.routecache import RouteCache
from gateway.config import Config, SipConfig
from gateway.db.carriers import set_route
from gateway.rating.carriers import Gateway

SCENARIOS = Path(__file__).resolve().parent
NAS = "kamailio"  # the switch in tests/e2e/conftest.py whose accounting settles SIP holds
CARRIERS = (Gateway("192.0.2.10", 5060), Gateway("192.0.2.11", 5080, "tcp", priority=1))


def with_sip(config: Config, **overrides: object) -> Config:
    """``config`` with the SIP front on 127.0.0.1 at a free port, settled by ``NAS``."""
    values: dict[str, object] = {
        "enabled": True,
        "bind": ("127.0.0.1",),
        "port": 0,
        "accounting_nas": NAS,
        "proxies": ("127.0.0.0/8",),
        **overrides,
    }
    return dataclasses.replace(config, sip=SipConfig(**values))  # type: ignore[arg-type]


def require_sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is missing: `make test` installs sip-tester")
    return path


async def rate_group_of(pool: asyncpg.Pool, account_id: int) -> int:
    group: int = await pool.fetchval("SELECT rate_group_id FROM accounts WHERE id = $1", account_id)
    return group


async def route(
    cache: RouteCache,
    pool: asyncpg.Pool,
    group: int,
    prefix: str,
    gateways: Sequence[Gateway] = CARRIERS,
) -> None:
    """Set a route and wait until the gateway's route cache has it (NOTIFY, < 1 s)."""
    async with pool.acquire() as conn:
        await set_route(conn, group, prefix, gateways)
    expected = tuple(sorted(gateways, key=lambda g: g.priority))
    for _ in range(100):
        table = cache.index.get(group)
        if table is not None and table.lookup(prefix + "0" * 10) == expected:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the gateway did not pick up the route within 2 s")


@dataclass
class SippRun:
    returncode: int
    output: str
    successful: int
    failed: int
    response_times_ms: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.response_times_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _last_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = list(csv.reader(io.StringIO(path.read_text()), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def _response_times(folder: Path) -> list[float]:
    times: list[float] = []
    for path in folder.glob("*_rtt.csv"):
        for row in csv.reader(io.StringIO(path.read_text()), delimiter=";"):
            if len(row) >= 2:
                try:
                    times.append(float(row[1]))
                except ValueError:
                    continue  # the header
    return times


def _prepare(scenario: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / scenario
    shutil.copy(SCENARIOS / scenario, local)
    return local


async def sipp(
    scenario: str,
    port: int,
    folder: Path,
    *,
    caller: str,
    number: str,
    transport: str = "u1",
    calls: int = 1,
    rate: int | None = None,
    timeout_s: float = 60.0,
    extra: Sequence[str] = (),
) -> SippRun:
    """Run one SIPp scenario from tests/sip against 127.0.0.1:port; its outcome."""
    local = _prepare(scenario, folder)
    stats = folder / f"{local.stem}_stats.csv"
    args = [
        require_sipp(),
        "-sf",
        str(local),
        "-s",
        number,
        "-key",
        "caller",
        caller,
        "-t",
        transport,
        "-i",
        "127.0.0.1",
        "-m",
        str(calls),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stats),
        "-fd",
        "1",
        "-trace_rtt",
        "-rtt_freq",
        "100",
        "-recv_timeout",
        "5000",
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        *(("-r", str(rate)) if rate else ()),
        *extra,
        f"127.0.0.1:{port}",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=folder,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 30)
    last = _last_stats(stats)
    return SippRun(
        returncode=proc.returncode if proc.returncode is not None else -1,
        output=out.decode(errors="replace")[-4000:],
        successful=int(last.get("SuccessfulCall(C)", "0") or 0),
        failed=int(last.get("FailedCall(C)", "0") or 0),
        response_times_ms=_response_times(folder),
    )


def message(
    method: str,
    *,
    caller: str,
    number: str,
    call_id: str,
    branch: str,
    cseq: int = 1,
    extra: str = "",
    to_tag: str = "",
) -> bytes:
    """A request as a proxy would send it to the redirect server (no body)."""
    to = f"<sip:{number}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:{number}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1;rport;branch={branch}\r\n"
        f"From: <sip:{caller}@127.0.0.1>;tag=ft-{call_id}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _udp_exchange(
    port: int, payloads: Sequence[bytes], wanted: int, timeout_s: float
) -> list[bytes]:
    import socket

    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout_s)
        for payload in payloads:
            sock.sendto(payload, ("127.0.0.1", port))
        while len(answers) < wanted:
            try:
                answers.append(sock.recv(65535))
            except TimeoutError:
                break
    return answers


async def udp_exchange(
    port: int, payloads: Sequence[bytes], wanted: int, timeout_s: float = 3.0
) -> list[bytes]:
    """Send ``payloads`` from one socket; the first ``wanted`` answers (fewer on timeout)."""
    return await asyncio.to_thread(_udp_exchange, port, payloads, wanted, timeout_s)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def header(answer: bytes, name: str) -> str | None:
    for line in answer.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None
