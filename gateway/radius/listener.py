"""The UDP listener: receive, hand off, send. No RADIUS logic beyond the header.

Each datagram is matched to a client by its source address (strangers dropped and
counted), checked against the reply cache (a retransmission gets the first reply),
then processed in its own task, at most ``max_in_flight`` at once: beyond that a
request is dropped and counted, and the switch retransmits later. While the front
stops (``accepting`` false) new requests are dropped and counted the same way, and
those in flight still get their replies on the open socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from gateway.core import metrics
from gateway.radius import steering
from gateway.radius.clients import Client, ClientTable
from gateway.radius.dedup import ReplyCache

log = logging.getLogger(__name__)

HEADER_LENGTH = 20
# (request, client, source address, port kind) -> the reply, or None for no reply
Handler = Callable[[bytes, Client, tuple[Any, ...], str], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class RadiusProtocol(asyncio.DatagramProtocol):
    """One bound socket (auth or accounting, one address family)."""

    def __init__(
        self,
        kind: str,
        clients: ClientTable,
        handler: Handler,
        cache: ReplyCache,
        in_flight: list[int],
        max_in_flight: int,
    ) -> None:
        self.kind = kind
        self.clients = clients
        self.handler = handler
        self.cache = cache
        self.in_flight = in_flight  # shared by the sockets of one front
        self.max_in_flight = max_in_flight
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        self._latency = metrics.child(metrics.RADIUS_LATENCY, kind)  # observed per reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not every loop's UDP transport subclasses DatagramTransport (3.11 selector).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < HEADER_LENGTH:
            metrics.RADIUS_DROPPED.labels("short").inc()
            return
        client = self.clients.match(addr[0])
        if client is None:
            metrics.RADIUS_DROPPED.labels("unknown_client").inc()
            return
        key = (addr[0], addr[1], data[1], data[4:20])
        cached = self.cache.begin(key)
        if cached is not None:
            if cached:
                metrics.RADIUS_DUPLICATES.labels(client.name, "resent").inc()
                self._send(cached, addr)
            else:
                metrics.RADIUS_DUPLICATES.labels(client.name, "in_progress").inc()
            return
        if not self.accepting or self.in_flight[0] >= self.max_in_flight:
            self.cache.finish(key, None)
            metrics.RADIUS_DROPPED.labels("overload" if self.accepting else "stopping").inc()
            return
        self.in_flight[0] += 1  # the gauge samples it (RadiusFront), not per request
        task = asyncio.create_task(self._process(data, client, addr, key, time.perf_counter()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(
        self, data: bytes, client: Client, addr: tuple[Any, ...], key: Any, started: float
    ) -> None:
        reply: bytes | None = None
        try:
            reply = await self.handler(data, client, addr, self.kind)
        except Exception:
            # A bug must not take the listener down; the request stays unanswered so
            # the switch retries, and the error is logged with its traceback.
            log.exception("radius.handler_failed", extra={"client": client.name})
        finally:
            self.in_flight[0] -= 1
            self.cache.finish(key, reply)
        if reply is not None:
            self._send(reply, addr)
            self._latency.observe(time.perf_counter() - started)

    def _send(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("radius.socket_error", extra={"kind": self.kind, "error": str(exc)})


async def open_socket(
    protocol: RadiusProtocol, host: str, port: int, steer_workers: int = 1
) -> tuple[asyncio.DatagramTransport, Endpoint]:
    """Bind ``protocol`` to host:port (port 0: any free port); return where it listens.

    With ``steer_workers`` > 1 the reuseport group is steered by request content
    (see steering.py), so one switch's traffic spreads over the workers.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        # One socket per family: the IPv4 one answers IPv4 (no mapped addresses here).
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    if steer_workers > 1:
        steering.attach(sock, steer_workers)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    bound = sock.getsockname()
    return transport, Endpoint(bound[0], bound[1])
