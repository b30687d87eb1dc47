"""Server transactions (RFC 3261 §17.2), as much as a redirect server needs.

Every request that gets a response opens a transaction keyed per §17.2.3 (branch
with the magic cookie, sent-by, method; ACK matches its INVITE), plus Call-ID and
CSeq number as a guard against clients that reuse branches. A retransmission finds
it and gets the same final response, never a second authorization. While an INVITE
is still being authorized a retransmission gets ``100 Trying``.

Over UDP the final response to an INVITE is resent on timer G (T1 doubling up to
T2) until the ACK arrives or timer H fires: the client stops retransmitting once it
saw a provisional response, so a lost final response would otherwise be lost for
good. Entries live ``ttl_s`` (64*T1 = 32 s by default) and are dropped oldest first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from gateway.sip.message import MAGIC_COOKIE, Request

T1_S = 0.5
T2_S = 4.0
MAX_ENTRIES = 250_000  # ~32 s of 7,800 requests/s; the oldest go first beyond it

Key = tuple[str, ...]
Send = Callable[[bytes], None]


def key_of(request: Request, method: str | None = None) -> Key:
    """The transaction ``request`` belongs to; ACK maps to its INVITE (§17.2.3)."""
    via = request.top_via
    number = str(request.cseq[0])
    matched = method or ("INVITE" if request.method == "ACK" else request.method)
    if via.branch.startswith(MAGIC_COOKIE):
        return (via.branch, via.sent_by.lower(), matched, request.call_id, number)
    # RFC 2543 clients: branches are not unique, match on the request's identity instead.
    return ("", request.vias[0], matched, request.call_id, number, request.from_tag)


class Transaction:
    """One server transaction: pending until its final response, then kept to resend it."""

    __slots__ = (
        "_interval",
        "_timer",
        "acked",
        "cancelled",
        "expires_at",
        "final",
        "key",
        "reliable",
        "send",
    )

    def __init__(self, key: Key, send: Send, reliable: bool, expires_at: float) -> None:
        self.key = key
        self.send = send
        self.reliable = reliable
        self.expires_at = expires_at
        self.final: bytes | None = None
        self.cancelled = False
        self.acked = False
        self._timer: asyncio.TimerHandle | None = None
        self._interval = T1_S

    @property
    def pending(self) -> bool:
        return self.final is None

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Transactions:
    """The table of live server transactions; see the module docstring."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Key, Transaction] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Transaction]:
        return iter(list(self._entries.values()))

    def find(self, key: Key) -> Transaction | None:
        self._expire()
        return self._entries.get(key)

    def begin(self, key: Key, send: Send, *, reliable: bool) -> Transaction:
        """Open a pending transaction (the caller checked ``find`` first)."""
        self._expire()
        while len(self._entries) >= self.max_entries:
            _key, oldest = self._entries.popitem(last=False)
            oldest.stop_timer()
        txn = Transaction(key, send, reliable, self.clock() + self.ttl_s)
        self._entries[key] = txn
        return txn

    def complete(self, txn: Transaction, data: bytes, *, retransmit: bool) -> None:
        """Record and send the final response; resend it on timer G if asked (UDP INVITE)."""
        txn.final = data
        txn.send(data)
        if retransmit and not txn.reliable and not txn.acked:
            loop = asyncio.get_running_loop()
            txn._timer = loop.call_later(txn._interval, self._resend, txn)

    def ack(self, txn: Transaction) -> None:
        """The ACK for a non-2xx final response: retransmissions stop (§17.2.1).

        The transaction is confirmed: a late copy of the INVITE is absorbed, so the
        response bytes are not needed any more (memory at thousands of calls/s).
        """
        txn.acked = True
        txn.stop_timer()
        if txn.final is not None:
            txn.final = b""

    def _resend(self, txn: Transaction) -> None:
        txn._timer = None
        if txn.acked or txn.final is None or self.clock() >= txn.expires_at:
            return
        if self._entries.get(txn.key) is not txn:
            return  # expired or evicted meanwhile
        txn.send(txn.final)
        txn._interval = min(txn._interval * 2, T2_S)
        txn._timer = asyncio.get_running_loop().call_later(txn._interval, self._resend, txn)

    def _expire(self) -> None:
        now = self.clock()
        entries = self._entries
        while entries:
            key, txn = next(iter(entries.items()))
            if txn.expires_at > now:
                return
            if txn.pending:
                # Still being authorized (a slow backend): keep it until it completes.
                txn.expires_at = now + self.ttl_s
                entries.move_to_end(key)
                continue
            entries.popitem(last=False)
            txn.stop_timer()

    def close(self) -> None:
        for txn in self._entries.values():
            txn.stop_timer()
        self._entries.clear()
