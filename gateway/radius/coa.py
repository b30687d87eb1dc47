"""Disconnect-Request (RFC 5176): tell a switch to end a call whose credit ran out."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import asyncio_dgram

from gateway import metrics
from gateway.radius import auth
from gateway.radius.clients import Client
from gateway.radius.codec import MalformedPacket, Packet, PacketCode, decode_reply, encode_request

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
TRIES = 3
# What identifies the call to the switch, copied from its own accounting request.
_IDENTITY = (
    "User-Name",
    "Acct-Session-Id",
    "NAS-IP-Address",
    "NAS-IPv6-Address",
    "NAS-Identifier",
    "Calling-Station-Id",
    "Called-Station-Id",
)


async def send_disconnect(client: Client, addr: tuple[Any, ...], request: Packet) -> str:
    """Ask the switch at ``addr`` (its CoA port) to end the call of ``request``.

    Returns the answer: ``ack``, ``nak`` or ``timeout`` (counted per client).
    """
    attributes = [
        (name, value)
        for name in _IDENTITY
        if name in request and (value := request.get(name)) is not None
    ]
    identifier = os.urandom(1)[0]
    datagram = encode_request(PacketCode.DISCONNECT_REQUEST, identifier, attributes, client.secret)
    answer = "timeout"
    stream = await asyncio_dgram.connect((str(addr[0]), client.coa_port))
    try:
        for _ in range(TRIES):
            await stream.send(datagram)
            try:
                data, _ = await asyncio.wait_for(stream.recv(), TIMEOUT_S)
                reply = decode_reply(data)
            except (TimeoutError, MalformedPacket):
                continue
            if reply.identifier != identifier or not auth.verify_reply(
                reply, datagram[4:20], client.secret
            ):
                continue
            answer = "ack" if reply.code == PacketCode.DISCONNECT_ACK else "nak"
            break
    finally:
        stream.close()
    metrics.DISCONNECTS.labels(client.name, answer).inc()
    log.info(
        "radius.disconnect",
        extra={"client": client.name, "answer": answer, "session": request.get("Acct-Session-Id")},
    )
    return answer


async def disconnect(client: Client, addr: tuple[Any, ...], request: Packet) -> None:
    """The process layer's hook: send when the client has a CoA port, in the background."""
    if client.coa_port:
        task = asyncio.create_task(send_disconnect(client, addr, request))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[str]] = set()
