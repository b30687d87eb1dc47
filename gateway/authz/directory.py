"""Who is calling and who pays: extensions, caller-IDs, DIDs and the account tree, in memory.

Loaded from PostgreSQL at start and reloaded per table when a trigger notifies a
change (channel ``gateway_directory``), so identifying a caller and building a
call's chain cost no round trip. A change is visible within about a second.
Money is not here: balances, holds and the authoritative status check live in
Redis (reserve.lua); a status change is also pushed to the Redis mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from gateway.db import Connection
from gateway.db.listener import NotifyListener
from gateway.rating.chain import ChainAccount
from gateway.rating.rules import CallRules, PrefixSet

log = logging.getLogger(__name__)

CHANNEL = "gateway_directory"
COALESCE_S = 0.05
MAX_CACHED_CHAINS = 200_000


@dataclass(frozen=True, slots=True)
class Extension:
    username: str
    account_id: int
    secret: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    parent_id: int | None
    root_id: int
    kind: str
    billing_mode: str | None
    rate_group_id: int | None
    status: str
    currency: str
    credit_limit_micros: int
    max_calls: int | None
    rules: CallRules | None = None
    inbound_rate_group_id: int | None = None
    # Below this available money the Access-Accept carries a low-balance hint.
    low_balance_micros: int | None = None

    def as_chain_account(self, inbound: bool = False) -> ChainAccount:
        if inbound:
            # A call to one of the customer's DIDs: each level pays its inbound rate.
            return ChainAccount(
                self.id,
                self.root_id,
                self.kind,
                self.billing_mode,
                self.inbound_rate_group_id,
                self.rules,
                inbound=True,
                currency=self.currency,
            )
        return ChainAccount(
            self.id,
            self.root_id,
            self.kind,
            self.billing_mode,
            self.rate_group_id,
            self.rules,
            currency=self.currency,
        )


@dataclass(frozen=True, slots=True)
class _Tables:
    extensions: dict[str, Extension]
    caller_ids: dict[str, int]
    accounts: dict[int, Account]
    dids: dict[str, int] = field(default_factory=dict)
    # Each customer's chain, built on first use: the tables never change (a reload
    # makes new ones), so neither does a chain, and every call of the customer
    # shares one tuple (``build_chain`` caches by it).
    chains: dict[int, tuple[ChainAccount, ...] | None] = field(default_factory=dict)
    inbound_chains: dict[int, tuple[ChainAccount, ...] | None] = field(default_factory=dict)


async def _load_extensions(conn: Connection) -> dict[str, Extension]:
    rows = await conn.fetch("SELECT username, account_id, secret, status FROM extensions")
    return {
        r["username"]: Extension(
            r["username"], r["account_id"], r["secret"], r["status"] == "active"
        )
        for r in rows
    }


async def _load_caller_ids(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT number, account_id FROM caller_ids")
    return {r["number"]: r["account_id"] for r in rows}


async def _load_dids(conn: Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT number, account_id FROM dids")
    return {r["number"]: r["account_id"] for r in rows}


async def _load_accounts(conn: Connection) -> dict[int, Account]:
    rows = await conn.fetch(
        "SELECT a.id, a.parent_id, a.root_id, a.kind, a.billing_mode, a.rate_group_id, "
        "       a.status, a.currency, a.credit_limit_micros, a.max_concurrent_calls, "
        "       a.low_balance_threshold_micros, "
        "       r.account_id IS NOT NULL AS has_rules, r.allow_prefixes, r.block_prefixes, "
        "       r.max_price_per_min_micros, r.negative_margin, r.min_margin_micros, "
        "       r.max_spend_hour_micros, r.max_spend_day_micros, r.max_spend_call_micros, "
        "       r.max_attempts_per_s, r.max_attempts_per_min, a.inbound_rate_group_id "
        "FROM accounts a LEFT JOIN call_rules r ON r.account_id = a.id"
    )
    return {
        r["id"]: Account(
            r["id"],
            r["parent_id"],
            r["root_id"],
            r["kind"],
            r["billing_mode"],
            r["rate_group_id"],
            r["status"],
            r["currency"],
            r["credit_limit_micros"],
            r["max_concurrent_calls"],
            _rules(r) if r["has_rules"] else None,
            r["inbound_rate_group_id"],
            r["low_balance_threshold_micros"],
        )
        for r in rows
    }


def _rules(row: asyncpg.Record) -> CallRules:
    return CallRules(
        allow=PrefixSet.of(row["allow_prefixes"]),
        block=PrefixSet.of(row["block_prefixes"]),
        max_price_per_min_micros=row["max_price_per_min_micros"],
        negative_margin=row["negative_margin"],
        min_margin_micros=row["min_margin_micros"],
        max_spend_hour_micros=row["max_spend_hour_micros"],
        max_spend_day_micros=row["max_spend_day_micros"],
        max_spend_call_micros=row["max_spend_call_micros"],
        max_attempts_per_s=row["max_attempts_per_s"],
        max_attempts_per_min=row["max_attempts_per_min"],
    )


_TABLES = ("extensions", "caller_ids", "accounts", "dids")


class Directory:
    """The in-memory directory; ``on_account_change`` hears accounts whose caps changed."""

    name = "directory"

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        on_account_change: Callable[[list[int]], Awaitable[None]] | None = None,
    ) -> None:
        self.pool = pool
        self.tables = _Tables({}, {}, {})
        self.on_account_change = on_account_change
        self.reloads = 0
        self._pending: set[str] = set()
        self._reloader: asyncio.Task[None] | None = None
        self._listener = NotifyListener(url, CHANNEL, self._notified, self.reload_all)

    async def start(self) -> None:
        await self._listener.start()
        await self.reload_all()

    async def stop(self) -> None:
        await self._listener.stop()
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader

    async def reload_all(self) -> None:
        await self._reload(set(_TABLES))

    def _notified(self, payload: str) -> None:
        self._pending.add(payload if payload in _TABLES else "*")
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.create_task(self._reload_pending())

    async def _reload_pending(self) -> None:
        await asyncio.sleep(COALESCE_S)  # a burst of statements becomes one reload
        while self._pending:
            names = set(_TABLES) if "*" in self._pending else set(self._pending)
            self._pending.clear()
            try:
                await self._reload(names)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("directory.reload_failed", extra={"error": str(exc)})
                self._pending |= names
                await asyncio.sleep(1.0)

    async def _reload(self, names: set[str]) -> None:
        old = self.tables
        extensions, caller_ids, accounts = old.extensions, old.caller_ids, old.accounts
        dids = old.dids
        async with self.pool.acquire() as conn:
            if "extensions" in names:
                extensions = await _load_extensions(conn)
            if "caller_ids" in names:
                caller_ids = await _load_caller_ids(conn)
            if "accounts" in names:
                accounts = await _load_accounts(conn)
            if "dids" in names:
                dids = await _load_dids(conn)
        self.tables = _Tables(extensions, caller_ids, accounts, dids)
        self.reloads += 1
        log.info("directory.reloaded", extra={"tables": ",".join(sorted(names))})
        if "accounts" in names and self.on_account_change is not None and old.accounts:
            changed = [
                a.id
                for a in self.tables.accounts.values()
                if (prev := old.accounts.get(a.id)) is not None and _mirrored(prev) != _mirrored(a)
            ]
            if changed:
                await self.on_account_change(changed)

    # -- lookups (no I/O) -------------------------------------------------------------

    def extension(self, username: str) -> Extension | None:
        return self.tables.extensions.get(username)

    def caller_id(self, number: str) -> int | None:
        return self.tables.caller_ids.get(number)

    def did(self, number: str) -> int | None:
        """The owner of DID ``number`` (normalized digits), if it is one."""
        return self.tables.dids.get(number)

    def account(self, account_id: int) -> Account | None:
        return self.tables.accounts.get(account_id)

    def chain_accounts(
        self, customer_id: int, inbound: bool = False
    ) -> tuple[ChainAccount, ...] | None:
        """The customer and every agent above it, customer first; None if unknown.
        ``inbound``: as rated for a call to one of the customer's DIDs.

        The same tuple is returned until the accounts are reloaded.
        """
        tables = self.tables
        cache = tables.inbound_chains if inbound else tables.chains
        try:
            return cache[customer_id]
        except KeyError:
            pass
        chain = _chain_of(tables.accounts, customer_id, inbound)
        if len(cache) >= MAX_CACHED_CHAINS:
            cache.clear()
        cache[customer_id] = chain
        return chain


def _mirrored(account: Account) -> tuple[object, ...]:
    """What the Redis mirror holds of an account besides money (sync_account.lua)."""
    rules = account.rules or CallRules()
    return (
        account.status,
        account.credit_limit_micros,
        account.max_calls,
        rules.max_spend_hour_micros,
        rules.max_spend_day_micros,
        rules.max_spend_call_micros,
        rules.max_attempts_per_s,
        rules.max_attempts_per_min,
    )


def _chain_of(
    accounts: dict[int, Account], customer_id: int, inbound: bool = False
) -> tuple[ChainAccount, ...] | None:
    current = accounts.get(customer_id)
    chain: list[ChainAccount] = []
    while current is not None:
        chain.append(current.as_chain_account(inbound))
        if current.parent_id is None:
            return tuple(chain)
        current = accounts.get(current.parent_id)
    return None  # a broken parent link: refuse rather than bill a partial chain
