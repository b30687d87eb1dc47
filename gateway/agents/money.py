"""Money moves of the management API: refills, payments, transfers, commission, add-funds.

The rules (the README's "Money" section says the same for operators):

- refill: credit on an account's main balance. The operator may refill any account; an
  agent the accounts below it that it may see. An agent in ``transfer`` mode sells its
  own credit, so its refill IS a transfer (kind ``transfer``: the agent is debited in the
  same move, never beyond its available balance); a ``wholesale`` agent pays per call at
  its own rate, so its refill debits nobody.
- payment: money the account holder paid outside (cash, bank), with a reference; same
  targets and the same debit rule for transfer-mode agents as a refill, no commission.
- transfer: an agent moves its own credit to an account below it, whatever its mode.
- commission: every refill or transfer INTO an account whose parent agent has
  ``commission_rate_bp > 0`` credits the parent ``floor(amount * bp / 10000)`` on its
  commission pocket, as a ``commission`` posting of the same move (one transaction,
  one key).
- currencies: an account may hold another currency than its parent's. The amount of a
  refill, payment or transfer is in the credited account's currency and credited
  exactly; a payer in another currency is debited its value at the exchange rate in
  force at the move's time, rounded up, and commission is converted into the agent's
  currency rounded down (``gateway.agents.exchange``). Both amounts and the quote are
  kept on each entry; with no rate in force the move is refused (``NO_EXCHANGE_RATE``).
- withdraw: an agent moves commission into its main balance, never below zero.
- add-funds: an agent or customer asks the operator for a refill of its own account;
  the operator approves (the refill is booked under the key ``add-funds:{id}``) or
  rejects. Approving twice books one refill.

Every move goes through ``gateway.balance.moves.move_money`` under the client's key,
namespaced per user; a replay returns the original ledger entries with
``duplicate=True``, a replay asking for something else is ``IDEMPOTENCY_KEY_REUSED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.agents import exchange
from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.principal import Principal, require_account, visible
from gateway.balance.moves import MoneyMove, MoveResult, Posting, entry_keys, move_money
from gateway.core.errors import Duplicate
from gateway.db import Connection
from gateway.db.pool import pg_errors, pg_integrity

MAX_AMOUNT_MICROS = 10**15
MAX_KEY_LEN = 100
ADD_FUNDS_SORTS = {
    "id": "r.id",
    "created_at": "r.created_at",
    "amount_micros": "r.amount_micros",
    "status": "r.status",
    "account_id": "r.account_id",
}
ADD_FUNDS_STATUSES = ("pending", "approved", "rejected")
# A move books at most: payer, target, commission.
_MAX_POSTINGS = 3


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What a move did, with balances read from PostgreSQL (the truth) afterwards.

    ``mirrored`` False means Redis could not be updated: the money moved all the same
    (PostgreSQL committed) and the mirror is repaired by a replay or by ``reconcile``.
    """

    ledger_ids: tuple[int, ...]
    duplicate: bool
    mirrored: bool
    account_id: int
    balance_micros: int
    commission_balance_micros: int
    payer_account_id: int | None
    payer_balance_micros: int | None


def check_amount(amount_micros: int, field: str = "amount_micros") -> None:
    """Refuse an amount outside 1..10^15 micros."""
    if not 0 < amount_micros <= MAX_AMOUNT_MICROS:
        raise Invalid(field, f"must be between 1 and {MAX_AMOUNT_MICROS}")


def api_key(principal: Principal, key: str) -> str:
    """The client's idempotency key in the caller's namespace (keys of users never meet)."""
    if not 1 <= len(key) <= MAX_KEY_LEN:
        raise Invalid("idempotency_key", f"must be 1..{MAX_KEY_LEN} characters")
    return f"api:{principal.user_id}:{key}"


def _require_mover(principal: Principal) -> None:
    if principal.role == "customer":
        raise Forbidden("customers cannot move money")


def _require_below(principal: Principal, target: asyncpg.Record) -> None:
    if not principal.is_admin and target["id"] == principal.account_id:
        raise Forbidden("an agent cannot credit its own account; send an add-funds request")


async def _commission(
    conn: Connection, target: asyncpg.Record, amount: int, at: datetime
) -> Posting | None:
    """The parent agent's commission on ``amount`` credited to ``target``, if any, in the
    parent's currency (the house pays it: converted rounded down)."""
    if target["parent_id"] is None:
        return None
    parent = await conn.fetchrow(
        "SELECT id, commission_rate_bp, status, currency FROM accounts WHERE id = $1",
        target["parent_id"],
    )
    if parent is None or parent["status"] == "removed" or parent["commission_rate_bp"] <= 0:
        return None
    commission = amount * parent["commission_rate_bp"] // 10_000
    if commission <= 0:
        return None
    if parent["currency"] == target["currency"]:
        return Posting(parent["id"], commission, "commission", kind="commission")
    paid = await exchange.converted(
        conn, commission, target["currency"], parent["currency"], at, up=False
    )
    if paid.amount_micros <= 0:
        return None
    counter = paid.counter(commission, target["currency"])
    return Posting(parent["id"], paid.amount_micros, "commission", "commission", counter)


async def _sides(
    conn: Connection, payer_id: int | None, target: asyncpg.Record, amount: int, at: datetime
) -> tuple[Posting, ...]:
    """The credit of ``amount`` to ``target`` and, with a payer, its debit: the same
    amount, or in another currency its value at the rate in force, rounded up."""
    credit = Posting(target["id"], amount)
    if payer_id is None:
        return (credit,)
    currency: str = await conn.fetchval("SELECT currency FROM accounts WHERE id = $1", payer_id)
    if currency == target["currency"]:
        return (Posting(payer_id, -amount), credit)
    paid = await exchange.converted(conn, amount, target["currency"], currency, at, up=True)
    return (
        Posting(payer_id, -paid.amount_micros, counter=paid.counter(-amount, target["currency"])),
        Posting(target["id"], amount, counter=paid.counter(paid.amount_micros, currency)),
    )


async def _transfer_mode_payer(conn: Connection, principal: Principal) -> int | None:
    """The caller's own account when it sells credit (transfer mode), else None."""
    if principal.is_admin or principal.account_id is None:
        return None
    mode = await conn.fetchval(
        "SELECT billing_mode FROM accounts WHERE id = $1", principal.account_id
    )
    return principal.account_id if mode == "transfer" else None


def _check_replay(
    existing: list[asyncpg.Record], kinds: tuple[str, ...], expect: list[Posting]
) -> None:
    """A replay must be the same verb, on the same accounts, for the same amount."""
    same = all(r["kind"] in kinds for r in existing) and all(
        any(
            (r["account_id"], r["pocket"], r["amount_micros"])
            == (p.account_id, p.pocket, p.amount_micros)
            for r in existing
        )
        for p in expect
    )
    if not same:
        raise Conflict(
            "this idempotency key was used for a different move", code="IDEMPOTENCY_KEY_REUSED"
        )


async def _execute(
    ctx: ManagementContext, move: MoneyMove, kinds: tuple[str, ...], expect: list[Posting]
) -> MoveResult:
    """Book ``move`` once; a replay of its key returns the original entries.

    ``expect`` are the postings a replay must match (the commission may differ, since
    the rate may have changed since). Two requests racing with one key: the loser hits
    the unique key, and its second round sees the winner's entries.
    """
    keys = entry_keys(move.idempotency_key, _MAX_POSTINGS)
    for attempt in range(2):
        with pg_errors():
            existing = await ctx.pool.fetch(
                "SELECT account_id, kind, pocket, amount_micros FROM ledger_entries "
                "WHERE idempotency_key = ANY($1::text[]) ORDER BY idempotency_key",
                keys,
            )
        if existing:
            _check_replay(existing, kinds, expect)
            # move_money answers a replay from the keys alone: give it as many
            # postings as the original had, so every original entry comes back.
            postings = tuple(
                Posting(r["account_id"], r["amount_micros"], r["pocket"]) for r in existing
            )
            move = MoneyMove(
                move.kind,
                move.idempotency_key,
                postings,
                created_by_user_id=move.created_by_user_id,
                at=move.at,
            )
        try:
            with pg_integrity():
                return await move_money(ctx.pool, ctx.pipeliner, ctx.keys, move)
        except Duplicate:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _outcome(
    ctx: ManagementContext, result: MoveResult, account_id: int, payer: int | None
) -> MoveOutcome:
    with pg_errors():
        rows = {
            r["id"]: r
            for r in await ctx.pool.fetch(
                "SELECT id, balance_micros, commission_balance_micros FROM accounts "
                "WHERE id = ANY($1::bigint[])",
                [account_id] if payer is None else [account_id, payer],
            )
        }
    target = rows[account_id]
    return MoveOutcome(
        ledger_ids=result.ledger_ids,
        duplicate=result.duplicate,
        mirrored=result.mirrored,
        account_id=account_id,
        balance_micros=target["balance_micros"],
        commission_balance_micros=target["commission_balance_micros"],
        payer_account_id=payer,
        payer_balance_micros=None if payer is None else rows[payer]["balance_micros"],
    )


async def _credit(
    ctx: ManagementContext,
    principal: Principal,
    verb: str,
    account_id: int,
    amount_micros: int,
    idempotency_key: str,
    note: str,
    reference: str = "",
) -> MoveOutcome:
    """A refill or a payment into a visible account below the caller."""
    _require_mover(principal)
    check_amount(amount_micros)
    key = api_key(principal, idempotency_key)
    at = datetime.now(UTC)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            target = await require_account(conn, principal, account_id)
            _require_below(principal, target)
            payer = await _transfer_mode_payer(conn, principal)
            postings = await _sides(conn, payer, target, amount_micros, at)
            commission = (
                await _commission(conn, target, amount_micros, at) if verb == "refill" else None
            )
    credit = Posting(account_id, amount_micros)
    kind = "transfer" if verb == "refill" and payer is not None else verb
    move = MoneyMove(
        kind,
        key,
        postings + ((commission,) if commission else ()),
        note=note,
        reference=reference,
        created_by_user_id=principal.user_id,
        at=at,
    )
    kinds = ("payment",) if verb == "payment" else ("refill", "transfer", "commission")
    result = await _execute(ctx, move, kinds, [credit])
    return await _outcome(ctx, result, account_id, payer)


async def refill(
    ctx: ManagementContext,
    principal: Principal,
    account_id: int,
    amount_micros: int,
    idempotency_key: str,
    note: str = "",
) -> MoveOutcome:
    """Credit ``account_id``; a transfer-mode agent pays for it from its own balance."""
    return await _credit(ctx, principal, "refill", account_id, amount_micros, idempotency_key, note)


async def record_payment(
    ctx: ManagementContext,
    principal: Principal,
    account_id: int,
    amount_micros: int,
    idempotency_key: str,
    reference: str,
    note: str = "",
) -> MoveOutcome:
    """Record money the holder of ``account_id`` paid outside; no commission is due.

    A transfer-mode agent recording a payment is debited like for a refill: its
    customers' calls touch only the customer, so credit it handed out without paying
    for it would be money made from nothing.
    """
    if not reference.strip():
        raise Invalid("reference", "must name the invoice or bank reference")
    return await _credit(
        ctx, principal, "payment", account_id, amount_micros, idempotency_key, note, reference
    )


async def transfer(
    ctx: ManagementContext,
    principal: Principal,
    to_account_id: int,
    amount_micros: int,
    idempotency_key: str,
    note: str = "",
) -> MoveOutcome:
    """Move the calling agent's own credit to an account below it (never overdrawing)."""
    if principal.role != "agent" or principal.account_id is None:
        raise Forbidden("only agents transfer from their own balance; the operator refills")
    check_amount(amount_micros)
    key = api_key(principal, idempotency_key)
    own = principal.account_id
    at = datetime.now(UTC)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            target = await require_account(conn, principal, to_account_id)
            if target["id"] == own:
                raise Forbidden("cannot transfer to your own account")
            sides = await _sides(conn, own, target, amount_micros, at)
            commission = await _commission(conn, target, amount_micros, at)
    # Across currencies the debit depends on the rate of the day: a replay is checked
    # on what the target got.
    expect = [p for p in sides if p.counter is None or p.account_id == to_account_id]
    move = MoneyMove(
        "transfer",
        key,
        sides + ((commission,) if commission else ()),
        note=note,
        created_by_user_id=principal.user_id,
        at=at,
    )
    result = await _execute(ctx, move, ("transfer", "commission"), expect)
    return await _outcome(ctx, result, to_account_id, own)


async def withdraw_commission(
    ctx: ManagementContext, principal: Principal, amount_micros: int, idempotency_key: str
) -> MoveOutcome:
    """Move commission of the calling agent into its main balance (never below zero)."""
    if principal.role != "agent" or principal.account_id is None:
        raise Forbidden("only agents have a commission balance")
    check_amount(amount_micros)
    key = api_key(principal, idempotency_key)
    own = principal.account_id
    expect = [Posting(own, -amount_micros, "commission"), Posting(own, amount_micros)]
    move = MoneyMove(
        "commission_withdraw", key, tuple(expect), created_by_user_id=principal.user_id
    )
    result = await _execute(ctx, move, ("commission_withdraw",), expect)
    return await _outcome(ctx, result, own, None)


# --- add-funds requests ---------------------------------------------------------

_REQUEST_COLUMNS = (
    "r.id, r.account_id, a.name AS account_name, r.amount_micros, r.note, r.status, "
    "r.requested_by, ru.login AS requested_by_login, r.decided_by, r.decided_at, "
    "r.decision_note, r.ledger_entry_id, r.created_at"
)
_REQUEST_FROM = (
    "FROM add_funds_requests r JOIN accounts a ON a.id = r.account_id "
    "JOIN users ru ON ru.id = r.requested_by"
)


async def request_funds(
    ctx: ManagementContext, principal: Principal, amount_micros: int, note: str = ""
) -> dict[str, Any]:
    """Ask the operator to refill the caller's own account."""
    if principal.account_id is None:
        raise Forbidden("the operator refills accounts directly")
    check_amount(amount_micros)
    if len(note) > 2000:
        raise Invalid("note", "must be at most 2000 characters")
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            request_id = await conn.fetchval(
                "INSERT INTO add_funds_requests (account_id, requested_by, amount_micros, note) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                principal.account_id,
                principal.user_id,
                amount_micros,
                note,
            )
            return await _load_request(conn, principal, request_id)


async def _load_request(conn: Connection, principal: Principal, request_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT {_REQUEST_COLUMNS} {_REQUEST_FROM} WHERE r.id = $1 "
        f"AND ({visible('a', 2)} OR r.account_id = $3)",
        request_id,
        principal.grant_list,
        principal.account_id,
    )
    if row is None:
        raise NotFound(f"add-funds request {request_id} not found")
    return dict(row)


async def get_funds_request(
    ctx: ManagementContext, principal: Principal, request_id: int
) -> dict[str, Any]:
    """One add-funds request the caller may see."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            return await _load_request(conn, principal, request_id)


async def list_funds_requests(
    ctx: ManagementContext,
    principal: Principal,
    *,
    own_only: bool,
    status: str | None,
    account_id: int | None,
    order_by: str,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Add-funds requests the caller may see (its own with ``own_only``), and their count."""
    if status is not None and status not in ADD_FUNDS_STATUSES:
        raise Invalid("status", f"must be one of {', '.join(ADD_FUNDS_STATUSES)}")
    where = (
        f"WHERE ({visible('a', 1)} OR r.account_id = $2) "
        "AND ($3::text IS NULL OR r.status = $3) AND ($4::bigint IS NULL OR r.account_id = $4) "
        "AND (NOT $5 OR r.account_id = $2)"
    )
    args = (principal.grant_list, principal.account_id, status, account_id, own_only)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT count(*) {_REQUEST_FROM} {where}", *args)
            rows = await conn.fetch(
                f"SELECT {_REQUEST_COLUMNS} {_REQUEST_FROM} {where} {order_by} LIMIT $6 OFFSET $7",
                *args,
                limit,
                offset,
            )
    return [dict(r) for r in rows], int(total)


async def approve_funds_request(
    ctx: ManagementContext, principal: Principal, request_id: int, note: str = ""
) -> tuple[dict[str, Any], MoveOutcome]:
    """Book the refill of a request (operator only); approving again changes nothing.

    The request row stays locked while the refill is booked, so a concurrent reject
    waits and then finds it approved. Should the process die between booking and
    marking, the next approve finds the refill by its key and only marks it.
    """
    if not principal.is_admin:
        raise Forbidden("only the operator approves add-funds requests")
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT r.*, a.parent_id, a.currency FROM add_funds_requests r "
                "JOIN accounts a ON a.id = r.account_id WHERE r.id = $1 FOR UPDATE OF r",
                request_id,
            )
            if row is None:
                raise NotFound(f"add-funds request {request_id} not found")
            if row["status"] == "rejected":
                raise Conflict("the request was rejected", code="REQUEST_REJECTED")
            at = datetime.now(UTC)
            credit = Posting(row["account_id"], row["amount_micros"])
            commission = await _commission(conn, row, row["amount_micros"], at)
            move = MoneyMove(
                "refill",
                f"add-funds:{request_id}",
                (credit,) + ((commission,) if commission else ()),
                note=f"add-funds request {request_id}",
                created_by_user_id=principal.user_id,
                at=at,
            )
            result = await _execute(ctx, move, ("refill", "commission"), [credit])
            if row["status"] == "pending":
                await conn.execute(
                    "UPDATE add_funds_requests SET status = 'approved', decided_by = $2, "
                    "decided_at = now(), decision_note = $3, ledger_entry_id = $4 WHERE id = $1",
                    request_id,
                    principal.user_id,
                    note,
                    result.ledger_ids[0],
                )
            request = await _load_request(conn, principal, request_id)
    return request, await _outcome(ctx, result, row["account_id"], None)


async def reject_funds_request(
    ctx: ManagementContext, principal: Principal, request_id: int, note: str
) -> dict[str, Any]:
    """Refuse a pending request (operator only); rejecting again changes nothing."""
    if not principal.is_admin:
        raise Forbidden("only the operator rejects add-funds requests")
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(
                "SELECT status FROM add_funds_requests WHERE id = $1 FOR UPDATE", request_id
            )
            if status is None:
                raise NotFound(f"add-funds request {request_id} not found")
            booked = await conn.fetchval(
                "SELECT 1 FROM ledger_entries WHERE idempotency_key = $1",
                f"add-funds:{request_id}#0",
            )
            if status == "approved" or booked:
                raise Conflict("the request was approved", code="REQUEST_APPROVED")
            if status == "pending":
                await conn.execute(
                    "UPDATE add_funds_requests SET status = 'rejected', decided_by = $2, "
                    "decided_at = now(), decision_note = $3 WHERE id = $1",
                    request_id,
                    principal.user_id,
                    note,
                )
            return await _load_request(conn, principal, request_id)
