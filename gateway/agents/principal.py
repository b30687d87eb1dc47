"""Who is asking, and which accounts and rate groups they may see.

The access rule, in one place: an admin sees everything. An agent user sees the
subtrees of its grants: the accounts listed for it in ``user_account_access`` (each
inside its own account's subtree), or, when none are listed, its own account's
whole subtree. A customer user sees its own account only. Everything else does not
exist as far as the caller can tell (``NotFound``, never ``Forbidden``).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gateway.agents.errors import NotFound
from gateway.db import Connection

ROLES = ("admin", "agent", "customer")


@dataclass(frozen=True, slots=True)
class Principal:
    """A logged-in user, with the account subtrees it may see (None: all, for admins)."""

    user_id: int
    login: str
    role: str
    account_id: int | None
    grants: tuple[int, ...] | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def grant_list(self) -> list[int] | None:
        """The grants as a query parameter: NULL in SQL means every account."""
        return None if self.grants is None else list(self.grants)

    def own_account(self) -> int:
        """The caller's own account; admins have none."""
        if self.account_id is None:
            raise NotFound("the operator has no account of its own")
        return self.account_id


def visible(alias: str, param: int) -> str:
    """SQL condition: account row ``alias`` lies in the grants passed as ``$param``.

    Pass ``Principal.grant_list``; NULL (an admin) matches every account.
    """
    return (
        f"(${param}::bigint[] IS NULL OR {alias}.id = ANY(${param}::bigint[]) "
        f"OR {alias}.ancestors && ${param}::bigint[])"
    )


def rate_group_visible(alias: str, user_param: int, grants_param: int) -> str:
    """SQL condition: rate group ``alias`` may be used by the user ``$user_param``.

    An admin (grants NULL) may use every group; anyone else the groups they own, the
    groups granted to them, and the groups of the accounts they may see (an agent's
    own fixed group in wholesale mode, its customers' groups).
    """
    g = grants_param
    return (
        f"(${g}::bigint[] IS NULL OR {alias}.owner_user_id = ${user_param} "
        f"OR EXISTS (SELECT 1 FROM user_rate_group_access ura WHERE ura.user_id = ${user_param} "
        f"AND ura.rate_group_id = {alias}.id) "
        f"OR EXISTS (SELECT 1 FROM accounts ra WHERE ra.rate_group_id = {alias}.id "
        f"AND (ra.id = ANY(${g}::bigint[]) OR ra.ancestors && ${g}::bigint[])))"
    )


async def load_principal(conn: Connection, user_id: int) -> Principal | None:
    """The principal of an active user whose account is not removed; None otherwise."""
    row = await conn.fetchrow(
        "SELECT u.id, u.login, u.role, u.account_id FROM users u "
        "LEFT JOIN accounts a ON a.id = u.account_id "
        "WHERE u.id = $1 AND u.status = 'active' AND (a.id IS NULL OR a.status <> 'removed')",
        user_id,
    )
    if row is None:
        return None
    return await _with_grants(conn, row)


async def _with_grants(conn: Connection, row: asyncpg.Record) -> Principal:
    role: str = row["role"]
    own: int | None = row["account_id"]
    grants: tuple[int, ...] | None
    if role == "admin" or own is None:
        grants = None
    elif role == "customer":
        grants = (own,)
    else:
        listed = await conn.fetch(
            "SELECT a.id FROM user_account_access g JOIN accounts a ON a.id = g.account_id "
            "WHERE g.user_id = $1 AND (a.id = $2 OR $2 = ANY(a.ancestors)) ORDER BY a.id",
            row["id"],
            own,
        )
        grants = tuple(r["id"] for r in listed) or (own,)
    return Principal(row["id"], row["login"], role, own, grants)


async def require_account(
    conn: Connection,
    principal: Principal,
    account_id: int,
    *,
    kind: str | None = None,
    include_removed: bool = False,
    for_update: bool = False,
) -> asyncpg.Record:
    """The account row if the principal may see it (and it is of ``kind``), else NotFound.

    A customer (role) is limited to its own account, even though it has no children.
    """
    row = await conn.fetchrow(
        f"SELECT a.* FROM accounts a WHERE a.id = $1 AND {visible('a', 2)} "
        "AND ($3::text IS NULL OR a.kind = $3) AND ($4 OR a.status <> 'removed')"
        + (" FOR UPDATE" if for_update else ""),
        account_id,
        principal.grant_list,
        kind,
        include_removed,
    )
    if row is None:
        what = kind or "account"
        raise NotFound(f"{what} {account_id} not found")
    found: asyncpg.Record = row
    return found


def may_manage(principal: Principal, account: asyncpg.Record) -> bool:
    """True when the principal manages ``account`` rather than being it.

    Agents manage accounts below their grants; nobody manages their own account's
    settings (balance, limits, rate group) except through the operator.
    """
    if principal.is_admin:
        return True
    if principal.role == "customer":
        return False
    return bool(account["id"] != principal.account_id)
