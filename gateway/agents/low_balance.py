"""Low-balance care: tell an account's people when its money runs low, once per crossing,
and refill it from its parent agent when asked to.

An account with ``low_balance_threshold_micros`` set is *below* when its available
money in PostgreSQL (balance + credit limit; live holds are left out, so a call in
progress does not make it flap) is under the threshold. A round of the watch:

1. re-arms the accounts that are back at or above their threshold (or lost it);
2. claims every account that is below and not yet marked so: one INSERT .. ON
   CONFLICT DO UPDATE .. WHERE NOT below, whose conditional update is what makes a
   crossing belong to exactly one gateway (a second gateway waits on the row lock,
   then sees ``below`` already true and gets nothing back); the mail to the account's
   and its parent agent's contacts and the webhook are queued in that same
   transaction, under keys that carry the crossing's number;
3. performs the auto-refills due: a ``transfer`` from the parent agent (transfer
   mode only) under the key ``low-balance:{account}:{crossing}``, so a retry or a
   second gateway never moves the money twice, within the account's monthly limit.
   A refill refused (parent short of funds, limit reached, parent not in transfer
   mode) is recorded on the state row with its reason, logged and counted.

Why a periodic round rather than a hook in the committer or in every money move:
the call path and the committer stay exactly as fast as they are, one set-based
statement per round covers every cause of a change (calls, refills, transfers,
credit-limit edits, a threshold raised above the balance) and every gateway may run
it, since the conditional update decides. The cost is latency: a crossing is acted
on within ``low_balance.check_interval_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from gateway.agents import outbox
from gateway.agents.context import ManagementContext
from gateway.balance.moves import MoneyMove, MoveRefused, Posting, entry_keys, move_money
from gateway.config import AlertsConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable, Duplicate
from gateway.core.periodic import Periodic
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity
from gateway.rating.money import format_money

log = logging.getLogger(__name__)

KIND = "low_balance"
EVENT = "account.low_balance"
KEY_PREFIX = "low-balance"

_REARM = """
UPDATE low_balance_state s SET below = false, refill_due = false, rearmed_at = $1
FROM accounts a
WHERE a.id = s.account_id AND s.below
  AND (a.low_balance_threshold_micros IS NULL
       OR a.balance_micros + a.credit_limit_micros >= a.low_balance_threshold_micros)
RETURNING s.account_id
"""

# The SELECT skips the accounts already marked below (no row lock taken for them);
# the ON CONFLICT .. WHERE decides when two gateways race for the same crossing.
_CLAIM = """
INSERT INTO low_balance_state AS s (account_id, below, crossings, crossed_at, refill_due)
SELECT a.id, true, 1, $1, a.auto_refill_micros > 0
FROM accounts a
WHERE a.low_balance_threshold_micros IS NOT NULL AND a.status = 'active'
  AND a.balance_micros + a.credit_limit_micros < a.low_balance_threshold_micros
  AND NOT EXISTS (SELECT 1 FROM low_balance_state b WHERE b.account_id = a.id AND b.below)
ORDER BY a.id
ON CONFLICT (account_id) DO UPDATE
  SET below = true, crossings = s.crossings + 1, crossed_at = EXCLUDED.crossed_at,
      refill_due = EXCLUDED.refill_due, refill_status = '', refill_detail = '',
      refill_at = NULL
  WHERE NOT s.below
RETURNING s.account_id, s.crossings
"""

_CROSSED = """
SELECT a.id, a.name, a.kind, a.parent_id, a.currency, a.contact_emails,
       a.balance_micros + a.credit_limit_micros AS available_micros,
       a.low_balance_threshold_micros, a.auto_refill_micros,
       coalesce(p.contact_emails, '{}') AS parent_emails
FROM accounts a LEFT JOIN accounts p ON p.id = a.parent_id
WHERE a.id = ANY($1::bigint[])
"""

_FINISH = """
UPDATE low_balance_state SET refill_due = false, refill_status = $3, refill_detail = $4,
    refill_at = $5
WHERE account_id = $1 AND crossings = $2 AND refill_due
RETURNING account_id
"""


@dataclass(frozen=True, slots=True)
class Crossing:
    """One account that fell below its threshold, as this gateway claimed it."""

    account_id: int
    crossing: int
    available_micros: int
    threshold_micros: int


@dataclass(frozen=True, slots=True)
class Refill:
    """What became of one crossing's auto-refill (``status`` ``moved`` or a refusal)."""

    account_id: int
    crossing: int
    status: str
    detail: str
    amount_micros: int


@dataclass(frozen=True, slots=True)
class RoundResult:
    rearmed: tuple[int, ...] = ()
    crossed: tuple[Crossing, ...] = ()
    refills: tuple[Refill, ...] = ()


def refill_key(account_id: int, crossing: int) -> str:
    """The money move's idempotency key of one crossing's auto-refill."""
    return f"{KEY_PREFIX}:{account_id}:{crossing}"


def month_start(now: datetime) -> datetime:
    """The first instant of ``now``'s calendar month (UTC): the monthly limit's period."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def refilled_this_month(conn: Connection, account_id: int, now: datetime) -> int:
    """What auto-refills credited ``account_id`` since the month began (the ledger says)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(amount_micros), 0) FROM ledger_entries "
        "WHERE account_id = $1 AND created_at >= $2 AND kind = 'transfer' "
        "AND amount_micros > 0 AND idempotency_key LIKE $3",
        account_id,
        month_start(now),
        f"{KEY_PREFIX}:{account_id}:%",
    )
    return int(total)


# -- the notices ------------------------------------------------------------------------


async def _notify(conn: Connection, alerts: AlertsConfig, row: asyncpg.Record, n: int) -> None:
    """Queue the crossing's mail (account and parent contacts) and webhook."""
    now = datetime.now(UTC)
    key = f"{KEY_PREFIX}:{row['id']}:{n}"
    available = row["available_micros"]
    threshold = row["low_balance_threshold_micros"]
    currency = row["currency"]
    subject = f"Account {row['name']} (#{row['id']}): balance below {format_money(threshold)}"
    refill = (
        f"An automatic refill of {format_money(row['auto_refill_micros'])} {currency} "
        "from the agent above it is being attempted.\n"
        if row["auto_refill_micros"] > 0
        else "Refill it to keep its calls going.\n"
    )
    body = (
        f"Account {row['name']} (#{row['id']}) has {format_money(available)} {currency} "
        f"available, below its low-balance threshold of {format_money(threshold)} "
        f"{currency} ({now:%Y-%m-%d %H:%M:%S} UTC).\n\n{refill}"
        "You are told once; the next notice comes after it has been above the "
        "threshold again.\n"
    )
    payload = {
        "event": EVENT,
        "account_id": row["id"],
        "account_name": row["name"],
        "kind": row["kind"],
        "agent_id": row["parent_id"],
        "available_micros": available,
        "threshold_micros": threshold,
        "currency": currency,
        "crossing": n,
        "auto_refill_micros": row["auto_refill_micros"],
        "at": now.isoformat(),
    }
    await outbox.notify(
        conn,
        kind=KIND,
        key=key,
        recipients=[*row["contact_emails"], *row["parent_emails"]],
        subject=subject,
        body=body,
        webhook_url=alerts.webhook_url,
        event=EVENT,
        payload=payload,
    )


async def claim_crossings(
    pool: asyncpg.Pool, alerts: AlertsConfig, now: datetime
) -> tuple[tuple[int, ...], tuple[Crossing, ...]]:
    """Re-arm the accounts back above their threshold, then claim the new crossings and
    queue their notices, all in one transaction: (re-armed ids, crossings claimed)."""
    with pg_errors():
        async with pool.acquire() as conn, conn.transaction():
            rearmed = tuple(r["account_id"] for r in await conn.fetch(_REARM, now))
            claimed = {r["account_id"]: r["crossings"] for r in await conn.fetch(_CLAIM, now)}
            rows = await conn.fetch(_CROSSED, list(claimed)) if claimed else []
            for row in rows:
                await _notify(conn, alerts, row, claimed[row["id"]])
    crossed = tuple(
        Crossing(
            r["id"], claimed[r["id"]], r["available_micros"], r["low_balance_threshold_micros"]
        )
        for r in sorted(rows, key=lambda r: int(r["id"]))
    )
    for account_id in rearmed:
        metrics.child(metrics.LOW_BALANCE, "rearmed").inc()
        log.info("low_balance.rearmed", extra={"account": account_id})
    for c in crossed:
        metrics.child(metrics.LOW_BALANCE, "crossed").inc()
        log.info(
            "low_balance.crossed",
            extra={
                "account": c.account_id,
                "crossing": c.crossing,
                "available": c.available_micros,
                "threshold": c.threshold_micros,
            },
        )
    return rearmed, crossed


# -- auto-refill ------------------------------------------------------------------------


async def _plan(
    conn: Connection, account_id: int, n: int, now: datetime
) -> tuple[str, str, int, int] | None:
    """(status, detail, parent id, amount): status '' when the refill may be tried;
    None when crossing ``n``'s refill is no longer due (done, or the account re-armed)."""
    row = await conn.fetchrow(
        "SELECT a.parent_id, a.auto_refill_micros, a.auto_refill_monthly_limit_micros, "
        "       p.billing_mode AS parent_mode, p.status AS parent_status "
        "FROM low_balance_state s JOIN accounts a ON a.id = s.account_id "
        "LEFT JOIN accounts p ON p.id = a.parent_id "
        "WHERE s.account_id = $1 AND s.crossings = $2 AND s.refill_due",
        account_id,
        n,
    )
    if row is None:
        return None
    booked = await conn.fetchval(
        "SELECT amount_micros FROM ledger_entries WHERE idempotency_key = $1",
        entry_keys(refill_key(account_id, n), 2)[1],  # the account's side of the move
    )
    if booked is not None and row["parent_id"] is not None:
        # Moved already by a gateway that stopped before recording it: replayed as it
        # was (its own amount must not count against the limit a second time).
        return "", "", int(row["parent_id"]), int(booked)
    if row["auto_refill_micros"] <= 0:
        return "refused", "auto-refill is off", 0, 0
    amount = int(row["auto_refill_micros"])
    if row["parent_id"] is None or row["parent_mode"] != "transfer":
        return "not_transfer_mode", "the parent agent does not sell in transfer mode", 0, amount
    if row["parent_status"] != "active":
        return "refused", f"the parent agent is {row['parent_status']}", 0, amount
    used = await refilled_this_month(conn, account_id, now)
    limit = int(row["auto_refill_monthly_limit_micros"])
    if used + amount > limit:
        detail = (
            f"monthly limit {format_money(limit)}: {format_money(used)} refilled this month, "
            f"{format_money(amount)} more would exceed it"
        )
        return "limit_reached", detail, 0, amount
    return "", "", int(row["parent_id"]), amount


async def _move(ctx: ManagementContext, account_id: int, n: int, parent: int, amount: int) -> str:
    move = MoneyMove(
        "transfer",
        refill_key(account_id, n),
        (Posting(parent, -amount), Posting(account_id, amount)),
        note=f"auto-refill: low balance (crossing {n})",
        reference=f"auto-refill {n}",
    )
    try:
        with pg_integrity():
            result = await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)
    except Duplicate:
        # Another gateway booked this very key at the same moment: moved, once.
        return "another gateway moved it"
    return "moved before (retry)" if result.duplicate else ""


async def refill(ctx: ManagementContext, account_id: int, n: int, now: datetime) -> Refill | None:
    """Try crossing ``n``'s auto-refill of ``account_id`` and record the outcome on its
    state row; None when the crossing's refill was no longer due (done elsewhere)."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            plan = await _plan(conn, account_id, n, now)
    if plan is None:
        return None
    status, detail, parent, amount = plan
    if not status:
        try:
            detail = await _move(ctx, account_id, n, parent, amount)
            status = "moved"
        except MoveRefused as exc:
            status = "no_funds" if exc.code == "INSUFFICIENT_FUNDS" else "refused"
            detail = f"{exc.code}: account {exc.account_id}: {exc.detail}"
    with pg_errors():
        finished = await ctx.pool.fetchval(_FINISH, account_id, n, status, detail[:500], now)
    if finished is None:
        return None
    metrics.child(metrics.AUTO_REFILLS, status).inc()
    extra = {"account": account_id, "crossing": n, "amount": amount, "detail": detail}
    if status == "moved":
        log.info("low_balance.refilled", extra={**extra, "parent": parent})
    else:
        log.warning(f"low_balance.refill_{status}", extra=extra)
    return Refill(account_id, n, status, detail, amount)


async def _refill_due(ctx: ManagementContext, now: datetime) -> list[Refill]:
    with pg_errors():
        due = await ctx.pool.fetch(
            "SELECT account_id, crossings FROM low_balance_state WHERE refill_due "
            "ORDER BY account_id"
        )
    refills = []
    for row in due:
        done = await refill(ctx, row["account_id"], row["crossings"], now)
        if done is not None:
            refills.append(done)
    return refills


async def run_round(ctx: ManagementContext, now: datetime | None = None) -> RoundResult:
    """One round of the watch: finish the refills a stopped gateway left due (before the
    re-arm, which would otherwise drop one that moved the money but was not recorded),
    re-arm, claim new crossings (notices), refill them."""
    moment = now or datetime.now(UTC)
    leftover = await _refill_due(ctx, moment)
    rearmed, crossed = await claim_crossings(ctx.pool, ctx.config.alerts, moment)
    refills = leftover + await _refill_due(ctx, moment) if crossed else leftover
    return RoundResult(rearmed, crossed, tuple(refills))


class LowBalanceWatch(Periodic):
    """Runs a round every ``low_balance.check_interval_s``."""

    name = "low-balance"

    def __init__(self, ctx: ManagementContext) -> None:
        super().__init__(ctx.config.low_balance.check_interval_s)
        self.ctx = ctx

    async def step(self) -> None:
        try:
            await run_round(self.ctx)
        except BackendUnavailable:
            raise  # Periodic logs it and tries again next round
        except asyncpg.PostgresError:
            # A deadlock between two gateways' rounds, say: the next round does it.
            log.exception("low_balance.round_failed")
