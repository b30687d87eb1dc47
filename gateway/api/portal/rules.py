"""Portal page of an account's call rules: what it may dial, price and margin limits,
spend caps and attempt rates, with the rules above it that apply too and, for a
customer a velocity check disabled, why. Reads and writes ``/api/v1/accounts/{id}/
call-rules`` (and the customer PATCH to unblock); refusals land on their field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.customers import form_of, problems
from gateway.api.portal.listing import error_page
from gateway.api.portal.render import page, to_micros
from gateway.api.portal.session import Portal, redirect

router = APIRouter(prefix="/portal", include_in_schema=False)

MONEY = {
    "max_price_per_min_micros": "max_price",
    "min_margin_micros": "min_margin",
    "max_spend_hour_micros": "spend_hour",
    "max_spend_day_micros": "spend_day",
    "max_spend_call_micros": "spend_call",
}
COUNTS = {"max_attempts_per_s": "cps", "max_attempts_per_min": "cpm"}
RENAME = {
    **MONEY,
    **COUNTS,
    "allow_prefixes": "allow",
    "block_prefixes": "block",
    "negative_margin": "negative_margin",
}


def _units(micros: int | None) -> str:
    return "" if micros is None else f"{Decimal(micros) / 1_000_000:f}"


def _values(rules: dict[str, Any]) -> dict[str, str]:
    values = {form: _units(rules[api]) for api, form in MONEY.items()}
    values.update(
        {form: "" if rules[api] is None else str(rules[api]) for api, form in COUNTS.items()}
    )
    values["allow"] = " ".join(rules["allow_prefixes"])
    values["block"] = " ".join(rules["block_prefixes"])
    values["negative_margin"] = rules["negative_margin"]
    return values


def _body(f: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "allow_prefixes": f.get("allow", "").replace(",", " ").split(),
        "block_prefixes": f.get("block", "").replace(",", " ").split(),
        "negative_margin": f.get("negative_margin") or "allow",
    }
    for api, form in MONEY.items():
        text = f.get(form, "")
        body[api] = to_micros(text) if text else None
    for api, form in COUNTS.items():
        text = f.get(form, "")
        body[api] = (int(text) if text.isdigit() else text) if text else None
    if body["min_margin_micros"] is None:
        body["min_margin_micros"] = 0
    return body


async def _page(
    request: Request, portal: Portal, account_id: int, status: int = 200, **ctx: Any
) -> Response:
    account = await portal.get(f"/api/v1/accounts/{account_id}")
    rules = await portal.get(f"/api/v1/accounts/{account_id}/call-rules")
    if not account.ok or not rules.ok:
        return error_page(request, rules if account.ok else account, "Account not found")
    ctx.setdefault("values", _values(rules.body["rules"]))
    ctx.setdefault("errors", {})
    return page(request, "call_rules.html", status=status, a=account.body, r=rules.body, **ctx)


@router.get("/accounts/{account_id}/rules")
async def rules_page(request: Request, account_id: int, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _page(request, portal, account_id, done=done)


@router.post("/accounts/{account_id}/rules")
async def save_rules(request: Request, account_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    reply = await portal.send("PUT", f"/api/v1/accounts/{account_id}/call-rules", _body(f))
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/rules", "Call rules saved.")
    errors, error = problems(reply, RENAME)
    return await _page(
        request, portal, account_id, reply.status, values=f, errors=errors, error=error
    )


@router.post("/accounts/{account_id}/unblock")
async def unblock(request: Request, account_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("PATCH", f"/api/v1/customers/{account_id}", {"status": "active"})
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/rules", "Account active again.")
    _, error = problems(reply)
    return await _page(request, portal, account_id, reply.status, error=error)
