"""deploy/freeradius/proxy-pool: FreeRADIUS (Debian's 3.2) as the balancer of two gateway
processes sharing Redis and PostgreSQL, as compose.cluster.yaml runs it.

The real ``freeradius`` runs the example, rendered for loopback (home servers' names,
ports and secrets rewritten, nothing else), in front of two real ``gateway run``
processes. radclient places whole calls through it: answered and billed, each call's
packets kept on one gateway by the Acct-Session-Id key, both gateways used. Then one
gateway is killed: the proxy marks it zombie after one unanswered request and every
call is still answered, by the other.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from tests import factories
from tests.deploy.conftest import DEPLOY, run, tail, tool
from tests.deploy.test_freeradius import PACKAGED, port_pair, substitute
from tests.e2e.conftest import require_radclient
from tests.e2e.test_loadgen import SECRET, clean_env, write_config

POOL = DEPLOY / "freeradius" / "proxy-pool"
SWITCH_SECRET = "pool-switch-secret"
DIALLED = "004930123456"
READY = '"event":"gateway.ready"'
CALLS = 12  # keyed over two gateways: all on one side has odds of 1 in 2048

pytestmark = pytest.mark.timeout(90)


def pool_folder(tmp_path: Path, listen_port: int, gateway_ports: tuple[int, int]) -> Path:
    """The packaged configuration with the proxy-pool example installed into it."""
    if not PACKAGED.is_dir():
        pytest.fail("/etc/freeradius/3.0 is missing: `make test` installs freeradius")
    folder = tmp_path / "raddb"
    shutil.copytree(PACKAGED, folder, symlinks=True)
    for site in (folder / "sites-enabled").iterdir():
        site.unlink()
    (folder / "mods-enabled" / "eap").unlink()
    radiusd = substitute(
        (folder / "radiusd.conf").read_text(),
        [
            (r"^\s*user = freerad$", ""),  # stay the test's user: the folder is private
            (r"^\s*group = freerad$", ""),
            (r"^run_dir = .*$", f"run_dir = {tmp_path}"),
        ],
    )
    (folder / "radiusd.conf").write_text(radiusd)
    a, b = gateway_ports
    proxy = (POOL / "proxy.conf").read_text()
    for name, port in (("gateway-a", a), ("gateway-b", b)):
        proxy = substitute(
            proxy,
            [
                (
                    rf"^(home_server {name} \{{\n(?:\t.*\n|\n)*?)\tipaddr = {name}\n\tport = 1812$",
                    rf"\g<1>\tipaddr = 127.0.0.1\n\tport = {port}",
                )
            ],
        )
    proxy, count = re.subn(
        r"^\tsecret = change-me-gateway$", f"\tsecret = {SECRET}", proxy, flags=re.M
    )
    assert count == 2, "both home servers name the gateways' secret"
    (folder / "proxy.conf").write_text(proxy)
    clients = substitute(
        (POOL / "clients.conf").read_text(),
        [
            (r"^\tipaddr = 172\.16\.0\.0/12$", "\tipaddr = 127.0.0.1"),
            (r"^\tsecret = testing123$", f"\tsecret = {SWITCH_SECRET}"),
        ],
    )
    (folder / "clients.conf").write_text(clients)
    site = substitute(
        (POOL / "sites-available" / "gateway-pool").read_text(),
        [
            (r"^\t\tport = 1812$", f"\t\tport = {listen_port}"),
            (r"^\t\tport = 1813$", f"\t\tport = {listen_port + 1}"),
        ],
    )
    (folder / "sites-enabled" / "gateway-pool").write_text(site)
    return folder


def test_freeradius_accepts_the_pool_example(tmp_path: Path) -> None:
    folder = pool_folder(tmp_path, 1812, (1812, 1814))
    done = run(tool("freeradius"), "-XC", "-d", str(folder))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Configuration appears to be OK" in done.stdout


@dataclass
class Process:
    """A child process with its output in a log file."""

    argv: list[str]
    log: Path
    marker: str
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=clean_env(), stdout=out, stderr=subprocess.STDOUT
            )

    async def ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.marker not in tail(self.log, 10_000_000):
            assert self.proc is not None and self.proc.poll() is None, tail(self.log)
            assert time.monotonic() < deadline, f"not ready in {timeout_s} s:\n{tail(self.log)}"
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    proxy_port: int
    gateways: dict[str, Process]
    auth_ports: dict[str, int]  # gateway -> its auth port (accounting on port + 1)
    proxy_log: Path

    def gateway_of(self, port: int) -> str:
        return next(n for n, p in self.auth_ports.items() if port in (p, p + 1))


@pytest.fixture
def stack_processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()
        proxy = next((p for p in started if p.marker != READY), None)
        if proxy is not None:
            print("--- freeradius log (tail) ---\n" + tail(proxy.log))


@pytest.fixture
async def customers(db_pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """(extension, caller-ID) of customers made before the gateways start (no waiting
    for the directory's NOTIFY in another process)."""
    made = []
    async with db_pool.acquire() as conn:
        retail = await factories.rate_group(conn, [factories.rate(60_000, prefix="49")])
        wholesale = await factories.rate_group(conn, [factories.rate(30_000, prefix="49")])
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=10**9, rate_group_id=wholesale
        )
        for _ in range(2):
            customer = await factories.account(
                conn, parent=agent, balance=50_000_000, rate_group_id=retail
            )
            extension, caller_id = f"pool{customer}", f"4420{customer:08d}"
            await conn.execute(
                "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, 'pw')",
                customer,
                extension,
            )
            await conn.execute(
                "INSERT INTO caller_ids (account_id, number) VALUES ($1, $2)", customer, caller_id
            )
            made.append((extension, caller_id))
    return made


@pytest.fixture
async def stack(
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    customers: list[tuple[str, str]],
    stack_processes: list[Process],
) -> AsyncIterator[Stack]:
    """Two gateways (auth port p, accounting p + 1, as a home server wants) and the
    FreeRADIUS balancer in front of them; yields the balancer's auth port."""
    gateways: dict[str, Process] = {}
    auth_ports: dict[str, int] = {}
    for name in ("gateway-a", "gateway-b"):
        folder = tmp_path / name
        folder.mkdir()
        port = port_pair()
        config = write_config(
            folder,
            database_url=database_url,
            redis_url=redis_url,
            key_prefix=keys.prefix,
            auth_port=port,
            acct_port=port + 1,
        )
        # One process (no supervisor): killing it kills the gateway, as a host dies.
        argv = [sys.executable, "-m", "gateway", "--config", str(config), "run", "--workers", "1"]
        gateways[name] = Process(argv, folder / "gateway.log", READY)
        auth_ports[name] = port
    for process in gateways.values():
        process.start()
        stack_processes.append(process)
    await asyncio.gather(*(p.ready() for p in gateways.values()))

    listen = port_pair()
    folder = pool_folder(tmp_path, listen, (auth_ports["gateway-a"], auth_ports["gateway-b"]))
    proxy = Process(
        [tool("freeradius"), "-X", "-d", str(folder)],
        tmp_path / "freeradius.log",
        "Ready to process requests",
    )
    proxy.start()
    stack_processes.append(proxy)
    await proxy.ready(15)
    yield Stack(listen, gateways, auth_ports, proxy.log)


async def radclient(port: int, kind: str, packet: str) -> str:
    """Send one packet (one try: FreeRADIUS ignores retransmissions of a request it
    gave up on) and return radclient's output."""
    proc = await asyncio.create_subprocess_exec(
        require_radclient(),
        "-x",
        "-r",
        "1",
        "-t",
        "8",  # past the pool's response_window (6 s)
        f"127.0.0.1:{port}",
        kind,
        SWITCH_SECRET,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(packet.encode()), 20)
    return out.decode(errors="replace")


async def ask(port: int, kind: str, packet: str, answer: str, attempts: int) -> int:
    """How many attempts it took to get ``answer``: each attempt a new request, as a
    switch sends when its retransmissions go unanswered."""
    for attempt in range(1, attempts + 1):
        if f"Received {answer}" in await radclient(port, kind, packet):
            return attempt
    pytest.fail(f"no {answer} in {attempts} attempts: {packet}")


async def place_calls(
    stack: Stack, customers: list[tuple[str, str]], sessions: list[str], attempts: int = 1
) -> int:
    """Access-Request, Accounting Start and Stop (42 s) of each session, all calls at
    once, through the balancer; every packet answered. Returns the requests that
    needed more than one attempt."""

    def call(i: int, session: str) -> str:
        extension, caller_id = customers[i % len(customers)]
        return (
            f'User-Name = "{extension}", Calling-Station-Id = "{caller_id}", '
            f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"'
        )

    calls = [call(i, s) for i, s in enumerate(sessions)]
    steps = [
        (stack.proxy_port, "auth", ', User-Password = "pw"', "Access-Accept"),
        (stack.proxy_port + 1, "acct", ", Acct-Status-Type = Start", "Accounting-Response"),
        (
            stack.proxy_port + 1,
            "acct",
            ", Acct-Status-Type = Stop, Acct-Session-Time = 42",
            "Accounting-Response",
        ),
    ]
    retried = 0
    for port, kind, extra, answer in steps:
        tries = await asyncio.gather(*(ask(port, kind, c + extra, answer, attempts) for c in calls))
        retried += sum(1 for t in tries if t > 1)
    return retried


async def billed(pool: asyncpg.Pool, sessions: list[str]) -> None:
    """Every session has its answered CDR of 42 s (the committers write in batches)."""
    for _ in range(100):
        rows = await pool.fetch(
            "SELECT session_id, status, duration_s FROM cdrs"
            " WHERE nas = 'loadgen' AND session_id = ANY($1)",
            sessions,
        )
        if len(rows) == len(sessions):
            assert {(r["status"], r["duration_s"]) for r in rows} == {("answered", 42)}
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{len(sessions) - len(rows)} of {len(sessions)} calls have no CDR")


def routes(log: Path) -> dict[str, set[int]]:
    """Acct-Session-Id -> the home server ports FreeRADIUS proxied its packets to."""
    sessions: dict[str, str] = {}
    found: dict[str, set[int]] = {}
    for line in tail(log, 100_000_000).splitlines():
        if m := re.match(r'\((\d+)\)\s+Acct-Session-Id = "([^"]+)"', line):
            sessions.setdefault(m[1], m[2])
        elif m := re.match(r"\((\d+)\) Proxying request to home server \S+ port (\d+)", line):
            found.setdefault(sessions[m[1]], set()).add(int(m[2]))
    return found


async def test_calls_through_the_pool_are_billed_and_survive_a_dead_gateway(
    stack: Stack, customers: list[tuple[str, str]], db_pool: asyncpg.Pool
) -> None:
    first = [f"pool-{time.time_ns()}-{i}" for i in range(CALLS)]
    await place_calls(stack, customers, first)
    await billed(db_pool, first)
    served = {
        s: {stack.gateway_of(p) for p in ports} for s, ports in routes(stack.proxy_log).items()
    }
    # Access-Request, Start and Stop of one call went to one gateway...
    assert all(len(served[s]) == 1 for s in first), served
    # ... and the calls were spread over both.
    assert set().union(*(served[s] for s in first)) == {"gateway-a", "gateway-b"}, served

    stack.gateways["gateway-a"].kill()
    started = time.monotonic()
    second = [f"pool-{time.time_ns()}-after-{i}" for i in range(CALLS)]
    # Requests keyed to the dead gateway go unanswered for response_window, which
    # makes it a zombie; the switch's next attempt, and every new request, goes to
    # the live gateway.
    retried = await place_calls(stack, customers, second, attempts=2)
    await billed(db_pool, second)
    assert time.monotonic() - started < 40
    log = tail(stack.proxy_log, 100_000_000)
    dead_port = stack.auth_ports["gateway-a"]
    assert re.search(rf"Marking home server \S+ port {dead_port} as zombie", log), log[-4000:]
    assert retried >= 1  # some calls were keyed to the dead gateway: answered all the same
    after = {
        s: {stack.gateway_of(p) for p in ports} for s, ports in routes(stack.proxy_log).items()
    }
    assert all("gateway-b" in after[s] for s in second), after
