"""Disconnect-Request (RFC 5176): tell a switch to end a call whose credit ran out."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import asyncio_dgram

from gateway.core import metrics
from gateway.radius import auth
from gateway.radius.clients import Client
from gateway.radius.codec import MalformedPacket, Packet, PacketCode, decode_reply, encode_request

log = logging.getLogger(__name__)

Attributes = list[tuple[str, str | int]]

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
# A Cisco gateway finds the call of a Packet of Disconnect by its conference id and
# leg; without them it NAKs. Copied as the switch wrote them (``h323-conf-id=...``
# inside vendor 9), so the request reads back exactly as the switch's own VSA.
_CISCO_IDENTITY = ("h323-conf-id", "h323-call-origin")
_PROFILE_IDENTITY: dict[str, tuple[str, ...]] = {"cisco": _IDENTITY + _CISCO_IDENTITY}


def identity(request: Packet, profile: str = "standard") -> list[tuple[str, str | int]]:
    """The attributes of ``request`` that identify its call to a switch of ``profile``."""
    return [
        (name, value)
        for name in _PROFILE_IDENTITY.get(profile, _IDENTITY)
        if name in request and isinstance(value := request.get(name), str | int)
    ]


def reach(client: Client, addr: tuple[Any, ...], request: Packet) -> str:
    """What the slice keeper needs to hang the call up later, kept with the call: the
    switch, where it sent from, and the call's identity; '' when it has no CoA port."""
    if not client.coa_port:
        return ""
    return json.dumps(
        [client.name, str(addr[0]), identity(request, client.profile)], separators=(",", ":")
    )


def parse_reach(text: str) -> tuple[str, str, list[tuple[str, str | int]]]:
    """``reach``'s (client name, switch address, identity); ValueError when unreadable."""
    try:
        name, address, attributes = json.loads(text)
        return str(name), str(address), [(str(n), v) for n, v in attributes]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unreadable hang-up target {text!r}: {exc}") from exc


async def _ask(client: Client, address: str, code: PacketCode, attributes: Attributes) -> str:
    """Send one RFC 5176 request to the switch's CoA port: ``ack``, ``nak`` or ``timeout``."""
    identifier = os.urandom(1)[0]
    datagram = encode_request(code, identifier, attributes, client.secret)
    acks = {PacketCode.DISCONNECT_REQUEST: PacketCode.DISCONNECT_ACK}
    ack = acks.get(code, PacketCode.COA_ACK)
    answer = "timeout"
    stream = await asyncio_dgram.connect((address, client.coa_port))
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
            answer = "ack" if reply.code == ack else "nak"
            break
    finally:
        stream.close()
    return answer


async def send_disconnect(client: Client, address: str, attributes: Attributes) -> str:
    """Ask the switch at ``address`` (its CoA port) to end the call ``attributes`` name.

    Returns the answer: ``ack``, ``nak`` or ``timeout`` (counted per client).
    """
    answer = await _ask(client, address, PacketCode.DISCONNECT_REQUEST, attributes)
    metrics.DISCONNECTS.labels(client.name, answer).inc()
    log.info(
        "radius.disconnect",
        extra={
            "client": client.name,
            "answer": answer,
            "session": dict(attributes).get("Acct-Session-Id"),
        },
    )
    return answer


async def send_session_timeout(
    client: Client, address: str, attributes: Attributes, session_timeout_s: int
) -> str:
    """Ask the switch to end the call ``attributes`` name ``session_timeout_s`` after
    its answer (a CoA-Request, RFC 5176, carrying Session-Timeout): ``ack``, ``nak``
    or ``timeout`` (counted per client)."""
    request = [*attributes, ("Session-Timeout", session_timeout_s)]
    answer = await _ask(client, address, PacketCode.COA_REQUEST, request)
    metrics.COA_REQUESTS.labels(client.name, answer).inc()
    log.info(
        "radius.coa",
        extra={
            "client": client.name,
            "answer": answer,
            "session": dict(attributes).get("Acct-Session-Id"),
            "session_timeout_s": session_timeout_s,
        },
    )
    return answer


def disconnect_later(client: Client, address: str, attributes: Attributes) -> None:
    """Send a Disconnect-Request in the background when the client has a CoA port."""
    if client.coa_port:
        task = asyncio.create_task(send_disconnect(client, address, attributes))
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[str]] = set()
