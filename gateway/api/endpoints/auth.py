"""Login, logout, password change, and who am I."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from gateway.agents import auth
from gateway.api.deps import Ctx, Token, User, remote_addr

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    login: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class Me(BaseModel):
    user_id: int
    login: str
    role: str
    account_id: int | None


class LoginOut(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer <token>'")
    expires_at: datetime
    user: Me


class PasswordIn(BaseModel):
    current_password: Annotated[str, Field(min_length=1, max_length=256)]
    new_password: Annotated[str, Field(min_length=1, max_length=256)]


@router.post("/login", response_model=LoginOut, responses={401: {}, 429: {}})
async def login(body: LoginIn, ctx: Ctx, request: Request) -> LoginOut:
    """Exchange login and password for a session token (failed tries are rate-limited)."""
    session = await auth.login(ctx, body.login, body.password, remote_addr(request))
    p = session.principal
    return LoginOut(
        token=session.token,
        expires_at=session.expires_at,
        user=Me(user_id=p.user_id, login=p.login, role=p.role, account_id=p.account_id),
    )


@router.post("/logout", status_code=204, responses={401: {}})
async def logout(ctx: Ctx, user: User, token: Token) -> Response:
    """End this session."""
    await auth.logout(ctx, token)
    return Response(status_code=204)


@router.post("/password", status_code=204, responses={401: {}, 422: {}})
async def change_password(body: PasswordIn, ctx: Ctx, user: User, token: Token) -> Response:
    """Change the caller's password; other sessions of the user end."""
    await auth.change_password(ctx, user, body.current_password, body.new_password, token)
    return Response(status_code=204)


@router.get("/me", response_model=Me, responses={401: {}})
async def me(user: User) -> Me:
    """The logged-in user."""
    return Me(user_id=user.user_id, login=user.login, role=user.role, account_id=user.account_id)
