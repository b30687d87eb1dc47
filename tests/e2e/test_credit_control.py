"""Credit control end to end: the demo's radclient lines, slice calls hung up by a
Disconnect-Request when their held time runs out, holds of calls never answered,
Stops past the grant, and the billed leg, through the RADIUS front."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys
from gateway.radius.auth import verify_accounting_request
from gateway.radius.codec import (
    PacketCode,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from gateway.rating.money import format_money
from gateway.runtime import demo
from tests.e2e.conftest import (
    COA_PORT,
    SECRET,
    Customer,
    Gateway,
    gateway_config,
    require_radclient,
    running,
)
from tests.e2e.test_radius_radclient import radclient

DEMO_CLIENT = {
    "name": "demo-local",
    "address": "127.0.0.1",
    "secret": demo.DEMO_RADIUS_SECRET,
    "profile": "cisco",
    "country_code": "44",
}
COA_CLIENT = {
    "name": "coa-nas",
    "address": "127.0.0.4",
    "secret": SECRET,
    "profile": "standard",
    "coa_port": COA_PORT,
}
CISCO_COA_CLIENT = {
    "name": "cisco-coa",
    "address": "127.0.0.5",
    "secret": SECRET,
    "profile": "cisco",
    "coa_port": COA_PORT,
}
COA_TIMEOUT_CLIENT = {
    "name": "coa-timeout",
    "address": "127.0.0.6",
    "secret": SECRET,
    "profile": "standard",
    "coa_port": COA_PORT,
    "hangup": "coa",
}
LEGS_CLIENT = {
    "name": "cisco-legs",
    "address": "127.0.0.1",
    "secret": SECRET,
    "profile": "cisco",
    "country_code": "44",
    "bill_leg": "originate",
}


@pytest.fixture
async def credit_gateway(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> AsyncIterator[Gateway]:
    """Small slices checked often, a short setup timeout: credit control in seconds."""
    config = gateway_config(
        database_url,
        redis_url,
        keys,
        str(tmp_path),
        balance={
            "slice_min_s": 2,
            "slice_s": 2,
            "slice_lead_s": 1,
            "slice_check_s": 0.1,
            "setup_timeout_s": 2,
            "sweep_interval_s": 0.2,
        },
        clients=[COA_CLIENT, CISCO_COA_CLIENT, COA_TIMEOUT_CLIENT, LEGS_CLIENT],
    )
    async with running(config, db_pool) as gw:
        yield gw


async def _account(gw: Gateway, c: Customer) -> dict[str, int]:
    assert gw.path.balance is not None
    raw = await gw.path.balance.pipeliner.client.hgetall(
        gw.config_keys.account(c.agent_id, c.account_id)
    )
    return {k.decode(): int(v) for k, v in raw.items() if k != b"st"}


async def _cdrs(gw: Gateway, c: Customer) -> list[dict[str, object]]:
    await gw.drain()
    rows = await gw.pool.fetch(
        "SELECT * FROM cdrs WHERE account_id = $1 ORDER BY session_id", c.account_id
    )
    return [dict(r) for r in rows]


async def _shell(line: str) -> str:
    proc = await asyncio.create_subprocess_shell(
        line, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(errors="replace")


async def test_the_demo_radclient_lines_take_the_reserved_path(
    database_url: str, redis_url: str, keys: Keys, tmp_path: Path, db_pool: asyncpg.Pool
) -> None:
    config = gateway_config(database_url, redis_url, keys, str(tmp_path), clients=[DEMO_CLIENT])
    async with running(config, db_pool) as gw:
        c = await gw.customer(10_000_000)
        await db_pool.execute(
            "UPDATE accounts SET max_concurrent_calls = 2 WHERE id = $1", c.account_id
        )
        caller = demo.DemoCaller("test", c.extension, c.password, c.caller_id, "4930123456", "DE")
        auth, start, stop = demo.radclient_lines(caller, demo.DemoPorts(gw.auth_port, gw.acct_port))
        out = await _shell(auth)
        assert "Access-Accept" in out, out
        # Whole mode (no CoA port): 10.00 grants 7200 s, holding 7.20; 2.80 is left.
        assert 'h323-credit-amount = "h323-credit-amount=2.8"' in out, out
        held = await _account(gw, c)
        assert (held["calls"], held["held"]) == (1, 7_200_000)  # the Access-Request holds
        assert "Accounting-Response" in await _shell(start)
        assert (await _account(gw, c))["calls"] == 1  # its Start took that hold over
        assert "Accounting-Response" in await _shell(stop)
        account = await _account(gw, c)
        assert (account["calls"], account["held"]) == (0, 0)
        rows = await _cdrs(gw, c)
        assert [(r["session_id"], r["duration_s"], r["cost_micros"]) for r in rows] == [
            (f"demo-{c.extension}-1", 95, 120_000)
        ]

        # Three such authorizations for a customer allowed two calls: the third is
        # refused (each of the first two holds a call slot until it is linked or
        # its setup times out).
        await db_pool.execute(
            "UPDATE accounts SET balance_micros = 100000000 WHERE id = $1", c.account_id
        )
        answers = [await _shell(auth) for _ in range(3)]
        assert "Access-Reject" not in answers[0] + answers[1], answers
        assert "Access-Reject" in answers[2] and "h323-return-code=3" in answers[2], answers[2]


def _udp(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    return sock


async def _ask(
    gw: Gateway, sock: socket.socket, code: PacketCode, attrs: list[tuple[str, object]]
) -> object:
    port = gw.auth_port if code == PacketCode.ACCESS_REQUEST else gw.acct_port
    datagram = encode_request(code, 7, attrs, SECRET.encode())  # type: ignore[arg-type]
    sock.sendto(datagram, ("127.0.0.1", port))
    return decode_reply(await asyncio.to_thread(sock.recv, 4096))


async def test_a_slice_call_is_hung_up_when_its_held_time_runs_out(
    credit_gateway: Gateway,
) -> None:
    gw = credit_gateway
    c = await gw.customer(6_000, increments=(1, 1))  # six seconds at 0.06/min
    secret = SECRET.encode()
    calls = {"A": f"slice-a-{c.account_id}", "B": f"slice-b-{c.account_id}"}

    def base(session: str) -> list[tuple[str, object]]:
        return [
            ("User-Name", c.extension),
            ("Calling-Station-Id", c.caller_id),
            ("Called-Station-Id", "4930123456"),
            ("Acct-Session-Id", session),
        ]

    with _udp("127.0.0.4") as nas, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coa:
        coa.bind(("127.0.0.4", COA_PORT))
        coa.settimeout(10)
        for session in calls.values():
            accept = await _ask(
                gw, nas, PacketCode.ACCESS_REQUEST, [*base(session), ("User-Password", c.password)]
            )
            assert accept.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]
        # Both are granted; both hold a first slice of two seconds (4 of the 6 s).
        assert (await _account(gw, c))["held"] == 4_000
        answered = int(time.time()) + 1
        for session in calls.values():
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*base(session), ("Acct-Status-Type", 1), ("Event-Timestamp", answered)],
            )
        # The keeper gives the next slice to whichever asks first; the other is cut
        # when its two seconds are over, the first when its four are.
        hung_up: dict[str, float] = {}
        while len(hung_up) < 2:
            data, where = await asyncio.to_thread(coa.recvfrom, 4096)
            arrived = time.time()
            request = decode_request(data)
            assert request.code == PacketCode.DISCONNECT_REQUEST
            assert verify_accounting_request(request, secret)
            assert request.get("User-Name") == c.extension
            hung_up[str(request.get("Acct-Session-Id"))] = arrived
            coa.sendto(encode_reply(request, PacketCode.DISCONNECT_ACK, [], secret), where)
        first, last = sorted(hung_up.values())
        print(f"\nhang-up lateness: {first - answered - 2:.3f} s, {last - answered - 4:.3f} s")
        # Within one second of the held time running out (answer + 2 s, answer + 4 s).
        assert answered + 2 <= first < answered + 3, first - answered
        assert answered + 4 <= last < answered + 5, last - answered
        # The switch hangs up a moment late; the Stops say 3 and 5 seconds.
        order = sorted(hung_up, key=hung_up.__getitem__)
        for session, seconds in zip(order, (3, 5), strict=True):
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*base(session), ("Acct-Status-Type", 2), ("Acct-Session-Time", seconds)],
            )
    rows = await _cdrs(gw, c)
    assert sorted((r["duration_s"], r["cost_micros"], r["overrun_s"]) for r in rows) == [
        (3, 2_000, 1),
        (5, 4_000, 1),
    ]
    # Never beyond balance + credit limit (+ one slice): here, exactly the balance.
    assert sum(int(r["cost_micros"]) for r in rows) <= 6_000 + 2_000  # type: ignore[call-overload]
    balance = await gw.pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", c.account_id
    )
    assert balance == 0


async def test_a_cisco_disconnect_names_the_call_by_conf_id_and_call_origin(
    credit_gateway: Gateway,
) -> None:
    """A Cisco gateway's Packet of Disconnect finds the call by h323-conf-id and
    h323-call-origin: the switch's CoA port (a real UDP socket) must get both, as sent."""
    gw = credit_gateway
    c = await gw.customer(4_000, increments=(1, 1))  # four seconds at 0.06/min
    secret = SECRET.encode()
    conf_ids = {
        f"cisco-pod-{leg}-{c.account_id}": f"h323-conf-id=3F9C2A10 {leg}8A3BD4E5 {c.account_id:08X}"
        for leg in ("A", "B")
    }
    first = next(iter(conf_ids))

    def call(session: str) -> list[tuple[str, object]]:
        return [
            ("User-Name", c.extension),
            ("Calling-Station-Id", c.caller_id),
            ("Called-Station-Id", "4930123456"),
            ("Acct-Session-Id", session),
            ("h323-conf-id", conf_ids[session]),
            ("h323-call-origin", "h323-call-origin=answer"),
        ]

    with _udp("127.0.0.5") as nas, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coa:
        coa.bind(("127.0.0.5", COA_PORT))
        coa.settimeout(10)
        for session in conf_ids:
            accept = await _ask(
                gw, nas, PacketCode.ACCESS_REQUEST, [*call(session), ("User-Password", c.password)]
            )
            assert accept.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]
        for session in conf_ids:
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*call(session), ("Acct-Status-Type", 1), ("Event-Timestamp", int(time.time()))],
            )
        # A was granted four seconds and holds two: it is cut when they are over. B was
        # granted the two left, all held at once: its Session-Timeout ends it.
        data, where = await asyncio.to_thread(coa.recvfrom, 4096)
        request = decode_request(data)
        assert request.code == PacketCode.DISCONNECT_REQUEST
        assert verify_accounting_request(request, secret)
        session = str(request.get("Acct-Session-Id"))
        assert session == first
        assert request.get("h323-conf-id") == conf_ids[session]  # as the switch sent it
        assert request.get("h323-call-origin") == "h323-call-origin=answer"
        coa.sendto(encode_reply(request, PacketCode.DISCONNECT_ACK, [], secret), where)
        for session in conf_ids:
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*call(session), ("Acct-Status-Type", 2), ("Acct-Session-Time", 2)],
            )
    assert [r["duration_s"] for r in await _cdrs(gw, c)] == [2, 2]


async def _cut_with_coa(gw: Gateway, answer: PacketCode) -> tuple[float, float | None]:
    """Two calls on four seconds of credit from a ``hangup = "coa"`` switch: the first
    (granted four, holding two) is cut a second after its answer and must get a
    CoA-Request with Session-Timeout 2 at once; the switch answers ``answer``. Returns
    when the CoA came and when a Disconnect-Request came (None: none within 4.5 s of
    the answer), both as seconds after the answer."""
    c = await gw.customer(4_000, increments=(1, 1))
    secret = SECRET.encode()
    sessions = [f"coa-{n}-{c.account_id}" for n in ("A", "B")]

    def call(session: str) -> list[tuple[str, object]]:
        return [
            ("User-Name", c.extension),
            ("Calling-Station-Id", c.caller_id),
            ("Called-Station-Id", "4930123456"),
            ("Acct-Session-Id", session),
        ]

    with _udp("127.0.0.6") as nas, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coa:
        coa.bind(("127.0.0.6", COA_PORT))
        coa.settimeout(5)
        for session in sessions:
            accept = await _ask(
                gw, nas, PacketCode.ACCESS_REQUEST, [*call(session), ("User-Password", c.password)]
            )
            assert accept.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]
        answered = time.time()
        for session in sessions:
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*call(session), ("Acct-Status-Type", 1), ("Event-Timestamp", int(answered))],
            )
        answered = float(int(answered))
        data, where = await asyncio.to_thread(coa.recvfrom, 4096)
        coa_at = time.time() - answered
        request = decode_request(data)
        assert request.code == PacketCode.COA_REQUEST
        assert verify_accounting_request(request, secret)
        assert request.get("Acct-Session-Id") == sessions[0]
        assert request.get("User-Name") == c.extension
        assert request.get("Session-Timeout") == 2  # from the answer to the held time's end
        coa.sendto(encode_reply(request, answer, [], secret), where)
        coa.settimeout(max(0.1, answered + 4.5 - time.time()))
        disconnect_at: float | None = None
        try:
            data, where = await asyncio.to_thread(coa.recvfrom, 4096)
        except TimeoutError:
            pass
        else:
            disconnect_at = time.time() - answered
            request = decode_request(data)
            assert request.code == PacketCode.DISCONNECT_REQUEST
            assert request.get("Acct-Session-Id") == sessions[0]
            coa.sendto(encode_reply(request, PacketCode.DISCONNECT_ACK, [], secret), where)
        for session in sessions:
            await _ask(
                gw,
                nas,
                PacketCode.ACCOUNTING_REQUEST,
                [*call(session), ("Acct-Status-Type", 2), ("Acct-Session-Time", 2)],
            )
    assert [r["cost_micros"] for r in await _cdrs(gw, c)] == [2_000, 2_000]
    return coa_at, disconnect_at


async def test_a_coa_switch_is_told_its_session_timeout_when_the_call_is_cut(
    credit_gateway: Gateway,
) -> None:
    coa_at, disconnect_at = await _cut_with_coa(credit_gateway, PacketCode.COA_ACK)
    assert coa_at < 2, coa_at  # at once, before the held time is over
    assert disconnect_at is None  # acknowledged: the switch ends the call itself


async def test_a_coa_nak_falls_back_to_a_disconnect_when_the_held_time_ends(
    credit_gateway: Gateway,
) -> None:
    coa_at, disconnect_at = await _cut_with_coa(credit_gateway, PacketCode.COA_NAK)
    assert coa_at < 2, coa_at
    assert disconnect_at is not None and 2 <= disconnect_at < 3.5, disconnect_at


async def test_a_call_never_answered_gives_its_hold_back(credit_gateway: Gateway) -> None:
    gw = credit_gateway
    c = await gw.customer(1_000_000)
    with _udp("127.0.0.4") as nas:
        accept = await _ask(
            gw,
            nas,
            PacketCode.ACCESS_REQUEST,
            [
                ("User-Name", c.extension),
                ("User-Password", c.password),
                ("Called-Station-Id", "4930123456"),
                ("Acct-Session-Id", f"ringing-{c.account_id}"),
            ],
        )
    assert accept.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]
    assert (await _account(gw, c))["calls"] == 1
    for _ in range(50):  # setup_timeout_s = 2, swept every 0.2 s
        await asyncio.sleep(0.1)
        if (await _account(gw, c))["calls"] == 0:
            break
    account = await _account(gw, c)
    assert (account["calls"], account["held"]) == (0, 0)


async def test_a_stop_past_its_grant_is_billed_up_to_the_grant(gateway: Gateway) -> None:
    c = await gateway.customer(balance=60_000)  # one minute
    session = f"overrun-{c.account_id}"
    common = (
        f'User-Name = "{c.extension}", Calling-Station-Id = "{c.caller_id}", '
        f'Called-Station-Id = "4930123456", Acct-Session-Id = "{session}"'
    )
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        f'{common}, User-Password = "{c.password}", Message-Authenticator = 0x00',
    )
    assert code == 0 and "Session-Timeout = 60" in out, out
    for extra in ("Acct-Status-Type = Start", "Acct-Status-Type = Stop, Acct-Session-Time = 600"):
        code, out = await radclient(gateway.acct_port, "acct", f"{common}, {extra}")
        assert code == 0 and "Accounting-Response" in out, out
    await gateway.drain()
    rows = await gateway.pool.fetch("SELECT * FROM cdrs WHERE session_id = $1", session)
    assert [(r["duration_s"], r["cost_micros"], r["overrun_s"]) for r in rows] == [
        (600, 60_000, 540)
    ]
    balance = await gateway.pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", c.account_id
    )
    assert balance == 0  # not -0.54


async def test_the_billed_leg_takes_the_hold_of_the_other_legs_authorization(
    credit_gateway: Gateway,
) -> None:
    gw = credit_gateway
    c = await gw.customer(10_000_000)
    conf = f"conf-{c.account_id}"

    def leg(origin: str, session: str, extra: str) -> str:
        return (
            f'User-Name = "{c.extension}", Calling-Station-Id = "{c.caller_id}", '
            f'Called-Station-Id = "4930123456", Acct-Session-Id = "{session}", '
            f'h323-conf-id = "h323-conf-id={conf}", '
            f'h323-call-origin = "h323-call-origin={origin}", {extra}'
        )

    # The gateway authorizes the incoming (answer) leg; the switch bills the
    # outgoing (originate) leg, under another Acct-Session-Id.
    code, out = await radclient(
        gw.auth_port,
        "auth",
        leg("answer", "A-1", f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    assert code == 0 and "Access-Accept" in out, out
    assert (await _account(gw, c))["calls"] == 1
    # One call is counted throughout, the billed leg's, until its Stop.
    for origin, session, extra, calls in (
        ("answer", "A-1", "Acct-Status-Type = Start", 1),
        ("originate", "O-1", "Acct-Status-Type = Start", 1),
        ("originate", "O-1", "Acct-Status-Type = Stop, Acct-Session-Time = 61", 0),
        ("answer", "A-1", "Acct-Status-Type = Stop, Acct-Session-Time = 70", 0),
    ):
        code, out = await radclient(gw.acct_port, "acct", leg(origin, session, extra))
        assert code == 0 and "Accounting-Response" in out, (origin, extra, out)
        assert (await _account(gw, c))["calls"] == calls, (origin, extra)
    account = await _account(gw, c)
    assert (account["calls"], account["held"]) == (0, 0)
    rows = await _cdrs(gw, c)
    assert [(r["session_id"], r["leg"], r["cost_micros"]) for r in rows] == [
        ("O-1", "originate", 120_000)
    ]


async def test_credit_amount_is_the_credit_left(gateway: Gateway) -> None:
    c = await gateway.customer(balance=10_000_000)
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        f'User-Name = "{c.extension}", User-Password = "{c.password}", '
        f'Called-Station-Id = "4930123456", Acct-Session-Id = "amount-{c.account_id}", '
        "Message-Authenticator = 0x00",
    )
    assert code == 0, out
    # 10.00 grants the longest call, 7200 s at 0.06/min, holding 7.20.
    assert f'h323-credit-amount = "h323-credit-amount={format_money(2_800_000)}"' in out, out


async def _radclient_many(port: int, kind: str, requests: list[str]) -> str:
    """One radclient sending every request at once (-p), each retried as a switch would."""
    proc = await asyncio.create_subprocess_exec(
        require_radclient(),
        "-x",
        "-p",
        str(len(requests)),
        "-r",
        "3",
        "-t",
        "3",
        f"127.0.0.1:{port}",
        kind,
        SECRET,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        # Apart: radclient writes its complaints to stderr while replies go to stdout,
        # and one pipe for both can split a "Received ..." line that is then not counted.
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate("\n\n".join(requests).encode()), 60)
    return out.decode(errors="replace") + err.decode(errors="replace")


@pytest.mark.parametrize("coa", [True, False], ids=["slice", "whole"])
async def test_ten_concurrent_calls_on_twenty_minutes(
    database_url: str,
    redis_url: str,
    keys: Keys,
    tmp_path: Path,
    db_pool: asyncpg.Pool,
    coa: bool,
) -> None:
    switch = {"name": "switch", "address": "127.0.0.1", "secret": SECRET, "profile": "cisco"}
    if coa:
        switch["coa_port"] = COA_PORT
    config = gateway_config(database_url, redis_url, keys, str(tmp_path), clients=[switch])
    async with running(config, db_pool) as gw:
        c = await gw.customer(1_200_000)  # 20 minutes at 0.06/min
        common = (
            f'User-Name = "{c.extension}", Calling-Station-Id = "{c.caller_id}", '
            'Called-Station-Id = "4930123456"'
        )
        sessions = [f"ten-{c.account_id}-{i}" for i in range(10)]
        out = await _radclient_many(
            gw.auth_port,
            "auth",
            [
                f'{common}, Acct-Session-Id = "{s}", User-Password = "{c.password}", '
                "Message-Authenticator = 0x00"
                for s in sessions
            ],
        )
        accepted, rejected = (
            out.count("Received Access-Accept"),
            out.count("Received Access-Reject"),
        )
        account = await _account(gw, c)
        if not coa:
            # Whole mode, as before: the first call holds all twenty minutes.
            assert (accepted, rejected) == (1, 9), out
            assert (account["calls"], account["held"]) == (1, 1_200_000)
            return
        assert (accepted, rejected) == (10, 0), out
        assert (account["calls"], account["held"]) == (10, 600_000)  # one 60 s slice each
        stops = [
            f'{common}, Acct-Session-Id = "{s}", Acct-Status-Type = Stop, Acct-Session-Time = 60'
            for s in sessions
        ]
        out = await _radclient_many(gw.acct_port, "acct", stops)
        assert out.count("Received Accounting-Response") == 10, out
        rows = await _cdrs(gw, c)
        assert [r["cost_micros"] for r in rows] == [60_000] * 10
    balance = await db_pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", c.account_id
    )
    assert balance == 600_000
