"""Request dependencies: the management context, the caller, paging."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from gateway.agents import auth
from gateway.agents.context import ManagementContext
from gateway.agents.errors import Forbidden, Invalid
from gateway.agents.principal import Principal

SESSION_COOKIE = "gw_session"


def get_ctx(request: Request) -> ManagementContext:
    ctx: ManagementContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ManagementContext, Depends(get_ctx)]


def session_token(request: Request) -> str:
    """The bearer token, or the portal's session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE, "")


Token = Annotated[str, Depends(session_token)]


async def current_principal(ctx: Ctx, token: Token) -> Principal:
    return await auth.authenticate(ctx, token)


User = Annotated[Principal, Depends(current_principal)]


async def current_admin(user: User) -> Principal:
    if not user.is_admin:
        raise Forbidden("operator (admin) only")
    return user


Admin = Annotated[Principal, Depends(current_admin)]


async def current_agent_or_admin(user: User) -> Principal:
    if user.role == "customer":
        raise Forbidden("agents and the operator only")
    return user


Manager = Annotated[Principal, Depends(current_agent_or_admin)]


def remote_addr(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int
    sort: str
    descending: bool

    def order_by(self, columns: dict[str, str], tie_breaker: str) -> str:
        """An ORDER BY clause from a whitelist of sort keys (never from raw input)."""
        if self.sort not in columns:
            raise Invalid("sort", f"must be one of {', '.join(sorted(columns))}")
        direction = "DESC" if self.descending else "ASC"
        return f"ORDER BY {columns[self.sort]} {direction} NULLS LAST, {tie_breaker} {direction}"


DEFAULT_PAGE_SIZE = 50


def paging_with(default_sort: str = "id", default_order: str = "asc") -> Callable[..., Paging]:
    """The paging query parameters of a list, with its own default order."""

    def paging(
        ctx: Ctx,
        limit: Annotated[
            int | None,
            Query(ge=1, le=10_000, description="Page size (default 50, at most api.page_size_max)"),
        ] = None,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="Rows to skip")] = 0,
        sort: Annotated[str, Query(max_length=64, description="Column to sort by")] = default_sort,
        order: Annotated[
            str, Query(pattern="^(asc|desc)$", description="asc or desc")
        ] = default_order,
    ) -> Paging:
        most = ctx.config.api.page_size_max
        if limit is None:
            limit = min(DEFAULT_PAGE_SIZE, most)
        elif limit > most:
            raise Invalid("limit", f"must be at most {most}")
        return Paging(limit, offset, sort, order == "desc")

    return paging


paging = paging_with()
Page = Annotated[Paging, Depends(paging)]
