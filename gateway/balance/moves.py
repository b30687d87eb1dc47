"""Money moving outside calls: refills, payments, transfers, commissions, adjustments.

Every move goes through ``move_money``: one PostgreSQL transaction writes the ledger
entries and the balances (idempotent by the move's key), then the Redis mirror is
updated (idempotent by ledger entry). PostgreSQL is the truth: when Redis cannot be
updated the move still stands, is logged and counted, and ``reconcile`` repairs it;
retrying the same move mirrors it without moving the money twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from gateway.balance import fields
from gateway.balance.keys import Keys
from gateway.balance.redisconn import redis_errors
from gateway.balance.scripts import ScriptRunner
from gateway.core.errors import BackendUnavailable, GatewayError
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

MOVE_KINDS = (
    "refill",
    "payment",
    "transfer",
    "commission",
    "commission_withdraw",
    "adjustment",
    "recurring",
)
MOVE_SEEN_TTL_S = 30 * 86400


class MoveRefused(GatewayError):
    """A money move that must not happen (it would overdraw, or the account is gone)."""

    def __init__(self, code: str, account_id: int, detail: str) -> None:
        super().__init__(f"{code}: account {account_id}: {detail}")
        self.code = code
        self.account_id = account_id
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Counter:
    """A posting of a cross-currency move seen in the other side's currency: this
    posting's amount expressed in ``currency`` (same sign), at quote ``rate_id``
    (1 first currency of ``quote`` = ``rate`` of its second)."""

    amount_micros: int
    currency: str
    rate: Decimal
    quote: str
    rate_id: int


@dataclass(frozen=True, slots=True)
class Posting:
    """One account's side of a move: a signed amount on its main or commission balance,
    in that account's currency.

    ``kind`` types this posting's ledger entry when it differs from the move's (the
    parent's commission booked inside a customer's refill is a ``commission``);
    ``counter`` is set on the postings of a move between currencies."""

    account_id: int
    amount_micros: int
    pocket: str = "main"
    kind: str = ""
    counter: Counter | None = None


@dataclass(frozen=True, slots=True)
class MoneyMove:
    """A move of money; ``idempotency_key`` makes a retry a no-op.

    Postings that take money out must not overdraw: the main balance must keep
    ``available >= 0`` (balance less live holds; a credit limit is for calls, not for
    giving money away) and the commission balance cannot go below zero.
    ``within_credit_limit`` lets a charge for a service (a monthly fee whose product
    says so) use the credit limit as a call would.
    """

    kind: str
    idempotency_key: str
    postings: tuple[Posting, ...]
    note: str = ""
    reference: str = ""
    created_by_user_id: int | None = None
    within_credit_limit: bool = False
    # When the move happened (its exchange rates were looked up at this instant);
    # None: the transaction's time.
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in MOVE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(MOVE_KINDS)}, got {self.kind!r}")
        if not self.postings:
            raise ValueError("a move needs at least one posting")
        if not 1 <= len(self.idempotency_key) <= 180:
            raise ValueError("idempotency_key must be 1..180 characters")
        for p in self.postings:
            if p.pocket not in ("main", "commission"):
                raise ValueError(f"pocket must be main or commission, got {p.pocket!r}")
            if p.kind and p.kind not in MOVE_KINDS:
                raise ValueError(f"posting kind must be one of {', '.join(MOVE_KINDS)}")
            if p.amount_micros == 0:
                raise ValueError("a posting moves a non-zero amount")


@dataclass(frozen=True, slots=True)
class MoveResult:
    ledger_ids: tuple[int, ...]
    duplicate: bool  # the key was seen before: nothing moved this time
    mirrored: bool  # Redis reflects the move (or the accounts are not mirrored)


@dataclass(frozen=True, slots=True)
class _Mirror:
    root_id: int
    account_id: int
    ledger_id: int
    amount_micros: int
    version: int


def entry_keys(idempotency_key: str, count: int) -> list[str]:
    """The idempotency keys of a move's ledger entries, one per posting: the ledger's
    own rule, the one place that builds them."""
    return [f"{idempotency_key}#{i}" for i in range(count)]


# What Redis knows of an account a move takes money from: (balance, held), or None
# when the account is not mirrored.
Live = dict[int, tuple[int, int] | None]


async def _live(pool: asyncpg.Pool, pipeliner: ScriptRunner, keys: Keys, move: MoneyMove) -> Live:
    """The Redis balance and holds of every account the move takes main money from,
    read before the PostgreSQL transaction: its row locks are never held across a
    Redis round trip (neither read is atomic with the other in any case)."""
    paying = sorted({p.account_id for p in move.postings if p.amount_micros < 0})
    if not paying or move.kind == "adjustment":
        return {}
    with pg_errors():
        rows = await pool.fetch(
            "SELECT id, root_id FROM accounts WHERE id = ANY($1::bigint[])", paying
        )
    roots: dict[int, int] = {r["id"]: r["root_id"] for r in rows}
    live: Live = {}
    with redis_errors():
        for account_id, root_id in roots.items():
            balance, held = await pipeliner.client.hmget(
                keys.account(root_id, account_id), [fields.BALANCE, fields.HELD_MICROS]
            )
            live[account_id] = (
                None if balance is None or held is None else (int(balance), int(held))
            )
    return live


async def _book(
    conn: Connection, move: MoneyMove, live: Live
) -> tuple[list[int], list[_Mirror], bool]:
    keys_of_entries = entry_keys(move.idempotency_key, len(move.postings))
    existing = await conn.fetch(
        "SELECT id, account_id, amount_micros, pocket, account_version, idempotency_key "
        "FROM ledger_entries WHERE idempotency_key = ANY($1::text[]) ORDER BY idempotency_key",
        keys_of_entries,
    )
    if existing:
        roots = dict(
            await conn.fetch(
                "SELECT id, root_id FROM accounts WHERE id = ANY($1::bigint[])",
                [r["account_id"] for r in existing],
            )
        )
        seen = [
            _Mirror(
                roots[r["account_id"]],
                r["account_id"],
                r["id"],
                r["amount_micros"],
                r["account_version"],
            )
            for r in existing
            if r["pocket"] == "main" and r["account_version"] is not None
        ]
        return [r["id"] for r in existing], seen, True

    ids = sorted({p.account_id for p in move.postings})
    rows = {
        r["id"]: r
        for r in await conn.fetch(
            "SELECT id, root_id, status, balance_micros, commission_balance_micros, "
            "credit_limit_micros FROM accounts "
            "WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
            ids,
        )
    }
    for p in move.postings:
        row = rows.get(p.account_id)
        if row is None:
            raise MoveRefused("UNKNOWN_ACCOUNT", p.account_id, "no such account")
        if row["status"] == "removed":
            raise MoveRefused("ACCOUNT_REMOVED", p.account_id, "account is removed")
    _check_funds(move, rows, live)

    ledger_ids: list[int] = []
    mirrors: list[_Mirror] = []
    for p, key in zip(move.postings, keys_of_entries, strict=True):
        version = None
        if p.pocket == "main":
            version = await conn.fetchval(
                "UPDATE accounts SET balance_micros = balance_micros + $2, "
                "money_version = money_version + 1 WHERE id = $1 RETURNING money_version",
                p.account_id,
                p.amount_micros,
            )
        else:
            await conn.execute(
                "UPDATE accounts SET commission_balance_micros = commission_balance_micros + $2 "
                "WHERE id = $1",
                p.account_id,
                p.amount_micros,
            )
        counterparty = next(
            (q.account_id for q in move.postings if q.account_id != p.account_id), None
        )
        c = p.counter
        ledger_id = await conn.fetchval(
            "INSERT INTO ledger_entries (account_id, kind, pocket, amount_micros, "
            "counterparty_account_id, idempotency_key, reference, note, created_by_user_id, "
            "account_version, created_at, counter_amount_micros, counter_currency, "
            "exchange_rate, exchange_quote, exchange_rate_id) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7, $8, $9, $10, coalesce($11, now()), $12, $13, $14, $15, $16) RETURNING id",
            p.account_id,
            p.kind or move.kind,
            p.pocket,
            p.amount_micros,
            counterparty,
            key,
            move.reference,
            move.note,
            move.created_by_user_id,
            version,
            move.at,
            None if c is None else c.amount_micros,
            None if c is None else c.currency,
            None if c is None else c.rate,
            None if c is None else c.quote,
            None if c is None else c.rate_id,
        )
        ledger_ids.append(ledger_id)
        if version is not None:
            mirrors.append(
                _Mirror(
                    rows[p.account_id]["root_id"], p.account_id, ledger_id, p.amount_micros, version
                )
            )
    return ledger_ids, mirrors, False


def _check_funds(move: MoneyMove, rows: dict[int, asyncpg.Record], live: Live) -> None:
    outgoing: dict[tuple[int, str], int] = {}
    for p in move.postings:
        outgoing[(p.account_id, p.pocket)] = (
            outgoing.get((p.account_id, p.pocket), 0) + p.amount_micros
        )
    for (account_id, pocket), net in outgoing.items():
        if net >= 0 or move.kind == "adjustment":
            continue
        row = rows[account_id]
        if pocket == "commission":
            available = row["commission_balance_micros"]
        else:
            available = row["balance_micros"]
            mirrored = live.get(account_id)
            if mirrored is not None:
                # Redis is ahead of PostgreSQL by the debits not committed yet, and
                # holds money for calls in progress: neither may be given away.
                available = min(available, mirrored[0]) - mirrored[1]
            if move.within_credit_limit:
                available += row["credit_limit_micros"]
        if available + net < 0:
            raise MoveRefused(
                "INSUFFICIENT_FUNDS",
                account_id,
                f"{pocket} balance available {available} micros, move needs {-net}",
            )


async def move_money(
    pool: asyncpg.Pool, pipeliner: ScriptRunner, keys: Keys, move: MoneyMove
) -> MoveResult:
    """Book ``move`` in PostgreSQL, then mirror it in Redis; idempotent by its key."""
    live = await _live(pool, pipeliner, keys, move)
    with pg_errors():
        async with pool.acquire() as conn, conn.transaction():
            ledger_ids, mirrors, duplicate = await _book(conn, move, live)
    mirrored = True
    try:
        for m in mirrors:
            await pipeliner.call(
                "apply_move",
                (keys.account(m.root_id, m.account_id), keys.move_seen(m.root_id, m.ledger_id)),
                (m.amount_micros, m.version, MOVE_SEEN_TTL_S),
            )
    except BackendUnavailable as exc:
        mirrored = False
        log.warning("money.mirror_failed", extra={"key": move.idempotency_key, "error": str(exc)})
    return MoveResult(tuple(ledger_ids), duplicate, mirrored)
