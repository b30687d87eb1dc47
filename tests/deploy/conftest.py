"""Helpers for the deploy/ checks: paths, the Debian tools they drive, YAML through yq.

The tools (promtool, yq, docker-compose, systemd-analyze, kamailio, freeradius) come
from Debian packages that `make test` installs (the Makefile's DEBIAN_TOOLS); a missing
one fails the test with the package to install, as tests/e2e does for radclient.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.balance.keys import Keys
from tests.e2e.conftest import Gateway, gateway_config, running

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# command -> Debian package (mirrors DEBIAN_TOOLS in the Makefile)
PACKAGES = {
    "promtool": "prometheus",
    "yq": "yq",
    "docker-compose": "docker-compose",
    "systemd-analyze": "systemd",
    "kamailio": "kamailio (and kamailio-radius-modules)",
    "freeradius": "freeradius",
}


def tool(command: str) -> str:
    """The path of a Debian tool the test drives; fail naming its package if missing."""
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if path is None:
        package = PACKAGES.get(command, command)
        pytest.fail(f"{command} is missing: `make test` installs the Debian package {package}")
    return path


def run(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output as text."""
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def tail(log: Path, chars: int = 6000) -> str:
    """The end of a log file (sync: async tests call it without a pathlib warning)."""
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def load_yaml(path: Path) -> Any:
    """A YAML file as Python data, parsed by yq (PyYAML is not a dependency)."""
    done = run(tool("yq"), ".", str(path))
    assert done.returncode == 0, f"yq cannot parse {path}:\n{done.stderr}"
    return json.loads(done.stdout)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's volumes as {source: target} ("src:dst[:mode]" entries)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_mode = volume.split(":")
        found[source] = target
    return found


@pytest.fixture
async def gateway(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    """The gateway of tests/e2e (switch "kamailio" on 127.0.0.3, "cisco-gw" on 127.0.0.1)."""
    config = gateway_config(database_url, redis_url, keys, str(tmp_path / "state"))
    async with running(config, db_pool) as gw:
        yield gw
