"""The operator's messages to agents (and, with audience ``all``, to customers too).

The admin writes, changes and deletes them and sees every one. Everybody else sees
the live ones only (published, not expired): agents those for ``agents`` and
``all``, customers those for ``all``. One that is not live, or not for the caller's
audience, does not exist for the caller (``NotFound``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.agents.context import ManagementContext
from gateway.agents.errors import Forbidden, Invalid, NotFound
from gateway.agents.paging import PageRequest
from gateway.agents.principal import Principal
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

AUDIENCES = ("agents", "all")
TITLE_MAX = 200
BODY_MAX = 20_000
# Fields an update may set; anything else is not a column of ours.
EDITABLE = ("title", "body", "audience", "published_at", "expires_at")

_SORTS = {
    "id": "id",
    "published_at": "published_at",
    "expires_at": "expires_at",
    "title": "title",
}
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_COLUMNS = "id, title, body, audience, author_user_id, published_at, expires_at"
# $1 is_admin, $2 role, $3 now: what the caller may read.
_READABLE = (
    "($1 OR (published_at <= $3 AND (expires_at IS NULL OR expires_at > $3) "
    "AND (audience = 'all' OR ($2 = 'agent' AND audience = 'agents'))))"
)


@dataclass(frozen=True, slots=True)
class Announcement:
    id: int
    title: str
    body: str
    audience: str
    author_user_id: int | None
    published_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class AnnouncementPage:
    items: tuple[Announcement, ...]
    total: int


def _announcement(row: asyncpg.Record) -> Announcement:
    return Announcement(
        id=row["id"],
        title=row["title"],
        body=row["body"],
        audience=row["audience"],
        author_user_id=row["author_user_id"],
        published_at=row["published_at"],
        expires_at=row["expires_at"],
    )


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("operator (admin) only")


def _check(fields: dict[str, Any]) -> None:
    title = fields.get("title")
    if "title" in fields and (not isinstance(title, str) or not title.strip()):
        raise Invalid("title", "must not be blank")
    if isinstance(title, str) and len(title) > TITLE_MAX:
        raise Invalid("title", f"must be at most {TITLE_MAX} characters")
    body = fields.get("body")
    if "body" in fields and (not isinstance(body, str) or len(body) > BODY_MAX):
        raise Invalid("body", f"must be text of at most {BODY_MAX} characters")
    if "audience" in fields and fields["audience"] not in AUDIENCES:
        raise Invalid("audience", f"must be one of {', '.join(AUDIENCES)}")
    if "published_at" in fields and fields["published_at"] is None:
        raise Invalid("published_at", "must be a time")
    for name in ("published_at", "expires_at"):
        moment = fields.get(name)
        # Far-off years are typos, and near year 1 or 9999 a time zone offset would
        # overflow on the way into PostgreSQL.
        if isinstance(moment, datetime) and not _EARLIEST <= moment <= _LATEST:
            raise Invalid(name, "must be between the years 2000 and 9000")


async def list_announcements(
    ctx: ManagementContext,
    principal: Principal,
    page: PageRequest,
    *,
    now: datetime | None = None,
) -> AnnouncementPage:
    """The announcements the caller may read, one page (admin: all, others: live ones)."""
    order = page.order_by(_SORTS, "id")
    moment = now or datetime.now(UTC)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM announcements WHERE {_READABLE}",
                principal.is_admin,
                principal.role,
                moment,
            )
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM announcements WHERE {_READABLE} {order} "
                "LIMIT $4 OFFSET $5",
                principal.is_admin,
                principal.role,
                moment,
                page.limit,
                page.offset,
            )
    return AnnouncementPage(tuple(_announcement(r) for r in rows), int(total))


async def get_announcement(
    ctx: ManagementContext, principal: Principal, announcement_id: int
) -> Announcement:
    """One announcement the caller may read; NotFound otherwise."""
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM announcements WHERE id = $4 AND {_READABLE}",
                principal.is_admin,
                principal.role,
                datetime.now(UTC),
                announcement_id,
            )
    if row is None:
        raise NotFound(f"announcement {announcement_id} not found")
    return _announcement(row)


async def create(
    ctx: ManagementContext,
    principal: Principal,
    *,
    title: str,
    body: str = "",
    audience: str = "agents",
    published_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Announcement:
    """Publish an announcement (admin only); it shows from ``published_at`` (default now)."""
    _require_admin(principal)
    _check(
        {
            "title": title,
            "body": body,
            "audience": audience,
            "published_at": published_at or datetime.now(UTC),
            "expires_at": expires_at,
        }
    )
    now = datetime.now(UTC)
    start = published_at or now
    if expires_at is not None and expires_at <= max(start, now):
        raise Invalid("expires_at", "must be later than now and than published_at")
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            row = await conn.fetchrow(
                "INSERT INTO announcements (title, body, audience, author_user_id, "
                f"published_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
                title.strip(),
                body,
                audience,
                principal.user_id,
                start,
                expires_at,
            )
    assert row is not None  # INSERT ... RETURNING always returns the row
    log.info("announcements.created", extra={"announcement": row["id"], "audience": audience})
    return _announcement(row)


async def update(
    ctx: ManagementContext, principal: Principal, announcement_id: int, changes: dict[str, Any]
) -> Announcement:
    """Change the given fields (admin only); ``expires_at`` None removes the expiry."""
    _require_admin(principal)
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise Invalid(unknown[0], "cannot be changed")
    _check(changes)
    if isinstance(changes.get("title"), str):
        changes = {**changes, "title": changes["title"].strip()}
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM announcements WHERE id = $1 FOR UPDATE", announcement_id
            )
            if current is None:
                raise NotFound(f"announcement {announcement_id} not found")
            merged = {name: changes.get(name, current[name]) for name in EDITABLE}
            expires, start = merged["expires_at"], merged["published_at"]
            if expires is not None and expires <= start:
                raise Invalid("expires_at", "must be later than published_at")
            row = await conn.fetchrow(
                "UPDATE announcements SET title = $2, body = $3, audience = $4, "
                f"published_at = $5, expires_at = $6 WHERE id = $1 RETURNING {_COLUMNS}",
                announcement_id,
                *(merged[name] for name in EDITABLE),
            )
    assert row is not None  # the row is locked: it cannot have gone
    log.info("announcements.updated", extra={"announcement": announcement_id})
    return _announcement(row)


async def delete(ctx: ManagementContext, principal: Principal, announcement_id: int) -> None:
    """Delete an announcement for good (admin only); NotFound when there is none."""
    _require_admin(principal)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            deleted = await conn.fetchval(
                "DELETE FROM announcements WHERE id = $1 RETURNING id", announcement_id
            )
    if deleted is None:
        raise NotFound(f"announcement {announcement_id} not found")
    log.info("announcements.deleted", extra={"announcement": announcement_id})
