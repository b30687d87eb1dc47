"""RADIUS over a byte stream: TCP (RFC 6613) and TLS (RadSec, RFC 6614).

The stream counterpart of ``listener.py``, as thin: accept a connection, find its
client (by source address over TCP; by address and certificate over TLS), read
packets framed by their Length field, hand each to the same handler the UDP front
uses and write its reply on the same connection. No RADIUS logic beyond the header.

What differs from UDP, and why:
- Framing: a Length below 20 or above 4096 cannot be resynchronised, so the
  connection is closed and counted (RFC 6613 section 2.6); so is a stranger.
- Duplicates: a client never retransmits on the same connection (RFC 6613), so a
  copy is known by (identifier, authenticator) on its connection only; a copy in
  progress is dropped, an answered one gets the first reply again.
- Overload: past ``max_in_flight`` a connection is not read until room frees, rather
  than dropping: a dropped request on a stream is never retransmitted there, while
  an unread one waits in TCP's window and the client sees back-pressure.
- Drain: ``stop`` stops accepting and reading, lets the requests in flight finish
  and answers them on their connection, then closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.core import metrics
from gateway.radius.clients import Client, ClientTable
from gateway.radius.listener import HEADER_LENGTH, Endpoint, Handler
from gateway.radius.tls import TlsStream, peer_names

log = logging.getLogger(__name__)

MAX_LENGTH = 4096  # RFC 2865 section 3; RFC 6613 section 2.6 closes on anything longer
ACCOUNTING_REQUEST = 4
REPLIES_KEPT = 256  # per connection: one identifier space
ROOM_POLL_S = 0.005  # how often a connection held back by overload looks again
CLOSE_WAIT_S = 2.0  # how long a closing connection may take to flush its replies


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """One transport's listeners: what they are called and how they are bounded."""

    transport: str  # "tcp" or "tls": the metrics label
    max_connections: int
    idle_timeout_s: float
    max_in_flight: int
    handshake_timeout_s: float = 10.0


class _Refused(Exception):
    """A connection is closed before any request is read; ``reason`` is counted."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Stalled(Exception):
    """A packet's header came but not the rest of it, within the idle timeout."""


class StreamListener:
    """Every socket of one transport, with one connection bound and one client table.

    ``tls`` set: the connection must complete a TLS handshake and its certificate
    must name the client found at its address; else clients match by address.
    """

    def __init__(
        self,
        settings: StreamSettings,
        clients: ClientTable,
        handler: Handler,
        in_flight: list[int],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients  # replaced on reload; open connections keep their client
        self.handler = handler
        self.in_flight = in_flight  # shared with the UDP sockets of the front
        self.tls = tls
        self.accepting = True
        self.servers: list[asyncio.Server] = []
        self.connections: set[_Connection] = set()
        self._admitting = 0  # TLS handshakes in progress
        self._gauge = metrics.child(metrics.RADIUS_CONNECTIONS, settings.transport)

    def _count(self, result: str) -> None:
        metrics.child(metrics.RADIUS_CONNECTION_EVENTS, self.settings.transport, result).inc()

    async def listen(self, host: str, port: int, kind: str) -> Endpoint:
        """Accept on host:port (0: any free port). ``kind`` is how a Status-Server is
        answered there: ``auth`` (Access-Accept) or ``acct`` (Accounting-Response)."""

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, kind)

        server = await asyncio.start_server(
            accepted, host, port, reuse_port=True, reuse_address=True, backlog=512
        )
        self.servers.append(server)
        bound = server.sockets[0].getsockname()
        return Endpoint(bound[0], bound[1])

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str
    ) -> None:
        peer: tuple[Any, ...] = writer.get_extra_info("peername")
        try:
            client, io = await self._admit(reader, writer, peer)
        except _Refused as refused:
            if refused.reason:
                self._count(refused.reason)
            if refused.reason in ("unknown_client", "too_many", ""):
                writer.transport.abort()  # a reset: a stranger learns nothing
            else:
                writer.close()  # after the TLS alert that says why
            return
        self._count("accepted")
        connection = _Connection(self, io, writer, client, peer, kind)
        self.connections.add(connection)
        self._gauge.inc()
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            self._gauge.dec()

    async def _admit(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tuple[Any, ...]
    ) -> tuple[Client, _PlainIO | TlsStream]:
        """The client of a new connection and how to read it, or ``_Refused``."""
        if not self.accepting:
            raise _Refused("")  # stopping: nothing new is taken (not a refusal to count)
        # Handshakes in progress count: a flood of them is bounded too.
        if len(self.connections) + self._admitting >= self.settings.max_connections:
            raise _Refused("too_many")
        address = str(peer[0])
        if self.tls is None:
            client = self.clients.match(address)
            if client is None:
                raise _Refused("unknown_client")
            return client, _PlainIO(reader, writer)
        # A stranger is refused before it costs a handshake.
        if self.clients.match_tls(address, frozenset()) == "unknown_client":
            raise _Refused("unknown_client")
        io = TlsStream(self.tls, reader, writer)
        self._admitting += 1
        try:
            async with asyncio.timeout(self.settings.handshake_timeout_s):
                await io.handshake()
        except (ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:  # OSError: timeout too
            log.info(
                "radius.tls_handshake_failed", extra={"peer": address, "error": str(exc)[:200]}
            )
            raise _Refused("tls_handshake_failed") from exc
        finally:
            self._admitting -= 1
        if not self.accepting:
            raise _Refused("")  # the front began to stop during the handshake
        names = peer_names(io.ssl_object)
        found = self.clients.match_tls(address, names)
        if isinstance(found, str):
            log.warning(
                "radius.tls_identity_refused",
                extra={"peer": address, "reason": found, "names": sorted(names)[:8]},
            )
            raise _Refused(found)
        return found, io

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting and reading; answer what is in flight; close every connection."""
        self.accepting = False
        for server in self.servers:
            server.close()  # the listening sockets; open connections stay for the drain
        for connection in list(self.connections):
            connection.stop_reading(timeout_s)
        finished = [c.finished.wait() for c in self.connections]
        if finished:
            _done, late = await asyncio.wait(
                [asyncio.ensure_future(f) for f in finished], timeout=timeout_s + CLOSE_WAIT_S
            )
            if late:
                log.error(
                    "radius.stream_drain_timeout",
                    extra={"transport": self.settings.transport, "unfinished": len(late)},
                )
                for connection in list(self.connections):
                    connection.writer.transport.abort()
        self.servers.clear()

    def listening(self) -> bool:
        return bool(self.servers) and all(s.is_serving() for s in self.servers)


class _PlainIO:
    """TCP: the stream as it is (TlsStream is the TLS counterpart)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def readexactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close_notify(self) -> None:
        pass


class _Connection:
    """One accepted connection: a reading loop and a task per request."""

    def __init__(
        self,
        listener: StreamListener,
        io: _PlainIO | TlsStream,
        writer: asyncio.StreamWriter,
        client: Client,
        peer: tuple[Any, ...],
        kind: str,
    ) -> None:
        self.listener = listener
        self.io = io
        self.writer = writer
        self.client = client
        self.peer = peer
        self.kind = kind
        self.tasks: set[asyncio.Task[None]] = set()
        # (identifier, authenticator) -> reply; b"" while in progress.
        self.replies: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()
        self.finished = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        # How long requests in flight may take once reading stopped: the idle timeout
        # when the peer went, the front's drain timeout when it stops.
        self._answer_within_s = listener.settings.idle_timeout_s

    def _observe(self, data: bytes, started: float) -> None:
        if self.listener.tls is not None:  # one port for both: label by what was asked
            label = "acct" if data[0] == ACCOUNTING_REQUEST else "auth"
        else:
            label = self.kind
        metrics.child(metrics.RADIUS_LATENCY, label).observe(time.perf_counter() - started)

    async def run(self) -> None:
        self._reading = asyncio.create_task(self._read_loop())
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            if self.tasks:  # answer what was asked before the connection goes
                await asyncio.wait(list(self.tasks), timeout=self._answer_within_s)
            if not self.writer.is_closing():
                self.io.close_notify()
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, ConnectionError):
                await asyncio.wait_for(self.writer.wait_closed(), CLOSE_WAIT_S)
        finally:
            self.finished.set()

    def stop_reading(self, answer_within_s: float) -> None:
        self._answer_within_s = answer_within_s
        if self._reading is not None:
            self._reading.cancel()

    async def _read_loop(self) -> None:
        settings = self.listener.settings
        while True:
            # Back-pressure (see the module docstring). Polled: the count is shared
            # with the UDP sockets, whose requests signal nothing when they finish.
            while self.listener.in_flight[0] >= settings.max_in_flight:  # noqa: ASYNC110
                await asyncio.sleep(ROOM_POLL_S)
            try:
                data = await self._read_packet(settings.idle_timeout_s)
            except _Stalled:
                self.listener._count("idle_timeout")
                return
            except TimeoutError:  # before OSError, its base class
                if self.tasks:
                    continue  # waiting on our own answers is not idleness
                self.listener._count("idle_timeout")
                return
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return  # the peer went away (or half-closed): finish what is in flight
            if data is None:
                self.listener._count("bad_framing")
                log.warning(
                    "radius.stream_bad_framing",
                    extra={"client": self.client.name, "peer": str(self.peer[0])},
                )
                return
            self._received(data)

    async def _read_packet(self, timeout_s: float) -> bytes | None:
        """The next packet's bytes, or None when its Length cannot be a RADIUS packet."""
        async with asyncio.timeout(timeout_s):
            header = await self.io.readexactly(4)
        length = int.from_bytes(header[2:4], "big")
        if length < HEADER_LENGTH or length > MAX_LENGTH:
            return None
        # The rest of a packet whose header came is bounded too; a packet stalled half
        # way cannot be waited past (the framing would be lost), so it ends the stream.
        try:
            async with asyncio.timeout(timeout_s):
                rest = await self.io.readexactly(length - 4)
        except TimeoutError as exc:
            raise _Stalled from exc
        return header + rest

    def _received(self, data: bytes) -> None:
        key = (data[1], data[4:20])
        known = self.replies.get(key)
        if known is not None:
            outcome = "resent" if known else "in_progress"
            metrics.child(metrics.RADIUS_DUPLICATES, self.client.name, outcome).inc()
            if known:
                self._send(known)
            return
        self.replies[key] = b""
        if len(self.replies) > REPLIES_KEPT:
            self.replies.popitem(last=False)
        self.listener.in_flight[0] += 1
        task = asyncio.create_task(self._process(data, key, time.perf_counter()))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(self, data: bytes, key: tuple[int, bytes], started: float) -> None:
        reply: bytes | None = None
        try:
            reply = await self.listener.handler(data, self.client, self.peer, self.kind)
        except Exception:
            # As on UDP: a bug must not take the connection down; no reply is sent.
            log.exception("radius.handler_failed", extra={"client": self.client.name})
        finally:
            self.listener.in_flight[0] -= 1
        if reply is None:
            self.replies.pop(key, None)  # a copy may be processed anew
            return
        if key in self.replies:
            self.replies[key] = reply
        self._send(reply)
        self._observe(data, started)

    def _send(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        try:
            self.io.write(data)
        except (ssl.SSLError, OSError) as exc:  # the connection broke under the reply
            log.info(
                "radius.stream_write_failed", extra={"client": self.client.name, "error": str(exc)}
            )
