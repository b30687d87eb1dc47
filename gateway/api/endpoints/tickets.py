"""Tickets and the operator's messages to agents."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.agents import announcements, tickets
from gateway.api.deps import Admin, Ctx, Page, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1")

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
Subject = Annotated[str, Field(min_length=1, max_length=tickets.SUBJECT_MAX)]
Body = Annotated[str, Field(min_length=1, max_length=tickets.BODY_MAX)]
Title = Annotated[str, Field(min_length=1, max_length=announcements.TITLE_MAX)]
AnnouncementBody = Annotated[str, Field(max_length=announcements.BODY_MAX)]
Audience = Literal["agents", "all"]

_TICKET_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": "Not logged in"},
    404: {"description": "No such ticket, or not one the caller may see"},
}


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Subject
    body: Body


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Body


class TicketOut(BaseModel):
    id: int
    account_id: int = Field(description="The account the ticket is about")
    account_name: str
    handler_account_id: int | None = Field(
        description="Who answers: an agent, or null for the operator"
    )
    opened_by_user_id: int
    opened_by_login: str
    subject: str
    status: Literal["open", "answered", "closed"]
    created_at: datetime
    updated_at: datetime
    message_count: int


class MessageOut(BaseModel):
    id: int
    author_user_id: int
    author_login: str
    author_role: str
    body: str
    created_at: datetime


class TicketDetailOut(TicketOut):
    messages: list[MessageOut]


class TicketList(BaseModel):
    items: list[TicketOut]
    total: int
    limit: int
    offset: int


class AnnouncementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    body: AnnouncementBody = ""
    audience: Audience = "agents"
    published_at: AwareDatetime | None = Field(None, description="Default: now")
    expires_at: AwareDatetime | None = None


class AnnouncementPatch(BaseModel):
    """Only the fields sent change; ``expires_at: null`` removes the expiry."""

    model_config = ConfigDict(extra="forbid")
    title: Title | None = None
    body: AnnouncementBody | None = None
    audience: Audience | None = None
    published_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None


class AnnouncementOut(BaseModel):
    id: int
    title: str
    body: str
    audience: Audience
    author_user_id: int | None
    published_at: datetime
    expires_at: datetime | None


class AnnouncementList(BaseModel):
    items: list[AnnouncementOut]
    total: int
    limit: int
    offset: int


def _ticket_out(t: tickets.Ticket) -> TicketOut:
    return TicketOut(
        id=t.id,
        account_id=t.account_id,
        account_name=t.account_name,
        handler_account_id=t.handler_account_id,
        opened_by_user_id=t.opened_by_user_id,
        opened_by_login=t.opened_by_login,
        subject=t.subject,
        status=t.status,  # type: ignore[arg-type]  # checked by the schema's CHECK
        created_at=t.created_at,
        updated_at=t.updated_at,
        message_count=t.message_count,
    )


def _detail_out(d: tickets.TicketDetail) -> TicketDetailOut:
    return TicketDetailOut(
        **_ticket_out(d.ticket).model_dump(),
        messages=[
            MessageOut(
                id=m.id,
                author_user_id=m.author_user_id,
                author_login=m.author_login,
                author_role=m.author_role,
                body=m.body,
                created_at=m.created_at,
            )
            for m in d.messages
        ],
    )


def _announcement_out(a: announcements.Announcement) -> AnnouncementOut:
    return AnnouncementOut(
        id=a.id,
        title=a.title,
        body=a.body,
        audience=a.audience,  # type: ignore[arg-type]  # checked by the schema's CHECK
        author_user_id=a.author_user_id,
        published_at=a.published_at,
        expires_at=a.expires_at,
    )


@router.get("/tickets", response_model=TicketList, tags=["tickets"], responses={401: {}, 422: {}})
async def list_tickets(
    ctx: Ctx,
    user: User,
    page: Page,
    scope: Annotated[
        Literal["all", "mine", "handled"],
        Query(description="mine: about my own account; handled: the ones I answer"),
    ] = "all",
    status: Annotated[Literal["open", "answered", "closed"] | None, Query()] = None,
    account_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
) -> TicketList:
    """List the tickets the caller may see (sort: id, created_at, updated_at, status...)."""
    found = await tickets.list_tickets(
        ctx, user, page, scope=scope, status=status, account_id=account_id
    )
    return TicketList(
        items=[_ticket_out(t) for t in found.items],
        total=found.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/tickets",
    response_model=TicketDetailOut,
    status_code=201,
    tags=["tickets"],
    responses={401: {}, 403: {"description": "The operator opens no tickets"}, 422: {}},
)
async def open_ticket(body: TicketIn, ctx: Ctx, user: User) -> TicketDetailOut:
    """Open a ticket about the caller's own account (customer: to its agent; agent: to
    the operator)."""
    return _detail_out(await tickets.open_ticket(ctx, user, body.subject, body.body))


@router.get(
    "/tickets/{ticket_id}",
    response_model=TicketDetailOut,
    tags=["tickets"],
    responses=_TICKET_ERRORS,
)
async def get_ticket(ticket_id: Id, ctx: Ctx, user: User) -> TicketDetailOut:
    """One ticket with its messages, oldest first."""
    return _detail_out(await tickets.get_ticket(ctx, user, ticket_id))


@router.post(
    "/tickets/{ticket_id}/messages",
    response_model=TicketDetailOut,
    status_code=201,
    tags=["tickets"],
    responses={
        **_TICKET_ERRORS,
        403: {"description": "Visible, but the caller is neither opener nor handler"},
        409: {"description": "The ticket is closed"},
        422: {},
    },
)
async def reply(ticket_id: Id, body: ReplyIn, ctx: Ctx, user: User) -> TicketDetailOut:
    """Reply: the handler's reply marks the ticket answered, the opener's open again."""
    return _detail_out(await tickets.reply(ctx, user, ticket_id, body.body))


@router.post(
    "/tickets/{ticket_id}/close",
    response_model=TicketDetailOut,
    tags=["tickets"],
    responses={**_TICKET_ERRORS, 403: {}},
)
async def close_ticket(ticket_id: Id, ctx: Ctx, user: User) -> TicketDetailOut:
    """Close the ticket (opener or handler); closing it again changes nothing."""
    return _detail_out(await tickets.close(ctx, user, ticket_id))


@router.get(
    "/announcements",
    response_model=AnnouncementList,
    tags=["announcements"],
    responses={401: {}, 422: {}},
)
async def list_announcements(ctx: Ctx, user: User, page: Page) -> AnnouncementList:
    """Announcements: the admin sees all; agents the live ones for agents or all;
    customers the live ones for all (sort: id, published_at, expires_at, title)."""
    found = await announcements.list_announcements(ctx, user, page)
    return AnnouncementList(
        items=[_announcement_out(a) for a in found.items],
        total=found.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/announcements/{announcement_id}",
    response_model=AnnouncementOut,
    tags=["announcements"],
    responses={401: {}, 404: {}},
)
async def get_announcement(announcement_id: Id, ctx: Ctx, user: User) -> AnnouncementOut:
    """One announcement the caller may read."""
    return _announcement_out(await announcements.get_announcement(ctx, user, announcement_id))


@router.post(
    "/announcements",
    response_model=AnnouncementOut,
    status_code=201,
    tags=["announcements"],
    responses={401: {}, 403: {}, 422: {}},
)
async def create_announcement(body: AnnouncementIn, ctx: Ctx, admin: Admin) -> AnnouncementOut:
    """Publish an announcement (admin only)."""
    created = await announcements.create(
        ctx,
        admin,
        title=body.title,
        body=body.body,
        audience=body.audience,
        published_at=body.published_at,
        expires_at=body.expires_at,
    )
    return _announcement_out(created)


@router.patch(
    "/announcements/{announcement_id}",
    response_model=AnnouncementOut,
    tags=["announcements"],
    responses={401: {}, 403: {}, 404: {}, 422: {}},
)
async def update_announcement(
    announcement_id: Id, body: AnnouncementPatch, ctx: Ctx, admin: Admin
) -> AnnouncementOut:
    """Change an announcement (admin only); only the fields sent change."""
    changes = body.model_dump(include=body.model_fields_set)
    updated = await announcements.update(ctx, admin, announcement_id, changes)
    return _announcement_out(updated)


@router.delete(
    "/announcements/{announcement_id}",
    status_code=204,
    tags=["announcements"],
    responses={401: {}, 403: {}, 404: {}},
)
async def delete_announcement(announcement_id: Id, ctx: Ctx, admin: Admin) -> Response:
    """Delete an announcement (admin only)."""
    await announcements.delete(ctx, admin, announcement_id)
    return Response(status_code=204)
