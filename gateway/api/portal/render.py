"""Templates and the filters pages use to show money and time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(
    loader=PackageLoader("gateway.api", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def money(micros: Any, currency: str = "", places: int = 4) -> str:
    """Micro-units as a decimal amount in the currency, e.g. ``12.3400 USD``."""
    if micros is None or micros == "":
        return ""
    amount = (Decimal(int(micros)) / Decimal(1_000_000)).quantize(Decimal(1).scaleb(-places))
    return f"{amount:,} {currency}".strip()


def to_micros(text: str) -> int | str:
    """A typed amount (``12.5``) in micro-units; the text itself when it is no number,
    so the API's own validation names the field."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except ArithmeticError:
        return text
    if not value.is_finite():
        return text
    micros = value * 1_000_000
    return int(micros) if micros == micros.to_integral_value() else text


def when(value: Any) -> str:
    """An API timestamp shown as ``YYYY-MM-DD HH:MM`` UTC."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    stamp: str = value.strftime("%Y-%m-%d %H:%M")
    return stamp


_env.filters["money"] = money
_env.filters["when"] = when


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the request, the logged-in user (if any) and ``context``."""
    html = _env.get_template(template).render(
        request=request, user=getattr(request.state, "portal_user", None), **context
    )
    return HTMLResponse(html, status_code=status)
