"""Support tickets: customers ask their agent, agents ask the operator.

A ticket is always about the account of the user who opened it. Its handler is
fixed at creation: the account's parent agent, or the operator (``NULL``) for an
agent's own ticket and for a customer with no agent above it.

Who sees a ticket: the admin; anyone who may see the account it is about (the
opener's side and every agent above it); and the user who opened it. Who may act on
it (reply, close): the opener's side (the caller's own account is the ticket's
account), and the handler's side (the admin, or an agent who may see the handler
account). An agent that merely sees a ticket further down (its sub-agent's ticket to
the operator) may read it but not act: ``Forbidden``. Anything else is ``NotFound``.

A reply by the handler's side marks the ticket ``answered``, one by the opener's side
``open`` again. A closed ticket takes no more replies (``Conflict``): open a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict, Forbidden, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal, visible
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

STATUSES = ("open", "answered", "closed")
SCOPES = ("all", "mine", "handled")
SUBJECT_MAX = 200
BODY_MAX = 20_000

_SORTS = {
    "id": "t.id",
    "created_at": "t.created_at",
    "updated_at": "t.updated_at",
    "status": "t.status",
    "subject": "t.subject",
    "account_id": "t.account_id",
}

_SELECT = """
SELECT t.id, t.account_id, acc.name AS account_name, t.handler_account_id,
       t.opened_by_user_id, u.login AS opened_by_login, t.subject, t.status,
       t.created_at, t.updated_at,
       (SELECT count(*) FROM ticket_messages m WHERE m.ticket_id = t.id) AS message_count
FROM tickets t
JOIN accounts acc ON acc.id = t.account_id
JOIN users u ON u.id = t.opened_by_user_id
"""


def _seen(alias: str, grants_param: int, user_param: int) -> str:
    """SQL: ticket ``alias`` (joined with its account ``acc``) is visible to the caller."""
    return f"({visible('acc', grants_param)} OR {alias}.opened_by_user_id = ${user_param})"


# $1 grants, $2 user id, $3 scope, $4 own account, $5 status, $6 account filter.
_LIST_WHERE = f"""{_seen("t", 1, 2)}
AND ($3::text = 'all'
     OR ($3 = 'mine' AND (t.account_id = $4::bigint OR t.opened_by_user_id = $2))
     OR ($3 = 'handled' AND $1::bigint[] IS NULL AND t.handler_account_id IS NULL)
     OR ($3 = 'handled' AND $1::bigint[] IS NOT NULL AND t.handler_account_id IS NOT NULL
         AND t.account_id IS DISTINCT FROM $4::bigint
         AND EXISTS (SELECT 1 FROM accounts h WHERE h.id = t.handler_account_id
                     AND {visible("h", 1)})))
AND ($5::text IS NULL OR t.status = $5)
AND ($6::bigint IS NULL OR t.account_id = $6)
"""


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    account_id: int
    account_name: str
    handler_account_id: int | None  # None: the operator
    opened_by_user_id: int
    opened_by_login: str
    subject: str
    status: str
    created_at: datetime
    updated_at: datetime
    message_count: int


@dataclass(frozen=True, slots=True)
class TicketMessage:
    id: int
    author_user_id: int
    author_login: str
    author_role: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TicketDetail:
    ticket: Ticket
    messages: tuple[TicketMessage, ...]


@dataclass(frozen=True, slots=True)
class TicketPage:
    items: tuple[Ticket, ...]
    total: int


def _ticket(row: asyncpg.Record) -> Ticket:
    return Ticket(
        id=row["id"],
        account_id=row["account_id"],
        account_name=row["account_name"],
        handler_account_id=row["handler_account_id"],
        opened_by_user_id=row["opened_by_user_id"],
        opened_by_login=row["opened_by_login"],
        subject=row["subject"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        message_count=int(row["message_count"]),
    )


def _check_text(field: str, value: str, maximum: int) -> str:
    # The API validates lengths already; this keeps the service safe on its own and
    # refuses text that is only blanks, which pydantic's min_length lets through.
    text = value.strip()
    if not text:
        raise Invalid(field, "must not be blank")
    if len(value) > maximum:
        raise Invalid(field, f"must be at most {maximum} characters")
    return value


async def _visible_ticket(
    conn: Connection, principal: Principal, ticket_id: int, *, for_update: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        _SELECT
        + f"WHERE t.id = $1 AND {_seen('t', 2, 3)}"
        + (" FOR UPDATE OF t" if for_update else ""),
        ticket_id,
        principal.grant_list,
        principal.user_id,
    )
    if row is None:
        raise NotFound(f"ticket {ticket_id} not found")
    found: asyncpg.Record = row
    return found


async def _side(conn: Connection, principal: Principal, row: asyncpg.Record) -> str:
    """'opener' or 'handler': which side the caller acts for; Forbidden when neither."""
    if principal.account_id is not None and principal.account_id == row["account_id"]:
        return "opener"
    if row["opened_by_user_id"] == principal.user_id:
        return "opener"
    if principal.is_admin:
        return "handler"
    handler = row["handler_account_id"]
    if handler is not None and principal.role == "agent":
        may = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM accounts a WHERE a.id = $1 AND {visible('a', 2)})",
            handler,
            principal.grant_list,
        )
        if may:
            return "handler"
    raise Forbidden("only the ticket's opener and its handler may act on it")


async def _messages(conn: Connection, ticket_id: int) -> tuple[TicketMessage, ...]:
    rows = await conn.fetch(
        "SELECT m.id, m.author_user_id, u.login, u.role, m.body, m.created_at "
        "FROM ticket_messages m JOIN users u ON u.id = m.author_user_id "
        "WHERE m.ticket_id = $1 ORDER BY m.created_at, m.id",
        ticket_id,
    )
    return tuple(
        TicketMessage(
            r["id"], r["author_user_id"], r["login"], r["role"], r["body"], r["created_at"]
        )
        for r in rows
    )


async def list_tickets(
    ctx: ManagementContext,
    principal: Principal,
    page: PageRequest,
    *,
    scope: str = "all",
    status: str | None = None,
    account_id: int | None = None,
) -> TicketPage:
    """The tickets the caller may see, one page.

    ``scope``: ``all`` (everything visible), ``mine`` (about the caller's own account
    or opened by the caller), ``handled`` (the operator's queue for an admin; for an
    agent, tickets whose handler is an account it may see).
    """
    if scope not in SCOPES:
        raise Invalid("scope", f"must be one of {', '.join(SCOPES)}")
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"must be one of {', '.join(STATUSES)}")
    order = page.order_by(_SORTS, "t.id")
    args = (
        principal.grant_list,
        principal.user_id,
        scope,
        principal.account_id,
        status,
        account_id,
    )
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM tickets t JOIN accounts acc ON acc.id = t.account_id "
                f"WHERE {_LIST_WHERE}",
                *args,
            )
            rows = await conn.fetch(
                f"{_SELECT} WHERE {_LIST_WHERE} {order} LIMIT $7 OFFSET $8",
                *args,
                page.limit,
                page.offset,
            )
    return TicketPage(tuple(_ticket(r) for r in rows), int(total))


async def get_ticket(ctx: ManagementContext, principal: Principal, ticket_id: int) -> TicketDetail:
    """One ticket with its messages, oldest first; NotFound unless the caller may see it."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await _visible_ticket(conn, principal, ticket_id)
            return TicketDetail(_ticket(row), await _messages(conn, ticket_id))


async def open_ticket(
    ctx: ManagementContext, principal: Principal, subject: str, body: str
) -> TicketDetail:
    """Open a ticket about the caller's own account, with its first message.

    A customer's ticket goes to its parent agent; an agent's to the operator. The
    operator (admin) answers tickets and opens none (``Forbidden``).
    """
    if principal.is_admin or principal.account_id is None:
        raise Forbidden("the operator answers tickets; it does not open them")
    subject = _check_text("subject", subject, SUBJECT_MAX).strip()
    body = _check_text("body", body, BODY_MAX)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            account = await conn.fetchrow(
                "SELECT id, kind, parent_id FROM accounts WHERE id = $1 AND status <> 'removed'",
                principal.account_id,
            )
            if account is None:
                raise NotFound(f"account {principal.account_id} not found")
            handler = account["parent_id"] if account["kind"] == "customer" else None
            ticket_id: int = await conn.fetchval(
                "INSERT INTO tickets (account_id, opened_by_user_id, handler_account_id, subject) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                account["id"],
                principal.user_id,
                handler,
                subject,
            )
            await conn.execute(
                "INSERT INTO ticket_messages (ticket_id, author_user_id, body) VALUES ($1, $2, $3)",
                ticket_id,
                principal.user_id,
                body,
            )
            row = await _visible_ticket(conn, principal, ticket_id)
            detail = TicketDetail(_ticket(row), await _messages(conn, ticket_id))
    log.info(
        "tickets.opened",
        extra={"ticket": ticket_id, "account": principal.account_id, "handler": handler},
    )
    return detail


async def reply(
    ctx: ManagementContext, principal: Principal, ticket_id: int, body: str
) -> TicketDetail:
    """Add a message; the handler's reply marks the ticket answered, the opener's open."""
    body = _check_text("body", body, BODY_MAX)
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await _visible_ticket(conn, principal, ticket_id, for_update=True)
            side = await _side(conn, principal, row)
            if row["status"] == "closed":
                raise Conflict("the ticket is closed; open a new one", code="TICKET_CLOSED")
            await conn.execute(
                "INSERT INTO ticket_messages (ticket_id, author_user_id, body) VALUES ($1, $2, $3)",
                ticket_id,
                principal.user_id,
                body,
            )
            await conn.execute(
                "UPDATE tickets SET status = $2, updated_at = now() WHERE id = $1",
                ticket_id,
                "answered" if side == "handler" else "open",
            )
            row = await _visible_ticket(conn, principal, ticket_id)
            return TicketDetail(_ticket(row), await _messages(conn, ticket_id))


async def close(ctx: ManagementContext, principal: Principal, ticket_id: int) -> TicketDetail:
    """Close the ticket (either side may); closing a closed ticket changes nothing."""
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            row = await _visible_ticket(conn, principal, ticket_id, for_update=True)
            await _side(conn, principal, row)
            if row["status"] != "closed":
                await conn.execute(
                    "UPDATE tickets SET status = 'closed', updated_at = now() WHERE id = $1",
                    ticket_id,
                )
                row = await _visible_ticket(conn, principal, ticket_id)
                log.info("tickets.closed", extra={"ticket": ticket_id, "by": principal.user_id})
            return TicketDetail(_ticket(row), await _messages(conn, ticket_id))
