"""A throwaway PostgreSQL primary with a streaming standby on loopback, for failover tests.

Real servers from the installed binaries: ``initdb`` makes the primary (WAL for
replicas, trust on 127.0.0.1 for sessions and replication), ``pg_basebackup -R``
copies it into a standby that streams from it *synchronously* (every commit the
primary reports is flushed on the standby too, as the README advises for
production), each on a port the OS says is free, in a temporary folder. Killing the
primary (``pg_ctl stop -m immediate``) and promoting the standby (``pg_ctl promote``)
is what the tests do to it. Every step is bounded in time.

PostgreSQL refuses to run as root: under root the servers run as the unprivileged
user the embedded PostgreSQL uses (created on first use, as it does).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.runtime.embedded import PG_SYSTEM_USER

STEP_TIMEOUT_S = 60.0  # one initdb, base backup, start, stop or promotion
READY_TIMEOUT_S = 30.0  # the standby streaming, the promoted one taking writes
TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "psql", "postgres")


def pg_bindir() -> Path:
    """The folder holding initdb and its siblings (one major version), or skip."""
    initdb = shutil.which("initdb")
    if initdb is None:
        pytest.skip("initdb not installed (apt-get install postgresql)")
    folder = Path(os.path.realpath(initdb)).parent
    missing = [t for t in TOOLS if not (folder / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed next to {folder / 'initdb'}")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            timeout=STEP_TIMEOUT_S,
        )
    return PG_SYSTEM_USER


@dataclass
class Node:
    name: str
    port: int
    data: Path

    @property
    def log(self) -> Path:
        return self.data.with_name(f"{self.name}.log")


# Server settings of both nodes (the standby's copy comes with the base backup).
_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 100
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 5
wal_keep_size = 128MB
hot_standby = on
synchronous_commit = on
synchronous_standby_names = '*'
fsync = off
full_page_writes = off
"""
_HBA = """
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


@dataclass
class PgPair:
    """A primary and its synchronous streaming standby (``start()`` builds both)."""

    root: Path
    bindir: Path = field(default_factory=pg_bindir)
    user: str | None = field(default_factory=_server_user)
    primary: Node = field(init=False)
    standby: Node = field(init=False)

    def __post_init__(self) -> None:
        self.primary = Node("primary", _free_port(), self.root / "primary")
        self.standby = Node("standby", _free_port(), self.root / "standby")

    # -- URLs --------------------------------------------------------------------------

    def url(self, database: str = "postgres", attrs: str = "read-write") -> str:
        """Both hosts, primary first, with ``target_session_attrs``."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs={attrs}"

    def node_url(self, node: Node, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{node.port}/{database}"

    # -- steps -------------------------------------------------------------------------

    def _run(self, *argv: str, timeout_s: float = STEP_TIMEOUT_S) -> str:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, user=self.user, check=False
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{' '.join(cmd)} took over {timeout_s}s") from None
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def _start(self, node: Node, *settings: str) -> None:
        options = " ".join([f"-p {node.port}", *(f"-c {s}" for s in settings)])
        self._run("pg_ctl", "-D", str(node.data), "-l", str(node.log), "-o", options, "-w",
                  "-t", str(int(STEP_TIMEOUT_S)), "start")  # fmt: skip

    def psql(self, node: Node, sql: str, database: str = "postgres") -> str:
        """One statement on ``node``; its rows, unaligned."""
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(node.port), "-U", "postgres", "-d", database,
            "-XAtqc", sql, timeout_s=10,
        ).strip()  # fmt: skip

    def start(self) -> PgPair:
        """initdb the primary, start it, base-backup the standby, start it streaming."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
        with (self.primary.data / "postgresql.conf").open("a") as conf:
            conf.write(_CONF)
        (self.primary.data / "pg_hba.conf").write_text(_HBA)
        self._start(self.primary)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U",
                  "postgres", "-D", str(self.standby.data), "-R", "-X", "stream",
                  "--checkpoint=fast", "--no-sync")  # fmt: skip
        # Promoted, the standby must not wait for a standby of its own.
        self._start(self.standby, "synchronous_standby_names=''")
        self.wait_streaming()
        return self

    def wait_streaming(self) -> None:
        """Until the primary has its standby as a synchronous one."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.psql(self.primary, "SELECT sync_state FROM pg_stat_replication") == "sync":
                return
            time.sleep(0.1)
        raise AssertionError("the standby did not start streaming:\n" + self.logs())

    def wait_replayed(self) -> None:
        """Until the standby has replayed everything the primary wrote so far (a
        synchronous commit is flushed there at once, but replayed a little later)."""
        lsn = self.psql(self.primary, "SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.psql(self.standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'") == "t":
                return
            time.sleep(0.02)
        raise AssertionError(f"the standby did not replay up to {lsn}:\n" + self.logs())

    def kill_primary(self) -> None:
        """Stop the primary the hard way: no checkpoint, sessions cut."""
        self._run("pg_ctl", "-D", str(self.primary.data), "-m", "immediate", "-w", "stop")

    def promote_standby(self) -> None:
        """``pg_ctl promote`` and wait until it takes writes."""
        self._run("pg_ctl", "-D", str(self.standby.data), "-w", "promote")
        self.wait_ready(self.standby)

    def wait_ready(self, node: Node) -> None:
        """Until ``node`` answers and is out of recovery (it takes writes)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):
                if self.psql(node, "SELECT pg_is_in_recovery()") == "f":
                    return
            time.sleep(0.05)
        raise AssertionError(f"{node.name} did not take writes:\n" + self.logs())

    def stop(self) -> None:
        """Stop whatever still runs (immediate: the data is thrown away next)."""
        for node in (self.primary, self.standby):
            if (node.data / "postmaster.pid").exists():
                with contextlib.suppress(AssertionError):
                    self._run("pg_ctl", "-D", str(node.data), "-m", "immediate", "-w", "stop")

    def logs(self, lines: int = 20) -> str:
        parts = []
        for node in (self.primary, self.standby):
            if node.log.exists():
                tail = node.log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {node.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)


@contextlib.contextmanager
def pg_pair() -> Iterator[PgPair]:
    """A started pair in a temporary folder; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="gwtest-pgpair-"))
    pair = PgPair(root)
    try:
        yield pair.start()
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
