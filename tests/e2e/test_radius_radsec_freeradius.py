"""RADIUS/TLS end to end: radclient -> FreeRADIUS 3.2 (UDP, loopback) -> RadSec
(home_server over TLS, deploy/freeradius/proxy-radsec.conf) -> the gateway's
[radius.tls] port. The Access-Accept and the Accounting-Responses come back through
the proxy, and the call is billed. And RADIUS/TCP (RFC 6613) the same way, with
FreeRADIUS's home server over plain TCP to the gateway's [radius.tcp] ports.

FreeRADIUS runs unprivileged in the foreground from its own copy of the packaged
configuration, as tests/deploy/test_freeradius.py runs it; skipped when the binary
is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.config import RadiusTcpConfig, RadiusTlsConfig
from gateway.core import metrics
from tests.deploy.conftest import DEPLOY, tail
from tests.deploy.test_freeradius import (
    DIALLED,
    port_pair,
    radclient,
    server_folder,
    substitute,
)
from tests.e2e.conftest import Gateway, gateway_config, running
from tests.tlscerts import Certs, make_certs

PROXY_NAME = "freeradius-proxy"  # the CN of FreeRADIUS's client certificate

FREERADIUS = shutil.which("freeradius") or shutil.which("freeradius", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(
    FREERADIUS is None, reason="the freeradius binary is missing (Debian package freeradius)"
)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    """One CA for both ends: it signs the gateway's and FreeRADIUS's certificates."""
    return make_certs(tmp_path / "certs")


@pytest.fixture
async def radsec_gateway(
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    db_pool: asyncpg.Pool,
    certs: Certs,
) -> AsyncIterator[Gateway]:
    """The e2e gateway with [radius.tls] on a free loopback port; its cisco-gw client
    (127.0.0.1) also speaks RadSec with FreeRADIUS's certificate name."""
    config = gateway_config(database_url, redis_url, keys, str(tmp_path / "state"))
    clients = tuple(
        dataclasses.replace(c, tls_identity=PROXY_NAME) if c.name == "cisco-gw" else c
        for c in config.radius.clients
    )
    tls = RadiusTlsConfig(
        enabled=True,
        bind=("127.0.0.1",),
        port=0,
        cert_file=str(certs.server.cert),
        key_file=str(certs.server.key),
        ca_file=str(certs.ca),
    )
    radius = dataclasses.replace(config.radius, clients=clients, tls=tls)
    async with running(dataclasses.replace(config, radius=radius), db_pool) as gw:
        yield gw


def radsec_folder(tmp_path: Path, certs: Certs, listen_port: int, gateway_port: int) -> Path:
    """The UDP example set-up with proxy-radsec.conf as its proxy.conf."""
    folder = server_folder(tmp_path, listen_port, gateway_port)
    client = certs.client(PROXY_NAME)
    proxy = substitute(
        (DEPLOY / "freeradius" / "proxy-radsec.conf").read_text(),
        [
            (r"^\tipaddr = 192\.0\.2\.10$", "\tipaddr = 127.0.0.1"),
            (r"^\tport = 2083$", f"\tport = {gateway_port}"),
            (r"^\t\tcertificate_file = .*$", f"\t\tcertificate_file = {client.cert}"),
            (r"^\t\tprivate_key_file = .*$", f"\t\tprivate_key_file = {client.key}"),
            (r"^\t\tca_file = .*$", f"\t\tca_file = {certs.ca}"),
        ],
    )
    (folder / "proxy.conf").write_text(proxy)
    return folder


@contextlib.asynccontextmanager
async def freeradius(folder: Path, log: Path) -> AsyncIterator[None]:
    """FreeRADIUS in the foreground on ``folder`` until the block ends (bounded waits)."""
    with log.open("wb") as out:
        assert FREERADIUS is not None
        proc = await asyncio.create_subprocess_exec(
            FREERADIUS, "-X", "-d", str(folder), stdout=out, stderr=out
        )
    try:
        for _ in range(100):
            if "Ready to process requests" in tail(log, 1_000_000) or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("freeradius did not start within 10 s")
        assert proc.returncode is None, tail(log)
        yield
    finally:
        print("--- freeradius log (tail) ---\n" + tail(log))
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def radsec_proxy(radsec_gateway: Gateway, tmp_path: Path, certs: Certs) -> AsyncIterator[int]:
    """FreeRADIUS proxying to the gateway's RadSec port; yields its UDP auth port."""
    assert radsec_gateway.path.radius is not None
    listen = port_pair()
    folder = radsec_folder(tmp_path, certs, listen, radsec_gateway.path.radius.port("tls"))
    async with freeradius(folder, tmp_path / "freeradius.log"):
        yield listen


async def test_a_call_through_freeradius_over_radsec_is_answered_and_billed(
    radsec_gateway: Gateway, radsec_proxy: int
) -> None:
    gateway = radsec_gateway
    accepted = metrics.RADIUS_CONNECTION_EVENTS.labels("tls", "accepted")._value.get()
    customer = await gateway.customer(balance=10_000_000)
    session = f"radsec-{customer.account_id}"
    call = (
        f'User-Name = "{customer.extension}", Calling-Station-Id = "{customer.caller_id}", '
        f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"'
    )
    code, out = await radclient(
        radsec_proxy, "auth", f'{call}, User-Password = "{customer.password}"'
    )
    assert code == 0 and "Access-Accept" in out, out
    assert "Session-Timeout = 7200" in out and 'h323-credit-time = "h323-credit-time=7200"' in out

    for status, extra in (("Start", ""), ("Stop", ", Acct-Session-Time = 42")):
        code, out = await radclient(
            radsec_proxy + 1, "acct", f"{call}, Acct-Status-Type = {status}{extra}"
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)

    # It came over TLS: the gateway accepted FreeRADIUS's connection by its certificate.
    assert metrics.RADIUS_CONNECTION_EVENTS.labels("tls", "accepted")._value.get() > accepted
    await gateway.drain()
    row = await gateway.pool.fetchrow(
        "SELECT status, duration_s, cost_micros FROM cdrs"
        " WHERE nas = 'cisco-gw' AND session_id = $1",
        session,
    )
    assert row is not None and row["status"] == "answered" and row["duration_s"] == 42
    assert row["cost_micros"] > 0


async def test_a_refusal_comes_back_over_radsec(radsec_gateway: Gateway, radsec_proxy: int) -> None:
    customer = await radsec_gateway.customer(balance=0)
    session = f"radsec-refused-{customer.account_id}"
    _, out = await radclient(
        radsec_proxy,
        "auth",
        f'User-Name = "{customer.extension}", User-Password = "{customer.password}", '
        f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"',
    )
    assert "Access-Reject" in out, out
    assert 'Reply-Message = "Zero balance"' in out


def tcp_port_pair() -> int:
    """A TCP port p with p + 1 free too (FreeRADIUS sends accounting to port + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    pytest.fail("no two consecutive free TCP ports")


@pytest.fixture
async def tcp_gateway(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    """The e2e gateway with [radius.tcp] on a free loopback port pair."""
    config = gateway_config(database_url, redis_url, keys, str(tmp_path / "state"))
    port = tcp_port_pair()
    tcp = RadiusTcpConfig(enabled=True, bind=("127.0.0.1",), auth_port=port, acct_port=port + 1)
    radius = dataclasses.replace(config.radius, tcp=tcp)
    async with running(dataclasses.replace(config, radius=radius), db_pool) as gw:
        yield gw


async def test_a_call_through_freeradius_over_radius_tcp_is_answered(
    tcp_gateway: Gateway, tmp_path: Path
) -> None:
    """RFC 6613 with a real client: FreeRADIUS's home server over plain TCP (the
    UDP example's proxy.conf with proto = tcp), the gateway matching it by address."""
    assert tcp_gateway.path.radius is not None
    listen = port_pair()
    folder = server_folder(tmp_path, listen, tcp_gateway.path.radius.port("tcp-auth"))
    proxy = (folder / "proxy.conf").read_text()
    (folder / "proxy.conf").write_text(substitute(proxy, [(r"^\tproto = udp$", "\tproto = tcp")]))
    accepted = metrics.RADIUS_CONNECTION_EVENTS.labels("tcp", "accepted")._value.get()
    customer = await tcp_gateway.customer(balance=10_000_000)
    session = f"radtcp-{customer.account_id}"
    call = (
        f'User-Name = "{customer.extension}", Calling-Station-Id = "{customer.caller_id}", '
        f'Called-Station-Id = "{DIALLED}", Acct-Session-Id = "{session}"'
    )
    async with freeradius(folder, tmp_path / "freeradius.log"):
        code, out = await radclient(
            listen, "auth", f'{call}, User-Password = "{customer.password}"'
        )
        assert code == 0 and "Access-Accept" in out, out
        code, out = await radclient(listen + 1, "acct", f"{call}, Acct-Status-Type = Start")
        assert code == 0 and "Accounting-Response" in out, out
    assert metrics.RADIUS_CONNECTION_EVENTS.labels("tcp", "accepted")._value.get() > accepted
