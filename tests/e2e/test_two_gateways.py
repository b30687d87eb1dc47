"""Two `gateway run` processes sharing one 6-node Redis Cluster and one PostgreSQL,
driven by `gateway loadgen` as a switch with both in its RADIUS server list, and
checked by `--verify` (every acknowledged Stop one CDR, none twice, balances exact):

- a Redis primary is SIGKILLed mid-load: its replica takes over, both gateways follow;
- one gateway is SIGKILLed mid-load: the switch fails over to the other, which ends
  the dead one's calls (their sessions are in Redis) and claims what its committer
  had read but not committed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.balance.keys import Keys
from tests.e2e.test_loadgen import (
    GatewayProcess,
    clean_env,
    free_port,
    loadgen_argv,
    write_config,
)
from tests.redis_servers import Cluster

COMMITTER = """
[committer]
claim_idle_s = 2.0
"""


@dataclass
class Pair:
    cluster: Cluster
    a: GatewayProcess
    b: GatewayProcess
    b_ports: tuple[int, int]

    def tails(self) -> str:
        return f"--- a\n{self.a.tail()}\n--- b\n{self.b.tail()}"


@pytest.fixture
def pair(database_url: str, keys: Keys, tmp_path: Path) -> Iterator[Pair]:
    cluster = Cluster(tmp_path / "cluster")
    gateways: list[GatewayProcess] = []
    try:
        cluster.start(6)
        ports = []
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            auth, acct = free_port(), free_port()
            ports.append((auth, acct))
            config = write_config(
                folder,
                database_url=database_url,
                redis_url=cluster.url,
                key_prefix=keys.prefix,
                auth_port=auth,
                acct_port=acct,
                sections=COMMITTER,
            )
            gateways.append(GatewayProcess(config, workers=1))
        for gateway in gateways:
            gateway.start()
        yield Pair(cluster, gateways[0], gateways[1], ports[1])
    finally:
        for gateway in gateways:
            gateway.stop()
        cluster.stop()


def _load(pair: Pair, calls: int) -> subprocess.Popen[str]:
    auth, acct = pair.b_ports
    argv = loadgen_argv(
        pair.a.config,
        "--also",
        f"127.0.0.1:{auth}:{acct}",
        "--setup",
        "30",
        "--calls",
        str(calls),
        "--rate",
        "100",
        "--duration",
        "1:120",
        "--interims",
        "1",
        "--hold-ms",
        "300",
        "--timeout-ms",
        "400",
        "--retries",
        "30",
        "--verify",
        "--verify-timeout-s",
        "90",
        "--json",
    )
    return subprocess.Popen(
        argv,
        cwd=pair.a.config.parent,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _after_seconds(generator: subprocess.Popen[str], seconds: int) -> str:
    """Read the generator's progress lines (one a second) until ``seconds`` passed."""
    assert generator.stderr is not None
    deadline = time.monotonic() + 60
    seen = ""
    while seen.count("calls/s") < seconds and time.monotonic() < deadline:
        line = generator.stderr.readline()
        if not line:
            break
        seen += line
    assert seen.count("calls/s") >= seconds, seen
    return seen


def _report(generator: subprocess.Popen[str], pair: Pair, seen: str) -> dict[str, Any]:
    try:
        out, err = generator.communicate(timeout=150)
    finally:
        generator.kill()
    try:
        report: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"no summary ({generator.returncode}):\n{out}{seen}{err}\n{pair.tails()}")
    return report


def _assert_exact(report: dict[str, Any], calls: int, pair: Pair) -> None:
    counts, verify = report["calls"], report["verify"]
    assert counts["finished"] == calls and counts["auth_failed"] == 0, report
    assert verify["ok"], (verify, pair.tails())
    assert verify["lost"] == 0 and verify["double_billed"] == 0 and verify["unexpected"] == 0
    assert verify["balance_mismatches"] == 0 and verify["wrong"] == 0
    assert verify["cdrs"] >= counts["stops_acked"] > 0


def test_a_redis_primary_dies_under_two_gateways(pair: Pair) -> None:
    generator = _load(pair, 1200)
    seen = _after_seconds(generator, 4)
    victim = pair.cluster.primaries()[0]
    victim.kill()
    report = _report(generator, pair, seen)
    pair.cluster.wait_ok()
    assert victim.port not in {n.port for n in pair.cluster.primaries()}
    _assert_exact(report, 1200, pair)
    # the outage was real: some requests went unanswered and were sent again
    assert sum(report["retransmits"].values()) > 0, report
    assert pair.a.proc is not None and pair.a.proc.poll() is None, pair.tails()
    assert pair.b.proc is not None and pair.b.proc.poll() is None, pair.tails()


def test_a_gateway_dies_and_the_other_finishes_its_calls(pair: Pair) -> None:
    generator = _load(pair, 1200)
    seen = _after_seconds(generator, 4)
    pair.a.kill()  # SIGKILL: no drain, its calls and read entries left behind
    report = _report(generator, pair, seen)
    _assert_exact(report, 1200, pair)
    assert sum(report["retransmits"].values()) > 0, report
    assert pair.b.proc is not None and pair.b.proc.poll() is None, pair.tails()
