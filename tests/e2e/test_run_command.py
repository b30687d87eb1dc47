"""The real command: `gateway run --demo` with embedded servers and two workers,
the printed radclient and SIPp lines placing calls, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import require_radclient

READY_TIMEOUT_S = 120


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(state: Path, ports: dict[str, int], *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "GATEWAY_STATE_DIR": str(state),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_RADIUS_BIND": "127.0.0.1,::1",
            "GATEWAY_RADIUS_AUTH_PORT": str(ports["auth"]),
            "GATEWAY_RADIUS_ACCT_PORT": str(ports["acct"]),
            "GATEWAY_METRICS_BIND": "127.0.0.1",
            "GATEWAY_METRICS_PORT": str(ports["metrics"]),
            "GATEWAY_API_PORT": str(ports["api"]),
            "GATEWAY_SIP_PORT": str(ports["sip"]),
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", *args],
        cwd=state.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _wait_ready(proc: subprocess.Popen[str], marker: str = '"gateway.ready"') -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    proc.kill()
    out, _ = proc.communicate(timeout=30)
    pytest.fail("gateway did not become ready:\n" + "".join(lines) + out)


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    return proc.returncode, out


def _interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C in a terminal: SIGINT to every process of the foreground group."""
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    return proc.returncode, out


def _printed_call(text: str) -> list[str]:
    """The radclient lines the demo printed for its first customer."""
    return [line.strip() for line in text.splitlines() if "| radclient" in line][:3]


def _printed_sipp(text: str) -> list[str]:
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith("sipp ")]
    argv = shlex.split(line)
    argv[0] = shutil.which("sipp") or pytest.fail("sipp is missing: `make test` installs it")
    return argv


FRESH_FAMILIES = (
    'gateway_radius_requests_total{client="demo-local",result="accept",type="access"} 0.0',
    'gateway_radius_requests_total{client="demo-local",result="alive",type="status"} 0.0',
    'gateway_authz_decisions_total{result="INSUFFICIENT_FUNDS"} 0.0',
    'gateway_radius_dropped_total{reason="unknown_client"} 0.0',
    'gateway_radius_duplicates_total{client="demo-local6",outcome="resent"} 0.0',
    'gateway_radius_disconnects_total{answer="nak",client="demo-local"} 0.0',
    'gateway_sip_requests_total{code="302",method="INVITE"} 0.0',
    'gateway_committer_settlements_total{outcome="dead_letter"} 0.0',
)


def _radclient(line: str) -> str:
    attrs, command = line.split("| radclient", 1)
    echoed = shlex.split(attrs)[1]  # echo '<attributes>'
    argv = [require_radclient(), *shlex.split(command)]
    argv[1:1] = ["-r", "3", "-t", "3"]
    done = subprocess.run(argv, input=echoed, text=True, capture_output=True, timeout=60)
    return done.stdout + done.stderr


def _api_login(port: int, login: str, password: str) -> str:
    """Log in over HTTP; the role the API reports for the session."""
    body = json.dumps({"login": login, "password": password}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/login",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                token = json.loads(reply.read())["token"]
            break
        except (urllib.error.URLError, ConnectionError):
            # The API child may still be starting after the call path is ready.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    me = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(me, timeout=10) as reply:
        role: str = json.loads(reply.read())["role"]
    return role


def test_run_demo_with_workers_places_the_printed_call(tmp_path: Path) -> None:
    state = tmp_path / "var"
    ports = {
        "auth": _free_port(socket.SOCK_DGRAM),
        "acct": _free_port(socket.SOCK_DGRAM),
        "metrics": _free_port(socket.SOCK_STREAM),
        "api": _free_port(socket.SOCK_STREAM),
        "sip": _free_port(socket.SOCK_DGRAM),
    }
    proc = _start(state, ports, "--demo", "--workers", "2", "--api")
    # Workers log their own gateway.ready; the supervisor's names the worker count.
    first = "".join(_wait_ready(proc, '"event":"gateway.ready","workers":2'))
    try:
        assert "embedded.postgres.started" in first and "embedded.redis.started" in first
        assert "Demo data created." in first
        # Two call-path workers and the management API as a third child.
        assert first.count('"worker.started"') == 3
        assert f"http://127.0.0.1:{ports['api']}/portal" in first
        assert _api_login(ports["api"], "acme", "acme-demo") == "agent"
        # Each worker steers its reuseport groups (auth, acct) by request content.
        assert first.count('"event":"radius.steering"') >= 2
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/readyz") as r:
            assert r.status == 200
        # Before any request, every family is there at 0 (rate() and panels need it).
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics") as r:
            fresh = r.read().decode().splitlines()
        assert [line for line in FRESH_FAMILIES if line not in fresh] == []
        auth, start, stop = _printed_call(first)
        assert f"127.0.0.1:{ports['auth']} auth" in auth
        assert f"127.0.0.1:{ports['acct']} acct" in start
        out = _radclient(auth)
        assert "Access-Accept" in out and "h323-credit-time" in out, out
        assert "Accounting-Response" in _radclient(start)
        assert "Accounting-Response" in _radclient(stop)
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics") as r:
            text = r.read().decode()
        accepted = re.findall(
            r'gateway_radius_requests_total\{client="demo-local",result="accept",type="access"\}'
            r" (\S+)",
            text,
        )
        assert accepted and float(accepted[0]) == 1.0, text[:2000]
        # The SIP front is on for the demo, on loopback: the printed SIPp line gets 302.
        sipp = _printed_sipp(first)
        assert sipp[-1] == f"127.0.0.1:{ports['sip']}"
        done = subprocess.run(sipp, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        assert "gateway answered 302: route sip:4930901820@127.0.0.1:5080" in done.stdout
    finally:
        code, rest = _interrupt(proc)
    assert code == 0, rest  # Ctrl-C is a clean stop, not a failure
    assert '"service.stopped","service":"embedded"' in rest

    # Second start: same data (no re-seed), the call instructions printed again.
    proc = _start(state, ports, "--demo", "--workers", "1", "--api")
    second = "".join(_wait_ready(proc))
    try:
        # One process: the API is served from the same event loop.
        assert _api_login(ports["api"], "admin", "admin-demo") == "admin"
    finally:
        code, rest = _stop(proc)
    assert code == 0, rest
    assert "Demo data already present." in second
    assert "radclient" in second


def test_bad_config_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_REDIS_MAX_CONNECTIONS"] = "-3"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "check"],
        cwd=tmp_path,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "redis.max_connections" in done.stderr
