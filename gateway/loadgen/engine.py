"""The send/receive loop: calls started at a target rate, each request retransmitted
as a switch does, replies matched by (socket, identifier).

One thread on ``select.epoll`` and non-blocking connected UDP sockets: ``sockets``
towards the authorization port and as many towards the accounting port, so
SO_REUSEPORT spreads them over the gateway's workers. A call has at most one
request in flight; its datagrams were built before the clock started with the
identifier predicted for them (call n: socket n mod K, identifier n div K mod 256),
so the hot path only sends bytes. In the authorization-only modes a call is its
Access-Request alone (``MODES``). When that identifier is still busy (a long stall)
the datagram is re-signed for a free one; when every identifier is busy the call
waits, and the wait is counted.

Timers need no heap: every retransmission timeout has the same length, and so has
every pause between a call's accounting requests, so each is a FIFO queue whose
deadlines only grow. An answered request's timer is left in the queue and ignored
when it comes up (its generation moved on).
"""

from __future__ import annotations

import math
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.loadgen.packets import RequestBuilder, reply_matches, resign
from gateway.loadgen.plan import CallSpec
from gateway.loadgen.stats import (
    AUTH,
    INTERIM,
    START,
    STOP,
    Counters,
    LatencyStats,
    Snapshot,
    progress_line,
)
from gateway.radius.codec import MalformedPacket, decode_reply

IDS_PER_SOCKET = 256
SOCKET_BUFFER_BYTES = 1 << 20
ACCESS_ACCEPT = 2
ACCESS_CHALLENGE = 11

# A call's end, as the switch saw it (GRANTED: accepted, in an authorization-only mode).
PENDING, REFUSED, AUTH_FAILED, ACKED, UNACKED, GRANTED = range(6)

# What a call is: the whole call (Access-Request, Start, Interim-Updates, Stop), or its
# Access-Request alone, carrying the session identity (the hold is left to expire) or
# not (the gateway gives the hold back at once).
CALLS, AUTH_HOLD, AUTH_RELEASE = "calls", "auth-hold", "auth-release"
MODES = (CALLS, AUTH_HOLD, AUTH_RELEASE)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the gateway listens, and the address the generator sends from."""

    host: str
    auth_port: int
    acct_port: int
    source: str = ""
    # More gateways, as a switch's RADIUS server list: calls are spread over all, and a
    # request unanswered RETRIES_PER_SERVER times is sent to the next one.
    others: tuple[tuple[str, int, int], ...] = ()

    @property
    def servers(self) -> tuple[tuple[str, int, int], ...]:
        return ((self.host, self.auth_port, self.acct_port), *self.others)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    rate: float  # calls started per second
    seconds: float | None = None  # stop starting calls after this long
    timeout_s: float = 1.0  # wait for a reply before retransmitting
    retries: int = 3  # retransmissions before giving a request up
    hold_s: float = 0.1  # real time from the Start's answer to the Stop
    interims: int = 0
    sockets: int = 8  # per port
    max_in_flight: int = 0  # start no call while this many requests wait (0: no limit)


class Call:
    """One call's datagrams and its state in the loop."""

    __slots__ = (
        "accepted",
        "gen",
        "ident",
        "kind",
        "last",
        "outcome",
        "packet",
        "packets",
        "pool",
        "sent_at",
        "slot_id",
        "slot_sock",
        "sock",
        "spec",
        "step",
        "tries",
    )

    def __init__(self, spec: CallSpec, packets: list[bytes], slot_sock: int, slot_id: int) -> None:
        self.spec = spec
        self.packets = packets
        self.slot_sock = slot_sock  # the (socket, identifier) the datagrams were built for
        self.slot_id = slot_id
        self.last = len(packets) - 1
        self.step = 0
        self.kind = AUTH
        self.pool = 0
        self.sock = 0
        self.ident = 0
        self.packet = b""
        self.sent_at = 0.0
        self.tries = 0
        self.gen = 0
        self.outcome = PENDING
        self.accepted = False


def prepare(
    specs: Sequence[CallSpec],
    builder: RequestBuilder,
    sockets: int,
    interims: int,
    mode: str = CALLS,
) -> list[Call]:
    """Every call's datagrams, built for its predicted (socket, identifier)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    randoms = os.urandom(16 * len(specs))
    calls = []
    for i, spec in enumerate(specs):
        n = spec.index
        slot_sock, slot_id = n % sockets, (n // sockets) % IDS_PER_SOCKET
        authenticator = randoms[16 * i : 16 * i + 16]
        if mode == CALLS:
            packets = builder.call(spec, slot_id, authenticator, interims)
        else:
            session = mode == AUTH_HOLD
            packets = [builder.authorization(spec, slot_id, authenticator, session=session)]
        calls.append(Call(spec, packets, slot_sock, slot_id))
    return calls


def refusal_reason(reply: bytes) -> str:
    """How an Access-Reject explains itself: ``h323-return-code=N Reply-Message``."""
    if reply[0] == ACCESS_CHALLENGE:
        return "Access-Challenge"
    try:
        packet = decode_reply(reply)
        message = packet.get("Reply-Message")
        code = packet.get("h323-return-code")
    except MalformedPacket:
        return "malformed reply"
    parts = [str(code)] if code is not None else []
    if message is not None:
        parts.append(str(message))
    return " ".join(parts) or "Access-Reject"


RETRIES_PER_SERVER = 2  # with several gateways: sends to one before the next


def _address(host: str, port: int) -> tuple[int, Any]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, address


def _open_socket(target: Target, port: int) -> socket.socket:
    """A socket to the gateway's ``port``; with several gateways, not connected (each
    datagram names its gateway) and bound so that every gateway sees one source."""
    family, address = _address(target.host, port)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    if target.source:
        sock.bind((target.source, 0))
    if target.others:
        if not target.source:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    else:
        sock.connect(address)
    sock.setblocking(False)
    return sock


@dataclass
class RunResult:
    counters: Counters
    latencies: list[LatencyStats]
    wall_s: float
    cpu_s: float
    calls: list[Call] = field(default_factory=list)
    last_reply_s: float = 0.0  # from the start to the last reply (rates without the tail)


class Engine:
    """Places ``calls`` against ``target``; ``run`` blocks until every call ended."""

    def __init__(
        self,
        calls: list[Call],
        target: Target,
        options: EngineOptions,
        secret: bytes,
        progress: TextIO | None = None,
    ) -> None:
        self.calls = calls
        self.target = target
        self.options = options
        self.secret = secret
        self.progress = progress
        self.counters = Counters()
        self.latencies = [LatencyStats() for _ in range(4)]
        self.stopping = False  # set (e.g. by SIGINT): start no new call, finish the rest
        self.active = 0  # calls started and not ended
        self.in_flight = 0  # requests waiting for a reply
        k = options.sockets
        self.socks = [
            [_open_socket(target, target.auth_port) for _ in range(k)],
            [_open_socket(target, target.acct_port) for _ in range(k)],
        ]
        # [server][pool] -> address; None: one gateway, on connected sockets
        self.addresses: list[list[Any]] | None = None
        if target.others:
            self.addresses = [
                [_address(host, auth)[1], _address(host, acct)[1]]
                for host, auth, acct in target.servers
            ]
        self.pending: list[list[list[Call | None]]] = [
            [[None] * IDS_PER_SOCKET for _ in range(k)] for _ in range(2)
        ]
        self.poller = select.epoll()
        self.fds: dict[int, tuple[int, int]] = {}
        for pool, group in enumerate(self.socks):
            for i, sock in enumerate(group):
                self.poller.register(sock.fileno(), select.EPOLLIN)
                self.fds[sock.fileno()] = (pool, i)
        self.retry_queue: deque[tuple[float, Call, int]] = deque()
        self.hold_queue: deque[tuple[float, Call]] = deque()
        self.waiting: deque[Call] = deque()
        self.step_s = options.hold_s / (options.interims + 1)
        self.last_reply_at = 0.0

    def close(self) -> None:
        self.poller.close()
        for group in self.socks:
            for sock in group:
                sock.close()

    # -- readiness -----------------------------------------------------------------

    def probe(self, make: Callable[[int, int], bytes], timeout_s: float) -> str | None:
        """Send ``make(socket, attempt)`` from every authorization socket until each
        got an Access-Accept; None when all did within ``timeout_s``, else what the
        last answer (or silence) was."""
        waiting = set(range(len(self.socks[0])))
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        attempt = 0
        while waiting and time.monotonic() < deadline:
            sent = {}
            for k in waiting:
                packet = make(k, attempt)
                sent[k] = packet
                try:
                    self._transmit(self.socks[0][k], packet, 0, 0)
                except OSError as exc:
                    last = f"send failed: {exc}"
            attempt += 1
            until = time.monotonic() + 0.3
            while time.monotonic() < until and waiting:
                for fd, _events in self.poller.poll(max(0.0, until - time.monotonic())):
                    pool, k = self.fds[fd]
                    for data in self._drain(self.socks[pool][k]):
                        if pool or k not in sent or not reply_matches(data, sent[k], self.secret):
                            continue
                        if data[0] == ACCESS_ACCEPT:
                            waiting.discard(k)
                        else:
                            last = refusal_reason(data)
            if waiting:
                time.sleep(0.2)
        for group in self.socks:  # late answers to probes must not meet the run
            for sock in group:
                self._drain(sock)
        return f"{len(waiting)} of {len(self.socks[0])} sockets: {last}" if waiting else None

    @staticmethod
    def _drain(sock: socket.socket) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(sock.recv(4096))
            except (BlockingIOError, InterruptedError):
                return out
            except ConnectionRefusedError:
                continue  # ICMP unreachable from an earlier send: read on

    # -- the loop ------------------------------------------------------------------

    def run(self) -> RunResult:
        """Start the calls at the target rate and return once every call ended."""
        calls = self.calls
        total = len(calls)
        rate = self.options.rate
        retry_queue, hold_queue, waiting = self.retry_queue, self.hold_queue, self.waiting
        perf = time.perf_counter
        poll = self.poller.poll
        fds = self.fds
        started = 0
        t0 = perf()
        cpu0 = time.process_time()
        stop_starting = t0 + self.options.seconds if self.options.seconds else math.inf
        window = self.options.max_in_flight or math.inf
        next_report = t0 + 1.0
        previous = Snapshot(t0, cpu0, 0, 0, 0)
        while True:
            now = perf()
            if started < total:
                if now >= stop_starting or self.stopping:
                    total = started
                else:
                    due = min(total, int((now - t0) * rate) + 1)
                    while started < due and self.in_flight < window:
                        call = calls[started]
                        started += 1
                        self.counters.started += 1
                        self.active += 1
                        if not self._send(call, now):
                            self._wait(call)
            if retry_queue and retry_queue[0][0] <= now:
                self._expire(now)
            while hold_queue and hold_queue[0][0] <= now:
                call = hold_queue.popleft()[1]
                call.step += 1
                if not self._send(call, now):
                    self._wait(call)
            if waiting:
                self._send_waiting(now)
            if started >= total and self.active == 0:
                break
            wake = next_report
            if started < total and self.in_flight < window:
                wake = min(wake, t0 + started / rate)
            if retry_queue:
                wake = min(wake, retry_queue[0][0])
            if hold_queue:
                wake = min(wake, hold_queue[0][0])
            for fd, _events in poll(max(0.0, wake - perf())):
                pool, k = fds[fd]
                self._receive(pool, k)
            if now >= next_report:
                previous = self._report(previous, now - t0)
                next_report += 1.0
        wall = perf() - t0
        cpu = time.process_time() - cpu0
        if self.progress is not None:
            self._report(previous, wall)
        last_reply = max(self.last_reply_at - t0, 0.0)
        return RunResult(self.counters, self.latencies, wall, cpu, calls[:started], last_reply)

    def _send(self, call: Call, now: float) -> bool:
        """Send the call's current request; False when no identifier is free."""
        step = call.step
        pool = 1 if step else 0
        packet = call.packets[step]
        k, ident = call.slot_sock, call.slot_id
        row = self.pending[pool][k]
        if row[ident] is not None:
            free = self._free_slot(pool, k)
            if free is None:
                return False
            k, ident = free
            row = self.pending[pool][k]
            packet = resign(packet, ident, self.secret)
        row[ident] = call
        kind = AUTH if step == 0 else STOP if step == call.last else START if step == 1 else INTERIM
        call.kind, call.pool, call.sock, call.ident, call.packet = kind, pool, k, ident, packet
        call.sent_at = now
        call.tries = 1
        call.gen += 1
        self.in_flight += 1
        self.counters.sent[kind] += 1
        try:
            self._transmit(self.socks[pool][k], packet, pool, self._server(call))
        except OSError:
            self.counters.send_errors += 1  # the retransmission timer covers it
        self.retry_queue.append((now + self.options.timeout_s, call, call.gen))
        return True

    def _transmit(self, sock: socket.socket, packet: bytes, pool: int, server: int) -> None:
        if self.addresses is None:
            sock.send(packet)
        else:
            sock.sendto(packet, self.addresses[server][pool])

    def _server(self, call: Call) -> int:
        """Which gateway this try goes to: the call's own (calls are spread over them
        all), then the next after every RETRIES_PER_SERVER unanswered tries."""
        if self.addresses is None:
            return 0
        return (call.slot_id + (call.tries - 1) // RETRIES_PER_SERVER) % len(self.addresses)

    def _free_slot(self, pool: int, first: int) -> tuple[int, int] | None:
        rows = self.pending[pool]
        for j in range(len(rows)):
            k = (first + j) % len(rows)
            try:
                return k, rows[k].index(None)
            except ValueError:
                continue
        return None

    def _wait(self, call: Call) -> None:
        """Every identifier is busy: the call waits for one (a stalled gateway)."""
        self.counters.slot_waits += 1
        self.waiting.append(call)

    def _send_waiting(self, now: float) -> None:
        while self.waiting:
            if not self._send(self.waiting[0], now):
                return
            self.waiting.popleft()

    def _expire(self, now: float) -> None:
        """Retransmit what timed out (the identical datagram), or give it up."""
        queue = self.retry_queue
        counters = self.counters
        timeout_s = self.options.timeout_s
        while queue and queue[0][0] <= now:
            _, call, gen = queue.popleft()
            if call.gen != gen:
                continue  # answered meanwhile
            if call.tries <= self.options.retries:
                call.tries += 1
                counters.retransmits[call.kind] += 1
                try:
                    self._transmit(
                        self.socks[call.pool][call.sock], call.packet, call.pool, self._server(call)
                    )
                except OSError:
                    counters.send_errors += 1
                queue.append((now + timeout_s, call, gen))
                continue
            counters.timeouts[call.kind] += 1
            self.pending[call.pool][call.sock][call.ident] = None
            self.in_flight -= 1
            call.gen += 1
            if call.kind == AUTH:
                counters.auth_failed += 1
                self._finish(call, AUTH_FAILED)
            elif call.kind == STOP:
                counters.stops_unacked += 1
                self._finish(call, UNACKED)
            else:
                # A switch carries on with the call when accounting goes unanswered.
                self.hold_queue.append((now + self.step_s, call))

    def _receive(self, pool: int, k: int) -> None:
        sock = self.socks[pool][k]
        row = self.pending[pool][k]
        counters = self.counters
        secret = self.secret
        perf = time.perf_counter
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                continue  # ICMP unreachable from an earlier send (gateway down): read on
            now = perf()
            if len(data) < 20:
                counters.stale_replies += 1
                continue
            call = row[data[1]]
            if call is None or not reply_matches(data, call.packet, secret):
                counters.stale_replies += 1
                continue
            row[data[1]] = None
            self.in_flight -= 1
            call.gen += 1
            counters.replies += 1
            self.last_reply_at = now
            self._answered(call, data, now)

    def _answered(self, call: Call, data: bytes, now: float) -> None:
        kind = call.kind
        self.latencies[kind].add(now - call.sent_at)
        counters = self.counters
        if kind == AUTH:
            if data[0] == ACCESS_ACCEPT:
                counters.accepted += 1
                call.accepted = True
                if call.spec.refuse:
                    counters.accepted_unexpected += 1
                if call.last == 0:  # authorization only
                    self._finish(call, GRANTED)
                    return
                call.step = 1
                if not self._send(call, now):
                    self._wait(call)
                return
            counters.refused += 1
            if not call.spec.refuse:
                counters.refused_unexpected += 1
            counters.refusals[refusal_reason(data)] += 1
            self._finish(call, REFUSED)
        elif kind == STOP:
            counters.stops_acked += 1
            self._finish(call, ACKED)
        else:
            self.hold_queue.append((now + self.step_s, call))

    def _finish(self, call: Call, outcome: int) -> None:
        call.outcome = outcome
        self.active -= 1
        self.counters.finished += 1

    def _report(self, previous: Snapshot, elapsed_s: float) -> Snapshot:
        counters = self.counters
        now = Snapshot(
            time.perf_counter(),
            time.process_time(),
            counters.finished,
            counters.requests,
            len(self.latencies[AUTH]),
        )
        if self.progress is not None:
            line = progress_line(
                counters,
                self.latencies[AUTH],
                previous,
                now,
                elapsed_s=elapsed_s,
                in_flight=self.in_flight,
                active=self.active,
            )
            self.progress.write(line + "\n")
            self.progress.flush()
        return now
