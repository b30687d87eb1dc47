"""The SIP listener: receive, match a transaction, hand off, send. UDP and TCP.

Every message is checked against the allowed proxies (strangers dropped and
counted: answering tells a scanner a SIP server is here), parsed (malformed ones
dropped and counted, or answered 400 when they can be), and matched to a server
transaction: a retransmission gets the response already sent, an ACK ends the
INVITE transaction, a CANCEL is answered and turns a pending INVITE's answer into
487. A new INVITE is authorized in its own task, at most ``max_in_flight`` at once:
beyond that, and while stopping, it is answered 503 with Retry-After. OPTIONS and
other methods are answered at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable
from typing import cast

from gateway.core import metrics
from gateway.core.reasons import Reason
from gateway.sip import replies
from gateway.sip.message import (
    Answer,
    MalformedMessage,
    NotARequest,
    Request,
    encode_response,
    frame,
    parse,
    reply_address,
)
from gateway.sip.process import SipProcess
from gateway.sip.transactions import Transaction, Transactions, key_of

log = logging.getLogger(__name__)

Address = tuple[str, int]
SendTo = Callable[[bytes, Address], None]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_METHOD_LABELS = (
    frozenset({"INVITE", "ACK", "CANCEL", "OPTIONS", "unknown"}) | replies.KNOWN_METHODS
)


def prime_metrics() -> None:
    """Every answer an INVITE can get, and strangers dropped, at 0 before the first."""
    codes = {"100", "302", "400", *(str(code) for code, _ in replies.REFUSALS.values())}
    answers = tuple(("INVITE", code) for code in sorted(codes))
    metrics.prime_sip((*answers, ("unknown", "dropped_stranger")))


def count(method: str, outcome: str) -> None:
    """One request handled: by method (bounded set) and the code sent or what happened."""
    label = method if method in _METHOD_LABELS else "other"
    metrics.SIP_REQUESTS.labels(label, outcome).inc()


class Allowlist:
    """The proxies allowed to ask, by source address (cached, bounded)."""

    def __init__(self, networks: tuple[str, ...]) -> None:
        self.networks: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._seen: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        known = self._seen.get(address)
        if known is not None:
            return known
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        allowed = any(ip in n for n in self.networks)
        if len(self._seen) < 100_000:
            self._seen[address] = allowed
        return allowed


def to_tag(request: Request) -> str:
    """Our To tag, fixed by the transaction: an INVITE, its retransmissions and its
    CANCEL get the same one (RFC 3261 §9.2) without remembering it."""
    seed = f"{request.call_id}|{request.from_tag}|{request.top_via.branch}"
    return hashlib.blake2b(seed.encode(), digest_size=6).hexdigest()


class SipListener:
    """The transport-independent part of the front; see the module docstring."""

    def __init__(
        self,
        process: SipProcess,
        transactions: Transactions,
        allowlist: Allowlist,
        max_in_flight: int,
    ) -> None:
        self.process = process
        self.transactions = transactions
        self.allowlist = allowlist
        self.max_in_flight = max_in_flight
        self.accepting = True
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def received(self, data: bytes, source: Address, send_to: SendTo, *, reliable: bool) -> None:
        """One message from ``source``; answers go out through ``send_to``."""
        if not data.strip(b"\r\n"):
            return  # a keep-alive
        if not self.allowlist.allows(source[0]):
            count("unknown", "dropped_stranger")
            return
        try:
            request = parse(data)
        except NotARequest:
            count("unknown", "dropped_response")
            return
        except MalformedMessage as exc:
            self._malformed(exc, source, send_to, reliable)
            return
        address = source if reliable else reply_address(request, source)

        def send(payload: bytes) -> None:
            send_to(payload, address)

        if request.method == "ACK":
            self._ack(request)
        elif request.method == "CANCEL":
            self._cancel(request, source, send, reliable)
        else:
            self._request(request, source, send, reliable)

    def _malformed(
        self, exc: MalformedMessage, source: Address, send_to: SendTo, reliable: bool
    ) -> None:
        request = exc.answerable
        if request is None or request.method == "ACK":
            count("unknown", f"dropped_{exc.reason}")
            return
        address = source if reliable else reply_address(request, source)
        answer = replies.bad_request(exc.reason)
        send_to(encode_response(request, answer, to_tag=to_tag(request), source=source), address)
        count(request.method, "400")

    def _ack(self, request: Request) -> None:
        txn = self.transactions.find(key_of(request))
        if txn is not None:
            self.transactions.ack(txn)
        count("ACK", "absorbed")

    def _cancel(
        self, request: Request, source: Address, send: Callable[[bytes], None], reliable: bool
    ) -> None:
        key = key_of(request)
        own = self.transactions.find(key)
        if own is not None:
            self._resend(own, request.method, send)
            return
        invite = self.transactions.find(key_of(request, "INVITE"))
        txn = self.transactions.begin(key, send, reliable=reliable)
        if invite is None:
            self._final(request, txn, replies.NO_TRANSACTION, source)
            return
        if invite.pending:
            invite.cancelled = True  # its answer becomes 487 (§9.2)
        self._final(request, txn, replies.CANCELLED_OK, source)

    def _request(
        self, request: Request, source: Address, send: Callable[[bytes], None], reliable: bool
    ) -> None:
        key = key_of(request)
        txn = self.transactions.find(key)
        if txn is not None:
            if txn.acked:
                count(request.method, "absorbed")  # confirmed (§17.2.1): nothing to resend
            elif txn.pending and request.method == "INVITE":
                trying = replies.TRYING
                send(encode_response(request, trying, to_tag="", source=source))
                count("INVITE", "100")
            else:
                self._resend(txn, request.method, send)
            return
        txn = self.transactions.begin(key, send, reliable=reliable)
        if request.method == "INVITE":
            self._invite(request, txn, source)
        elif request.method == "OPTIONS":
            self._final(request, txn, replies.options(), source)
        else:
            self._final(request, txn, replies.not_allowed(request.method), source)

    def _invite(self, request: Request, txn: Transaction, source: Address) -> None:
        if not self.accepting or self.in_flight >= self.max_in_flight:
            answer = replies.refusal(Reason.OVERLOAD, self.process.settings.retry_after_s)
            self._final(request, txn, answer, source)
            return
        self.in_flight += 1
        task = asyncio.create_task(self._authorize(request, txn, source))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _authorize(self, request: Request, txn: Transaction, source: Address) -> None:
        try:
            answer = await self.process.invite(request, source[0])
        except Exception:
            # A bug must not take the listener down, nor leave the proxy waiting.
            log.exception("sip.invite_failed", extra={"call_id": request.call_id})
            answer = Answer(500, "Server Internal Error")
        finally:
            self.in_flight -= 1
        if txn.cancelled:
            answer = replies.TERMINATED
        self._final(request, txn, answer, source)

    def _final(self, request: Request, txn: Transaction, answer: Answer, source: Address) -> None:
        data = encode_response(request, answer, to_tag=to_tag(request), source=source)
        self.transactions.complete(txn, data, retransmit=request.method == "INVITE")
        count(request.method, str(answer.code))

    def _resend(self, txn: Transaction, method: str, send: Callable[[bytes], None]) -> None:
        # To where this copy came from: the client may have moved (NAT rebinding).
        if txn.final is not None:
            send(txn.final)
            count(method, "resent")


# -- transports -------------------------------------------------------------------------


class SipDatagram(asyncio.DatagramProtocol):
    """One UDP socket: each datagram is one message."""

    def __init__(self, listener: SipListener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not every loop's UDP transport subclasses DatagramTransport (3.11 selector).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        self.listener.received(data, source, self._send, reliable=False)

    def _send(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.warning("sip.socket_error", extra={"transport": "udp", "error": str(exc)})


class SipStream(asyncio.Protocol):
    """One TCP connection: messages framed by Content-Length, answered on it."""

    def __init__(self, listener: SipListener, connections: set[SipStream]) -> None:
        self.listener = listener
        self.connections = connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            messages, pings = frame(self.buffer)
        except MalformedMessage as exc:
            # A stream that cannot be framed cannot be resynchronized: close it.
            count("unknown", f"dropped_{exc.reason}")
            self.close()
            return
        for _ in range(pings):
            self._send(b"\r\n", self.peer)  # RFC 5626 pong
        for message in messages:
            self.listener.received(message, self.peer, self._send, reliable=True)

    def _send(self, data: bytes, _addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
