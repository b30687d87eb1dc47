"""An account's statement of one period: opening balance, money moves, calls, tax, closing.

The statement is read from the ledger, the record of every change of a balance: the
opening balance is the sum of the account's main-pocket entries before the period,
the closing balance that plus the entries inside it. So the closing balance is the
account's balance at the period's end, and the balance itself when nothing moved
since (``accounts.balance_micros`` moves only with a ledger entry).

Calls are summarized from the CDRs the committer wrote during the period
(``committed_at``): the committer inserts a CDR and its ``call_debit`` entries in one
statement, so both carry the same transaction time and the calls of the summary are
exactly those whose debits the balance counts. A call ending at 23:59:59 and
committed a second later is on the next period's statement, with its money.

The period's charges (``call_debit`` and ``recurring`` entries, made positive) are
the tax base: see ``tax_of``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.db import Connection

# Ledger kinds as an invoice names them; a kind not listed shows its own name.
KIND_LABELS = {
    "refill": "Refill",
    "payment": "Payment",
    "transfer": "Transfer",
    "commission": "Commission",
    "commission_withdraw": "Commission withdrawal",
    "adjustment": "Adjustment",
    "recurring": "Recurring charge",
    "call_debit": "Calls",
}
# What the account was charged for service: the tax base.
CHARGE_KINDS = ("call_debit", "recurring")


def kind_label(kind: str) -> str:
    """The invoice's name of a ledger kind (unknown kinds: the kind, readable)."""
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


@dataclass(frozen=True, slots=True)
class MoveLine:
    """One ledger entry of the period other than a call debit."""

    at: datetime
    kind: str
    label: str
    pocket: str  # main (in the balance) or commission (the commission balance)
    amount_micros: int
    reference: str
    note: str


@dataclass(frozen=True, slots=True)
class CallLine:
    """Calls to one destination: how many, billed seconds, cost at the account's level."""

    prefix: str
    destination: str
    calls: int
    billed_s: int
    cost_micros: int


@dataclass(frozen=True, slots=True)
class Tax:
    """The tax of the period's charges: ``net + tax == gross`` always."""

    rate_bp: int
    inclusive: bool
    net_micros: int
    tax_micros: int
    gross_micros: int


@dataclass(frozen=True, slots=True)
class Statement:
    account_id: int
    account_name: str
    currency: str
    period_start: datetime
    period_end: datetime
    opening_micros: int
    moves: tuple[MoveLine, ...]
    calls: tuple[CallLine, ...]
    calls_micros: int  # the period's call debits (negative), as the balance counts them
    charges_micros: int  # service charged (calls, recurring fees), positive
    tax: Tax
    closing_micros: int


def _div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero, in integers."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def tax_of(charges_micros: int, rate_bp: int, inclusive: bool) -> Tax:
    """The tax of ``charges_micros`` at ``rate_bp`` basis points, rounded to the micro-unit.

    Inclusive: the charges are gross, the tax is the part of them the rate makes up
    (``gross * r / (1 + r)``). Exclusive: the charges are net and the tax comes on top
    (``net * r``); the prepaid balance paid the net only, so the tax is due besides.
    """
    if inclusive:
        tax = _div_round(charges_micros * rate_bp, 10_000 + rate_bp)
        return Tax(rate_bp, True, charges_micros - tax, tax, charges_micros)
    tax = _div_round(charges_micros * rate_bp, 10_000)
    return Tax(rate_bp, False, charges_micros, tax, charges_micros + tax)


_OPENING = """
SELECT coalesce(sum(amount_micros), 0)::bigint FROM ledger_entries
WHERE account_id = $1 AND pocket = 'main' AND created_at < $2
"""

_MOVES = """
SELECT created_at, kind, pocket, amount_micros, reference, note FROM ledger_entries
WHERE account_id = $1 AND created_at >= $2 AND created_at < $3
ORDER BY created_at, id
"""

# setup_at <= committed_at always: the bound lets PostgreSQL skip later partitions.
_CALLS = """
WITH mine AS (
    SELECT array_position(c.chain, $1::bigint) AS level, c.*
    FROM cdrs c
    WHERE c.chain @> ARRAY[$1::bigint] AND c.committed_at >= $2 AND c.committed_at < $3
      AND c.setup_at < $3
), priced AS (
    SELECT coalesce(m.prefix_per_level[m.level], '') AS prefix,
           m.rate_group_per_level[m.level] AS rate_group_id,
           coalesce(m.billed_s_per_level[m.level], m.duration_s) AS billed_s,
           coalesce(m.cost_per_level_micros[m.level], 0) AS cost
    FROM mine m
    -- Its own calls, and those below it that it paid for (a wholesale agent); a
    -- transfer agent is on its customers' chains at no cost: not its calls.
    WHERE m.level = 1 OR coalesce(m.cost_per_level_micros[m.level], 0) > 0
)
SELECT p.prefix, coalesce(d.destination, '') AS destination, count(*) AS calls,
       sum(p.billed_s)::bigint AS billed_s, sum(p.cost)::bigint AS cost
FROM priced p
LEFT JOIN LATERAL (
    SELECT r.destination FROM rates r
    WHERE r.rate_group_id = p.rate_group_id AND r.prefix = p.prefix
    ORDER BY r.effective_from DESC LIMIT 1
) d ON true
GROUP BY p.prefix, d.destination
ORDER BY sum(p.cost) DESC, p.prefix
"""


async def build(
    conn: Connection, account: Any, period_start: datetime, period_end: datetime
) -> Statement:
    """The statement of ``account`` (an ``accounts`` row) for [period_start, period_end)."""
    account_id: int = account["id"]
    opening: int = await conn.fetchval(_OPENING, account_id, period_start)
    rows = await conn.fetch(_MOVES, account_id, period_start, period_end)
    moves: list[MoveLine] = []
    calls_micros = 0
    charges = 0
    main_total = 0
    for r in rows:
        amount: int = r["amount_micros"]
        if r["pocket"] == "main":
            main_total += amount
            if r["kind"] in CHARGE_KINDS:
                charges -= amount
        if r["kind"] == "call_debit":
            calls_micros += amount
            continue
        moves.append(
            MoveLine(
                r["created_at"],
                r["kind"],
                kind_label(r["kind"]),
                r["pocket"],
                amount,
                r["reference"],
                r["note"],
            )
        )
    calls = tuple(
        CallLine(r["prefix"], r["destination"], r["calls"], r["billed_s"], r["cost"])
        for r in await conn.fetch(_CALLS, account_id, period_start, period_end)
    )
    return Statement(
        account_id=account_id,
        account_name=account["name"],
        currency=account["currency"],
        period_start=period_start,
        period_end=period_end,
        opening_micros=opening,
        moves=tuple(moves),
        calls=calls,
        calls_micros=calls_micros,
        charges_micros=charges,
        tax=tax_of(charges, account["tax_rate_bp"], account["tax_inclusive"]),
        closing_micros=opening + main_total,
    )
