"""FreeRADIUS 3.2 (Debian's ``freeradius``) as a benchmark opponent, in two set-ups.

- ``accept-all``: every Access-Request is accepted without a look (the ceiling of a
  RADIUS server on this machine);
- ``sqlcounter``: the usual prepaid set-up, rlm_sql on PostgreSQL reading the user
  (radcheck, radreply; no groups, so no group queries), PAP, and rlm_sqlcounter's ``noresetcounter``
  summing the user's past calls in radacct against its ``Max-All-Session`` allowance
  and answering the remaining seconds as Session-Timeout.

The configuration is written from scratch into a private folder (nothing of
/etc/freeradius is used but the SQL query file of the package), and the server runs
in the foreground as a child of the test (``freeradius -f -d <folder>``), never as the
system service. The SQL set-up lives in a database of its own, created and dropped
by ``SqlCounterDatabase``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from gateway.loadgen.plan import Caller

PACKAGED_QUERIES = Path("/etc/freeradius/3.0/mods-config/sql/main/postgresql/queries.conf")
PACKAGED_SCHEMA = Path("/etc/freeradius/3.0/mods-config/sql/main/postgresql/schema.sql")
POSTGRESQL_MODULE = Path("/usr/lib/freeradius/rlm_sql_postgresql.so")
POSTGRESQL_PACKAGE = "freeradius-postgresql"
REPO = Path(__file__).resolve().parents[2]
ALLOWANCE_S = 10**8  # Max-All-Session of every user: never the reason for a refusal
PAST_CALLS = 20  # radacct rows per user, summed by the counter on every request
THREADS = 32  # FreeRADIUS worker threads (and SQL connections)


def packaged_schema() -> str:
    return PACKAGED_SCHEMA.read_text()


def binary() -> str | None:
    return shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin:/sbin")


def ensure_postgresql_module() -> str | None:
    """Install freeradius-postgresql when its module is missing (as ``make test`` installs
    Debian tools); None when it is there, else why not."""
    if POSTGRESQL_MODULE.exists():
        return None
    done = subprocess.run(
        [
            str(REPO / "scripts" / "ensure-debian-tools"),
            f"{POSTGRESQL_MODULE}:{POSTGRESQL_PACKAGE}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if POSTGRESQL_MODULE.exists():
        return None
    return f"{POSTGRESQL_MODULE} is missing ({POSTGRESQL_PACKAGE}): {done.stderr[-500:]}"


_RADIUSD = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
libdir = /usr/lib/freeradius
dictdir = /usr/share/freeradius
raddbdir = {folder}
confdir = {folder}
modconfdir = {folder}
logdir = {folder}
radacctdir = {folder}
run_dir = {folder}
db_dir = {folder}
name = freeradius
pidfile = {folder}/freeradius.pid
max_request_time = 30
cleanup_delay = 2
max_requests = 1048576
hostname_lookups = no

log {{
    destination = files
    file = {folder}/radius.log
    colourise = no
    auth = no
}}

security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}

thread pool {{
    start_servers = {threads}
    max_servers = {threads}
    min_spare_servers = 1
    max_spare_servers = {threads}
    max_requests_per_server = 0
    max_queue_size = 65536
    auto_limit_acct = no
}}

client loadgen {{
    ipaddr = 127.0.0.1
    secret = {secret}
    require_message_authenticator = no
}}

modules {{
    always ok {{
        rcode = ok
    }}
{modules}
}}

server bench {{
    listen {{
        type = auth
        ipaddr = 127.0.0.1
        port = {port}
        recv_buff = 4194304
    }}
    listen {{
        type = acct
        ipaddr = 127.0.0.1
        port = {acct_port}
    }}
    authorize {{
{authorize}
    }}
    authenticate {{
{authenticate}
    }}
    accounting {{
        ok
    }}
}}
"""

ACCEPT_ALL = {
    "modules": "",
    "authorize": "        update control {\n            &Auth-Type := Accept\n        }",
    "authenticate": "",
}

_SQL_MODULES = """\
    expr {{
    }}
    pap {{
        normalise = yes
    }}
    sql {{
        driver = "rlm_sql_postgresql"
        dialect = "postgresql"
        server = "{host}"
        port = {pg_port}
        login = "{user}"
        password = ""
        radius_db = "{database}"
        acct_table1 = "radacct"
        acct_table2 = "radacct"
        postauth_table = "radpostauth"
        authcheck_table = "radcheck"
        groupcheck_table = "radgroupcheck"
        authreply_table = "radreply"
        groupreply_table = "radgroupreply"
        usergroup_table = "radusergroup"
        read_groups = no
        read_clients = no
        delete_stale_sessions = no
        client_table = "nas"
        group_attribute = "SQL-Group"
        pool {{
            start = {threads}
            min = {threads}
            max = {threads}
            spare = {threads}
            uses = 0
            retry_delay = 30
            lifetime = 0
            idle_timeout = 0
        }}
        $INCLUDE {queries}
    }}
    sqlcounter noresetcounter {{
        sql_module_instance = sql
        dialect = postgresql
        counter_name = Max-All-Session-Time
        check_name = Max-All-Session
        reply_name = Session-Timeout
        key = User-Name
        reset = never
        query = "SELECT SUM(AcctSessionTime) FROM radacct WHERE UserName = '%{{${{key}}}}'"
    }}"""

SQL_COUNTER = {
    "authorize": "        sql\n        noresetcounter\n        pap",
    "authenticate": "        Auth-Type PAP {\n            pap\n        }",
}


@dataclass
class FreeRadius:
    """One FreeRADIUS in the foreground with a private configuration folder."""

    folder: Path
    port: int  # auth; accounting is port + 1
    secret: str
    proc: subprocess.Popen[bytes] | None = None

    def configure(self, modules: str, authorize: str, authenticate: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "dictionary").write_text("")  # the packaged dictionaries suffice
        (self.folder / "radiusd.conf").write_text(
            _RADIUSD.format(
                folder=self.folder,
                threads=THREADS,
                secret=self.secret,
                port=self.port,
                acct_port=self.port + 1,
                modules=modules,
                authorize=authorize,
                authenticate=authenticate,
            )
        )

    def check(self) -> str:
        """``freeradius -C``: empty when the configuration is accepted, else the output."""
        exe = binary()
        assert exe is not None
        done = subprocess.run(
            [exe, "-XC", "-d", str(self.folder)], capture_output=True, text=True, timeout=60
        )
        if done.returncode == 0:
            return ""
        return (done.stdout + done.stderr)[-4000:]

    def start(self, timeout_s: float = 20.0) -> None:
        exe = binary()
        assert exe is not None
        log = self.folder / "stdout.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [exe, "-f", "-d", str(self.folder)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        radius_log = self.folder / "radius.log"
        while time.monotonic() < deadline:
            text = radius_log.read_text(errors="replace") if radius_log.exists() else ""
            if "Ready to process requests" in text:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"freeradius did not start:\n{self.log_tail()}")

    def cpu_s(self) -> float:
        """CPU seconds the server used so far (user + system, from /proc)."""
        assert self.proc is not None
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in ("stdout.log", "radius.log"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a running process and its live descendants (a gateway's workers)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_s(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy so far (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(server: FreeRadius) -> Iterator[FreeRadius]:
    problem = server.check()
    if problem:
        raise RuntimeError(f"freeradius refuses the configuration:\n{problem}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class SqlCounterDatabase:
    """A PostgreSQL database of its own holding FreeRADIUS's schema and the users."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"frbench_{os.getpid()}_{secrets.token_hex(3)}"

    def url(self) -> str:
        base, _, _ = self.server_url.rpartition("/")
        return f"{base}/{self.name}"

    async def create(self, callers: Sequence[Caller]) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(packaged_schema())
            # What a careful operator adds for the counter: its SUM reads the index only.
            await conn.execute(
                "CREATE INDEX radacct_user_time ON radacct (UserName, AcctSessionTime)"
            )
            await conn.executemany(
                "INSERT INTO radcheck (UserName, Attribute, op, Value) VALUES ($1, $2, $3, $4)",
                [
                    row
                    for c in callers
                    for row in (
                        (c.extension, "Cleartext-Password", ":=", c.password),
                        (c.extension, "Max-All-Session", ":=", str(ALLOWANCE_S)),
                    )
                ],
            )
            await conn.executemany(
                "INSERT INTO radacct (AcctSessionId, AcctUniqueId, UserName, NASIPAddress, "
                "AcctStartTime, AcctStopTime, AcctSessionTime) VALUES "
                "($1, $1, $2, '127.0.0.1', now() - interval '1 day', now(), $3)",
                [
                    (f"past-{c.extension}-{i}", c.extension, 30 + i)
                    for c in callers
                    for i in range(PAST_CALLS)
                ],
            )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        finally:
            await conn.close()

    def modules(self) -> str:
        parts = asyncpg_url_parts(self.server_url)
        return _SQL_MODULES.format(
            host=parts[0],
            pg_port=parts[1],
            user=parts[2],
            database=self.name,
            threads=THREADS,
            queries=PACKAGED_QUERIES,
        )


def asyncpg_url_parts(url: str) -> tuple[str, int, str]:
    """(host, port, user) of a postgresql:// URL (no password: trust auth on loopback)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432, parts.username or "postgres"
