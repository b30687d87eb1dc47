"""compose.yaml: docker-compose validates it (no engine needed for `config`), and it
wires the services, files and ports that exist."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from gateway import config as config_mod
from tests.deploy.conftest import DEPLOY, REPO, load_yaml, mounts, run, tool
from tests.deploy.test_container import args

COMPOSE = DEPLOY / "compose.yaml"


def services() -> dict[str, Any]:
    found: dict[str, Any] = load_yaml(COMPOSE)["services"]
    return found


def test_docker_compose_validates_the_file() -> None:
    done = run(tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet", cwd=DEPLOY)
    assert done.returncode == 0, done.stderr


def test_the_stack_has_its_services() -> None:
    assert set(services()) == {"gateway", "redis", "postgres", "prometheus", "grafana"}


def test_gateway_is_built_from_the_dockerfile() -> None:
    build = services()["gateway"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "container" / "Dockerfile"


def test_bind_mounts_exist() -> None:
    named = set(load_yaml(COMPOSE)["volumes"])
    for name, service in services().items():
        for source in mounts(service):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_published_ports_are_the_gateways_ports() -> None:
    gateway = services()["gateway"]
    cfg = config_mod.load(str(DEPLOY / "compose" / "gateway.toml"), env=gateway["environment"])
    published = set(gateway["ports"])
    assert f"{cfg.radius.auth_port}:{cfg.radius.auth_port}/udp" in published
    assert f"{cfg.radius.acct_port}:{cfg.radius.acct_port}/udp" in published
    assert f"{cfg.metrics.port}:{cfg.metrics.port}" in published
    exposed = " ".join(args("EXPOSE"))
    for port in published:
        target = port.split(":")[-1]
        assert (target if "/" in target else f"{target}/tcp") in exposed.split(), port


def test_gateway_config_loads_and_reaches_the_compose_backends() -> None:
    gateway = services()["gateway"]
    assert mounts(gateway)["./compose/gateway.toml"] == "/etc/gateway/gateway.toml"
    env = {k: re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", v) for k, v in gateway["environment"].items()}
    cfg = config_mod.load(str(DEPLOY / "compose" / "gateway.toml"), env=env)
    assert urlsplit(cfg.database.url).hostname == "postgres"
    assert urlsplit(cfg.redis.url).hostname == "redis"
    assert cfg.radius.bind == ("0.0.0.0",)  # no IPv6 on a default Docker network
    assert cfg.radius.clients, "no RADIUS client: nothing could ask the gateway"
    assert set(gateway["depends_on"]) == {"postgres", "redis"}
    for backend in ("postgres", "redis"):
        assert gateway["depends_on"][backend]["condition"] == "service_healthy"
        assert "healthcheck" in services()[backend]
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace > cfg.service.drain_timeout_s


def test_redis_keeps_an_append_only_file() -> None:
    redis = services()["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    assert mounts(redis)["redis-data"] == "/data"


def test_postgres_is_16_or_newer_with_a_volume() -> None:
    postgres = services()["postgres"]
    major = int(re.match(r"postgres:(\d+)", postgres["image"])[1])  # type: ignore[index]
    assert major >= 16
    assert mounts(postgres)["postgres-data"] == "/var/lib/postgresql/data"


def test_prometheus_loads_the_rules_beside_its_config() -> None:
    prometheus = services()["prometheus"]
    assert mounts(prometheus)["./prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
