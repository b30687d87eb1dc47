"""Benchmark: SIPp calls through Kamailio to the gateway, as a SIP switch would place them.

    SIPp (UAC) ──INVITE──▶ Kamailio ──INVITE──▶ SIPp (UAS, the carrier)
                              │ misc_radius: Access-Request (may this caller call?)
                              │ acc_radius:  Accounting Start (200 OK) / Stop (BYE)
                              ▼
                   gateway run --workers 2 (local PostgreSQL and Redis)

Kamailio runs deploy/kamailio/kamailio.cfg unchanged (as tests/deploy/test_kamailio.py
does), with its RADIUS client file pointed at the gateway and sending from 127.0.0.3,
the gateway's ``kamailio`` client (profile standard, callers identified by number).
Each call: INVITE from a test customer's caller-ID to a rated number, 200 OK, ACK,
HOLD_MS of talk, BYE, 200 OK. Steps at increasing rates (BENCH_SIPP_RATES, default
"100,200,400", BENCH_SIPP_SECONDS of calls each, default 10); for each, SIPp's
successful and failed calls, the achieved calls/s, INVITE-to-200 time (it includes
the authorization round trip), and the CDRs the gateway wrote for the step (every
successful call billed once: nothing lost, nothing twice).

Skipped when kamailio, its RADIUS modules or sipp (Debian sip-tester) are missing.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.loadgen import population as population_mod
from gateway.loadgen.plan import Population
from tests.bench.freeradius import machine_busy_s, tree_cpu_s
from tests.e2e.test_loadgen import SECRET, GatewayProcess, free_port, write_config

REPO = Path(__file__).resolve().parents[2]
KAMAILIO_DIR = REPO / "deploy" / "kamailio"
RATES = tuple(int(r) for r in os.environ.get("BENCH_SIPP_RATES", "100,200,400").split(","))
SECONDS = float(os.environ.get("BENCH_SIPP_SECONDS", "10"))
HOLD_MS = 1000
CUSTOMERS = 50
# Kamailio workers: misc_radius and acc_radius wait for the gateway inside one, and a
# Stop is answered once PostgreSQL has the call (group commit, tens of ms).
KAMAILIO_CHILDREN = int(os.environ.get("BENCH_KAMAILIO_CHILDREN", "16"))

KAMAILIO_CLIENT = f"""
[[radius.clients]]
name = "kamailio"
address = "127.0.0.3"
secret = "{SECRET}"
profile = "standard"
require_message_authenticator = false
verify_password = false
"""

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="prepaid call through kamailio">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="HOLD_MS"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]T[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
  <ResponseTimeRepartition value="5, 10, 20, 50, 100, 200, 500, 1000"/>
</scenario>
"""

# The carrier: answers at once; its 200 OK carries Kamailio's Record-Route back, so
# the caller's ACK and BYE come through Kamailio (SIPp's built-in uas leaves it out).
UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="carrier">
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]C[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _radius_modules() -> bool:
    return bool(list(Path("/usr/lib").glob("*/kamailio/modules/misc_radius.so")))


def _radius_client_file(folder: Path, auth_port: int, acct_port: int) -> Path:
    servers = folder / "servers"
    servers.write_text(f"127.0.0.1\t{SECRET}\n")
    text = (KAMAILIO_DIR / "radiusclient.conf").read_text()
    for key, value in (
        ("authserver", f"127.0.0.1:{auth_port}"),
        ("acctserver", f"127.0.0.1:{acct_port}"),
        ("servers", str(servers)),
        ("dictionary", str(KAMAILIO_DIR / "dictionary")),
        ("bindaddr", "127.0.0.3"),
    ):
        text, count = re.subn(rf"(?m)^{key}\s+.*$", f"{key}\t{value}", text)
        assert count == 1, key
    path = folder / "radiusclient.conf"
    path.write_text(text)
    return path


@dataclass
class Step:
    rate: int
    planned: int
    successful: int
    failed: int
    elapsed_s: float
    invite_ms: float  # mean INVITE -> 200 OK (authorization included)
    cdrs: int
    billed_twice: int
    gateway_cpu_s: float
    kamailio_cpu_s: float
    sipp_cpu_s: float  # both SIPps: the callers and the carrier
    machine_busy_s: float
    load: float
    exit_code: int

    def row(self) -> str:
        # Calls end HOLD_MS after they were placed: the placing took elapsed - hold.
        rate = self.successful / max(self.elapsed_s - HOLD_MS / 1000, 1e-9)
        return (
            f"{self.rate:>7d} {self.planned:>7d} {self.successful:>7d} {self.failed:>6d} "
            f"{rate:>8.1f} {self.invite_ms:>9.1f} {self.cdrs:>7d} {self.billed_twice:>6d} "
            f"{self.gateway_cpu_s / self.elapsed_s * 100:>6.0f}% "
            f"{self.kamailio_cpu_s / self.elapsed_s * 100:>6.0f}% "
            f"{self.sipp_cpu_s / self.elapsed_s * 100:>6.0f}% "
            f"{self.machine_busy_s / self.elapsed_s * 100:>6.0f}% {self.load:>5.2f}"
        )


HEADER = (
    " calls/s  placed    ok   failed    ok/s    INVITE    CDRs  twice gateway kamail.   "
    "SIPp machine load1\n"
    " offered                                 ->200 ms                    CPU     CPU    "
    "CPU     CPU"
)


def _stat(path: Path) -> dict[str, str]:
    """The last line of SIPp's statistics file (semicolon separated, cumulative)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    assert len(rows) >= 2, path.read_text()[-2000:]
    return dict(zip(rows[0], rows[-1], strict=False))


def _ms(value: str) -> float:
    """A SIPp duration ``HH:MM:SS:mmm...`` (the response time columns) in ms."""
    parts = value.split(":")
    if len(parts) < 4:
        return 0.0
    h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
    frac = float("0." + "".join(parts[3:]).replace(".", "")) if parts[3:] else 0.0
    return ((h * 60 + m) * 60 + s + frac) * 1000


async def _cdr_counts(url: str, customers: list[int], since: float) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) - count(DISTINCT session_id) AS twice FROM cdrs "
            "WHERE nas = 'kamailio' AND account_id = ANY($1::bigint[]) "
            "AND setup_at >= to_timestamp($2)",
            customers,
            since,
        )
        assert row is not None
        return int(row["n"]), int(row["twice"])
    finally:
        await conn.close()


async def _wait_cdrs(
    url: str, customers: list[int], since: float, at_least: int
) -> tuple[int, int]:
    """Poll until the committer wrote ``at_least`` CDRs and the count holds still."""
    last, still = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while True:
        n, twice = await _cdr_counts(url, customers, since)
        if n != last:
            last, still = n, time.monotonic()
        if (n >= at_least and time.monotonic() - still >= 1.0) or time.monotonic() > deadline:
            return n, twice
        await asyncio.sleep(0.25)


async def _create_population(url: str) -> Population:
    conn = await asyncpg.connect(url)
    try:
        return await population_mod.create(conn, CUSTOMERS, f"sipp{os.getpid() % 10000}")
    finally:
        await conn.close()


def _wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"no {marker!r} in {log}:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_sipp_through_kamailio(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    kamailio, sipp = _tool("kamailio"), _tool("sipp")
    if kamailio is None or not _radius_modules():
        pytest.skip("kamailio and kamailio-radius-modules are not installed")
    if sipp is None:
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    population = asyncio.run(_create_population(database_url))
    customers = [c.account_id for c in population.callers]
    users = tmp_path / "users.csv"
    lines = ["SEQUENTIAL"]
    for i in range(len(population.callers) * 20):
        caller = population.callers[i % len(population.callers)]
        dial = caller.destinations[i % len(caller.destinations)]
        lines.append(f"{caller.caller_ids[0]};{dial}{i % 10_000_000:07d}")
    users.write_text("\n".join(lines) + "\n")
    scenario = tmp_path / "uac.xml"
    scenario.write_text(UAC.replace("HOLD_MS", str(HOLD_MS)))
    uas = tmp_path / "uas.xml"
    uas.write_text(UAS)

    auth_port, acct_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=auth_port,
        acct_port=acct_port,
    )
    config.write_text(config.read_text() + KAMAILIO_CLIENT)
    gw = GatewayProcess(config)
    kam_proc: subprocess.Popen[bytes] | None = None
    uas_proc: subprocess.Popen[bytes] | None = None
    steps: list[Step] = []
    gw.start()
    try:
        assert gw.proc is not None
        gw_pid = gw.proc.pid
        uas_port, kam_port = free_port(), free_port()
        uas_log = tmp_path / "uas.log"
        with uas_log.open("wb") as out:
            uas_proc = subprocess.Popen(
                [sipp, "-sf", str(uas), "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin"],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        (tmp_path / "run").mkdir()
        kam_log = tmp_path / "kamailio.log"
        with kam_log.open("wb") as out:
            kam_proc = subprocess.Popen(
                [
                    kamailio,
                    "-DD",
                    "-E",
                    "-f",
                    str(KAMAILIO_DIR / "kamailio.cfg"),
                    "-A",
                    f'RADIUS_CONFIG="{_radius_client_file(tmp_path, auth_port, acct_port)}"',
                    "-A",
                    f'CARRIER="sip:127.0.0.1:{uas_port}"',
                    "-l",
                    f"udp:127.0.0.1:{kam_port}",
                    "-n",
                    str(KAMAILIO_CHILDREN),
                    "-m",
                    "256",
                    "-Y",
                    str(tmp_path / "run"),
                    "-w",
                    str(tmp_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_for(kam_log, "INFO: <core>", kam_proc, 20)
        pids = Pids(gw_pid, kam_proc.pid, uas_proc.pid)
        time.sleep(1.0)  # the gateway hears of the population (NOTIFY) and Kamailio settles
        for rate in RATES:
            steps.append(
                _step(
                    pids, sipp, scenario, users, kam_port, rate, tmp_path, database_url, customers
                )
            )
    finally:
        _stop(kam_proc)
        _stop(uas_proc)
        gw.stop()
    print(
        f"\nSIPp through Kamailio ({KAMAILIO_CHILDREN} workers) to gateway run --workers 2, "
        f"{os.cpu_count()} CPUs, everything on this machine; {SECONDS:g} s of calls per step, "
        f"{HOLD_MS} ms of talk each"
    )
    print(HEADER)
    for step in steps:
        print(step.row())
    for step in steps:
        assert step.billed_twice == 0, step
        assert step.cdrs <= step.successful + step.failed, step


@dataclass
class Pids:
    gateway: int
    kamailio: int
    carrier: int


def _step(
    pids: Pids,
    sipp: str,
    scenario: Path,
    users: Path,
    kam_port: int,
    rate: int,
    folder: Path,
    database_url: str,
    customers: list[int],
) -> Step:
    planned = int(rate * SECONDS)
    stats = folder / f"uac-{rate}.csv"
    since = time.time() - 1
    cpu0, busy0 = tree_cpu_s(pids.gateway), machine_busy_s()
    kam0, uas0 = tree_cpu_s(pids.kamailio), tree_cpu_s(pids.carrier)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(
        [
            sipp,
            f"127.0.0.1:{kam_port}",
            "-sf",
            str(scenario),
            "-inf",
            str(users),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-r",
            str(rate),
            "-m",
            str(planned),
            "-l",
            str(rate * 10),
            "-recv_timeout",
            "10000",
            "-timeout",
            str(int(SECONDS * 3 + 30)),
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(stats),
            "-fd",
            "1",
            "-trace_err",
            "-error_file",
            str(folder / f"uac-{rate}-errors.log"),
        ],
        cwd=folder,
        capture_output=True,
        timeout=SECONDS * 3 + 60,
        check=False,
    )
    (folder / f"uac-{rate}.out").write_bytes(done.stdout + done.stderr)
    elapsed = time.monotonic() - began
    cpu, busy = tree_cpu_s(pids.gateway) - cpu0, machine_busy_s() - busy0
    kam, uas = tree_cpu_s(pids.kamailio) - kam0, tree_cpu_s(pids.carrier) - uas0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the callers' SIPp, ended
    uac = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    stat = _stat(stats)
    successful = int(stat.get("SuccessfulCall(C)", "0"))
    failed = int(stat.get("FailedCall(C)", "0"))
    invite_ms = _ms(stat.get("ResponseTime1(C)", ""))
    cdrs, twice = asyncio.run(_wait_cdrs(database_url, customers, since, successful))
    return Step(
        rate=rate,
        planned=planned,
        successful=successful,
        failed=failed,
        elapsed_s=elapsed,
        invite_ms=invite_ms,
        cdrs=cdrs,
        billed_twice=twice,
        gateway_cpu_s=cpu,
        kamailio_cpu_s=kam,
        sipp_cpu_s=uac + uas,
        machine_busy_s=busy,
        load=os.getloadavg()[0],
        exit_code=done.returncode,
    )
