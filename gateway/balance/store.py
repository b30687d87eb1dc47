"""Live balances in Redis: reserve, start, extend, settle, release.

Each verb is one Lua script call, atomic over the whole account chain of the call
and idempotent by session: a repeat returns the first answer and changes nothing.
Calls go through the ``Pipeliner`` so concurrent calls share round trips.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.balance import fields
from gateway.balance.keys import Keys
from gateway.balance.redisconn import redis_errors
from gateway.balance.scripts import ScriptRunner
from gateway.balance.types import CallEnd, CallMeta, Extended, Grant, Settled
from gateway.config import BalanceConfig
from gateway.core.reasons import Refusal, from_script
from gateway.rating.chain import Chain

# Rates with periods are priced for an answer time not known at the authorization:
# any second from a little before it (a switch's clock behind ours) to the setup
# timeout after it. The price schedule sent along reaches past the longest grant.
ANSWER_SKEW_S = 60
SCHEDULE_MARGIN_S = 86_400


def _millis(end: CallEnd, duration_s: int) -> int:
    """The call's length in ms for the scripts; -1 when unknown, or when it is not
    within a second of the seconds reported (then the seconds are what counts)."""
    ms = end.duration_ms
    if ms is None or ms < 0 or abs(ms - duration_s * 1000) >= 1000:
        return -1
    return ms


def _started(end: CallEnd, duration_s: int) -> float:
    """When a call with no answer time on record started: as the switch says, or
    its end less its duration."""
    return end.connect_at if end.connect_at is not None else end.disconnect_at - duration_s


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


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A call still holding (reserved or answered), as ``open_sessions`` finds it."""

    session: str  # its Redis key
    shard: int
    answered_at: float | None  # None: never answered


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class SessionRef:
    """Where a call's reservation lives: its tree (for the hash tag) and its key."""

    root_id: int
    session_key: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BalanceStore:
    """The balance verbs over one Redis deployment (prefix and shards in ``keys``)."""

    def __init__(self, pipeliner: ScriptRunner, keys: Keys, config: BalanceConfig) -> None:
        self.pipeliner = pipeliner
        self.keys = keys
        self.config = config

    def _session_keys(self, ref: SessionRef) -> tuple[str, str]:
        shard = self.keys.shard_of(ref.root_id)
        return self.keys.session(ref.root_id, ref.session_key), self.keys.due(shard)

    def session_key(self, ref: SessionRef) -> str:
        """The Redis key of the call's session hash."""
        return self.keys.session(ref.root_id, ref.session_key)

    async def reserve(
        self,
        ref: SessionRef,
        chain: Chain,
        meta: CallMeta,
        now: float | None = None,
        *,
        slice_mode: bool = False,
        links: tuple[tuple[str, int], ...] = (),
        answered_at: float | None = None,
    ) -> Grant | Refusal:
        """Hold the call's money on every level at once, or refuse naming who and why.

        ``slice_mode`` holds a first slice of the grant instead of all of it;
        ``links`` (link set key, lifetime) make the hold provisional: an accounting
        request finds it through them (``adopt``). ``answered_at``: the call is
        already answered then (a hold made at its Start or Interim), so rates with
        periods are priced from that moment rather than for a setup window. Raises
        ``NotLoaded`` when an account is not mirrored yet.
        """
        session, due = self._session_keys(ref)
        accounts = tuple(self.keys.account(chain.root_id, a) for a in chain.account_ids)
        config = self.config
        moment = int(time.time() if now is None else now)
        levels = chain.script_levels
        if chain.timed and answered_at is not None:
            answer = int(answered_at)
            levels = chain.levels_from(answer, answer, config.max_call_s + SCHEDULE_MARGIN_S)
        elif chain.timed:  # periods: priced for whenever within the setup window it answers
            levels = chain.levels_from(
                moment - ANSWER_SKEW_S,
                moment + config.setup_timeout_s,
                config.max_call_s + SCHEDULE_MARGIN_S,
            )
        reply = await self.pipeliner.call(
            "reserve",
            (session, due, *accounts),
            (
                moment,
                config.setup_timeout_s,
                config.max_call_s,
                levels,
                meta.to_json(),
                config.slice_min_s if slice_mode else 0,
                config.slice_s,
                json.dumps(links) if links else "",
            ),
        )
        ok, code, level, granted, holds, held, available = reply
        if int(ok) == 1:
            held_micros = tuple(int(h) for h in json.loads(holds)) if holds else ()
            return Grant(
                int(granted),
                held_micros,
                repeated=_text(code) == "DUP",
                held_s=int(held),
                available_micros=int(available),
            )
        code_text = _text(code)
        index = int(level) - 1
        if code_text == "NOT_LOADED":
            raise NotLoaded(chain.account_ids[index])
        account = chain.account_ids[index] if index >= 0 else None
        return Refusal(from_script(code_text), account_id=account, level=max(index, 0))

    async def answered(
        self, ref: SessionRef, answered_at: float, reach: str = ""
    ) -> tuple[int, int]:
        """Mark the call answered; return (granted, held) seconds from the answer time.

        ``reach`` is what the front needs to tell the switch to hang up (kept with
        the call for the slice keeper)."""
        session, due = self._session_keys(ref)
        shard = self.keys.shard_of(ref.root_id)
        ok, code, granted, held = await self.pipeliner.call(
            "start",
            (session, due, self.keys.slices(shard)),
            (int(answered_at), self.config.hold_margin_s, self.config.slice_lead_s, reach),
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return int(granted), int(held)

    async def extend(
        self, ref: SessionRef, may_grow: bool, now: float | None = None, elapsed_s: int = -1
    ) -> Extended:
        """Hold more time for a running call (see extend.lua): in slice mode the next
        slices, in whole mode a longer grant when ``may_grow``."""
        session, _ = self._session_keys(ref)
        return await self.extend_key(
            session, self.keys.shard_of(ref.root_id), may_grow, now, elapsed_s
        )

    async def extend_key(
        self,
        session: str,
        shard: int,
        may_grow: bool = False,
        now: float | None = None,
        elapsed_s: int = -1,
    ) -> Extended:
        """``extend`` by the session's Redis key (the slice keeper knows only that)."""
        config = self.config
        reply = await self.pipeliner.call(
            "extend",
            (session, self.keys.due(shard), self.keys.slices(shard)),
            (
                int(time.time() if now is None else now),
                config.hold_margin_s,
                config.max_call_s,
                1 if may_grow else 0,
                elapsed_s,
                config.slice_lead_s,
                config.slice_s,
            ),
        )
        ok, code, granted, grew, held, cut, cut_at = reply
        if int(ok) != 1:
            self._raise_for(_text(code))
        return Extended(int(granted), int(held), int(grew) == 1, int(cut) == 1, float(cut_at))

    async def adopt(
        self,
        ref: SessionRef,
        links: tuple[tuple[str, int], ...],
        session_id: str,
        leg: str,
        now: float | None = None,
    ) -> bool:
        """Take over a provisional hold found by one of ``links`` (link set key, how old
        a hold it finds may be) as the session ``ref``; False when none is found."""
        if not links:
            return False
        session, due = self._session_keys(ref)
        ok, _code = await self.pipeliner.call(
            "adopt",
            (session, due, *(link for link, _ in links)),
            (
                int(time.time() if now is None else now),
                json.dumps([window for _, window in links]),
                session_id,
                leg,
            ),
        )
        return int(ok) == 1

    async def due_slices(self, shard: int, now: float, limit: int) -> list[str]:
        """Session keys of the shard whose hold needs its next slice, or whose held time
        ran out after a cut, at ``now``."""
        with redis_errors():
            due = await self.pipeliner.client.zrangebyscore(
                self.keys.slices(shard), "-inf", now, start=0, num=limit
            )
        return [_text(raw) for raw in due]

    async def forget_slice(self, session: str, shard: int) -> None:
        """Drop a session that ended from the slices set (the keeper met it late)."""
        with redis_errors():
            await self.pipeliner.client.zrem(self.keys.slices(shard), session)

    async def claim_cut(self, session: str, shard: int) -> str | None:
        """Claim the hang-up of a cut call, once across every gateway: its ``reach``
        (see ``start``) for the one caller that claims it, else None."""
        client = self.pipeliner.client
        with redis_errors():
            first = await client.hsetnx(session, fields.HUNG_UP, "1")
            await client.zrem(self.keys.slices(shard), session)
            reach = await client.hget(session, fields.REACH) if first else None
        if not first:
            return None
        return "" if reach is None else _text(reach)

    async def claim_coa(self, session: str) -> str | None:
        """Claim the CoA-Request of a cut call, once across every gateway: its
        ``reach`` for the one caller that claims it, else None. Only called right
        after ``extend_key`` saw the session live (a claim never outlives its call by
        more than the same race ``claim_cut`` has)."""
        client = self.pipeliner.client
        with redis_errors():
            first = await client.hsetnx(session, fields.COA, "1")
            reach = await client.hget(session, fields.REACH) if first else None
        if not first:
            return None
        return "" if reach is None else _text(reach)

    async def coa_acked(self, session: str, acked: bool | None = None) -> bool:
        """Whether the switch acknowledged the cut call's CoA-Request; with ``acked``
        true, record that it did (only on a live session)."""
        client = self.pipeliner.client
        with redis_errors():
            if acked and await client.exists(session):
                await client.hset(session, fields.COA_ACKED, "1")
                return True
            return await client.hexists(session, fields.COA_ACKED)

    async def settle(
        self, ref: SessionRef, duration_s: int, end: CallEnd, *, overrun_cap: bool = True
    ) -> Settled:
        """Debit each level at the real duration and queue the settlement for PostgreSQL.

        Past the call's limit (its grant, or its held time once cut) plus
        ``balance.overrun_grace_s``, seconds are overrun: with ``overrun_cap`` they
        are not billed. Either way the settlement counts them.
        """
        session, _ = self._session_keys(ref)
        return await self.settle_key(
            session, self.keys.shard_of(ref.root_id), duration_s, end, overrun_cap=overrun_cap
        )

    async def settle_key(
        self, session: str, shard: int, duration_s: int, end: CallEnd, *, overrun_cap: bool = True
    ) -> Settled:
        """``settle`` by the session's Redis key (the sweeper knows only that)."""
        if duration_s < 0:
            raise ValueError(f"duration must be >= 0, got {duration_s}")
        stream = self.keys.settlements(shard)
        ok, code, costs, stream_id, overrun = await self.pipeliner.call(
            "settle",
            (session, self.keys.due(shard), stream, self.keys.slices(shard)),
            (
                duration_s,
                end.to_json(),
                self.config.ended_retention_s,
                self.config.overrun_grace_s,
                1 if overrun_cap else 0,
                int(_started(end, duration_s)),
                _millis(end, duration_s),
            ),
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return Settled(
            costs_micros=tuple(int(c) for c in json.loads(costs)),
            stream=stream,
            stream_id=_text(stream_id),
            duplicate=_text(code) == "DUP",
            overrun_s=int(overrun),
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
        started = int(_started(end, duration_s))
        levels = chain.script_levels
        if chain.timed:
            levels = chain.levels_from(started, started, max(duration_s, 0) + SCHEDULE_MARGIN_S)
        ok, code, costs, stream_id = await self.pipeliner.call(
            "charge",
            (session, stream, *accounts),
            (
                int(time.time() if now is None else now),
                levels,
                meta.to_json(),
                max(duration_s, 0),
                end.to_json(),
                self.config.ended_retention_s,
                started,
                _millis(end, max(duration_s, 0)),
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
            "release",
            (session, self.keys.due(shard), self.keys.slices(shard)),
            (self.config.ended_retention_s,),
        )
        if int(ok) != 1:
            self._raise_for(_text(code))
        return _text(code) == "OK"

    async def open_sessions(self, nas: str) -> AsyncIterator[OpenSession]:
        """Every call of switch ``nas`` still holding, on every shard (Accounting-On/Off).

        Read by SCAN, off the call path: a restart of a switch is rare."""
        client = self.pipeliner.client
        with redis_errors():
            match = self.keys.sessions_pattern(nas)
            sessions = [_text(s) async for s in client.scan_iter(match=match, count=1000)]
        for session in sessions:
            with redis_errors():
                state, answered_at = await client.hmget(session, [fields.STATE, fields.ANSWERED_AT])
            shard = self.keys.shard_of_key(session)
            if state == fields.ANSWERED:
                yield OpenSession(session, shard, float(answered_at or time.time()))
            elif state == fields.RESERVED:
                yield OpenSession(session, shard, None)

    async def answered_at(self, ref: SessionRef) -> float | None:
        """When the call was answered (unix seconds), None when it was not or is unknown."""
        session, _ = self._session_keys(ref)
        with redis_errors():
            value = await self.pipeliner.client.hget(session, fields.ANSWERED_AT)
        return None if value is None else float(value)

    async def session_state(self, ref: SessionRef) -> str | None:
        """The session's state (reserved, answered, settled, released) or None."""
        session, _ = self._session_keys(ref)
        with redis_errors():
            value = await self.pipeliner.client.hget(session, fields.STATE)
        return None if value is None else _text(value)

    @staticmethod
    def _raise_for(code: str) -> None:
        if code == "UNKNOWN_SESSION":
            raise UnknownSession(code)
        if code == "SESSION_ENDED":
            raise SessionEnded(code)
        raise RuntimeError(f"unexpected script reply {code}")
