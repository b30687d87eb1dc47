"""The portal's way to the API: the same application, called in-process over ASGI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import ASGIApp


@dataclass(slots=True)
class ApiReply:
    """One API answer: status, JSON body (or None), and helpers for forms."""

    status: int
    body: Any
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def field_errors(self) -> dict[str, str]:
        """``{field: reason}`` of a 422, from the API's ``detail`` list."""
        if self.status != 422 or not isinstance(self.body, dict):
            return {}
        detail = self.body.get("detail")
        if not isinstance(detail, list):
            return {}
        errors: dict[str, str] = {}
        for item in detail:
            loc = [str(part) for part in item.get("loc", []) if part not in ("body", "query")]
            name = ".".join(loc) or "form"
            errors.setdefault(name, str(item.get("msg", "invalid")))
        return errors

    def message(self) -> str:
        """A one-line reason for a refusal that is not about one field."""
        if isinstance(self.body, dict):
            detail = self.body.get("detail")
            if isinstance(detail, dict):
                return str(detail.get("message") or detail.get("code") or self.status)
            if isinstance(detail, str):
                return detail
        return f"request failed ({self.status})"


class ApiClient:
    """Calls ``/api/v1/...`` of ``app`` as the logged-in user (bearer = portal cookie)."""

    def __init__(self, app: ASGIApp, token: str, remote_addr: str) -> None:
        self.app = app
        self.token = token
        self.remote_addr = remote_addr or "127.0.0.1"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
    ) -> ApiReply:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        transport = httpx.ASGITransport(app=self.app, client=(self.remote_addr, 0))
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        async with httpx.AsyncClient(transport=transport, base_url="http://portal") as http:
            reply = await http.request(
                method, path, params=clean, json=json, files=files, data=data, headers=headers
            )
        body: Any = None
        if reply.headers.get("content-type", "").startswith("application/json"):
            body = reply.json()
        return ApiReply(reply.status_code, body, reply.content, dict(reply.headers))

    async def get(self, path: str, **params: Any) -> ApiReply:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> ApiReply:
        return await self.request("POST", path, json=json)

    async def patch(self, path: str, json: Any = None) -> ApiReply:
        return await self.request("PATCH", path, json=json)

    async def delete(self, path: str) -> ApiReply:
        return await self.request("DELETE", path)
