"""deploy/freeradius: FreeRADIUS (Debian's 3.2) accepts the example proxy set-up, and a
switch talking to that FreeRADIUS gets real answers from a gateway behind it.

The test server is the packaged /etc/freeradius/3.0 with the example files dropped in
(the default sites and the EAP module removed, as the folder's README says); only
addresses, ports and secrets are rewritten to reach the test gateway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from tests.deploy.conftest import DEPLOY, run, tail, tool
from tests.e2e.conftest import SECRET, Gateway, gateway_config, require_radclient, running

EXAMPLE = DEPLOY / "freeradius"
PACKAGED = Path("/etc/freeradius/3.0")
SWITCH_SECRET = "switch-secret"
DIALLED = "004930123456"


def substitute(text: str, changes: list[tuple[str, str]]) -> str:
    """Apply each (pattern, replacement) exactly once: the example must still say it."""
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"{pattern!r} matched {count} times"
    return text


def server_folder(tmp_path: Path, listen_port: int, gateway_port: int) -> Path:
    """The packaged configuration with the example installed into it."""
    if not PACKAGED.is_dir():
        pytest.fail("/etc/freeradius/3.0 is missing: `make test` installs freeradius")
    folder = tmp_path / "raddb"
    shutil.copytree(PACKAGED, folder, symlinks=True)
    for site in (folder / "sites-enabled").iterdir():
        site.unlink()
    (folder / "mods-enabled" / "eap").unlink()
    radiusd = (folder / "radiusd.conf").read_text()
    radiusd = substitute(
        radiusd,
        [
            (r"^\s*user = freerad$", ""),  # stay the test's user: the folder is private
            (r"^\s*group = freerad$", ""),
            (r"^run_dir = .*$", f"run_dir = {tmp_path}"),
        ],
    )
    (folder / "radiusd.conf").write_text(radiusd)
    proxy = substitute(
        (EXAMPLE / "proxy.conf").read_text(),
        [
            (r"^\tipaddr = 192\.0\.2\.10$", "\tipaddr = 127.0.0.1"),
            (r"^\tport = 1812$", f"\tport = {gateway_port}"),
            (r"^\tsecret = change-me-gateway$", f"\tsecret = {SECRET}"),
        ],
    )
    (folder / "proxy.conf").write_text(proxy)
    clients = substitute(
        (EXAMPLE / "clients.conf").read_text(),
        [
            (r"^\tipaddr = 198\.51\.100\.7$", "\tipaddr = 127.0.0.1"),
            (r"^\tsecret = change-me-switch$", f"\tsecret = {SWITCH_SECRET}"),
        ],
    )
    (folder / "clients.conf").write_text(clients)
    site = substitute(
        (EXAMPLE / "sites-available" / "gateway-proxy").read_text(),
        [
            (r"^\t\tport = 1812$", f"\t\tport = {listen_port}"),
            (r"^\t\tport = 1813$", f"\t\tport = {listen_port + 1}"),
        ],
    )
    (folder / "sites-enabled" / "gateway-proxy").write_text(site)
    return folder


def port_pair() -> int:
    """A UDP port p with p + 1 free too (auth+acct home servers use port + 1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    pytest.fail("no two consecutive free UDP ports")


def test_freeradius_accepts_the_example(tmp_path: Path) -> None:
    folder = server_folder(tmp_path, 1812, 1812)
    done = run(tool("freeradius"), "-XC", "-d", str(folder))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Configuration appears to be OK" in done.stdout


@pytest.fixture
async def paired_gateway(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    """The e2e gateway with accounting on auth port + 1, as a FreeRADIUS home server wants."""
    config = gateway_config(database_url, redis_url, keys, str(tmp_path / "state"))
    port = port_pair()
    radius = dataclasses.replace(config.radius, auth_port=port, acct_port=port + 1)
    async with running(dataclasses.replace(config, radius=radius), db_pool) as gw:
        yield gw


@pytest.fixture
async def proxy(paired_gateway: Gateway, tmp_path: Path) -> AsyncIterator[int]:
    """FreeRADIUS running the example in the foreground; yields its auth port."""
    listen = port_pair()
    folder = server_folder(tmp_path, listen, paired_gateway.auth_port)
    log = tmp_path / "freeradius.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            tool("freeradius"), "-X", "-d", str(folder), stdout=out, stderr=out
        )
    try:
        for _ in range(100):
            if "Ready to process requests" in tail(log, 1_000_000):
                break
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("freeradius did not start within 10 s")
        assert proc.returncode is None, tail(log)
        yield listen
    finally:
        print("--- freeradius log (tail) ---\n" + tail(log))
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def radclient(port: int, kind: str, attributes: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        require_radclient(),
        "-x",
        "-r",
        "1",
        "-t",
        "8",
        f"127.0.0.1:{port}",
        kind,
        SWITCH_SECRET,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(attributes.encode()), 30)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_a_switch_behind_freeradius_is_answered_by_the_gateway(
    paired_gateway: Gateway, proxy: int
) -> None:
    gateway = paired_gateway
    customer = await gateway.customer(balance=10_000_000)
    session = f"frproxy-{customer.account_id}"
    call = (
        f'User-Name = "{customer.extension}", Calling-Station-Id = "{customer.caller_id}", '
        f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"'
    )
    # No Message-Authenticator from the switch (radclient adds none unless asked);
    # the gateway's client for this proxy ("cisco-gw", 127.0.0.1) requires one:
    # FreeRADIUS adds it when it proxies.
    (client,) = [c for c in gateway.config.radius.clients if c.name == "cisco-gw"]
    assert client.address == "127.0.0.1" and client.require_message_authenticator
    code, out = await radclient(proxy, "auth", f'{call}, User-Password = "{customer.password}"')
    assert code == 0 and "Access-Accept" in out, out
    assert "Session-Timeout = 7200" in out and 'h323-credit-time = "h323-credit-time=7200"' in out

    for status, extra in (("Start", ""), ("Stop", ", Acct-Session-Time = 42")):
        code, out = await radclient(
            proxy + 1, "acct", f"{call}, Acct-Status-Type = {status}{extra}"
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)

    await gateway.drain()
    row = await gateway.pool.fetchrow(
        "SELECT status, duration_s, cost_micros FROM cdrs"
        " WHERE nas = 'cisco-gw' AND session_id = $1",
        session,
    )
    assert row is not None and row["status"] == "answered" and row["duration_s"] == 42
    assert row["cost_micros"] > 0


async def test_a_refusal_comes_back_through_freeradius(paired_gateway: Gateway, proxy: int) -> None:
    customer = await paired_gateway.customer(balance=0)
    session = f"frproxy-refused-{customer.account_id}"
    _, out = await radclient(
        proxy,
        "auth",
        f'User-Name = "{customer.extension}", User-Password = "{customer.password}", '
        f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"',
    )
    assert "Access-Reject" in out, out
    assert 'Reply-Message = "Zero balance"' in out
