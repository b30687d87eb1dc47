"""The systemd unit: systemd-analyze accepts it, and it says what the gateway needs."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from pathlib import Path

from gateway.config import Config, ServiceConfig, env_name
from tests.deploy.conftest import DEPLOY, run, tool

UNIT = DEPLOY / "systemd" / "gateway.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "gateway.env.example"


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as lists of (key, value); keys may repeat."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def service() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in unit_entries(UNIT)["Service"]:
        values.setdefault(key, []).append(value)
    return values


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert match, f"unreadable time span {value!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify insists the ExecStart binary exists: point it at this venv's gateway.
    gateway = Path(sys.executable).with_name("gateway")
    assert gateway.exists(), "the venv has no gateway console script"
    text = UNIT.read_text().replace("/opt/gateway/bin/gateway", str(gateway))
    copy = tmp_path / "gateway.service"
    copy.write_text(text)
    done = run(tool("systemd-analyze"), "verify", str(copy), cwd=tmp_path)
    # Other units on the host may be reported too; only ours matters.
    ours = [line for line in (done.stdout + done.stderr).splitlines() if "gateway.service" in line]
    assert done.returncode == 0 and not ours, "\n".join(ours) or done.stderr


def test_hardening_keeps_the_exposure_level_low(tmp_path: Path) -> None:
    copy = tmp_path / "gateway.service"
    copy.write_text(UNIT.read_text())
    done = run(tool("systemd-analyze"), "security", "--offline=true", "--threshold=20", str(copy))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_the_unit_runs_the_gateway_as_asked() -> None:
    svc = service()
    assert svc["Type"] == ["notify"] and svc["NotifyAccess"] == ["main"]
    assert svc["User"] == ["gateway"] and svc["Group"] == ["gateway"]
    assert svc["ExecStart"] == ["/opt/gateway/bin/gateway run"]
    assert svc["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert svc["Restart"] == ["on-failure"]
    assert svc["EnvironmentFile"] == ["/etc/gateway/gateway.env"]
    assert svc["NoNewPrivileges"] == ["yes"] and svc["ProtectSystem"] == ["strict"]
    # Ports above 1024 need no capability: none is granted.
    assert svc["CapabilityBoundingSet"] == [""] and svc["AmbientCapabilities"] == [""]
    # The stop timeout leaves room for the drain (default and as configured here).
    drain = ServiceConfig().drain_timeout_s
    env = dict(e.split("=", 1) for e in svc["Environment"])
    assert seconds(svc["TimeoutStopSec"][0]) > drain + 5
    assert "GATEWAY_DRAIN_TIMEOUT_S" not in env
    assert env["GATEWAY_STATE_DIR"] == "/var/lib/gateway" and svc["StateDirectory"] == ["gateway"]


def test_env_example_sets_only_real_settings() -> None:
    sections = typing.get_type_hints(Config)  # the annotations are strings
    known = {
        env_name(name, f.name) for name, cls in sections.items() for f in dataclasses.fields(cls)
    }
    names = re.findall(r"^#?\s*(GATEWAY_[A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert "GATEWAY_DATABASE_URL" in names and "GATEWAY_REDIS_URL" in names
    assert set(names) <= known, set(names) - known
