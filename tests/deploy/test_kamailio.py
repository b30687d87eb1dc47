"""deploy/kamailio: Kamailio accepts the example config, and calls placed through it
are authorized by, and billed in, a real gateway.

The Kamailio here runs the example kamailio.cfg and dictionary unchanged; only the
radius client file is rewritten to reach the test gateway (loopback ports chosen by
the OS, source address 127.0.0.3 = the gateway's "kamailio" client, profile standard).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.radius.replies import REPLY_MESSAGES
from tests import factories
from tests.deploy import sip
from tests.deploy.conftest import DEPLOY, run, tail, tool
from tests.e2e.conftest import SECRET, Gateway

KAMAILIO = DEPLOY / "kamailio"
DIALLED = "004930123456"  # rated by the test customers' "49" prefix


def test_kamailio_accepts_the_config() -> None:
    done = run(tool("kamailio"), "-c", "-f", str(KAMAILIO / "kamailio.cfg"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "config file ok" in done.stderr


def radius_client_config(tmp_path: Path, gateway: Gateway) -> Path:
    """deploy/kamailio/radiusclient.conf pointed at the test gateway."""
    servers = tmp_path / "servers"
    servers.write_text(f"127.0.0.1\t{SECRET}\n")
    text = (KAMAILIO / "radiusclient.conf").read_text()
    for key, value in (
        ("authserver", f"127.0.0.1:{gateway.auth_port}"),
        ("acctserver", f"127.0.0.1:{gateway.acct_port}"),
        ("servers", str(servers)),
        ("dictionary", str(KAMAILIO / "dictionary")),
        ("bindaddr", "127.0.0.3"),
    ):
        text, count = re.subn(rf"(?m)^{key}\s+.*$", f"{key}\t{value}", text)
        assert count == 1, f"radiusclient.conf has no single {key} line"
    path = tmp_path / "radiusclient.conf"
    path.write_text(text)
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proxy:
    address: tuple[str, int]
    carrier: sip.Endpoint
    log: Path

    def log_text(self) -> str:
        return tail(self.log, 1_000_000)


async def wait_until_answering(address: tuple[str, int], log: Path) -> None:
    probe = await sip.Endpoint.open()
    try:
        for _ in range(50):
            options = sip.render(
                f"OPTIONS sip:{address[0]}:{address[1]} SIP/2.0",
                [
                    sip.via(probe.host, probe.port),
                    ("Max-Forwards", "70"),
                    ("From", "<sip:probe@127.0.0.1>;tag=probe"),
                    ("To", f"<sip:{address[0]}>"),
                    ("Call-ID", f"probe-{probe.port}"),
                    ("CSeq", "1 OPTIONS"),
                ],
            )
            await probe.send(options, address)
            if await probe.quiet(0.2) is not None:
                return
        pytest.fail("kamailio did not answer within 10 s:\n" + tail(log))
    finally:
        probe.close()


def require_radius_modules() -> None:
    if not list(Path("/usr/lib").glob("*/kamailio/modules/misc_radius.so")):
        pytest.fail("kamailio's radius modules are missing: install kamailio-radius-modules")


@pytest.fixture
async def kamailio(gateway: Gateway, tmp_path: Path) -> AsyncIterator[Proxy]:
    binary = tool("kamailio")
    require_radius_modules()
    carrier = await sip.Endpoint.open()
    address = ("127.0.0.1", free_udp_port())
    (tmp_path / "run").mkdir()
    log = tmp_path / "kamailio.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-DD",
            "-E",
            "-f",
            str(KAMAILIO / "kamailio.cfg"),
            "-A",
            f'RADIUS_CONFIG="{radius_client_config(tmp_path, gateway)}"',
            "-A",
            f'CARRIER="sip:{carrier.host}:{carrier.port}"',
            "-l",
            f"udp:{address[0]}:{address[1]}",
            "-n",
            "2",
            "-m",
            "32",
            "-Y",
            str(tmp_path / "run"),
            "-w",
            str(tmp_path),
            stdout=out,
            stderr=out,
        )
    try:
        await wait_until_answering(address, log)
        yield Proxy(address, carrier, log)
    finally:
        print("--- kamailio log (tail) ---\n" + tail(log))
        carrier.close()
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Caller:
    """The calling phone: one INVITE dialog through the proxy."""

    def __init__(self, endpoint: sip.Endpoint, proxy: Proxy, user: str, call_id: str) -> None:
        self.endpoint, self.proxy, self.user, self.call_id = endpoint, proxy, user, call_id
        self.to = f"<sip:{DIALLED}@127.0.0.1>"
        self.tag = "c" + re.sub(r"\W", "", call_id)  # a token: it ends up in a URI param
        self.cseq = 1
        self.remote_target = ""
        self.routes: list[str] = []

    def _headers(self, method: str) -> list[tuple[str, str]]:
        return [
            sip.via(self.endpoint.host, self.endpoint.port),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.user}@127.0.0.1>;tag={self.tag}"),
            ("To", self.to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} {method}"),
        ]

    async def invite(self) -> None:
        host, port = self.proxy.address
        contact = f"<sip:{self.user}@{self.endpoint.host}:{self.endpoint.port}>"
        headers = [*self._headers("INVITE"), ("Contact", contact)]
        await self.endpoint.send(
            sip.render(f"INVITE sip:{DIALLED}@{host}:{port} SIP/2.0", headers), self.proxy.address
        )

    def answered(self, ok: sip.Message) -> None:
        self.to = ok.header("To")
        self.remote_target = ok.header("Contact").strip("<>")
        self.routes = list(reversed(ok.all("Record-Route")))

    async def in_dialog(self, method: str) -> None:
        if method != "ACK":
            self.cseq += 1
        headers = self._headers(method) + [("Route", r) for r in self.routes]
        await self.endpoint.send(
            sip.render(f"{method} {self.remote_target} SIP/2.0", headers), self.proxy.address
        )


@contextlib.asynccontextmanager
async def caller(proxy: Proxy, user: str, call_id: str) -> AsyncIterator[Caller]:
    endpoint = await sip.Endpoint.open()
    try:
        yield Caller(endpoint, proxy, user, call_id)
    finally:
        endpoint.close()


async def cdr(gateway: Gateway, call_id: str) -> dict[str, object]:
    await gateway.drain()
    for _ in range(50):
        row = await gateway.pool.fetchrow(
            "SELECT status, duration_s, cost_micros, caller, called_dialled FROM cdrs"
            " WHERE nas = 'kamailio' AND session_id = $1",
            call_id,
        )
        if row is not None:
            return dict(row)
        await asyncio.sleep(0.1)
    pytest.fail(f"no CDR for {call_id}")


async def test_a_call_through_kamailio_is_authorized_timed_and_billed(
    gateway: Gateway, kamailio: Proxy
) -> None:
    customer = await gateway.customer(balance=10_000_000)
    call_id = f"kam-ok-{customer.account_id}@127.0.0.1"
    # The caller is known by its number (From user = Calling-Station-Id): the test
    # extensions have a secret, which misc_radius cannot prove (no password sent).
    async with caller(kamailio, customer.caller_id, call_id) as phone:
        await phone.invite()
        # Authorized: the INVITE reaches the carrier, same Call-ID.
        invite = await kamailio.carrier.request("INVITE")
        assert invite.header("Call-ID") == call_id
        contact = f"<sip:callee@{kamailio.carrier.host}:{kamailio.carrier.port}>"
        answer = sip.reply(invite, 200, "OK", to_tag="callee", contact=contact)
        await kamailio.carrier.send(answer, sip.sent_by(invite))
        ok = await phone.endpoint.final("INVITE")
        assert ok.status == 200
        phone.answered(ok)
        await phone.in_dialog("ACK")
        await kamailio.carrier.request("ACK")

        await asyncio.sleep(2.2)  # the call is up

        await phone.in_dialog("BYE")
        bye = await kamailio.carrier.request("BYE")
        await kamailio.carrier.send(sip.reply(bye, 200, "OK"), sip.sent_by(bye))
        assert (await phone.endpoint.final("BYE")).status == 200

    row = await cdr(gateway, call_id)
    assert row["status"] == "answered"
    assert 2 <= row["duration_s"] <= 3  # type: ignore[operator]  # Acct-Session-Time
    assert row["cost_micros"] > 0  # type: ignore[operator]
    assert row["caller"] and row["called_dialled"] == DIALLED
    # The gateway's Session-Timeout became the dialog's timeout (capped at 7200 s).
    assert f"gateway: {customer.caller_id} may call {DIALLED} for 7200s" in kamailio.log_text()


async def short_credit_caller(gateway: Gateway, seconds: int) -> str:
    """A caller-ID whose balance pays for ``seconds`` of a call to DIALLED (1 s steps)."""
    per_minute = 60_000  # 1000 micro-units a second
    async with gateway.pool.acquire() as conn:
        retail = await factories.rate_group(
            conn, [factories.rate(per_minute, first=1, nxt=1, prefix="49")]
        )
        wholesale = await factories.rate_group(
            conn, [factories.rate(per_minute // 2, first=1, nxt=1, prefix="49")]
        )
        agent = await factories.account(
            conn, kind="agent", mode="wholesale", balance=10**9, rate_group_id=wholesale
        )
        customer = await factories.account(
            conn, parent=agent, balance=seconds * per_minute // 60, rate_group_id=retail
        )
        number = f"4420{customer:08d}"
        await conn.execute(
            "INSERT INTO caller_ids (account_id, number) VALUES ($1, $2)", customer, number
        )
    directory, rates = gateway.path.directory, gateway.path.rates
    assert directory is not None and rates is not None
    for _ in range(100):  # the gateway hears of new rows through NOTIFY
        if directory.caller_id(number) is not None and retail in rates.index:
            return number
        await asyncio.sleep(0.02)
    pytest.fail("the gateway did not pick up the new caller within 2 s")


async def test_kamailio_ends_the_call_when_the_granted_time_is_up(
    gateway: Gateway, kamailio: Proxy
) -> None:
    number = await short_credit_caller(gateway, seconds=3)
    call_id = f"kam-timeout-{number}@127.0.0.1"
    async with caller(kamailio, number, call_id) as phone:
        await phone.invite()
        invite = await kamailio.carrier.request("INVITE")
        contact = f"<sip:callee@{kamailio.carrier.host}:{kamailio.carrier.port}>"
        answer = sip.reply(invite, 200, "OK", to_tag="callee", contact=contact)
        await kamailio.carrier.send(answer, sip.sent_by(invite))
        ok = await phone.endpoint.final("INVITE")
        phone.answered(ok)
        await phone.in_dialog("ACK")
        await kamailio.carrier.request("ACK")
        answered_at = asyncio.get_running_loop().time()
        # Nobody hangs up: the dialog times out after the granted 3 s and Kamailio
        # sends BYE to both sides.
        bye_out = await kamailio.carrier.request("BYE", timeout_s=8)
        bye_back = await phone.endpoint.request("BYE", timeout_s=3)
        waited = asyncio.get_running_loop().time() - answered_at
        await kamailio.carrier.send(sip.reply(bye_out, 200, "OK"), sip.sent_by(bye_out))
        await phone.endpoint.send(sip.reply(bye_back, 200, "OK"), sip.sent_by(bye_back))
    assert 2.5 <= waited <= 5.5, waited
    assert f"gateway: {number} may call {DIALLED} for 3s" in kamailio.log_text()


@pytest.mark.parametrize(
    ("balance", "extension", "status"),
    [
        (10_000_000, "nobody-here", 403),  # UNKNOWN_CALLER: "Unknown account"
        (0, None, 402),  # ZERO_BALANCE: "Zero balance"
    ],
)
async def test_a_refused_call_never_reaches_the_carrier(
    gateway: Gateway, kamailio: Proxy, balance: int, extension: str | None, status: int
) -> None:
    customer = await gateway.customer(balance=balance)
    user = extension or customer.caller_id
    call_id = f"kam-refused-{customer.account_id}@127.0.0.1"
    async with caller(kamailio, user, call_id) as phone:
        await phone.invite()
        refusal = await phone.endpoint.final("INVITE")
        assert refusal.status == status, kamailio.log_text()[-2000:]
    assert await kamailio.carrier.quiet(0.3) is None


def test_the_refusals_kamailio_maps_are_the_gateways_reply_messages() -> None:
    cfg = (KAMAILIO / "kamailio.cfg").read_text()
    mapped = set(re.findall(r'^\s*case "([^"]+)":', cfg, re.MULTILINE))
    assert mapped, "no Reply-Message cases in kamailio.cfg"
    assert mapped <= set(REPLY_MESSAGES.values()), mapped - set(REPLY_MESSAGES.values())
