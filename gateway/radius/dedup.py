"""Duplicate detection (RFC 5080 §2.2.2): a retransmission gets the first reply.

A request is known by (source address, source port, identifier, authenticator).
While the first copy is still being processed, copies are dropped (the switch
retransmits again); once answered, copies within the window get the cached reply
without being processed again. A request that got no reply (the backend was down)
is forgotten, so its retransmission is processed anew.
"""

from __future__ import annotations

import time
from collections import OrderedDict

RequestKey = tuple[str, int, int, bytes]
_IN_PROGRESS = b""


class ReplyCache:
    """Bounded cache of recent replies by request key."""

    def __init__(self, window_s: float, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        # key -> (expires at, reply); insertion order is expiry order (same window).
        self._entries: OrderedDict[RequestKey, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: RequestKey, now: float | None = None) -> bytes | None:
        """None: a new request, now marked in progress. b'': a copy of one in progress
        (drop it). Other bytes: the cached reply to send again."""
        moment = time.monotonic() if now is None else now
        self._expire(moment)
        found = self._entries.get(key)
        if found is not None:
            return found[1]
        self._entries[key] = (moment + self.window_s, _IN_PROGRESS)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return None

    def finish(self, key: RequestKey, reply: bytes | None, now: float | None = None) -> None:
        """Record the reply sent for ``key``; None forgets it (no reply was sent)."""
        if reply is None or self.window_s <= 0:
            self._entries.pop(key, None)
            return
        moment = time.monotonic() if now is None else now
        self._entries[key] = (moment + self.window_s, reply)
        self._entries.move_to_end(key)

    def _expire(self, moment: float) -> None:
        entries = self._entries
        while entries:
            key, (expires, _reply) = next(iter(entries.items()))
            if expires > moment:
                return
            del entries[key]
