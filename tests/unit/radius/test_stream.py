"""RADIUS over TLS (RFC 6614) and TCP (RFC 6613) through the RADIUS front, with the
standard library's ssl as the switch: who is let in, how packets are framed, how
Status-Server is answered, and how the front drains."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from gateway.config import RadiusClientConfig, RadiusConfig, RadiusTcpConfig, RadiusTlsConfig
from gateway.core import metrics
from gateway.radius.auth import verify_reply
from gateway.radius.clients import Client, ClientTable
from gateway.radius.codec import PacketCode, decode_reply, decode_request, encode_reply
from gateway.radius.codec import encode_request as encode
from gateway.radius.server import RadiusFront
from tests.tlscerts import Certs, Pair, make_certs

UDP_SECRET = b"udp-secret"
RADSEC = b"radsec"

Handler = Callable[[bytes, Client, tuple[Any, ...], str], Awaitable[bytes | None]]


_OPEN: list[asyncio.StreamWriter] = []  # this test's connections, closed after it


@pytest.fixture(autouse=True)
async def _close_connections() -> AsyncIterator[None]:
    _OPEN.clear()
    yield
    for writer in _OPEN:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)
    _OPEN.clear()


async def connect_tcp(
    front: RadiusFront, port: str, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", front.port(port), local_addr=(source, 0)), 5
    )
    _OPEN.append(writer)
    return reader, writer


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("radsec"))


def radius_config(certs: Certs, **tls: Any) -> RadiusConfig:
    return RadiusConfig(
        bind=("127.0.0.1",),
        auth_port=0,
        acct_port=0,
        tls=RadiusTlsConfig(
            enabled=True,
            bind=("127.0.0.1",),
            port=0,
            cert_file=str(certs.server.cert),
            key_file=str(certs.server.key),
            ca_file=str(certs.ca),
            **tls,
        ),
        tcp=RadiusTcpConfig(enabled=True, bind=("127.0.0.1",), auth_port=0, acct_port=0),
        clients=(
            # Over TLS only from 127.0.0.1 with a certificate naming "switch-1".
            RadiusClientConfig(
                name="sw-tls",
                address="127.0.0.1",
                secret=UDP_SECRET.decode(),
                tls_identity="switch-1",
            ),
        ),
    )


@contextlib.asynccontextmanager
async def front_running(
    config: RadiusConfig, handler: Handler | None = None
) -> AsyncIterator[RadiusFront]:
    front = RadiusFront(config, SimpleNamespace(), drain_timeout_s=5.0)  # type: ignore[arg-type]
    if handler is not None:
        front.process.handle = handler  # type: ignore[method-assign]
    await front.start()
    try:
        yield front
    finally:
        await front.stop()


def tls_client(certs: Certs, pair: Pair) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(pair.cert), str(pair.key))
    return context


async def connect_tls(
    front: RadiusFront, context: ssl.SSLContext, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            front.port("tls"),
            ssl=context,
            server_hostname="localhost",
            local_addr=(source, 0),
        ),
        5,
    )
    _OPEN.append(writer)
    return reader, writer


async def read_packet(reader: asyncio.StreamReader) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(4), 5)
    return header + await asyncio.wait_for(
        reader.readexactly(int.from_bytes(header[2:4], "big") - 4), 5
    )


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the gateway closed the connection (EOF, reset or a TLS alert) within 5 s."""
    try:
        data = await asyncio.wait_for(reader.read(100), 5)
    except (ConnectionError, ssl.SSLError):
        return True
    return data == b""


def count(result: str, transport: str = "tls") -> float:
    value: float = metrics.RADIUS_CONNECTION_EVENTS.labels(transport, result)._value.get()
    return value


async def accept_every_access(
    data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
) -> bytes | None:
    """Access-Accept carrying the client's name (or Accounting-Response): shows who
    the front matched and with which secret it signs (the reply only verifies with it)."""
    request = decode_request(data)
    if request.code == PacketCode.ACCOUNTING_REQUEST:
        return encode_reply(request, PacketCode.ACCOUNTING_RESPONSE, [], client.secret)
    return encode_reply(
        request, PacketCode.ACCESS_ACCEPT, [("Reply-Message", client.name)], client.secret
    )


def access_request(identifier: int, secret: bytes) -> bytes:
    return encode(
        PacketCode.ACCESS_REQUEST,
        identifier,
        [("User-Name", "alice")],
        secret,
        add_message_authenticator=True,
    )


def status_server(identifier: int, secret: bytes) -> bytes:
    return encode(PacketCode.STATUS_SERVER, identifier, [], secret, add_message_authenticator=True)


async def test_a_good_switch_is_answered_over_tls_with_the_radsec_secret(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        accepted = count("accepted")
        reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-1")))
        request = access_request(7, RADSEC)
        writer.write(request)
        reply = decode_reply(await read_packet(reader))
        assert reply.code == PacketCode.ACCESS_ACCEPT and reply.identifier == 7
        assert verify_reply(reply, request[4:20], RADSEC, require_message_authenticator=True)
        assert reply.get("Reply-Message") == "sw-tls"
        assert count("accepted") == accepted + 1
        assert metrics.RADIUS_CONNECTIONS.labels("tls")._value.get() >= 1
        # The same connection carries accounting too (RFC 6614: one port for both).
        account = encode(PacketCode.ACCOUNTING_REQUEST, 8, [("Acct-Status-Type", 1)], RADSEC)
        writer.write(account)
        assert decode_reply(await read_packet(reader)).code == PacketCode.ACCOUNTING_RESPONSE
        writer.close()


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        failed = count("tls_handshake_failed")
        stranger = tls_client(certs, certs.client("switch-1", untrusted=True))
        try:
            reader, writer = await connect_tls(front, stranger)
        except (ConnectionError, ssl.SSLError):
            pass  # TLS 1.2: refused inside the handshake
        else:  # TLS 1.3: the client finishes first, then hears the alert
            writer.write(access_request(1, RADSEC))
            assert await closed(reader)
        await _until(lambda: count("tls_handshake_failed") == failed + 1)


async def test_a_trusted_certificate_naming_another_switch_is_refused(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        mismatched = count("identity_mismatch")
        reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-2")))
        writer.write(access_request(1, RADSEC))
        assert await closed(reader)
        assert count("identity_mismatch") == mismatched + 1


async def test_the_right_certificate_from_another_address_is_refused(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        unknown = count("unknown_client")
        context = tls_client(certs, certs.client("switch-1"))
        # Refused before the handshake: the connection is reset, no certificate asked.
        with pytest.raises((ConnectionError, ssl.SSLError)):
            reader, writer = await connect_tls(front, context, source="127.0.0.5")
            writer.write(access_request(1, RADSEC))
            if await closed(reader):
                raise ConnectionResetError
        assert count("unknown_client") == unknown + 1


@pytest.mark.parametrize("length", [19, 4097, 0])
async def test_a_length_outside_20_to_4096_closes_the_connection(certs: Certs, length: int) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        bad = count("bad_framing")
        reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-1")))
        writer.write(bytes([1, 9]) + length.to_bytes(2, "big") + os.urandom(16))
        assert await closed(reader)
        assert count("bad_framing") == bad + 1


async def test_status_server_is_answered_per_port(certs: Certs) -> None:
    """RFC 5997 with the real request handler: Access-Accept on TLS (auth and
    accounting on one port) and on the TCP auth port, Accounting-Response on TCP acct."""
    async with front_running(radius_config(certs)) as front:
        alive = metrics.RADIUS_REQUESTS.labels("status", "alive", "sw-tls")._value.get()
        reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-1")))
        writer.write(status_server(3, RADSEC))
        assert decode_reply(await read_packet(reader)).code == PacketCode.ACCESS_ACCEPT
        writer.close()
        for port, code in (
            ("tcp-auth", PacketCode.ACCESS_ACCEPT),
            ("tcp-acct", PacketCode.ACCOUNTING_RESPONSE),
        ):
            reader, writer = await connect_tcp(front, port)
            request = status_server(4, UDP_SECRET)  # TCP: the client's own secret
            writer.write(request)
            reply = decode_reply(await read_packet(reader))
            assert reply.code == code, port
            assert verify_reply(
                reply, request[4:20], UDP_SECRET, request_code=PacketCode.STATUS_SERVER
            )
            writer.close()
        after = metrics.RADIUS_REQUESTS.labels("status", "alive", "sw-tls")._value.get()
        assert after == alive + 3


async def test_tcp_refuses_a_stranger_by_address(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        unknown = count("unknown_client", "tcp")
        reader, writer = await connect_tcp(front, "tcp-auth", source="127.0.0.6")
        writer.write(access_request(1, UDP_SECRET))
        assert await closed(reader)
        assert count("unknown_client", "tcp") == unknown + 1


async def test_a_copy_on_the_connection_is_processed_once_and_answered_again(
    certs: Certs,
) -> None:
    release = asyncio.Event()
    processed: list[int] = []

    async def slow(
        data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
    ) -> bytes | None:
        processed.append(data[1])
        await release.wait()
        return await accept_every_access(data, client, addr, port)

    async with front_running(radius_config(certs), slow) as front:
        reader, writer = await connect_tcp(front, "tcp-auth")
        request = access_request(5, UDP_SECRET)
        writer.write(request + request)  # the copy arrives while the first is in progress
        await _until(lambda: processed == [5])
        release.set()
        first = await read_packet(reader)
        writer.write(request)  # answered: the copy gets the same reply, not processed
        assert await read_packet(reader) == first
        assert processed == [5]
        writer.close()


async def test_drain_answers_requests_in_flight_then_closes(certs: Certs) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(
        data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
    ) -> bytes | None:
        started.set()
        await release.wait()
        return await accept_every_access(data, client, addr, port)

    front = RadiusFront(radius_config(certs), SimpleNamespace(), drain_timeout_s=5.0)  # type: ignore[arg-type]
    front.process.handle = slow  # type: ignore[method-assign]
    await front.start()
    reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-1")))
    writer.write(access_request(9, RADSEC))
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(front.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done()  # waiting for the request in flight
    with pytest.raises(OSError):  # no longer listening
        await connect_tcp(front, "tls")
    release.set()
    reply = decode_reply(await read_packet(reader))
    assert reply.code == PacketCode.ACCESS_ACCEPT and reply.identifier == 9
    assert await closed(reader)
    await asyncio.wait_for(stopping, 10)
    assert not front.listening()


async def test_connections_beyond_the_bound_are_refused(certs: Certs) -> None:
    config = radius_config(certs)
    tcp = RadiusTcpConfig(
        enabled=True, bind=("127.0.0.1",), auth_port=0, acct_port=0, max_connections=1
    )
    async with front_running(_replace(config, tcp=tcp), accept_every_access) as front:
        too_many = count("too_many", "tcp")
        await connect_tcp(front, "tcp-auth")
        await _until(lambda: metrics.RADIUS_CONNECTIONS.labels("tcp")._value.get() >= 1)
        reader, _writer = await connect_tcp(front, "tcp-acct")
        assert await closed(reader)
        assert count("too_many", "tcp") == too_many + 1


async def test_an_idle_connection_is_closed(certs: Certs) -> None:
    config = radius_config(certs, idle_timeout_s=1.0)
    async with front_running(config, accept_every_access) as front:
        idle = count("idle_timeout")
        reader, writer = await connect_tls(front, tls_client(certs, certs.client("switch-1")))
        writer.write(status_server(1, RADSEC))
        await read_packet(reader)  # a request resets the clock
        assert await closed(reader)
        assert count("idle_timeout") == idle + 1


async def test_a_packet_stalled_half_way_ends_the_connection(certs: Certs) -> None:
    config = radius_config(certs)
    tcp = dataclasses.replace(config.tcp, idle_timeout_s=1.0)
    async with front_running(_replace(config, tcp=tcp), accept_every_access) as front:
        idle = count("idle_timeout", "tcp")
        reader, writer = await connect_tcp(front, "tcp-auth")
        writer.write(access_request(1, UDP_SECRET)[:30])  # the header says more is coming
        assert await closed(reader)
        assert count("idle_timeout", "tcp") == idle + 1


async def test_past_max_in_flight_a_connection_is_not_read_until_room_frees(
    certs: Certs,
) -> None:
    release = asyncio.Event()
    processed: list[int] = []

    async def slow(
        data: bytes, client: Client, addr: tuple[Any, ...], port: str = "auth"
    ) -> bytes | None:
        processed.append(data[1])
        await release.wait()
        return await accept_every_access(data, client, addr, port)

    config = _replace(radius_config(certs), max_in_flight=1)
    async with front_running(config, slow) as front:
        reader, writer = await connect_tcp(front, "tcp-auth")
        writer.write(access_request(1, UDP_SECRET) + access_request(2, UDP_SECRET))
        await _until(lambda: processed == [1])
        await asyncio.sleep(0.2)
        assert processed == [1]  # the second waits unread: nothing dropped, nothing extra
        release.set()
        answered = {decode_reply(await read_packet(reader)).identifier for _ in range(2)}
        assert answered == {1, 2} and processed == [1, 2]


async def test_a_reload_reaches_new_connections_and_spares_open_ones(certs: Certs) -> None:
    async with front_running(radius_config(certs), accept_every_access) as front:
        context = tls_client(certs, certs.client("switch-1"))
        reader, writer = await connect_tls(front, context)
        writer.write(access_request(1, RADSEC))  # answered: the gateway admitted it
        assert decode_reply(await read_packet(reader)).get("Reply-Message") == "sw-tls"
        renamed = RadiusClientConfig(
            name="sw-renamed", address="127.0.0.1", secret="x", tls_identity="switch-9"
        )
        front.replace_clients(ClientTable.from_config((renamed,)))
        writer.write(access_request(2, RADSEC))  # open: still the client it matched
        assert decode_reply(await read_packet(reader)).get("Reply-Message") == "sw-tls"
        mismatched = count("identity_mismatch")
        reader, writer = await connect_tls(front, context)  # new: the new table decides
        writer.write(access_request(2, RADSEC))
        assert await closed(reader)
        assert count("identity_mismatch") == mismatched + 1


def _replace(config: RadiusConfig, **changes: Any) -> RadiusConfig:
    return dataclasses.replace(config, **changes)


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition()


def test_the_front_names_a_missing_certificate(tmp_path: Path, certs: Certs) -> None:
    config = radius_config(certs)
    tls = RadiusTlsConfig(
        enabled=True,
        cert_file=str(tmp_path / "nope.pem"),
        key_file=str(certs.server.key),
        ca_file=str(certs.ca),
    )
    from gateway.radius.tls import server_context

    with pytest.raises(OSError, match="cert_file"):
        server_context(_replace(config, tls=tls).tls)


def test_tls_on_uvloop_the_loop_the_gateway_runs(certs: Certs) -> None:
    """The same exchanges on uvloop (``gateway run``'s loop), whose start_tls and TLS
    transport are its own code, not asyncio's."""

    async def exchanges() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await test_a_good_switch_is_answered_over_tls_with_the_radsec_secret(certs)
        await test_a_certificate_from_another_ca_is_refused_in_the_handshake(certs)
        await test_a_length_outside_20_to_4096_closes_the_connection(certs, 4097)
        await test_drain_answers_requests_in_flight_then_closes(certs)
        for writer in _OPEN:
            writer.close()
        _OPEN.clear()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(exchanges())
