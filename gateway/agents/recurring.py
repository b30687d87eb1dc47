"""The charge job: monthly fees, DID rentals and setup fees, down the reseller chain.

Each round (every ``recurring.check_interval_s``, on every gateway):

1. every live subscription gets a ``recurring_charges`` row per period that has begun
   (``gateway/agents/periods.py``), inserted with ON CONFLICT DO NOTHING;
2. due rows are leased with ``FOR UPDATE SKIP LOCKED`` and charged through
   ``move_money`` under the key ``recurring:<subscription>:<period>``: two gateways, a
   restart, or a lease that ran out mid-charge end in one ledger move, never two.

One charge debits, in one move, the subscriber at its product's price and every
wholesale agent above it at the price of the product it resells (the product's
``base_product_id`` chain): the agent pays its parent's price and charges its
customer its own. A transfer-mode agent is not charged (it sold its credit), as for
calls. When a payer lacks the money nothing moves and the product's ``on_unpaid``
rule applies: ``suspend`` disables the subscriber (reason ``unpaid``) and retries;
``negative`` charges into the credit limit (beyond it: retry); ``retry`` retries every
``recurring.retry_interval_s``. A charge still unpaid when its period ends is
``abandoned``. A charge that succeeds re-enables an account suspended as unpaid once
nothing else of it is unpaid.

Currencies: a product is priced in its owner's currency (the operator's products: in
the currency of the account buying it). A payer in another currency pays the price
converted at the exchange rate in force at the charge's time, rounded up
(``gateway.agents.exchange``), its entry keeping the price and the quote; with no
rate in force the charge stays unpaid (``NO_EXCHANGE_RATE``) and is retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

from gateway.agents import exchange
from gateway.agents.context import ManagementContext
from gateway.agents.periods import period_end, period_starts
from gateway.balance.moves import MoneyMove, MoveRefused, Posting, move_money
from gateway.core.errors import Duplicate
from gateway.core.periodic import Periodic
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity

log = logging.getLogger(__name__)

LEASE_S = 120


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    charge_id: int
    subscription_id: int
    account_id: int  # the subscriber
    status: str  # charged, unpaid, abandoned
    amount_micros: int
    ledger_ids: tuple[int, ...]
    detail: str = ""


def today_utc() -> date:
    return datetime.now(UTC).date()


def charge_key(subscription_id: int, period_start: date) -> str:
    return f"recurring:{subscription_id}:{period_start.isoformat()}"


async def open_periods(conn: Connection, through: date) -> int:
    """Insert the charge rows of every period begun by ``through``; how many are new."""
    # Only periods after a subscription's latest row are offered: every round of every
    # process runs this, and the ones before are there already.
    subs = await conn.fetch(
        "SELECT s.id, s.starts_on, s.ends_on, s.bill_day, p.kind, "
        "  (SELECT max(c.period_start) FROM recurring_charges c "
        "   WHERE c.subscription_id = s.id) AS last "
        "FROM subscriptions s "
        "JOIN products p ON p.id = s.product_id JOIN accounts a ON a.id = s.account_id "
        "WHERE a.status <> 'removed' AND s.starts_on <= $1 "
        "AND (s.ends_on IS NULL OR s.ends_on > s.starts_on)",
        through,
    )
    rows: list[tuple[int, date]] = []
    for s in subs:
        last: date | None = s["last"]
        for start in period_starts(s["kind"], s["starts_on"], s["bill_day"], s["ends_on"], through):
            if last is None or start > last:
                rows.append((s["id"], start))
    if not rows:
        return 0
    inserted = await conn.fetchval(
        "WITH new AS (INSERT INTO recurring_charges (subscription_id, period_start) "
        "SELECT * FROM unnest($1::bigint[], $2::date[]) "
        "ON CONFLICT (subscription_id, period_start) DO NOTHING RETURNING 1) "
        "SELECT count(*) FROM new",
        [r[0] for r in rows],
        [r[1] for r in rows],
    )
    return int(inserted)


async def _postings(conn: Connection, subscription: asyncpg.Record, at: datetime) -> list[Posting]:
    """The subscriber's debit and each charged agent's, up the product's base chain,
    each in its payer's currency."""
    postings: list[Posting] = []
    account_id: int = subscription["account_id"]
    product_id: int | None = subscription["product_id"]
    payer_is_subscriber = True
    while product_id is not None:
        product = await conn.fetchrow(
            "SELECT p.id, p.owner_account_id, p.base_product_id, p.price_micros, "
            "o.currency FROM products p LEFT JOIN accounts o ON o.id = p.owner_account_id "
            "WHERE p.id = $1",
            product_id,
        )
        if product is None:
            break
        payer = await conn.fetchrow(
            "SELECT id, kind, billing_mode, currency FROM accounts WHERE id = $1", account_id
        )
        charged = payer is not None and (
            payer_is_subscriber
            or payer["kind"] == "customer"
            or payer["billing_mode"] == "wholesale"
        )
        if charged and payer is not None and product["price_micros"] > 0:
            postings.append(await _debit(conn, payer, product, at))
        if product["owner_account_id"] is None:
            break
        account_id = product["owner_account_id"]
        product_id = product["base_product_id"]
        payer_is_subscriber = False
    return postings


async def _debit(
    conn: Connection, payer: asyncpg.Record, product: asyncpg.Record, at: datetime
) -> Posting:
    """The payer's debit for ``product``: its price, or the price's value in the payer's
    currency when the product's owner sells in another (the payer rounds up)."""
    price: int = product["price_micros"]
    priced_in = product["currency"] or payer["currency"]  # the operator's: the buyer's
    if priced_in == payer["currency"]:
        return Posting(payer["id"], -price)
    paid = await exchange.converted(conn, -price, priced_in, payer["currency"], at, up=True)
    return Posting(payer["id"], paid.amount_micros, counter=paid.counter(-price, priced_in))


async def _lease(pool: asyncpg.Pool, batch: int) -> list[asyncpg.Record]:
    with pg_errors():
        return await pool.fetch(
            "UPDATE recurring_charges c SET next_attempt_at = now() + make_interval(secs => $2), "
            "attempts = c.attempts + 1, updated_at = now() "
            "WHERE c.id IN (SELECT id FROM recurring_charges WHERE status IN ('due', 'unpaid') "
            "AND next_attempt_at <= now() ORDER BY next_attempt_at, id LIMIT $1 "
            "FOR UPDATE SKIP LOCKED) "
            "RETURNING c.id, c.subscription_id, c.period_start",
            batch,
            LEASE_S,
        )


async def charge_one(
    ctx: ManagementContext, charge: asyncpg.Record, today: date | None = None
) -> ChargeOutcome:
    """Charge one leased period: money moves once whatever happens around it."""
    today = today or today_utc()
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            sub = await conn.fetchrow(
                "SELECT s.id, s.account_id, s.product_id, s.bill_day, p.name, p.kind, "
                "p.on_unpaid FROM subscriptions s JOIN products p ON p.id = s.product_id "
                "WHERE s.id = $1",
                charge["subscription_id"],
            )
            assert sub is not None  # charges are deleted with their subscription
            at = datetime.now(UTC)
            try:
                postings = await _postings(conn, sub, at)
            except exchange.NoExchangeRate as missing:
                postings = None
                no_rate = f"{missing.code}: {missing.message}"
    period: date = charge["period_start"]
    if postings is None:
        end = period_end(sub["kind"], period, sub["bill_day"])
        status = "abandoned" if end is not None and end <= today else "unpaid"
        return await _record(ctx, charge["id"], sub, status, 0, (), no_rate)
    if not postings:
        return await _record(ctx, charge["id"], sub, "charged", 0, (), "nothing to pay")
    move = MoneyMove(
        "recurring",
        charge_key(sub["id"], period),
        tuple(postings),
        note=f"{sub['name']} from {period.isoformat()}",
        reference=f"subscription {sub['id']}",
        within_credit_limit=sub["on_unpaid"] == "negative",
        at=at,
    )
    try:
        try:
            with pg_integrity():
                result = await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)
        except Duplicate:
            # Another gateway booked it between our look and our insert: a replay
            # now returns its entries.
            with pg_integrity():
                result = await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)
    except MoveRefused as refused:
        end = period_end(sub["kind"], period, sub["bill_day"])
        status = "abandoned" if end is not None and end <= today else "unpaid"
        detail = f"{refused.code}: account {refused.account_id}: {refused.detail}"
        outcome = await _record(ctx, charge["id"], sub, status, 0, (), detail)
        if sub["on_unpaid"] == "suspend" and status == "unpaid":
            await _suspend(ctx, sub["account_id"], f"unpaid {sub['name']} {period.isoformat()}")
        return outcome
    with pg_errors():
        paid = await ctx.pool.fetchval(
            "SELECT coalesce(-sum(amount_micros), 0) FROM ledger_entries "
            "WHERE id = ANY($1::bigint[]) AND account_id = $2",
            list(result.ledger_ids),
            sub["account_id"],
        )
    outcome = await _record(ctx, charge["id"], sub, "charged", int(paid), result.ledger_ids, "")
    await _reinstate(ctx, sub["account_id"])
    return outcome


async def _record(
    ctx: ManagementContext,
    charge_id: int,
    sub: asyncpg.Record,
    status: str,
    amount: int,
    ledger_ids: tuple[int, ...],
    detail: str,
) -> ChargeOutcome:
    retry = ctx.config.recurring.retry_interval_s
    with pg_errors():
        await ctx.pool.execute(
            "UPDATE recurring_charges SET status = $2, amount_micros = $3, ledger_ids = $4, "
            "detail = $5, updated_at = now(), "
            "next_attempt_at = now() + make_interval(secs => $6) WHERE id = $1",
            charge_id,
            status,
            amount,
            list(ledger_ids),
            detail[:500],
            retry,
        )
    log.info(
        "recurring.charge",
        extra={"charge": charge_id, "subscription": sub["id"], "status": status, "detail": detail},
    )
    return ChargeOutcome(
        charge_id, sub["id"], sub["account_id"], status, amount, ledger_ids, detail
    )


async def _suspend(ctx: ManagementContext, account_id: int, detail: str) -> None:
    with pg_errors():
        done = await ctx.pool.fetchval(
            "UPDATE accounts SET status = 'disabled', disabled_reason = 'unpaid', "
            "disabled_detail = $2, disabled_at = now() WHERE id = $1 AND status = 'active' "
            "RETURNING id",
            account_id,
            detail[:500],
        )
    if done is not None:
        log.warning("recurring.suspended", extra={"account": account_id, "detail": detail})


async def _reinstate(ctx: ManagementContext, account_id: int) -> None:
    """Re-enable an account suspended as unpaid once none of its charges is unpaid."""
    with pg_errors():
        done = await ctx.pool.fetchval(
            "UPDATE accounts a SET status = 'active', disabled_reason = '', disabled_detail = '', "
            "disabled_at = NULL WHERE a.id = $1 AND a.status = 'disabled' "
            "AND a.disabled_reason = 'unpaid' AND NOT EXISTS (SELECT 1 FROM recurring_charges c "
            "JOIN subscriptions s ON s.id = c.subscription_id "
            "JOIN products p ON p.id = s.product_id "
            "WHERE s.account_id = a.id AND c.status = 'unpaid' AND p.on_unpaid = 'suspend') "
            "RETURNING id",
            account_id,
        )
    if done is not None:
        log.info("recurring.reinstated", extra={"account": account_id})


async def charge_due(ctx: ManagementContext, today: date | None = None) -> list[ChargeOutcome]:
    """One round: open the periods begun by ``today``, then charge what is due."""
    today = today or today_utc()
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            await open_periods(conn, today)
    outcomes: list[ChargeOutcome] = []
    for charge in await _lease(ctx.pool, ctx.config.recurring.batch):
        outcomes.append(await charge_one(ctx, charge, today))
    return outcomes


async def retry_now(conn: Connection, account_id: int) -> int:
    """Make the account's unpaid charges due at once (after a refill, say)."""
    status = await conn.execute(
        "UPDATE recurring_charges c SET next_attempt_at = now() FROM subscriptions s "
        "WHERE s.id = c.subscription_id AND s.account_id = $1 AND c.status = 'unpaid'",
        account_id,
    )
    return int(status.split()[-1])


class RecurringJob(Periodic):
    """``charge_due`` every ``recurring.check_interval_s``."""

    name = "recurring"

    def __init__(self, ctx: ManagementContext) -> None:
        super().__init__(ctx.config.recurring.check_interval_s)
        self.ctx = ctx

    async def step(self) -> None:
        outcomes = await charge_due(self.ctx)
        if outcomes:
            counts: dict[str, int] = {}
            for o in outcomes:
                counts[o.status] = counts.get(o.status, 0) + 1
            log.info("recurring.round", extra=counts)
