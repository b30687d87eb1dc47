"""Velocity checks: a customer suddenly dialling many new countries, many numbers no
rate prices, or mostly very short calls is disabled before the bill grows.

Each check is counted in Redis (velocity.lua), beside the call, off its reply path:
the call's answer never waits for it and a Redis hiccup only skips a count. Crossing
a threshold hands the account to ``block`` (the runtime's: it disables the account in
PostgreSQL, tells its agent, the operator and the webhook), once per account until
the gateway sees it blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.balance.keys import Keys
from gateway.balance.scripts import ScriptRunner
from gateway.config import FraudConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.rating.countries import country_code

log = logging.getLogger(__name__)

RULES = metrics.FRAUD_RULES
MAX_PENDING = 10_000  # checks in flight at once; beyond it they are skipped (and logged)
MAX_KNOWN = 200_000  # (account, country) pairs remembered as already dialled
REBLOCK_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class Crossed:
    """A customer crossed a velocity threshold."""

    account_id: int
    rule: str  # one of RULES
    detail: str


Block = Callable[[Crossed], Awaitable[None]]


class FraudGuard:
    """Counts what the checks need and calls ``block`` when a threshold is crossed."""

    def __init__(self, config: FraudConfig, pipeliner: ScriptRunner, keys: Keys) -> None:
        self.config = config
        self.pipeliner = pipeliner
        self.keys = keys
        self.block: Block | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._known: set[tuple[int, str]] = set()
        self._blocked: dict[int, float] = {}  # account -> when it was handed to block

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.new_countries_per_hour or c.unrated_attempts_per_hour or c.short_call_ratio)

    def authorized(self, root_id: int, account_id: int, number: str) -> None:
        """A call of the customer was authorized to ``number``."""
        if not self.config.new_countries_per_hour:
            return
        country = country_code(number)
        if (account_id, country) in self._known:
            return  # dialled before: not new, no round trip
        self._spawn(self._country(root_id, account_id, country))

    def unrated(self, root_id: int, account_id: int) -> None:
        """The customer tried a number no rate prices."""
        if self.config.unrated_attempts_per_hour:
            self._spawn(self._unrated(root_id, account_id))

    def answered(self, root_id: int, account_id: int, duration_s: int) -> None:
        """An answered call of the customer ended after ``duration_s``."""
        if self.config.short_call_ratio and duration_s > 0:
            self._spawn(self._answered(root_id, account_id, duration_s))

    async def drain(self) -> None:
        """Let the checks in flight finish (tests; the front's drain)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.warning("fraud.checks_skipped", extra={"pending": len(self._pending)})
            if asyncio.iscoroutine(work):
                work.close()
            return
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _count(self, root_id: int, account_id: int, *args: str | int) -> list[int]:
        keys = (self.keys.account(root_id, account_id), self.keys.countries(root_id, account_id))
        try:
            reply = await self.pipeliner.call("velocity", keys, args)
        except BackendUnavailable as exc:
            log.warning("fraud.count_failed", extra={"account": account_id, "error": str(exc)})
            return [0, 0]
        return [int(x) for x in reply]

    async def _country(self, root_id: int, account_id: int, country: str) -> None:
        new, _ = await self._count(root_id, account_id, "country", country)
        if len(self._known) >= MAX_KNOWN:
            self._known.clear()
        self._known.add((account_id, country))
        limit = self.config.new_countries_per_hour
        if new > limit:
            detail = f"{new} new destination countries within an hour (limit {limit}), +{country}"
            await self._crossed(Crossed(account_id, "new_countries", detail))

    async def _unrated(self, root_id: int, account_id: int) -> None:
        attempts, _ = await self._count(root_id, account_id, "unrated")
        limit = self.config.unrated_attempts_per_hour
        if attempts > limit:
            detail = f"{attempts} attempts to unrated numbers this hour (limit {limit})"
            await self._crossed(Crossed(account_id, "unrated_attempts", detail))

    async def _answered(self, root_id: int, account_id: int, duration_s: int) -> None:
        c = self.config
        answered, short = await self._count(
            root_id, account_id, "answered", duration_s, c.short_call_s
        )
        if answered >= c.short_call_min_calls and short > c.short_call_ratio * answered:
            detail = (
                f"{short} of {answered} answered calls this hour under {c.short_call_s} s "
                f"(limit {c.short_call_ratio:.0%})"
            )
            await self._crossed(Crossed(account_id, "short_calls", detail))

    async def _crossed(self, crossed: Crossed) -> None:
        now = time.monotonic()
        since = self._blocked.get(crossed.account_id)
        if self.block is None or (since is not None and now - since < REBLOCK_AFTER_S):
            return
        # Once per account for a while: the block disables it within a second or so;
        # after that, a crossing again (it was unblocked, or another gateway's block
        # failed) is handed on again, and block itself acts only on an active account.
        if len(self._blocked) >= MAX_KNOWN:
            self._blocked.clear()
        self._blocked[crossed.account_id] = now
        log.warning(
            "fraud.threshold_crossed",
            extra={"account": crossed.account_id, "rule": crossed.rule, "detail": crossed.detail},
        )
        try:
            await self.block(crossed)
        except Exception:
            self._blocked.pop(crossed.account_id, None)  # tried again at the next crossing
            log.exception("fraud.block_failed", extra={"account": crossed.account_id})
