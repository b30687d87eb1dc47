"""Live balances in Redis: reserve, start, extend, settle, release.

Each verb is one Lua script call, atomic over the whole account chain of the call
and idempotent by session: a repeat returns the first answer and changes nothing.
Calls go through the ``Pipeliner`` so concurrent calls share round trips.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from gateway.authz.reasons import Refusal, from_script
from gateway.balance.scripts import Pipeliner
from gateway.balance.types import CallEnd, CallMeta, Chain, Grant, Settled
from gateway.config import BalanceConfig
from gateway.keys import Keys
from gateway.redisconn import translate_errors


class NotLoaded(Exception):
    """An account of the chain is not mirrored in Redis yet (load it, then retry)."""

    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} is not loaded in Redis")
        self.account_id = account_id


class UnknownSession(Exception):
    """No reservation exists for this session (Stop or Interim without authorization)."""


class SessionEnded(Exception):
    """The session was already released (or settled, for a start/extend)."""


class SessionExists(Exception):
    """A reservation is live for this session: settle it rather than charge."""


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class SessionRef:
    """Where a call's reservation lives: its tree (for the hash tag) and its key."""

    root_id: int
    session_key: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BalanceStore:
    """The balance verbs over one Redis deployment (prefix and shards in ``keys``)."""

    def __init__(self, pipeliner: Pipeliner, keys: Keys, config: BalanceConfig) -> None:
        self.pipeliner = pipeliner
        self.keys = keys
        self.config = config

    def _session_keys(self, ref: SessionRef) -> tuple[str, str]:
        shard = self.keys.shard_of(ref.root_id)
        return self.keys.session(ref.root_id, ref.session_key), self.keys.due(shard)

    async def reserve(
        self, ref: SessionRef, chain: Chain, meta: CallMeta, now: float | None = None
    ) -> Grant | Refusal:
        """Hold the call's money on every level at once, or refuse naming who and why.

        Raises ``NotLoaded`` when an account is not mirrored yet.
        """
        session, due = self._session_keys(ref)
        accounts = tuple(self.keys.account(chain.root_id, a) for a in chain.account_ids)
        reply = await self.pipeliner.call(
            "reserve",
            (session, due, *accounts),
            (
                int(time.time() if now is None else now),
                self.config.hold_margin_s,
                self.config.max_call_s,
                chain.script_levels,
                meta.to_json(),
            ),
        )
        ok, code, level, granted, holds = reply
        if int(ok) == 1:
            held = tuple(int(h) for h in json.loads(holds)) if holds else ()
            return Grant(int(granted), held, repeated=_text(code) == "DUP")
        code_text = _text(code)
        index = int(level) - 1
        if code_text == "NOT_LOADED":
            raise NotLoaded(chain.account_ids[index])
        account = chain.account_ids[index] if index >= 0 else None
        return Refusal(from_script(code_text), account_id=account, level=max(index, 0))

    async def start(self, ref: SessionRef, answered_at: float) -> int:
        """Mark the call answered; return the granted seconds from the answer time."""
        session, due = self._session_keys(ref)
        ok, code, granted = await self.pipeliner.call(
            "start", (session, due), (int(answered_at), self.config.hold_margin_s)
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return int(granted)

    async def extend(
        self, ref: SessionRef, may_grow: bool, now: float | None = None
    ) -> tuple[int, bool]:
        """Interim update: hold more time when ``may_grow``; return (granted_s, grew)."""
        session, due = self._session_keys(ref)
        ok, code, granted, grew = await self.pipeliner.call(
            "extend",
            (session, due),
            (
                int(time.time() if now is None else now),
                self.config.hold_margin_s,
                self.config.max_call_s,
                1 if may_grow else 0,
            ),
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return int(granted), int(grew) == 1

    async def settle(self, ref: SessionRef, duration_s: int, end: CallEnd) -> Settled:
        """Debit each level at the real duration and queue the settlement for PostgreSQL."""
        session, _ = self._session_keys(ref)
        return await self.settle_key(session, self.keys.shard_of(ref.root_id), duration_s, end)

    async def settle_key(self, session: str, shard: int, duration_s: int, end: CallEnd) -> Settled:
        """``settle`` by the session's Redis key (the sweeper knows only that)."""
        if duration_s < 0:
            raise ValueError(f"duration must be >= 0, got {duration_s}")
        stream = self.keys.settlements(shard)
        ok, code, costs, stream_id = await self.pipeliner.call(
            "settle",
            (session, self.keys.due(shard), stream),
            (duration_s, end.to_json(), self.config.ended_retention_s),
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return Settled(
            costs_micros=tuple(int(c) for c in json.loads(costs)),
            stream=stream,
            stream_id=_text(stream_id),
            duplicate=_text(code) == "DUP",
        )

    async def charge(
        self,
        ref: SessionRef,
        chain: Chain,
        meta: CallMeta,
        duration_s: int,
        end: CallEnd,
        now: float | None = None,
    ) -> Settled:
        """Bill a call that has no reservation (Stop without authorization), once.

        Raises ``NotLoaded`` for an account not mirrored yet and ``SessionExists``
        when the session holds a live reservation (settle it instead).
        """
        session, _ = self._session_keys(ref)
        shard = self.keys.shard_of(ref.root_id)
        stream = self.keys.settlements(shard)
        accounts = tuple(self.keys.account(chain.root_id, a) for a in chain.account_ids)
        ok, code, costs, stream_id = await self.pipeliner.call(
            "charge",
            (session, stream, *accounts),
            (
                int(time.time() if now is None else now),
                chain.script_levels,
                meta.to_json(),
                max(duration_s, 0),
                end.to_json(),
                self.config.ended_retention_s,
            ),
        )
        code_text = _text(code)
        if int(ok) != 1:
            if code_text == "NOT_LOADED":
                raise NotLoaded(chain.account_ids[int(costs) - 1])
            if code_text == "SESSION_EXISTS":
                raise SessionExists(ref.session_key)
            self._raise_for(code_text)
        return Settled(
            costs_micros=tuple(int(c) for c in json.loads(costs)),
            stream=stream,
            stream_id=_text(stream_id),
            duplicate=code_text == "DUP",
        )

    async def release(self, ref: SessionRef) -> bool:
        """Free the call's holds without charge; False when it was already released."""
        session, _ = self._session_keys(ref)
        return await self.release_key(session, self.keys.shard_of(ref.root_id))

    async def release_key(self, session: str, shard: int) -> bool:
        """``release`` by the session's Redis key."""
        ok, code = await self.pipeliner.call(
            "release", (session, self.keys.due(shard)), (self.config.ended_retention_s,)
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return _text(code) == "OK"

    async def answered_at(self, ref: SessionRef) -> float | None:
        """When the call was answered (unix seconds), None when it was not or is unknown."""
        session, _ = self._session_keys(ref)
        with translate_errors():
            value = await self.pipeliner.client.hget(session, "answered_at")
        return None if value is None else float(value)

    async def session_state(self, ref: SessionRef) -> str | None:
        """The session's state (reserved, answered, settled, released) or None."""
        session, _ = self._session_keys(ref)
        with translate_errors():
            value = await self.pipeliner.client.hget(session, "st")
        return None if value is None else _text(value)

    @staticmethod
    def _raise_for(code: str) -> None:
        if code == "UNKNOWN_SESSION":
            raise UnknownSession(code)
        if code == "SESSION_ENDED":
            raise SessionEnded(code)
        raise RuntimeError(f"unexpected script reply {code}")
