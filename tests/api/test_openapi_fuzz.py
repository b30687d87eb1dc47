"""Schemathesis against the OpenAPI spec of a real `gateway api` process: whatever it
generates, as the operator and as an agent, the API never answers with a 5xx.

The process runs against this test run's database and Redis namespace; the requests
are real HTTP on loopback. Logout and password change are left out so the fuzzer's
own session survives the run (both have their own tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.balance.keys import Keys
from gateway.runtime.embedded import free_port
from tests.api.world import PASSWORD, World

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = os.environ.get("GATEWAY_FUZZ_EXAMPLES", "12")


@pytest.fixture
def api_process(database_url: str, redis_url: str, keys: Keys, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_REDIS_KEY_PREFIX": keys.prefix,
            "GATEWAY_DATABASE_MIGRATE_ON_START": "false",
            "GATEWAY_DORMANCY_ENABLED": "false",
            "GATEWAY_INVOICES_ENABLED": "false",
            "GATEWAY_STATE_DIR": str(tmp_path / "state"),
            "GATEWAY_LOG_FORMAT": "json",
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_API_PORT": str(port),
            # The fuzzer logs in once per role; keep it from locking itself out.
            "GATEWAY_API_LOGIN_ATTEMPTS": "1000",
        }
    )
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "api"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/openapi.json", timeout=5):
                break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("gateway api did not start:\n" + (tmp_path / "api.log").read_text())
            time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        assert proc.wait(30) == 0, (tmp_path / "api.log").read_text()
    finally:
        proc.kill()
        log.close()


def _token(base: str, login: str) -> str:
    request = urllib.request.Request(
        f"{base}/api/v1/auth/login",
        data=json.dumps({"login": login, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        token: str = json.loads(reply.read())["token"]
    return token


def _fuzz(base: str, token: str, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "20261128",
            "--request-timeout",
            "20",
            "--header",
            f"Authorization: Bearer {token}",
            "--exclude-path",
            "/api/v1/auth/logout",
            "--exclude-path",
            "/api/v1/auth/password",
            "--report",
            "junit",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=report.parent,  # schemathesis keeps a cache folder in its working directory
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )


@pytest.mark.parametrize("who", ["admin", "agent_a"])
async def test_no_server_error_whatever_the_input(
    api_process: str, world: World, who: str, tmp_path: Path
) -> None:
    token = await asyncio.to_thread(_token, api_process, world.login(who))
    done = await asyncio.to_thread(_fuzz, api_process, token, tmp_path / "report")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
