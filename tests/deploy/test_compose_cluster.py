"""compose.cluster.yaml: docker-compose validates it; the gateways' configs load with the
gateway's own loader, name the Redis Cluster of the file and the balancer in front;
the balancer's home servers are those gateways; the cluster init script builds a real
cluster once and leaves it alone the second time."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway import config as config_mod
from gateway.balance.redisconn import parse_target, replica_acks, shard_count
from tests.deploy.conftest import DEPLOY, load_yaml, mounts, run, tool
from tests.redis_servers import Node, _start, free_ports, require_redis_server

COMPOSE = DEPLOY / "compose.cluster.yaml"
NODES = [f"redis-{n}" for n in range(1, 7)]
GATEWAYS = ("gateway-a", "gateway-b")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The file as docker-compose resolves it (anchors merged, paths absolute)."""
    done = run(tool("docker-compose"), "-f", str(COMPOSE), "config", cwd=DEPLOY)
    assert done.returncode == 0, done.stderr
    path = tmp_path_factory.mktemp("compose") / "resolved.yaml"
    path.write_text(done.stdout)
    found: dict[str, Any] = load_yaml(path)
    return found


def gateway_config(service: dict[str, Any]) -> config_mod.Config:
    (source,) = [s for s, t in mounts(service).items() if t == "/etc/gateway/gateway.toml"]
    return config_mod.load(source, env=service["environment"])


def test_docker_compose_validates_the_file() -> None:
    done = run(tool("docker-compose"), "-f", str(COMPOSE), "config", "--quiet", cwd=DEPLOY)
    assert done.returncode == 0, done.stderr


def test_the_stack_has_its_services(resolved: dict[str, Any]) -> None:
    assert set(resolved["services"]) == {
        *NODES,
        "redis-cluster-init",
        "postgres",
        *GATEWAYS,
        "freeradius",
        "prometheus",
    }


def test_six_cluster_nodes_with_their_own_volumes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in NODES:
        node = services[name]
        assert re.match(r"redis:7(\.|$|-)", node["image"]), node["image"]
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command and "--appendonly yes" in command
        assert mounts(node) == {f"{name}-data": "/data"}
        assert node["healthcheck"]["test"][-1] == "ping"


def test_the_init_creates_the_cluster_from_every_node(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    init = services["redis-cluster-init"]
    assert init["restart"] == "no"
    assert set(init["depends_on"]) == set(NODES)
    assert {d["condition"] for d in init["depends_on"].values()} == {"service_healthy"}
    addresses = {services[n]["networks"]["callnet"]["ipv4_address"] for n in NODES}
    assert set(init["environment"]["REDIS_CLUSTER_NODES"].split()) == {
        f"{a}:6379" for a in addresses
    }
    (script,) = mounts(init)
    assert Path(script) == DEPLOY / "compose" / "redis-cluster-init.sh"
    assert init["entrypoint"][-1] == "/usr/local/bin/redis-cluster-init.sh"


def test_the_gateways_configs_load_and_name_the_cluster(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    configs = [gateway_config(services[name]) for name in GATEWAYS]
    assert configs[0] == configs[1], "every gateway must agree on Redis, shards and clients"
    cfg = configs[0]
    target = parse_target(cfg.redis.url, cfg.redis.cluster)
    assert target.kind == "cluster"
    assert {host for host, _ in target.hosts} == set(NODES)
    assert shard_count(cfg.redis, cfg.redis.url) == 64
    assert replica_acks(cfg.redis, cfg.redis.url) == 1
    assert cfg.database.url.startswith("postgresql://gateway:")
    assert "@postgres:5432/" in cfg.database.url
    assert cfg.radius.bind == ("0.0.0.0",)
    for name in GATEWAYS:
        gateway = services[name]
        assert gateway["depends_on"]["redis-cluster-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
        check = " ".join(gateway["healthcheck"]["test"])
        assert f"127.0.0.1:{cfg.metrics.port}/readyz" in check
        assert int(gateway["stop_grace_period"].rstrip("s")) > cfg.service.drain_timeout_s


def test_the_balancer_sends_to_both_gateways_as_their_client(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    cfg = gateway_config(services["gateway-a"])
    (client,) = cfg.radius.clients
    freeradius = services["freeradius"]
    assert client.address == freeradius["networks"]["callnet"]["ipv4_address"]
    assert {d["condition"] for d in freeradius["depends_on"].values()} == {"service_healthy"}
    assert set(freeradius["depends_on"]) == set(GATEWAYS)
    proxy = (DEPLOY / "freeradius" / "proxy-pool" / "proxy.conf").read_text()
    homes = dict(re.findall(r"^home_server (\S+) \{\n((?:\t.*\n|\n)*?)\}", proxy, re.M))
    assert set(homes) == set(GATEWAYS)
    for name, body in homes.items():
        assert f"\tipaddr = {name}\n" in body
        assert f"\tport = {cfg.radius.auth_port}\n" in body
        assert cfg.radius.acct_port == cfg.radius.auth_port + 1  # auth+acct: port + 1
        assert f"\tsecret = {client.secret}\n" in body
        assert "\tstatus_check = status-server\n" in body
    pool = re.search(r"^home_server_pool gateways \{\n((?:\t.*\n|\n)*?)\}", proxy, re.M)
    assert pool is not None and "\ttype = keyed-balance\n" in pool[1]
    mounted = {target: Path(source) for source, target in mounts(freeradius).items()}
    assert mounted["/etc/raddb/proxy.conf"] == DEPLOY / "freeradius" / "proxy-pool" / "proxy.conf"
    assert all(path.exists() for path in mounted.values())
    published = {(p["published"], p["target"], p["protocol"]) for p in freeradius["ports"]}
    assert published == {(1812, 1812, "udp"), (1813, 1813, "udp")}


def test_prometheus_scrapes_both_gateways(resolved: dict[str, Any]) -> None:
    prometheus = resolved["services"]["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.cluster.yml" in prometheus["command"]
    config = DEPLOY / "prometheus" / "prometheus.cluster.yml"
    done = run(tool("promtool"), "check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    port = gateway_config(resolved["services"]["gateway-a"]).metrics.port
    (job,) = [j for j in load_yaml(config)["scrape_configs"] if j["job_name"] == "gateway"]
    assert job["static_configs"][0]["targets"] == [f"{g}:{port}" for g in GATEWAYS]


def test_the_init_script_creates_a_cluster_once(tmp_path: Path) -> None:
    server = require_redis_server()
    nodes = [Node(port, tmp_path / str(port)) for port in free_ports(6, with_bus=True)]
    try:
        for node in nodes:
            _start(server, node, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000")
        env = {
            "PATH": "/usr/bin:/bin",
            "REDIS_CLUSTER_NODES": " ".join(f"127.0.0.1:{n.port}" for n in nodes),
        }
        script = str(DEPLOY / "compose" / "redis-cluster-init.sh")
        first = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "creating the cluster" in first.stdout and "cluster_state:ok" in first.stdout
        again = subprocess.run(["sh", script], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "not creating it again" in again.stdout
        info = nodes[0].client().execute_command("CLUSTER", "INFO").decode()
        assert "cluster_known_nodes:6" in info and "cluster_size:3" in info
    finally:
        for node in nodes:
            node.stop()
