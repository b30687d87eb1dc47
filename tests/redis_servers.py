"""Throwaway Redis deployments on loopback for tests: a Redis Cluster and a Sentinel set.

Real ``redis-server`` processes in a temporary folder, on ports the OS says are free
(a cluster node also needs its bus port, port + 10000). The cluster is built by
``redis-cli --cluster create`` as an operator builds one; killing a primary and
waiting for its replica to take over is what the failover tests do to it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

NODE_TIMEOUT_MS = 1000  # how long a primary may be silent before its replica takes over


def require_redis_server() -> str:
    server = shutil.which("redis-server")
    if server is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed (apt-get install redis-server)")
    return server


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, with_bus: bool = False) -> list[int]:
    """``count`` free TCP ports on 127.0.0.1 (and their bus ports, port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port > 55000 or port in ports:
            continue
        if with_bus and not _free(port + 10000):
            continue
        ports.append(port)
    return ports


@dataclass
class Node:
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _start(server: str, node: Node, *args: str) -> None:
    node.folder.mkdir(parents=True, exist_ok=True)
    with (node.folder / "redis.log").open("ab") as log:  # the child keeps its own copy
        node.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(node.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(node.folder),
                "--save",
                "",
                "--appendonly",
                "no",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.exceptions.ConnectionError):
            if node.client().ping():
                return
        if time.monotonic() > deadline or node.proc.poll() is not None:
            raise RuntimeError(f"redis-server on {node.port} did not start: {node.folder}")
        time.sleep(0.05)


@dataclass
class Cluster:
    """A Redis Cluster of ``len(nodes)`` nodes, half primaries, each with one replica."""

    folder: Path
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The gateway's URL for it: every node as a seed."""
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{seeds}"

    def start(self, count: int = 6) -> Cluster:
        server = require_redis_server()
        for port in free_ports(count, with_bus=True):
            node = Node(port, self.folder / str(port))
            self.nodes.append(node)
            _start(
                server,
                node,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                # a replica may take over however long it was cut off from its primary
                "--cluster-replica-validity-factor",
                "0",
            )
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout!r}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and every slot has a live primary."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self._ok(n) for n in self.nodes if n.alive()) and self._covered():
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not become ok")

    def _ok(self, node: Node) -> bool:
        with contextlib.suppress(redis.exceptions.RedisError):
            info = node.client().execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text
        return False

    def _covered(self) -> bool:
        covered = 0
        for node in self.primaries():
            for start, end in self._slots_of(node):
                covered += end - start + 1
        return covered == 16384

    def _slots_of(self, node: Node) -> list[tuple[int, int]]:
        line = self._myself(node)
        ranges = []
        for part in line.split()[8:]:
            if part.startswith("["):
                continue  # a slot being migrated
            start, _, end = part.partition("-")
            ranges.append((int(start), int(end or start)))
        return ranges

    def _myself(self, node: Node) -> str:
        raw = node.client().execute_command("CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return next(line for line in text.splitlines() if "myself" in line)

    def primaries(self) -> list[Node]:
        found = []
        for node in self.nodes:
            if not node.alive():
                continue
            with contextlib.suppress(redis.exceptions.RedisError):
                if "master" in self._myself(node).split()[2]:
                    found.append(node)
        return found

    def primary_of(self, key: str) -> Node:
        slot = int(self.nodes[0].client().execute_command("CLUSTER", "KEYSLOT", key))
        for node in self.primaries():
            if any(a <= slot <= b for a, b in self._slots_of(node)):
                return node
        raise LookupError(f"no primary serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelSet:
    """A primary, one replica and ``sentinels`` Sentinels watching it as ``service``."""

    folder: Path
    service: str = "gwtest"
    primary: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels)
        return f"redis+sentinel://{seeds}/{self.service}"

    def start(self, sentinels: int = 3) -> SentinelSet:
        server = require_redis_server()
        ports = free_ports(2 + sentinels)
        self.primary = Node(ports[0], self.folder / "primary")
        self.replica = Node(ports[1], self.folder / "replica")
        _start(server, self.primary)
        _start(server, self.replica, "--replicaof", "127.0.0.1", str(ports[0]))
        for port in ports[2:]:
            node = Node(port, self.folder / f"sentinel-{port}")
            node.folder.mkdir(parents=True, exist_ok=True)
            conf = node.folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.service} 127.0.0.1 {ports[0]} 2\n"
                f"sentinel down-after-milliseconds {self.service} {NODE_TIMEOUT_MS}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            with (node.folder / "sentinel.log").open("ab") as log:
                node.proc = subprocess.Popen(
                    [server, str(conf), "--sentinel"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.sentinels.append(node)
        self.wait_replica_synced()
        return self

    def wait_replica_synced(self, timeout_s: float = 20.0) -> None:
        assert self.replica is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError):
                info = self.replica.client().info("replication")
                if info.get("master_link_status") == "up" and self._sentinels_see_replica():
                    return
            time.sleep(0.1)
        raise RuntimeError("the replica did not sync")

    def _sentinels_see_replica(self) -> bool:
        for node in self.sentinels:
            try:
                replicas = node.client().execute_command("SENTINEL", "REPLICAS", self.service)
            except redis.exceptions.RedisError:
                return False
            if not replicas:
                return False
        return True

    def current_primary_port(self) -> int:
        for node in self.sentinels:
            with contextlib.suppress(redis.exceptions.RedisError):
                _host, port = node.client().execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                return int(port)
        raise LookupError("no sentinel answers")

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            if node is not None:
                node.stop()
