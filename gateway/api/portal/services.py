"""Portal pages of what a reseller sells beyond minutes: its products (monthly fees,
DID rentals, setup fees) and, per account, the subscriptions, the recurring charges
with their outcome, and the DIDs. Everything goes through the API
(``/api/v1/products``, ``/accounts/{id}/subscriptions``, ``/charges``,
``/customers/{id}/dids``); refusals land on their field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.customers import form_of, problems
from gateway.api.portal.listing import error_page
from gateway.api.portal.render import page, to_micros
from gateway.api.portal.session import Portal, redirect

router = APIRouter(prefix="/portal", include_in_schema=False)

PRODUCT_FIELDS = {"price_micros": "price", "base_product_id": "base"}
SUBSCRIBE_FIELDS = {"product_id": "product", "starts_on": "starts_on"}
DID_FIELDS = {"number": "number", "rental_product_id": "rental"}


async def _products_page(
    request: Request, portal: Portal, status: int = 200, **ctx: Any
) -> Response:
    listed = await portal.get("/api/v1/products")
    if not listed.ok:
        return error_page(request, listed, "Products are for agents")
    mine = await portal.get("/api/v1/me/account")
    own_id = mine.body["id"] if mine.ok else None
    items = listed.body["items"]
    ctx.setdefault("values", {"kind": "monthly", "on_unpaid": "retry"})
    ctx.setdefault("errors", {})
    return page(
        request,
        "products.html",
        status=status,
        own=[p for p in items if p["owner_account_id"] == own_id],
        parents=[p for p in items if p["owner_account_id"] != own_id],
        **ctx,
    )


@router.get("/products")
async def products_page(request: Request, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _products_page(request, portal, done=done)


@router.post("/products")
async def create_product(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    body: dict[str, Any] = {
        "name": f.get("name", ""),
        "kind": f.get("kind", "monthly"),
        "price_micros": to_micros(f.get("price", "")),
        "on_unpaid": f.get("on_unpaid", "retry"),
    }
    if f.get("base"):
        body["base_product_id"] = int(f["base"]) if f["base"].isdigit() else f["base"]
    reply = await portal.send("POST", "/api/v1/products", body)
    if reply.ok:
        return redirect("/portal/products", f"Product {body['name']} created.")
    errors, error = problems(reply, PRODUCT_FIELDS)
    return await _products_page(request, portal, reply.status, values=f, errors=errors, error=error)


async def _services_page(
    request: Request, portal: Portal, account_id: int, status: int = 200, **ctx: Any
) -> Response:
    account = await portal.get(f"/api/v1/accounts/{account_id}")
    if not account.ok:
        return error_page(request, account, "Account not found")
    subs = await portal.get(f"/api/v1/accounts/{account_id}/subscriptions")
    charges = await portal.get(f"/api/v1/accounts/{account_id}/charges")
    dids = (
        await portal.get(f"/api/v1/customers/{account_id}/dids")
        if account.body["kind"] == "customer"
        else None
    )
    # What may be sold to it: the products of its parent (the caller, for an agent).
    offer = await portal.get("/api/v1/products")
    parent = account.body["parent_id"]
    products = (
        [
            p
            for p in offer.body["items"]
            if p["owner_account_id"] == parent and p["status"] == "active"
        ]
        if offer.ok
        else []
    )
    ctx.setdefault("values", {})
    ctx.setdefault("errors", {})
    return page(
        request,
        "services.html",
        status=status,
        a=account.body,
        subscriptions=subs.body if subs.ok else [],
        charges=charges.body if charges.ok else [],
        dids=dids.body if dids is not None and dids.ok else None,
        products=products,
        **ctx,
    )


@router.get("/accounts/{account_id}/services")
async def services_page(request: Request, account_id: int, done: str = "") -> Response:
    portal = Portal(request)
    await portal.login_required()
    return await _services_page(request, portal, account_id, done=done)


def _id(text: str) -> int | str:
    return int(text) if text.isdigit() else text


@router.post("/accounts/{account_id}/subscriptions")
async def subscribe(request: Request, account_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    body: dict[str, Any] = {"product_id": _id(f.get("product", ""))}
    if f.get("starts_on"):
        body["starts_on"] = f["starts_on"]
    reply = await portal.send("POST", f"/api/v1/accounts/{account_id}/subscriptions", body)
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/services", "Subscribed.")
    errors, error = problems(reply, SUBSCRIBE_FIELDS)
    return await _services_page(
        request, portal, account_id, reply.status, values=f, errors=errors, error=error
    )


@router.post("/accounts/{account_id}/subscriptions/{subscription_id}/end")
async def end_subscription(request: Request, account_id: int, subscription_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("POST", f"/api/v1/subscriptions/{subscription_id}/end", {})
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/services", "Subscription ended.")
    _, error = problems(reply)
    return await _services_page(request, portal, account_id, reply.status, error=error)


@router.post("/accounts/{account_id}/charges/retry")
async def retry_charges(request: Request, account_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("POST", f"/api/v1/accounts/{account_id}/charges/retry", {})
    if reply.ok:
        due = reply.body["due_now"]
        return redirect(f"/portal/accounts/{account_id}/services", f"{due} charge(s) due now.")
    _, error = problems(reply)
    return await _services_page(request, portal, account_id, reply.status, error=error)


@router.post("/accounts/{account_id}/dids")
async def add_did(request: Request, account_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    f = await form_of(request)
    body: dict[str, Any] = {"number": f.get("number", "")}
    if f.get("rental"):
        body["rental_product_id"] = _id(f["rental"])
    reply = await portal.send("POST", f"/api/v1/customers/{account_id}/dids", body)
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/services", "DID added.")
    errors, error = problems(reply, DID_FIELDS)
    if reply.status == 409:
        errors, error = {"number": reply.message()}, ""
    return await _services_page(
        request, portal, account_id, reply.status, values=f, errors=errors, error=error
    )


@router.post("/accounts/{account_id}/dids/{did_id}/delete")
async def remove_did(request: Request, account_id: int, did_id: int) -> Response:
    portal = Portal(request)
    await portal.login_required()
    reply = await portal.send("DELETE", f"/api/v1/dids/{did_id}")
    if reply.ok:
        return redirect(f"/portal/accounts/{account_id}/services", "DID removed.")
    _, error = problems(reply)
    return await _services_page(request, portal, account_id, reply.status, error=error)
