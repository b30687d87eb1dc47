"""What list and report pages share: links that keep the filters, sortable headers,
CSV downloads passed through from the API, and the page for a refusal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import Response

from gateway.api.portal.client import ApiReply
from gateway.api.portal.render import page


def query_url(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """``path`` with the non-empty ``params`` (overridden by ``changes``) as its query."""
    merged = {**params, **changes}
    clean = {k: v for k, v in merged.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def pager_base(path: str, params: Mapping[str, Any]) -> str:
    """The base the ``pager`` macro appends ``offset=N`` to."""
    url = query_url(path, params, offset=None)
    return url + ("&" if "?" in url else "?")


@dataclass(frozen=True, slots=True)
class Column:
    """A table header; ``href`` is set when a click sorts by the column."""

    label: str
    key: str = ""
    numeric: bool = False
    href: str = ""
    aria_sort: str = ""
    arrow: str = ""


def sort_columns(
    path: str,
    params: Mapping[str, Any],
    spec: tuple[tuple[str, str, bool], ...] | list[tuple[str, str, bool]],
    current: str | None = None,
    order: str | None = None,
) -> list[Column]:
    """Headers from ``(label, sort key or "", numeric)``: a click sorts by the column,
    a second click on the current one turns the order round. ``current`` and ``order``
    default to the page's ``sort`` and ``order`` parameters."""
    current = params.get("sort", "") if current is None else current
    order = params.get("order", "asc") if order is None else order
    out: list[Column] = []
    for label, key, numeric in spec:
        if not key:
            out.append(Column(label, numeric=numeric))
            continue
        on = key == current
        flip = "desc" if on and order == "asc" else "asc"
        href = query_url(path, params, sort=key, order=flip, offset=None)
        aria = ("ascending" if order == "asc" else "descending") if on else ""
        arrow = ("▲" if order == "asc" else "▼") if on else ""
        out.append(Column(label, key, numeric, href, aria, arrow))
    return out


def attachment(reply: ApiReply, fallback_name: str) -> Response:
    """The API's CSV export as a download of the portal."""
    headers = {
        "Content-Disposition": reply.headers.get(
            "content-disposition", f'attachment; filename="{fallback_name}"'
        )
    }
    for name in ("x-total-count", "x-truncated"):
        if name in reply.headers:
            headers[name] = reply.headers[name]
    return Response(
        reply.content,
        media_type=reply.headers.get("content-type", "text/csv; charset=utf-8"),
        headers=headers,
    )


def error_page(request: Request, reply: ApiReply, title: str) -> Response:
    """The page for an API refusal that is not about a form field (404: no data shown)."""
    status = reply.status if reply.status >= 400 else 502
    message = None if status == 404 else reply.message()
    return page(request, "error.html", status=status, title=title, message=message)


def refusal_page(
    request: Request, reply: ApiReply, template: str, title: str, context: dict[str, Any]
) -> Response | None:
    """The page for a list the API refused: the form again with its field errors on
    422, the error page on any other refusal; None when the reply is good."""
    if reply.status == 422:
        context["errors"] = reply.field_errors()
        return page(request, template, status=422, **context)
    if not reply.ok:
        return error_page(request, reply, title)
    return None
