"""The life of a call, in neutral verbs both fronts translate into.

authorize -> answered -> interim... -> ended, plus nas_restarted. Identification,
rating and the balance scripts are composed here and nowhere else; RADIUS and SIP
only map their wire attributes to these calls and the results back.

Credit control lives here too: which leg holds, how an authorization without a
session id is linked to its accounting, when an answered call that found no hold
reserves one, and when the switch must be told to hang up (``hangup``, which the
front that can reach the switch provides).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from gateway.authz.directory import Directory
from gateway.authz.identify import BY_DID, Caller, identify
from gateway.balance.service import Balance
from gateway.balance.store import SessionEnded, SessionExists, SessionRef, UnknownSession
from gateway.balance.types import CallEnd, CallMeta, Extended, Settled
from gateway.calls.fraud import FraudGuard
from gateway.calls.types import (
    Authorized,
    CallKey,
    Credit,
    Ended,
    Hangup,
    Limit,
    LoginAccepted,
    Party,
    Policy,
    Route,
)
from gateway.core import metrics
from gateway.core.reasons import Reason, Refusal
from gateway.rating import limits
from gateway.rating.carriers import Gateway, RouteIndex, ordered
from gateway.rating.chain import Priced, build_chain
from gateway.rating.prefix_index import RatingIndex

__all__ = [
    "Authorized",
    "CallKey",
    "Calls",
    "Credit",
    "Ended",
    "Hangup",
    "LoginAccepted",
    "Party",
    "Policy",
    "Route",
]

log = logging.getLogger(__name__)


class RateSource(Protocol):
    @property
    def index(self) -> RatingIndex: ...


class RouteSource(Protocol):
    """Anything with a current ``RouteIndex`` (the route cache, or a fixed one in tests)."""

    @property
    def index(self) -> RouteIndex: ...


class CommitWaiter(Protocol):
    async def wait_committed(self, stream: str, entry_id: str, timeout_s: float) -> bool: ...


_provisional = itertools.count(1)
LINK_BY_SESSION, LINK_BY_CALLER = "sid", "acct"


def _provisional_key(key: CallKey) -> str:
    """A session key for a hold waiting to be taken over by its call's accounting;
    under the switch's name, so Accounting-On/Off of that switch ends it too."""
    return f"{key.nas}|~{time.time_ns():x}.{next(_provisional)}|{key.leg}"


def _count_slice(extended: Extended) -> None:
    if extended.grew:
        metrics.child(metrics.SLICES, "extended").inc()
    if extended.cut:
        metrics.child(metrics.SLICES, "cut").inc()


class Calls:
    """The call lifecycle over the directory, the rates and the balance."""

    def __init__(
        self,
        directory: Directory,
        rates: RateSource,
        balance: Balance,
        waiter: CommitWaiter | None = None,
        commit_wait_s: float = 0.0,
        routes: RouteSource | None = None,
        default_route: Sequence[Gateway] = (),
        fraud: FraudGuard | None = None,
        spend_agents: int = 100,
    ) -> None:
        self.directory = directory
        self.spend_agents = spend_agents  # label values of gateway_spend_micros_total
        self._spend_labels: dict[int, str] = {}
        self.fraud = fraud if fraud is not None and fraud.enabled else None
        self.rates = rates
        self.balance = balance
        self.waiter = waiter
        self.commit_wait_s = commit_wait_s
        self.routes = routes
        self.default_route = tuple(default_route)
        self.hangup: Hangup | None = None  # set by the front that reaches the switches
        self.limit: Limit | None = None  # the same front: a cut call's Session-Timeout

    # -- authorization ----------------------------------------------------------------

    async def authorize(
        self,
        key: CallKey | None,
        party: Party,
        policy: Policy,
        at: float | None = None,
        *,
        route: bool = False,
        answered: bool = False,
    ) -> Authorized | LoginAccepted | Refusal:
        """Identify the caller and hold money for the call, or say why not.

        With ``route`` the call is routed too (the caller's rate group's carrier
        gateways for the number, else the default route): a call with nowhere to go
        is refused before anything is held.

        Without a destination this is a login check. The hold is the call's own when
        the request names its session and the billed leg; otherwise (no session id,
        or the leg that is not billed) it is provisional: the call's accounting
        takes it over by a link (``CallKey.links``, the session id, or the caller and
        number within ``balance.link_window_s``). Without a key at all nothing could
        ever link it: the time is computed and nothing stays held. ``answered``: the
        call was answered at ``at`` already (a hold reserved at its accounting).
        """
        moment = time.time() if at is None else at
        caller = self._identify(party, policy, accounting=False)
        if isinstance(caller, Refusal):
            return caller
        if not party.called:
            return LoginAccepted(caller.account_id)
        number = policy.number(party.called)
        priced = self._price(caller.account_id, number, moment, caller.inbound)
        if isinstance(priced, Refusal):
            if self.fraud is not None and priced.reason is Reason.DESTINATION_NOT_RATED:
                self._unrated(caller.account_id)
            return priced
        assert number is not None  # priced
        chain = priced.chain
        found = None
        if route:
            found = self._route(caller.account_id, number, key.session_id if key else "")
            if not found.gateways:
                return Refusal(Reason.DESTINATION_NOT_RATED, caller.account_id, detail="no route")
        links: tuple[tuple[str, int], ...] = ()
        if key is None:
            linked = CallKey("-", f"auth-{time.monotonic_ns()}")
        elif key.session_id and policy.bills(key.leg):
            linked = key
        else:
            linked = CallKey(key.nas, "", key.leg)
            links = self._links(chain.root_id, key, caller.account_id, number)
        session = linked.session_key if linked.session_id else _provisional_key(linked)
        ref = SessionRef(chain.root_id, session)
        meta = self._meta(linked, party, policy, moment, number, priced)
        result = await self.balance.reserve(
            ref,
            chain,
            meta,
            slice_mode=policy.slices and key is not None,
            links=links,
            answered_at=moment if answered else None,
        )
        if isinstance(result, Refusal):
            return result
        if self.fraud is not None:
            self.fraud.authorized(chain.root_id, caller.account_id, number)
        if key is None:
            await self.balance.store.release(ref)
        account = self.directory.account(caller.account_id)
        currency = account.currency if account is not None else ""
        threshold = account.low_balance_micros if account is not None else None
        if log.isEnabledFor(logging.DEBUG):  # the hold goes to the log, not to the switch
            log.debug("call.held", extra={"session": session, "hold": result.holds_micros})
        return Authorized(
            caller.account_id,
            result.granted_s,
            result.holds_micros[0],
            currency,
            available_micros=result.available_micros,
            held_s=result.held_s,
            route=found,
            low_balance=threshold is not None and result.available_micros < threshold,
        )

    def _route(self, account_id: int, number: str, call_id: str) -> Route:
        """The carrier gateways for ``number``, in the order this call tries them."""
        account = self.directory.account(account_id)
        found = None
        if self.routes is not None and account is not None and account.rate_group_id is not None:
            found = self.routes.index.lookup(account.rate_group_id, number)
        if found is None:
            found = self.default_route
        return Route(number, ordered(found, call_id))

    def _links(
        self, root_id: int, key: CallKey, account_id: int, number: str
    ) -> tuple[tuple[str, int], ...]:
        """The link sets a provisional hold is put in (or an accounting request looks
        in), most telling first, each with its lifetime (s)."""
        config = self.balance.store.config
        keys = self.balance.store.keys
        ids = list(key.all_links())
        if key.session_id:
            ids.insert(0, f"{LINK_BY_SESSION}:{key.session_id}")
        found = [(keys.link(root_id, key.nas, i), config.setup_timeout_s) for i in ids]
        by_caller = f"{LINK_BY_CALLER}:{account_id}:{number}"
        found.append((keys.link(root_id, key.nas, by_caller), config.link_window_s))
        return tuple(found)

    # -- accounting -------------------------------------------------------------------

    async def answered(
        self, key: CallKey, party: Party, policy: Policy, at: float, reach: str = ""
    ) -> Credit | None:
        """The call was answered at ``at``; its credit, None when nothing holds for it.

        A call with no hold of its own takes over its authorization's provisional
        hold, or else reserves now (authorized again, with every check); refused,
        the switch is told to hang up, or the call runs unreserved and is billed at
        its Stop. ``reach`` is what the front needs to tell the switch to hang up.
        The leg that is not billed holds nothing and counts no call.
        """
        if not policy.bills(key.leg):
            return None
        ref = self._locate(key, party, policy)
        if ref is None:
            return None
        store = self.balance.store
        try:
            try:
                granted, held = await store.answered(ref, at, reach)
            except UnknownSession:
                if not await self._recover(key, party, policy, ref, at, answered=True, reach=reach):
                    return None
                granted, held = await store.answered(ref, at, reach)
        except (UnknownSession, SessionEnded):
            return None
        return Credit(granted, held)

    async def interim(
        self,
        key: CallKey,
        party: Party,
        policy: Policy,
        may_grow: bool,
        elapsed_s: int | None = None,
        reach: str = "",
        now: float | None = None,
    ) -> Credit | None:
        """An interim update: hold what the call needs next (the next slices, or in
        whole mode a longer grant when ``may_grow``); the credit, or None.

        The switch is told to hang up when the call has used its grant, or when it
        was cut (no more could be held) and its held time is over.
        """
        if not policy.bills(key.leg):
            return None
        moment = time.time() if now is None else now
        elapsed = -1 if elapsed_s is None else elapsed_s
        ref = self._locate(key, party, policy)
        if ref is None:
            return None
        store = self.balance.store
        try:
            try:
                extended = await store.extend(ref, may_grow, moment, elapsed)
            except UnknownSession:
                answered_at = moment - max(elapsed, 0)
                if not await self._recover(
                    key, party, policy, ref, answered_at, answered=True, reach=reach
                ):
                    return None
                await store.answered(ref, answered_at, reach)
                extended = await store.extend(ref, may_grow, moment, elapsed)
        except (UnknownSession, SessionEnded):
            return None
        _count_slice(extended)
        credit = Credit(extended.granted_s, extended.held_s)
        used_grant = elapsed >= extended.granted_s
        if used_grant or (extended.cut and extended.cut_at <= moment):
            credit.hung_up = await self._hang_up(ref, reach, claim=not used_grant)
        return credit

    async def ended(
        self, key: CallKey, party: Party, policy: Policy, duration_s: int | None, end: CallEnd
    ) -> Ended:
        """Bill the call at its real duration, once, however often the Stop comes.

        A Stop with no reservation (its authorization never reached us, or the hold
        was given back) is billed from the call's own data. With no duration (the
        switch sent none) the time from the answer to ``end.disconnect_at`` is billed.
        The Stop of the leg that is not billed releases whatever that leg held.
        """
        if not policy.bills(key.leg):
            await self._release_other_leg(key, party, policy, end.disconnect_at)
            return Ended(None, reason="other leg")
        ref = self._locate(key, party, policy)
        if ref is None:
            log.warning("call.unbillable", extra={"session": key.session_key})
            return Ended(None, reason="unknown caller")
        store = self.balance.store
        if duration_s is None:
            answered_at = await store.answered_at(ref)
            if answered_at is None and await self._recover(
                key, party, policy, ref, end.disconnect_at, answered=False
            ):
                answered_at = await store.answered_at(ref)
            duration_s = 0 if answered_at is None else max(0, int(end.disconnect_at - answered_at))
        try:
            try:
                settled = await store.settle(ref, duration_s, end, overrun_cap=policy.overrun_cap)
            except UnknownSession:
                # Nothing under the call's own key (a Stop-only switch, a lost Start):
                # it may take over the hold its authorization left.
                if not await self._recover(
                    key, party, policy, ref, end.disconnect_at, answered=False
                ):
                    raise
                settled = await store.settle(ref, duration_s, end, overrun_cap=policy.overrun_cap)
        except (UnknownSession, SessionEnded):
            charged = await self._charge(key, ref, party, policy, duration_s, end)
            if isinstance(charged, Refusal):
                log.warning(
                    "call.unbillable",
                    extra={"session": key.session_key, "reason": charged.reason.value},
                )
                return Ended(None, reason=charged.reason.value)
            settled = charged
        if settled.overrun_s and not settled.duplicate:
            metrics.child(metrics.OVERRUN_SECONDS, key.nas).inc(settled.overrun_s)
            log.warning(
                "call.overrun",
                extra={
                    "session": key.session_key,
                    "overrun_s": settled.overrun_s,
                    "billed": not policy.overrun_cap,
                },
            )
        if not settled.duplicate and settled.costs_micros[0]:
            metrics.child(metrics.SPEND, self._spend_label(ref.root_id)).inc(
                settled.costs_micros[0]
            )
        if self.fraud is not None and not settled.duplicate and duration_s > 0:
            caller = self._identify(party, policy, accounting=True)
            if not isinstance(caller, Refusal):
                self.fraud.answered(ref.root_id, caller.account_id, duration_s)
        await self._wait_commit(settled)  # acknowledged once PostgreSQL has it, or timed out
        return Ended(settled)

    async def _recover(
        self,
        key: CallKey,
        party: Party,
        policy: Policy,
        ref: SessionRef,
        at: float,
        *,
        answered: bool,
        reach: str = "",
    ) -> bool:
        """No hold under the call's own key: take over the provisional hold its
        authorization left, or for an answered call reserve one now. False when there
        is none (then the switch was told to hang up, or the call runs unreserved and
        is billed at its Stop)."""
        store = self.balance.store
        caller = self._identify(party, policy, accounting=True)
        number = policy.number(party.called)
        if not isinstance(caller, Refusal) and number is not None:
            links = self._links(ref.root_id, key, caller.account_id, number)
            if await store.adopt(ref, links, key.session_id, key.leg):
                log.info("call.linked", extra={"session": key.session_key})
                return True
        if not answered:
            return False
        opened = await self._open(key, party, policy, at)
        if not isinstance(opened, Refusal):
            return True
        outcome = "running"
        if policy.hangup and self.hangup is not None and reach:
            await self.hangup(reach)
            outcome = "disconnected"
        metrics.child(metrics.UNRESERVED_CALLS, key.nas, outcome).inc()
        log.warning(
            "call.unreserved",
            extra={"session": key.session_key, "reason": opened.reason.value, "outcome": outcome},
        )
        return False

    async def _open(
        self, key: CallKey, party: Party, policy: Policy, at: float
    ) -> Authorized | LoginAccepted | Refusal:
        """Reserve for an answered call that has no hold: authorize it again (no
        password: the switch already let it through), under its own key."""
        trusted = Party(
            username=party.username,
            calling=party.calling,
            called=party.called,
            remote_addr=party.remote_addr,
        )
        trusting = dataclasses.replace(policy, check_secret=False)
        return await self.authorize(key, trusted, trusting, at, answered=True)

    async def _release_other_leg(
        self, key: CallKey, party: Party, policy: Policy, at: float
    ) -> None:
        ref = self._locate(key, party, policy)
        if ref is None:
            return
        if not await self.balance.store.session_state(ref):
            await self._recover(key, party, policy, ref, at, answered=False)
        try:
            if await self.balance.store.release(ref):
                log.info("call.other_leg_released", extra={"session": key.session_key})
        except (UnknownSession, SessionEnded):
            pass

    async def _hang_up(self, ref: SessionRef, reach: str, *, claim: bool) -> bool:
        """Tell the switch to end the call, once: a cut call is claimed first, so the
        keeper of another gateway does not send it too."""
        if self.hangup is None:
            return False
        if claim:
            store = self.balance.store
            stored = await store.claim_cut(store.session_key(ref), store.keys.shard_of(ref.root_id))
            if stored is None:
                return False
            reach = reach or stored
        if not reach:
            return False
        await self.hangup(reach)
        return True

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
        number = policy.number(party.called)
        priced = self._price(caller.account_id, number, setup, caller.inbound)
        if isinstance(priced, Refusal):
            return priced
        assert number is not None  # priced
        chain = priced.chain
        meta = self._meta(key, party, policy, setup, number, priced)
        try:
            return await self.balance.charge(ref, chain, meta, duration_s, end)
        except SessionExists:
            return await self.balance.store.settle(ref, duration_s, end)

    async def _wait_commit(self, settled: Settled) -> None:
        if self.waiter is not None and self.commit_wait_s > 0:
            await self.waiter.wait_committed(settled.stream, settled.stream_id, self.commit_wait_s)

    async def nas_restarted(self, nas: str, at: float | None = None) -> int:
        """Accounting-On/Off: end every open call of ``nas``; return how many.

        Answered calls are billed up to now (the switch dropped them); calls that
        never answered are released.
        """
        moment = time.time() if at is None else at
        store = self.balance.store
        ended = 0
        async for call in store.open_sessions(nas):
            try:
                if call.answered_at is not None:
                    seconds = max(0, int(moment - call.answered_at))
                    end = CallEnd(
                        disconnect_at=moment, cause="nas-restart", connect_at=call.answered_at
                    )
                    await store.settle_key(call.session, call.shard, seconds, end)
                else:
                    await store.release_key(call.session, call.shard)
            except (UnknownSession, SessionEnded):
                continue
            ended += 1
        log.info("nas.restarted", extra={"nas": nas, "calls_ended": ended})
        return ended

    # -- helpers ----------------------------------------------------------------------

    def _spend_label(self, root_id: int) -> str:
        label = self._spend_labels.get(root_id)
        if label is None:
            if len(self._spend_labels) >= self.spend_agents:
                return "other"
            label = self._spend_labels[root_id] = str(root_id)
        return label

    def _unrated(self, account_id: int) -> None:
        account = self.directory.account(account_id)
        if self.fraud is not None and account is not None:
            self.fraud.unrated(account.root_id, account_id)

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
            # Normalizing the called number costs: only when DIDs identify callers.
            called_number=(
                policy.number(party.called) if party.called and BY_DID in policy.order else None
            ),
        )

    def _price(
        self, account_id: int, number: str | None, at: float, inbound: bool = False
    ) -> Priced | Refusal:
        if number is None:
            return Refusal(Reason.DESTINATION_NOT_RATED, account_id, detail="invalid number")
        accounts = self.directory.chain_accounts(account_id, inbound)
        if accounts is None:
            return Refusal(Reason.UNKNOWN_CALLER, account_id)
        priced = build_chain(accounts, self.rates.index, number, datetime.fromtimestamp(at, UTC))
        if isinstance(priced, Refusal):
            return priced
        return limits.check(accounts, priced, number) or priced

    def _meta(
        self, key: CallKey, party: Party, policy: Policy, at: float, number: str, priced: Priced
    ) -> CallMeta:
        return CallMeta(
            nas=key.nas,
            session_id=key.session_id,
            leg=key.leg,
            setup_at=at,
            caller=policy.number(party.calling) or (party.calling or ""),
            called=number,
            called_dialled=party.called or "",
            remote_addr=party.remote_addr,
            prefixes=priced.prefixes,
            rate_groups=priced.rate_groups,
        )

    def _locate(self, key: CallKey, party: Party, policy: Policy) -> SessionRef | None:
        caller = self._identify(party, policy, accounting=True)
        if isinstance(caller, Refusal):
            return None
        account = self.directory.account(caller.account_id)
        if account is None:
            return None
        return SessionRef(account.root_id, key.session_key)
