"""Issue 17: `gateway run --workers 2` on a two-node PostgreSQL (multi-host URL,
target_session_attrs=read-write) while the primary is killed and its synchronous
standby promoted under load; `gateway loadgen --verify` then finds no call lost and
none billed twice."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.balance.keys import Keys
from tests.e2e.test_loadgen import (
    GatewayProcess,
    clean_env,
    free_port,
    loadgen_argv,
    write_config,
)
from tests.pg_servers import PgPair, pg_pair

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as started:
        yield started


def test_promotion_under_load_loses_no_call_and_bills_none_twice(
    pair: PgPair, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    pair.psql(pair.primary, "CREATE DATABASE gateway")
    config = write_config(
        tmp_path,
        database_url=pair.url("gateway"),
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
        sections="[committer]\nretry_delay_s = 0.1",
    )
    gw = GatewayProcess(config)
    gw.start()  # migrates the new database on the primary
    argv = loadgen_argv(
        config,
        "--setup", "20", "--calls", "900", "--rate", "150", "--duration", "1:120",
        "--interims", "1", "--timeout-ms", "1000", "--retries", "20", "--verify", "--json",
    )  # fmt: skip
    generator = subprocess.Popen(
        argv,
        cwd=config.parent,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert generator.stderr is not None
        deadline = time.monotonic() + 30
        seen = ""
        while seen.count("calls/s") < 2 and time.monotonic() < deadline:
            seen += generator.stderr.readline()
        assert seen.count("calls/s") >= 2, seen + gw.tail()
        pair.kill_primary()
        time.sleep(1.0)  # no server takes writes: the committers spool and retry
        pair.promote_standby()
        out, err = generator.communicate(timeout=90)
    finally:
        generator.kill()
        gw.stop()
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"no summary ({generator.returncode}):\n{out}{seen}{err}\n{gw.tail()}")
    calls, verify = report["calls"], report["verify"]
    assert calls["finished"] == 900 and calls["auth_failed"] == 0, report
    assert verify["ok"], (verify, gw.tail())
    assert verify["lost"] == 0 and verify["double_billed"] == 0 and verify["wrong"] == 0
    assert verify["cdrs"] >= calls["stops_acked"] > 0
    assert generator.returncode == 0, err
    log = gw.log.read_text(errors="replace")
    # The outage was real, and the committers came back on the promoted server.
    assert "committer.batch_retry" in log or "committer.backend_unavailable" in log, gw.tail()
    assert int(pair.psql(pair.standby, "SELECT count(*) FROM cdrs", "gateway")) == verify["cdrs"]
