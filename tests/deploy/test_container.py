"""The Dockerfile, read (no Docker engine here): base, user, ports, health check,
entry point, and a build context that holds what it copies."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.config import MetricsConfig, RadiusConfig
from tests.deploy.conftest import DEPLOY, REPO

DOCKERFILE = DEPLOY / "container" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "container" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def args(word: str) -> list[str]:
    return [rest for name, rest in instructions() if name == word]


def healthcheck_command() -> list[str]:
    (spec,) = args("HEALTHCHECK")
    command: list[str] = json.loads(spec[spec.index("CMD ") + 4 :])
    return command


def test_python_slim_base_and_a_non_root_user() -> None:
    assert all(base.split()[0] == "python:3.11-slim" for base in args("FROM"))
    user = args("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any("useradd --system --uid 10001 --gid gateway" in run for run in args("RUN"))


def test_exposes_the_configured_ports() -> None:
    exposed = {port for spec in args("EXPOSE") for port in spec.split()}
    radius, ops = RadiusConfig(), MetricsConfig()
    assert {f"{radius.auth_port}/udp", f"{radius.acct_port}/udp", f"{ops.port}/tcp"} <= exposed
    assert {"5070/udp", "5070/tcp"} <= exposed  # the SIP front


def test_entrypoint_is_the_console_script_and_cmd_runs_it() -> None:
    (entrypoint,) = args("ENTRYPOINT")
    (cmd,) = args("CMD")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entrypoint) == ["gateway"] and "gateway" in scripts
    assert json.loads(cmd) == ["run"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *json.loads(cmd), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_build_copies_what_the_context_admits() -> None:
    admitted = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in DOCKERIGNORE.read_text().splitlines()
    copies = [spec for spec in args("COPY") if not spec.startswith("--from")]
    assert copies
    for spec in copies:
        *sources, _target = spec.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in admitted, f"{source} is excluded from the context"
    # pip install . needs the readme named in pyproject.toml.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["readme"] in admitted


@contextlib.contextmanager
def http_server(status: int) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/readyz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(port: int) -> int:
    command = healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "GATEWAY_METRICS_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_passes_only_when_readyz_says_ready(status: int, healthy: bool) -> None:
    with http_server(status) as port:
        assert (run_healthcheck(port) == 0) is healthy


def test_healthcheck_fails_when_nothing_listens() -> None:
    with http_server(200) as port:
        pass  # closed again: nothing listens on that port now
    assert run_healthcheck(port) != 0
