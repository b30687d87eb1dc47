"""The portal's session: the API token in an HttpOnly cookie, and the redirect to login."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from gateway.api.deps import SESSION_COOKIE, remote_addr
from gateway.api.portal.client import ApiClient, ApiReply


class LoginRequired(Exception):
    """No live session: the handler turns it into a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


@dataclass(frozen=True, slots=True)
class PortalUser:
    user_id: int
    login: str
    role: str
    account_id: int | None


class Portal:
    """One page request's view of the API, as the user of the cookie."""

    def __init__(self, request: Request) -> None:
        self.request = request
        token = request.cookies.get(SESSION_COOKIE, "")
        self.api = ApiClient(request.app, token, remote_addr(request))
        self.user: PortalUser | None = None

    async def login_required(self) -> PortalUser:
        """The logged-in user, or ``LoginRequired`` (redirect) when there is none."""
        if not self.api.token:
            raise LoginRequired(str(self.request.url.path))
        me = await self.api.get("/api/v1/auth/me")
        if me.status == 401:
            raise LoginRequired(str(self.request.url.path))
        body = me.body
        self.user = PortalUser(body["user_id"], body["login"], body["role"], body["account_id"])
        self.request.state.portal_user = self.user
        return self.user

    def checked(self, reply: ApiReply) -> ApiReply:
        """``reply``, unless the session ended meanwhile (then back to the login page)."""
        if reply.status == 401:
            raise LoginRequired(str(self.request.url.path))
        return reply

    async def get(self, path: str, **params: Any) -> ApiReply:
        return self.checked(await self.api.get(path, **params))

    async def send(self, method: str, path: str, json: Any = None, **kw: Any) -> ApiReply:
        return self.checked(await self.api.request(method, path, json=json, **kw))


def redirect(url: str, done: str = "") -> RedirectResponse:
    """303 to ``url`` (after a form), with a one-line confirmation to show there."""
    if done:
        url += ("&" if "?" in url else "?") + "done=" + quote(done)
    return RedirectResponse(url, status_code=303)


def set_session(response: Response, token: str, max_age_s: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def install(app: FastAPI) -> None:
    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        response = redirect("/portal/login?next=" + quote(exc.next_url))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.add_exception_handler(LoginRequired, to_login)
