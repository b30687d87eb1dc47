"""Products, subscriptions, recurring charges and DIDs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.agents import dids, products
from gateway.agents.products import ProductIn
from gateway.api.deps import Ctx, Manager, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["products and DIDs"])

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
RefId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Micros = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
Kind = Literal["monthly", "did_rental", "setup"]
OnUnpaid = Literal["suspend", "negative", "retry"]
BillDay = Annotated[int, Field(ge=1, le=28)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


class ProductBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)]
    kind: Kind
    price_micros: Micros = Field(description="What the buyer pays per period (setup: once)")
    on_unpaid: OnUnpaid = Field("retry", description="When the buyer cannot pay")
    base_product_id: RefId | None = Field(
        None, description="The parent's product this resells: the seller pays its price"
    )


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    price_micros: Micros | None = None
    on_unpaid: OnUnpaid | None = None
    status: Literal["active", "retired"] | None = None


class ProductOut(BaseModel):
    id: int
    owner_account_id: int | None = Field(description="The seller (null: the operator)")
    base_product_id: int | None
    base_price_micros: int | None = Field(description="What the seller pays for it")
    name: str
    kind: str
    price_micros: int
    on_unpaid: str
    status: str
    created_at: datetime


class ProductList(BaseModel):
    items: list[ProductOut]


class SubscriptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: RefId
    starts_on: date | None = Field(None, description="Default today (UTC)")
    bill_day: BillDay | None = Field(None, description="Default the start day (at most 28)")
    did_id: RefId | None = Field(None, description="The DID a did_rental is for")


class SubscriptionOut(BaseModel):
    id: int
    account_id: int
    product_id: int
    product_name: str
    kind: str
    price_micros: int
    did_id: int | None
    did_number: str | None
    starts_on: date
    ends_on: date | None
    bill_day: int
    created_at: datetime


class EndBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ends_on: date | None = Field(None, description="First day without it; default today")


class ChargeOut(BaseModel):
    id: int
    subscription_id: int
    product_name: str
    period_start: date
    status: str = Field(description="due, charged, unpaid (retried) or abandoned")
    attempts: int
    amount_micros: int = Field(description="What the account paid")
    ledger_ids: list[int]
    detail: str
    next_attempt_at: datetime | None
    updated_at: datetime


class RetriedOut(BaseModel):
    due_now: int


class DidBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Annotated[str, Field(min_length=1, max_length=40)]
    rental_product_id: RefId | None = Field(None, description="A did_rental product to bill")
    starts_on: date | None = None


class DidOut(BaseModel):
    id: int
    number: str
    account_id: int
    subscription_id: int | None = Field(description="Its live rental, if any")
    created_at: datetime


@router.get("/products", response_model=ProductList, responses=ERRORS)
async def list_products(ctx: Ctx, user: Manager) -> dict[str, Any]:
    """The caller's products and its parent's (which it may resell)."""
    return {"items": await products.list_products(ctx, user)}


@router.post("/products", status_code=201, response_model=ProductOut, responses=ERRORS)
async def create_product(body: ProductBody, ctx: Ctx, user: Manager) -> dict[str, Any]:
    """A product the caller sells to the accounts right below it."""
    spec = ProductIn(body.name, body.kind, body.price_micros, body.on_unpaid, body.base_product_id)
    return await products.create_product(ctx, user, spec)


@router.patch("/products/{product_id}", response_model=ProductOut, responses=ERRORS)
async def update_product(
    product_id: Id, body: ProductPatch, ctx: Ctx, user: Manager
) -> dict[str, Any]:
    """Change one of the caller's products; a new price applies from the next period."""
    changes = body.model_dump(exclude_unset=True)
    return await products.update_product(ctx, user, product_id, changes)


@router.get(
    "/accounts/{account_id}/subscriptions",
    response_model=list[SubscriptionOut],
    responses=ERRORS,
)
async def list_subscriptions(account_id: Id, ctx: Ctx, user: User) -> list[dict[str, Any]]:
    """The account's subscriptions, ended ones included."""
    return await products.list_subscriptions(ctx, user, account_id)


@router.post(
    "/accounts/{account_id}/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=ERRORS,
)
async def subscribe(
    account_id: Id, body: SubscriptionBody, ctx: Ctx, user: Manager
) -> dict[str, Any]:
    """Put the account on a product of its parent; the first period is charged at once."""
    return await products.subscribe(
        ctx,
        user,
        account_id,
        body.product_id,
        starts_on=body.starts_on,
        bill_day=body.bill_day,
        did_id=body.did_id,
    )


@router.post(
    "/subscriptions/{subscription_id}/end", response_model=SubscriptionOut, responses=ERRORS
)
async def end_subscription(
    subscription_id: Id, body: EndBody, ctx: Ctx, user: Manager
) -> dict[str, Any]:
    """No period starts on or after ``ends_on``; charged periods stand."""
    return await products.end_subscription(ctx, user, subscription_id, body.ends_on)


@router.get("/accounts/{account_id}/charges", response_model=list[ChargeOut], responses=ERRORS)
async def list_charges(account_id: Id, ctx: Ctx, user: User) -> list[dict[str, Any]]:
    """The account's recurring charges, newest period first."""
    return await products.list_charges(ctx, user, account_id)


@router.post("/accounts/{account_id}/charges/retry", response_model=RetriedOut, responses=ERRORS)
async def retry_charges(account_id: Id, ctx: Ctx, user: User) -> RetriedOut:
    """Try the account's unpaid charges in the next round (after a refill, say)."""
    return RetriedOut(due_now=await products.retry_charges(ctx, user, account_id))


@router.get("/customers/{customer_id}/dids", response_model=list[DidOut], responses=ERRORS)
async def list_dids(customer_id: Id, ctx: Ctx, user: User) -> list[dict[str, Any]]:
    """The customer's DIDs."""
    return await dids.list_dids(ctx, user, customer_id)


@router.post(
    "/customers/{customer_id}/dids", status_code=201, response_model=DidOut, responses=ERRORS
)
async def add_did(customer_id: Id, body: DidBody, ctx: Ctx, user: Manager) -> dict[str, Any]:
    """Give the customer an inbound number, with its rental if a product is named."""
    return await dids.add_did(
        ctx,
        user,
        customer_id,
        body.number,
        rental_product_id=body.rental_product_id,
        starts_on=body.starts_on,
    )


@router.delete("/dids/{did_id}", status_code=204, responses=ERRORS)
async def remove_did(did_id: Id, ctx: Ctx, user: Manager) -> Response:
    """Take the number away; its rental ends today."""
    await dids.remove_did(ctx, user, did_id)
    return Response(status_code=204)
