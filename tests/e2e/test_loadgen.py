"""`gateway loadgen` against a real `gateway run --workers 2`: whole calls, billing
checked in PostgreSQL; and SIGTERM of the gateway under load (issue 5): no call lost,
none billed twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.balance.keys import Keys

SECRET = "loadgen-e2e-secret"
READY_MARKER = '"event":"gateway.ready","workers":'
START_TIMEOUT_S = 120.0


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    folder: Path,
    *,
    database_url: str = "",
    redis_url: str = "",
    key_prefix: str = "gw",
    auth_port: int,
    acct_port: int,
    client_extra: str = "",
    sections: str = "",
) -> Path:
    """A gateway.toml on loopback ports with one switch: 127.0.0.1, cisco profile.
    Empty URLs start embedded servers under ``folder/state``. ``client_extra`` adds
    keys to the switch's table, ``sections`` whole tables after it."""
    path = folder / "gateway.toml"
    path.write_text(
        f"""
[service]
state_dir = "{folder / "state"}"
log_format = "json"
drain_timeout_s = 5.0

[redis]
url = "{redis_url}"
key_prefix = "{key_prefix}"

[database]
url = "{database_url}"

[metrics]
enabled = false

[radius]
bind = ["127.0.0.1"]
auth_port = {auth_port}
acct_port = {acct_port}

[[radius.clients]]
name = "loadgen"
address = "127.0.0.1"
secret = "{SECRET}"
profile = "cisco"
{client_extra}
{sections}
""",
        encoding="utf-8",
    )
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


@dataclass
class GatewayProcess:
    """``gateway run --workers N`` as a child process, its log in a file."""

    config: Path
    workers: int = 2
    log: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.log = self.config.with_name("gateway.log")

    def start(self, *extra: str) -> str:
        """Start and wait for the supervisor's ready line; the log written meanwhile."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            argv = [sys.executable, "-m", "gateway", "--config", str(self.config), "run"]
            self.proc = subprocess.Popen(
                [*argv, "--workers", str(self.workers), *extra],
                cwd=self.config.parent,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        marker = READY_MARKER if self.workers > 1 else '"event":"gateway.ready"'
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if marker in text:
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        pytest.fail("gateway did not become ready:\n" + self.tail())

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        """SIGTERM if still running, kill if it does not end."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(90)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def loadgen_argv(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "--config", str(config), "loadgen", *args]


def run_loadgen(
    config: Path, *args: str, timeout_s: float = 120, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run ``gateway loadgen ... --json``: exit status, the summary, stderr."""
    done = subprocess.run(
        loadgen_argv(config, *args, "--json"),
        cwd=config.parent,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"loadgen printed no summary ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.returncode, report, done.stderr


@pytest.fixture
def gateway_config(database_url: str, redis_url: str, keys: Keys, tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
    )


@pytest.fixture
def gw(gateway_config: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(gateway_config)
    try:
        yield process
    finally:
        process.stop()


def test_loadgen_places_calls_and_the_billing_adds_up(
    gw: GatewayProcess, gateway_config: Path
) -> None:
    gw.start()
    code, report, stderr = run_loadgen(
        gateway_config,
        "--setup",
        "20",
        "--calls",
        "500",
        "--rate",
        "200",
        "--duration",
        "0:300",
        "--interims",
        "1",
        "--refuse-share",
        "0.1",
        "--verify",
    )
    assert code == 0, stderr + gw.tail()
    calls, verify = report["calls"], report["verify"]
    assert calls["finished"] == 500 and calls["refused"] == 50
    assert calls["refused_unexpected"] == 0 and calls["accepted_unexpected"] == 0
    assert calls["stops_acked"] == 450
    assert report["refusals"] == {
        "h323-return-code=9 Destination not allowed": 25,
        "h323-return-code=1 Unknown account": 25,
    }
    assert verify["ok"], verify
    assert verify["lost"] == 0 and verify["double_billed"] == 0 and verify["wrong"] == 0
    assert verify["cdrs"] == 450 and verify["balances_checked"] == 21
    assert report["latency"]["stop"]["count"] == 450
    start, end = report["window_unix"]  # when the calls were placed, for benchmarks
    assert abs((end - start) - report["elapsed_s"]) < 0.01 and end <= time.time()
    assert "created 20 customers" in stderr and "calls/s" in stderr  # progress line


def test_slice_mode_calls_with_interims_bill_exactly(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    """Slice holds extended at each Interim-Update and settled past them: every CDR
    and balance still exact, nothing lost, nothing twice."""
    config = write_config(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=keys.prefix,
        auth_port=free_port(),
        acct_port=free_port(),
        client_extra=f"coa_port = {free_port()}",  # slice-capable; nobody runs dry
        sections='[balance]\ngrant = "slice"\nslice_min_s = 30\nslice_s = 60',
    )
    gw = GatewayProcess(config)
    try:
        gw.start()
        code, report, stderr = run_loadgen(
            config,
            "--setup",
            "20",
            "--calls",
            "300",
            "--rate",
            "150",
            "--duration",
            "60:600",
            "--interims",
            "3",
            "--verify",
        )
        assert code == 0, stderr + gw.tail()
        verify = report["verify"]
        assert verify["ok"], verify
        assert verify["lost"] == 0 and verify["double_billed"] == 0 and verify["wrong"] == 0
        assert verify["cdrs"] == 300
        assert "radius.whole_grants" not in gw.log.read_text(errors="replace")
    finally:
        gw.stop()


@pytest.mark.parametrize("mode", ["hold", "release"])
def test_authorization_only_reserves_and_bills_nothing(
    gw: GatewayProcess, gateway_config: Path, mode: str
) -> None:
    gw.start()
    code, report, stderr = run_loadgen(
        gateway_config,
        "--setup",
        "10",
        "--calls",
        "300",
        "--rate",
        "300",
        "--auth-only",
        mode,
        "--max-in-flight",
        "64",
        "--verify",
    )
    assert code == 0, stderr + gw.tail()
    calls, verify = report["calls"], report["verify"]
    assert report["mode"] == f"auth-{mode}"
    assert calls["finished"] == calls["accepted"] == 300 and calls["stops_acked"] == 0
    assert report["latency"]["auth"]["count"] == 300 and report["latency"]["start"]["count"] == 0
    assert verify["ok"] and verify["cdrs"] == 0 and verify["balance_mismatches"] == 0


def test_sigterm_under_load_loses_no_call_and_bills_none_twice(
    gw: GatewayProcess, gateway_config: Path
) -> None:
    """Issue 5: the gateway is stopped with calls in flight and started again; the
    generator's retransmissions carry the calls over to the new one."""
    gw.start()
    argv = loadgen_argv(
        gateway_config,
        "--setup",
        "20",
        "--calls",
        "1200",
        "--rate",
        "150",
        "--duration",
        "1:120",
        "--interims",
        "1",
        "--hold-ms",
        "300",
        "--timeout-ms",
        "500",
        "--retries",
        "40",
        "--verify",
        "--json",
    )
    generator = subprocess.Popen(
        argv,
        cwd=gateway_config.parent,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert generator.stderr is not None
        # Wait for the generator's clock to run (its first progress lines).
        deadline = time.monotonic() + 30
        seen = ""
        while seen.count("calls/s") < 2 and time.monotonic() < deadline:
            seen += generator.stderr.readline()
        assert seen.count("calls/s") >= 2, seen
        assert gw.terminate() == 0, gw.tail()
        gw.start()
        out, err = generator.communicate(timeout=90)
    finally:
        generator.kill()
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"no summary ({generator.returncode}):\n{out}{seen}{err}\n{gw.tail()}")
    calls, verify = report["calls"], report["verify"]
    # The outage was real: requests went unanswered and were sent again.
    assert sum(report["retransmits"].values()) > 0, report
    assert calls["finished"] == 1200 and calls["auth_failed"] == 0, report
    assert verify["ok"], (verify, gw.tail())
    assert verify["lost"] == 0 and verify["double_billed"] == 0 and verify["unexpected"] == 0
    assert verify["cdrs"] >= calls["stops_acked"] > 0
    assert generator.returncode == 0, err
