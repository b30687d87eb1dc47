"""Whole calls through the RADIUS front, driven by a real RADIUS client (radclient)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.radius.auth import verify_reply
from gateway.radius.codec import PacketCode, decode_reply, encode_request
from tests.e2e.conftest import SECRET, Customer, Gateway, require_radclient


async def radclient(
    port: int,
    kind: str,
    attributes: str,
    *,
    secret: str = SECRET,
    tries: int = 3,
    timeout_s: int = 3,
) -> tuple[int, str]:
    """Run radclient; its exit code and output (-x prints the reply).

    Patient by default (a loaded test machine); tests expecting silence pass
    ``tries=1, timeout_s=1``.
    """
    proc = await asyncio.create_subprocess_exec(
        require_radclient(),
        "-x",
        "-r",
        str(tries),
        "-t",
        str(timeout_s),
        f"127.0.0.1:{port}",
        kind,
        secret,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(attributes.encode()), 30)
    return proc.returncode or 0, out.decode(errors="replace")


def _call(c: Customer, session: str, extra: str = "") -> str:
    base = (
        f'User-Name = "{c.extension}", Calling-Station-Id = "{c.caller_id}", '
        f'Called-Station-Id = "004930123456", Acct-Session-Id = "{session}", '
        f'h323-call-origin = "h323-call-origin=answer"'
    )
    return f"{base}, {extra}" if extra else base


async def _cdrs(gw: Gateway, session: str) -> list[dict[str, object]]:
    rows = await gw.pool.fetch("SELECT * FROM cdrs WHERE session_id = $1", session)
    return [dict(r) for r in rows]


async def test_whole_call_is_authorized_and_billed_once(gateway: Gateway) -> None:
    c = await gateway.customer(balance=10_000_000)
    session = f"call-{c.account_id}"
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    assert code == 0 and "Access-Accept" in out, out
    # 10.00 at 0.06/min = 166 minutes, capped by max_call_s (7200 s).
    assert 'h323-credit-time = "h323-credit-time=7200"' in out, out
    assert 'h323-return-code = "h323-return-code=0"' in out and "Session-Timeout = 7200" in out

    for status, extra in (
        ("Start", ""),
        ("Interim-Update", ", Acct-Session-Time = 60"),
        ("Stop", ", Acct-Session-Time = 125"),
    ):
        code, out = await radclient(
            gateway.acct_port, "acct", _call(c, session, f"Acct-Status-Type = {status}{extra}")
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)
    # A Stop sent again (a new request, same call) bills nothing more.
    code, out = await radclient(
        gateway.acct_port,
        "acct",
        _call(c, session, "Acct-Status-Type = Stop, Acct-Session-Time = 125"),
    )
    assert code == 0 and "Accounting-Response" in out
    await gateway.drain()
    rows = await _cdrs(gateway, session)
    assert len(rows) == 1
    cdr = rows[0]
    assert cdr["duration_s"] == 125 and cdr["status"] == "answered"
    assert cdr["called"] == "4930123456" and cdr["called_dialled"] == "004930123456"
    assert list(cdr["cost_per_level_micros"]) == [180_000, 90_000]  # type: ignore[call-overload]
    balances = dict(
        await gateway.pool.fetch(
            "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])",
            [c.account_id, c.agent_id],
        )
    )
    assert balances[c.account_id] == 10_000_000 - 180_000
    assert balances[c.agent_id] == 10**9 - 90_000


async def test_a_chain_in_two_currencies_pays_each_level_in_its_own(gateway: Gateway) -> None:
    """A EUR customer under a USD wholesale agent: the switch is told EUR, the customer
    pays its EUR rate and the agent its USD rate, no exchange rate involved."""
    c = await gateway.customer(balance=1_000_000, currencies=("EUR", "USD"))
    session = f"fx-{c.account_id}"
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    assert code == 0 and "Access-Accept" in out, out
    assert 'h323-currency = "h323-currency=EUR"' in out, out
    assert 'h323-credit-time = "h323-credit-time=960"' in out, out  # 1.00 EUR at 0.06/min
    for status, extra in (("Start", ""), ("Stop", ", Acct-Session-Time = 125")):
        code, out = await radclient(
            gateway.acct_port, "acct", _call(c, session, f"Acct-Status-Type = {status}{extra}")
        )
        assert code == 0 and "Accounting-Response" in out, (status, out)
    await gateway.drain()
    [cdr] = await _cdrs(gateway, session)
    assert list(cdr["cost_per_level_micros"]) == [180_000, 90_000]  # type: ignore[call-overload]
    rows = await gateway.pool.fetch(
        "SELECT a.id, a.balance_micros, a.currency FROM accounts a WHERE a.id = ANY($1::bigint[])",
        [c.account_id, c.agent_id],
    )
    got = {r["id"]: (r["balance_micros"], r["currency"]) for r in rows}
    assert got == {
        c.account_id: (1_000_000 - 180_000, "EUR"),
        c.agent_id: (10**9 - 90_000, "USD"),
    }


async def test_retransmitted_stop_gets_the_same_reply_and_one_cdr(gateway: Gateway) -> None:
    c = await gateway.customer()
    session = f"retx-{c.account_id}"
    attrs = [
        ("User-Name", c.extension),
        ("Calling-Station-Id", c.caller_id),
        ("Called-Station-Id", "4930123456"),
        ("Acct-Session-Id", session),
        ("Acct-Status-Type", 2),
        ("Acct-Session-Time", 61),
    ]
    datagram = encode_request(PacketCode.ACCOUNTING_REQUEST, 42, attrs, SECRET.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        replies = []
        for _ in range(5):
            sock.sendto(datagram, ("127.0.0.1", gateway.acct_port))
            data = await asyncio.to_thread(sock.recv, 4096)
            replies.append(data)
    assert len(set(replies)) == 1
    reply = decode_reply(replies[0])
    assert reply.code == PacketCode.ACCOUNTING_RESPONSE
    assert verify_reply(reply, datagram[4:20], SECRET.encode())
    await gateway.drain()
    rows = await _cdrs(gateway, session)
    assert len(rows) == 1 and rows[0]["cost_micros"] == 120_000  # Stop without Start: billed


async def test_refusals_carry_the_return_code(gateway: Gateway) -> None:
    broke = await gateway.customer(balance=0)
    _code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(broke, "z", f'User-Password = "{broke.password}", Message-Authenticator = 0x00'),
    )
    assert "Access-Reject" in out, out
    assert 'h323-return-code = "h323-return-code=4"' in out  # zero balance
    assert 'Reply-Message = "Zero balance"' in out
    c = await gateway.customer()
    _code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, "p", 'User-Password = "wrong", Message-Authenticator = 0x00'),
    )
    assert "Access-Reject" in out and "h323-return-code=2" in out, out


async def test_forged_or_unsigned_requests_get_no_reply(gateway: Gateway) -> None:
    c = await gateway.customer()
    # Wrong secret: the Message-Authenticator does not verify.
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, "w", f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
        secret="not-the-secret",
        tries=1,
        timeout_s=1,
    )
    assert code != 0 and "Received" not in out, out
    # No Message-Authenticator on an Access-Request: dropped (BlastRADIUS).
    code, out = await radclient(
        gateway.auth_port,
        "auth",
        _call(c, "m", f'User-Password = "{c.password}"'),
        tries=1,
        timeout_s=1,
    )
    assert code != 0 and "Received" not in out, out
    # Accounting with a wrong secret: the request authenticator does not verify.
    code, out = await radclient(
        gateway.acct_port,
        "acct",
        _call(c, "a", "Acct-Status-Type = Start"),
        secret="not-the-secret",
        tries=1,
        timeout_s=1,
    )
    assert code != 0 and "Received" not in out, out


async def test_unknown_nas_is_ignored(gateway: Gateway) -> None:
    c = await gateway.customer()
    datagram = encode_request(
        PacketCode.ACCESS_REQUEST,
        1,
        [
            ("User-Name", c.extension),
            ("User-Password", c.password),
            ("Called-Station-Id", "4930123456"),
        ],
        SECRET.encode(),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.9", 0))  # no client is configured for this address
        sock.settimeout(1.0)
        sock.sendto(datagram, ("127.0.0.1", gateway.auth_port))
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(sock.recv, 4096)


async def test_kamailio_style_request_without_password(gateway: Gateway) -> None:
    """misc_radius: the caller in User-Name, no password, no Message-Authenticator."""
    c = await gateway.customer(balance=600_000)
    datagram = encode_request(
        PacketCode.ACCESS_REQUEST,
        7,
        [
            ("User-Name", c.caller_id),
            ("Called-Station-Id", "004930123456"),
            ("Acct-Session-Id", f"kam-{c.account_id}"),
        ],
        SECRET.encode(),
        add_message_authenticator=False,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.3", 0))
        sock.settimeout(5)
        sock.sendto(datagram, ("127.0.0.1", gateway.auth_port))
        data = await asyncio.to_thread(sock.recv, 4096)
    reply = decode_reply(data)
    assert reply.code == PacketCode.ACCESS_ACCEPT
    assert reply.get("Session-Timeout") == 600  # 0.60 at 0.06/min; caller-ID identified
    assert "h323-credit-time" not in reply  # standard profile


async def test_accounting_on_ends_the_nas_calls(gateway: Gateway) -> None:
    c = await gateway.customer()
    session = f"on-{c.account_id}"
    await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    await radclient(gateway.acct_port, "acct", _call(c, session, "Acct-Status-Type = Start"))
    code, out = await radclient(
        gateway.acct_port, "acct", "Acct-Status-Type = Accounting-On, NAS-IP-Address = 127.0.0.1"
    )
    assert code == 0 and "Accounting-Response" in out
    await gateway.drain()
    rows = await _cdrs(gateway, session)
    assert len(rows) == 1
    # The gateway's own reason: no Q.850 value, kept as written.
    assert (rows[0]["disconnect_cause"], rows[0]["disconnect_cause_raw"]) == (None, "nas-restart")


async def test_failed_call_leaves_a_zero_cost_cdr(gateway: Gateway) -> None:
    c = await gateway.customer()
    session = f"fail-{c.account_id}"
    await radclient(
        gateway.auth_port,
        "auth",
        _call(c, session, f'User-Password = "{c.password}", Message-Authenticator = 0x00'),
    )
    code, out = await radclient(
        gateway.acct_port,
        "acct",
        _call(
            c,
            session,
            "Acct-Status-Type = Stop, Acct-Session-Time = 0, "
            'h323-disconnect-cause = "h323-disconnect-cause=11"',
        ),
    )
    assert code == 0 and "Accounting-Response" in out
    # An Interim after the Stop changes nothing and is acknowledged.
    code, out = await radclient(
        gateway.acct_port,
        "acct",
        _call(c, session, "Acct-Status-Type = Interim-Update, Acct-Session-Time = 30"),
    )
    assert code == 0 and "Accounting-Response" in out
    await gateway.drain()
    rows = await _cdrs(gateway, session)
    assert len(rows) == 1
    # Cisco's hex 11 is Q.850 17 (user busy); the raw value is kept as sent.
    row = rows[0]
    assert (row["status"], row["cost_micros"]) == ("failed", 0)
    assert (row["disconnect_cause"], row["disconnect_cause_raw"]) == (17, "11")
    balance = await gateway.pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", c.account_id
    )
    assert balance == 10_000_000


async def test_only_the_configured_leg_is_billed(gateway: Gateway) -> None:
    c = await gateway.customer()
    session = f"legs-{c.account_id}"
    for origin in ("answer", "originate"):
        attrs = (
            f'User-Name = "{c.extension}", Calling-Station-Id = "{c.caller_id}", '
            f'Called-Station-Id = "4930123456", Acct-Session-Id = "{session}", '
            f'h323-call-origin = "h323-call-origin={origin}", '
            "Acct-Status-Type = Stop, Acct-Session-Time = 61"
        )
        code, out = await radclient(gateway.acct_port, "acct", attrs)
        assert code == 0 and "Accounting-Response" in out
    await gateway.drain()
    rows = await _cdrs(gateway, session)
    # bill_leg = any (the default): both legs are calls of their own.
    assert sorted(r["leg"] for r in rows) == ["answer", "originate"]


async def test_exhausted_credit_sends_a_disconnect_request(gateway: Gateway) -> None:
    from gateway.core import metrics
    from gateway.radius.auth import verify_accounting_request
    from gateway.radius.codec import decode_request, encode_reply
    from tests.e2e.conftest import COA_PORT

    c = await gateway.customer(balance=60_000)  # one minute
    session = f"coa-{c.account_id}"
    secret = SECRET.encode()
    base = [
        ("User-Name", c.extension),
        ("Calling-Station-Id", c.caller_id),
        ("Called-Station-Id", "4930123456"),
        ("Acct-Session-Id", session),
    ]
    before = metrics.DISCONNECTS.labels("coa-nas", "ack")._value.get()
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coa,
    ):
        nas.bind(("127.0.0.4", 0))
        nas.settimeout(5)
        coa.bind(("127.0.0.4", COA_PORT))
        coa.settimeout(5)

        async def ask(code: PacketCode, attrs: list[tuple[str, object]], ident: int) -> object:
            nas.sendto(
                encode_request(code, ident, attrs, secret),  # type: ignore[arg-type]
                ("127.0.0.1", gateway.auth_port if code == 1 else gateway.acct_port),
            )
            return decode_reply(await asyncio.to_thread(nas.recv, 4096))

        accept = await ask(PacketCode.ACCESS_REQUEST, [*base, ("User-Password", c.password)], 1)
        assert accept.get("Session-Timeout") == 60  # type: ignore[attr-defined]
        await ask(PacketCode.ACCOUNTING_REQUEST, [*base, ("Acct-Status-Type", 1)], 2)
        await ask(
            PacketCode.ACCOUNTING_REQUEST,
            [*base, ("Acct-Status-Type", 3), ("Acct-Session-Time", 60)],
            3,
        )
        data, where = await asyncio.to_thread(coa.recvfrom, 4096)
        request = decode_request(data)
        assert request.code == PacketCode.DISCONNECT_REQUEST
        assert verify_accounting_request(request, secret)
        assert request.get("Acct-Session-Id") == session
        coa.sendto(encode_reply(request, PacketCode.DISCONNECT_ACK, [], secret), where)
        for _ in range(100):
            if metrics.DISCONNECTS.labels("coa-nas", "ack")._value.get() > before:
                break
            await asyncio.sleep(0.02)
    assert metrics.DISCONNECTS.labels("coa-nas", "ack")._value.get() == before + 1


async def _send(
    port: int, source: str, code: PacketCode, attrs: list[tuple[str, object]], **kw: object
) -> object:
    datagram = encode_request(code, 5, attrs, SECRET.encode(), **kw)  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(5)
        sock.sendto(datagram, ("127.0.0.1", port))
        return decode_reply(await asyncio.to_thread(sock.recv, 4096))


async def test_switch_that_authenticates_its_users(gateway: Gateway) -> None:
    """verify_password = false: an extension with a secret, no password sent (misc_radius)."""
    c = await gateway.customer(balance=600_000)
    reply = await _send(
        gateway.auth_port,
        "127.0.0.3",
        PacketCode.ACCESS_REQUEST,
        [
            ("User-Name", c.extension),
            ("Called-Station-Id", "4930123456"),
            ("Acct-Session-Id", f"trust-{c.account_id}"),
        ],
        add_message_authenticator=False,
    )
    assert reply.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]


async def test_failed_status_releases_and_stop_without_time_bills_from_answer(
    gateway: Gateway,
) -> None:
    c = await gateway.customer()
    base = [("User-Name", c.extension), ("Called-Station-Id", "4930123456")]
    failed, timeless = f"f15-{c.account_id}", f"nt-{c.account_id}"
    for session in (failed, timeless):
        reply = await _send(
            gateway.auth_port,
            "127.0.0.3",
            PacketCode.ACCESS_REQUEST,
            [*base, ("Acct-Session-Id", session)],
            add_message_authenticator=False,
        )
        assert reply.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]
    await _send(
        gateway.acct_port,
        "127.0.0.3",
        PacketCode.ACCOUNTING_REQUEST,
        [*base, ("Acct-Session-Id", failed), ("Acct-Status-Type", 15)],
    )
    await _send(
        gateway.acct_port,
        "127.0.0.3",
        PacketCode.ACCOUNTING_REQUEST,
        [*base, ("Acct-Session-Id", timeless), ("Acct-Status-Type", 1)],
    )
    await asyncio.sleep(1.2)
    await _send(
        gateway.acct_port,
        "127.0.0.3",
        PacketCode.ACCOUNTING_REQUEST,
        [*base, ("Acct-Session-Id", timeless), ("Acct-Status-Type", 2)],
    )
    await gateway.drain()
    failed_rows = await _cdrs(gateway, failed)
    assert [(r["status"], r["cost_micros"]) for r in failed_rows] == [("failed", 0)]
    timed = await _cdrs(gateway, timeless)
    assert len(timed) == 1 and timed[0]["duration_s"] >= 1 and timed[0]["cost_micros"] == 60_000
    held = await gateway.path.balance.pipeliner.client.hget(  # type: ignore[union-attr]
        gateway.config_keys.account(c.agent_id, c.account_id), "held"
    )
    assert held == b"0"


async def test_status_server_is_answered(gateway: Gateway) -> None:
    reply = await _send(gateway.auth_port, "127.0.0.1", PacketCode.STATUS_SERVER, [])
    assert reply.code == PacketCode.ACCESS_ACCEPT  # type: ignore[attr-defined]


async def test_status_server_on_the_accounting_port_gets_an_accounting_response(
    gateway: Gateway,
) -> None:
    """RFC 5997 section 3, as radclient's ``status`` asks it: the accounting port answers
    with Accounting-Response, and no call is touched."""
    code, out = await radclient(gateway.acct_port, "status", "Message-Authenticator = 0x00")
    assert code == 0, out
    assert "Received Accounting-Response" in out, out
    code, out = await radclient(gateway.auth_port, "status", "Message-Authenticator = 0x00")
    assert code == 0, out
    assert "Received Access-Accept" in out, out
