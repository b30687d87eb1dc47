"""The life of a call, in neutral verbs both fronts translate into.

authorize -> answered -> interim... -> ended, plus nas_restarted. Identification,
rating and the balance scripts are composed here and nowhere else; RADIUS and SIP
only map their wire attributes to these calls and the results back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gateway.authz.directory import Directory
from gateway.authz.identify import METHODS, Caller, Credentials, identify
from gateway.authz.reasons import Reason, Refusal
from gateway.balance.chain import build_chain
from gateway.balance.service import Balance
from gateway.balance.store import SessionEnded, SessionExists, SessionRef, UnknownSession
from gateway.balance.types import CallEnd, CallMeta, Chain, Settled
from gateway.rating.numbers import InvalidNumber, NumberPlan, normalize
from gateway.rating.prefix_index import RatingIndex
from gateway.redisconn import translate_errors

log = logging.getLogger(__name__)


class RateSource(Protocol):
    @property
    def index(self) -> RatingIndex: ...


class CommitWaiter(Protocol):
    async def wait_committed(self, stream: str, entry_id: str, timeout_s: float) -> bool: ...


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class CallKey:
    """A call's identity: the switch (client name), its session id, and the leg."""

    nas: str
    session_id: str
    leg: str = ""

    @property
    def session_key(self) -> str:
        return f"{self.nas}|{self.session_id}|{self.leg}"


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Party:
    """Who calls whom, as the front received it (raw numbers, before normalization)."""

    username: str | None = None
    calling: str | None = None
    called: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    remote_addr: str = ""


MAX_REMEMBERED_NUMBERS = 100_000


@dataclass(frozen=True, slots=True)
class Policy:
    """Per switch: how numbers are normalized and how callers are identified."""

    plan: NumberPlan = field(default_factory=NumberPlan)
    order: tuple[str, ...] = METHODS
    check_secret: bool = True  # False: the switch already authenticated its users
    # Numbers seen from this switch, normalized: a caller's number comes back on every
    # request of every call, and each request reads it more than once.
    numbers: dict[str, str | None] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for method in self.order:
            if method not in METHODS:
                raise ValueError(f"unknown identification method {method!r}")

    def number(self, raw: str | None) -> str | None:
        """``raw`` normalized by the plan; None when empty or not a number."""
        if not raw:
            return None
        numbers = self.numbers
        try:
            return numbers[raw]
        except KeyError:
            pass
        value = _normalized(raw, self.plan)
        if len(numbers) >= MAX_REMEMBERED_NUMBERS:
            numbers.clear()
        numbers[raw] = value
        return value


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Authorized:
    account_id: int
    granted_s: int
    hold_micros: int  # what the customer's level holds for the granted time
    currency: str


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class LoginAccepted:
    """An authorization with no destination: the caller is known, nothing held."""

    account_id: int


@dataclass(slots=True)  # not frozen: built per request (cheaper); read-only
class Ended:
    """A call's end as recorded: its settlement (None when nothing could be billed)."""

    settled: Settled | None
    committed: bool  # PostgreSQL has it (else Redis holds it in the stream)
    reason: str = ""


def _normalized(raw: str | None, plan: NumberPlan) -> str | None:
    if not raw:
        return None
    try:
        return normalize(raw, plan)
    except InvalidNumber:
        return None


class Calls:
    """The call lifecycle over the directory, the rates and the balance."""

    def __init__(
        self,
        directory: Directory,
        rates: RateSource,
        balance: Balance,
        waiter: CommitWaiter | None = None,
        commit_wait_s: float = 0.0,
    ) -> None:
        self.directory = directory
        self.rates = rates
        self.balance = balance
        self.waiter = waiter
        self.commit_wait_s = commit_wait_s

    # -- authorization ----------------------------------------------------------------

    async def authorize(
        self, key: CallKey | None, party: Party, policy: Policy, at: float | None = None
    ) -> Authorized | LoginAccepted | Refusal:
        """Identify the caller and hold money for the call, or say why not.

        Without a destination this is a login check. Without a key (the switch sent
        no session id) nothing can link the accounting to a hold: the time is
        computed and the hold given back at once.
        """
        moment = time.time() if at is None else at
        caller = self._identify(party, policy, accounting=False)
        if isinstance(caller, Refusal):
            return caller
        if not party.called:
            return LoginAccepted(caller.account_id)
        priced = self._price(caller.account_id, party, policy, moment)
        if isinstance(priced, Refusal):
            return priced
        chain, meta_fields = priced
        linked = key if key is not None else CallKey("-", f"auth-{time.monotonic_ns()}")
        ref = SessionRef(chain.root_id, linked.session_key)
        meta = self._meta(linked, party, policy, moment, meta_fields)
        result = await self.balance.reserve(ref, chain, meta)
        if isinstance(result, Refusal):
            return result
        if key is None:
            await self.balance.store.release(ref)
        account = self.directory.account(caller.account_id)
        currency = account.currency if account is not None else ""
        return Authorized(caller.account_id, result.granted_s, result.holds_micros[0], currency)

    # -- accounting -------------------------------------------------------------------

    async def answered(self, key: CallKey, party: Party, policy: Policy, at: float) -> int | None:
        """The call was answered; the granted seconds, None when no hold exists."""
        ref = self._locate(key, party, policy)
        if ref is None:
            return None
        try:
            return await self.balance.store.start(ref, at)
        except (UnknownSession, SessionEnded):
            return None

    async def interim(
        self, key: CallKey, party: Party, policy: Policy, may_grow: bool
    ) -> int | None:
        """An interim update; the granted seconds now (grown when possible), or None."""
        ref = self._locate(key, party, policy)
        if ref is None:
            return None
        try:
            granted, _grew = await self.balance.store.extend(ref, may_grow)
        except (UnknownSession, SessionEnded):
            return None
        return granted

    async def ended(
        self, key: CallKey, party: Party, policy: Policy, duration_s: int | None, end: CallEnd
    ) -> Ended:
        """Bill the call at its real duration, once, however often the Stop comes.

        A Stop with no reservation (its authorization never reached us, or the hold
        was given back) is billed from the call's own data. With no duration (the
        switch sent none) the time from the answer to ``end.disconnect_at`` is billed.
        """
        ref = self._locate(key, party, policy)
        if ref is None:
            log.warning("call.unbillable", extra={"session": key.session_key})
            return Ended(None, committed=True, reason="unknown caller")
        if duration_s is None:
            answered_at = await self.balance.store.answered_at(ref)
            duration_s = 0 if answered_at is None else max(0, int(end.disconnect_at - answered_at))
        try:
            settled = await self.balance.store.settle(ref, duration_s, end)
        except (UnknownSession, SessionEnded):
            charged = await self._charge(key, ref, party, policy, duration_s, end)
            if isinstance(charged, Refusal):
                log.warning(
                    "call.unbillable",
                    extra={"session": key.session_key, "reason": charged.reason.value},
                )
                return Ended(None, committed=True, reason=charged.reason.value)
            settled = charged
        return Ended(settled, await self._wait_commit(settled))

    async def _charge(
        self,
        key: CallKey,
        ref: SessionRef,
        party: Party,
        policy: Policy,
        duration_s: int,
        end: CallEnd,
    ) -> Settled | Refusal:
        caller = self._identify(party, policy, accounting=True)
        if isinstance(caller, Refusal):
            return caller
        setup = end.connect_at if end.connect_at is not None else end.disconnect_at - duration_s
        priced = self._price(caller.account_id, party, policy, setup)
        if isinstance(priced, Refusal):
            return priced
        chain, meta_fields = priced
        meta = self._meta(key, party, policy, setup, meta_fields)
        try:
            return await self.balance.charge(ref, chain, meta, duration_s, end)
        except SessionExists:
            return await self.balance.store.settle(ref, duration_s, end)

    async def _wait_commit(self, settled: Settled) -> bool:
        if self.waiter is None or self.commit_wait_s <= 0:
            return False
        return await self.waiter.wait_committed(
            settled.stream, settled.stream_id, self.commit_wait_s
        )

    async def nas_restarted(self, nas: str, at: float | None = None) -> int:
        """Accounting-On/Off: end every open call of ``nas``; return how many.

        Answered calls are billed up to now (the switch dropped them); calls that
        never answered are released.
        """
        moment = time.time() if at is None else at
        store = self.balance.store
        client = store.pipeliner.client
        pattern_nas = "".join(f"\\{c}" if c in "*?[]\\" else c for c in nas)
        ended = 0
        for shard in range(store.keys.shards):
            match = f"{store.keys.tag(shard)}:sess:{pattern_nas}|*"
            with translate_errors():
                sessions = [s async for s in client.scan_iter(match=match, count=1000)]
            for raw in sessions:
                session = raw.decode() if isinstance(raw, bytes) else str(raw)
                ended += await self._end_for_restart(session, shard, moment)
        log.info("nas.restarted", extra={"nas": nas, "calls_ended": ended})
        return ended

    async def _end_for_restart(self, session: str, shard: int, moment: float) -> int:
        store = self.balance.store
        with translate_errors():
            state, answered_at = await store.pipeliner.client.hmget(session, ["st", "answered_at"])
        try:
            if state == b"answered":
                start = float(answered_at or moment)
                seconds = max(0, int(moment - start))
                end = CallEnd(disconnect_at=moment, cause="nas-restart", connect_at=start)
                await store.settle_key(session, shard, seconds, end)
            elif state == b"reserved":
                await store.release_key(session, shard)
            else:
                return 0
        except (UnknownSession, SessionEnded):
            return 0
        return 1

    # -- helpers ----------------------------------------------------------------------

    def _identify(self, party: Party, policy: Policy, *, accounting: bool) -> Caller | Refusal:
        # Kamailio's misc_radius puts the caller in User-Name and sends no
        # Calling-Station-Id: the caller-ID method then reads the number there.
        return identify(
            self.directory,
            username=party.username,
            caller_number=policy.number(party.calling or party.username),
            credentials=party.credentials,
            order=policy.order,
            accounting=accounting,
            check_secret=policy.check_secret,
        )

    def _price(
        self, account_id: int, party: Party, policy: Policy, at: float
    ) -> tuple[Chain, tuple[str, tuple[str, ...], tuple[int, ...]]] | Refusal:
        number = policy.number(party.called)
        if number is None:
            return Refusal(Reason.DESTINATION_NOT_RATED, account_id, detail="invalid number")
        accounts = self.directory.chain_accounts(account_id)
        if accounts is None:
            return Refusal(Reason.UNKNOWN_CALLER, account_id)
        built = build_chain(accounts, self.rates.index, number, datetime.fromtimestamp(at, UTC))
        if isinstance(built, Refusal):
            return built
        chain, prefixes, groups = built
        return chain, (number, prefixes, groups)

    def _meta(
        self,
        key: CallKey,
        party: Party,
        policy: Policy,
        at: float,
        fields: tuple[str, tuple[str, ...], tuple[int, ...]],
    ) -> CallMeta:
        number, prefixes, groups = fields
        return CallMeta(
            nas=key.nas,
            session_id=key.session_id,
            leg=key.leg,
            setup_at=at,
            caller=policy.number(party.calling) or (party.calling or ""),
            called=number,
            called_dialled=party.called or "",
            remote_addr=party.remote_addr,
            prefixes=prefixes,
            rate_groups=groups,
        )

    def _locate(self, key: CallKey, party: Party, policy: Policy) -> SessionRef | None:
        caller = self._identify(party, policy, accounting=True)
        if isinstance(caller, Refusal):
            return None
        account = self.directory.account(caller.account_id)
        if account is None:
            return None
        return SessionRef(account.root_id, key.session_key)
