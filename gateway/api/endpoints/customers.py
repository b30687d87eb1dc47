"""Accounts, customers, sub-agents, caller-IDs and extensions."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from gateway.agents import customers, customers_accounts, customers_batch, numbers
from gateway.agents.customers import AccountSpec, Created, ExtensionSpec
from gateway.agents.customers_accounts import AccountFilter, AccountView
from gateway.api.csvout import csv_response
from gateway.api.deps import Admin, Ctx, Manager, Page, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["customers"])

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Micros = Annotated[int, Field(ge=0, le=10**15)]
MaxCalls = Annotated[int, Field(ge=0, le=1_000_000)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Emails = Annotated[list[Annotated[str, Field(max_length=254)]], Field(max_length=10)]
Login = Annotated[str, Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
Password = Annotated[str, Field(min_length=1, max_length=256)]
Username = Annotated[str, Field(pattern=r"^[A-Za-z0-9._+-]{1,64}$")]
Secret = Annotated[str, Field(min_length=1, max_length=128)]
Description = Annotated[str, Field(max_length=200)]
RefId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
TaxRate = Annotated[int, Field(ge=0, le=10_000)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


# -- models ---------------------------------------------------------------------------------


class AccountOut(BaseModel):
    id: int
    kind: str
    name: str
    parent_id: int | None
    status: str
    disabled_reason: str = Field(description="'', manual, dormancy, fraud or unpaid")
    disabled_detail: str = Field(description="Why a check disabled it (fraud: rule, figures)")
    billing_mode: str | None
    rate_group_id: int | None
    inbound_rate_group_id: int | None = Field(
        description="Rates calls to the account's DIDs (null: they are free at this level)"
    )
    currency: str
    balance_micros: int
    commission_balance_micros: int
    credit_limit_micros: int
    available_micros: int = Field(description="balance + credit limit - held (what calls may use)")
    held_micros: int | None = Field(description="Held by calls now (Redis); null if unknown")
    calls_up: int | None = Field(description="Calls up now (Redis); null if unknown")
    max_concurrent_calls: int | None
    commission_rate_bp: int
    contact_emails: list[str]
    created_at: datetime
    disabled_at: datetime | None
    removed_at: datetime | None
    tax_rate_bp: int = Field(description="Tax of its invoices, basis points (2000 = 20 %)")
    tax_inclusive: bool = Field(description="Prices include the tax (else it comes on top)")
    low_balance_threshold_micros: int | None = Field(
        description="Low-balance care: notices below this available money (null: none)"
    )
    auto_refill_micros: int = Field(description="Moved from the parent when below (0: off)")
    auto_refill_monthly_limit_micros: int = Field(description="Most auto-refilled per month")


class AccountList(BaseModel):
    items: list[AccountOut]
    total: int
    limit: int
    offset: int


class ExtensionNew(BaseModel):
    username: Username | None = Field(None, description="Generated (10 digits) when absent")
    secret: Secret | None = Field(None, description="Generated when absent")
    description: Description = ""


class ExtensionOut(BaseModel):
    id: int
    account_id: int
    username: str
    secret: str | None
    status: str
    description: str
    created_at: datetime


class ExtensionList(BaseModel):
    items: list[ExtensionOut]
    total: int
    limit: int
    offset: int


class ExtensionPatch(BaseModel):
    username: Username | None = None
    secret: Secret | None = None
    status: Literal["active", "disabled"] | None = None
    description: Description | None = None


class CallerIdIn(BaseModel):
    number: Annotated[str, Field(min_length=1, max_length=64)]
    description: Description = ""


class CallerIdPatch(BaseModel):
    number: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    description: Description | None = None


class CallerIdOut(BaseModel):
    id: int
    account_id: int
    number: str = Field(description="Normalized: E.164 digits, no '+'")
    description: str
    created_at: datetime


class CallerIdList(BaseModel):
    items: list[CallerIdOut]
    total: int
    limit: int
    offset: int


class CustomerIn(BaseModel):
    name: Name
    rate_group_id: RefId
    parent_id: RefId | None = Field(
        None,
        description="Agent to create under: default the caller's own account; the "
        "operator must give it (null: a top-level customer)",
    )
    credit_limit_micros: Micros = 0
    max_concurrent_calls: MaxCalls | None = None
    currency: Currency | None = Field(
        None,
        description="Default: the parent's. Another currency is allowed (fixed afterwards; "
        "the rate group must be in it): money moves to and from it are converted at the "
        "exchange rates (/api/v1/exchange-rates)",
    )
    contact_emails: Emails = []
    login: Login | None = Field(None, description="Create the customer's portal user")
    password: Password | None = Field(None, description="Generated and returned when absent")
    extension: ExtensionNew | None = Field(None, description="Create a first extension")


class AgentIn(BaseModel):
    name: Name
    billing_mode: Literal["wholesale", "transfer"]
    rate_group_id: RefId | None = None
    parent_id: RefId | None = Field(None, description="Parent agent; null for a top-level agent")
    commission_rate_bp: Annotated[int, Field(ge=0, le=10_000)] = 0
    credit_limit_micros: Micros = 0
    max_concurrent_calls: MaxCalls | None = None
    currency: Currency | None = None
    contact_emails: Emails = []
    login: Login | None = None
    password: Password | None = None


class CreatedOut(AccountOut):
    login: str | None = Field(description="The portal login, when one was created")
    password: str | None = Field(description="Only when generated; shown this once")
    extension: ExtensionOut | None


class CustomerPatch(BaseModel):
    name: Name | None = None
    credit_limit_micros: Micros | None = None
    max_concurrent_calls: MaxCalls | None = Field(None, description="null: no limit")
    rate_group_id: RefId | None = None
    inbound_rate_group_id: RefId | None = Field(None, description="null: DID calls free")
    status: Literal["active", "disabled"] | None = None
    contact_emails: Emails | None = None
    tax_rate_bp: TaxRate | None = Field(None, description="Invoice tax, basis points")
    tax_inclusive: bool | None = Field(None, description="Prices include the tax")


class BatchIn(BaseModel):
    rate_group_id: RefId
    parent_id: RefId | None = None
    credit_limit_micros: Micros = Field(0, description="Default of rows that give none")
    max_concurrent_calls: MaxCalls | None = None
    currency: Currency | None = None
    contact_emails: Emails = []
    count: Annotated[int, Field(ge=1, le=customers_batch.MAX_BATCH)] | None = Field(
        None, description="Create this many customers (or give csv)"
    )
    name_prefix: Annotated[str, Field(min_length=1, max_length=190)] = "customer-"
    csv: Annotated[str, Field(max_length=1_000_000)] | None = Field(
        None,
        description="CSV text: header then one customer per line; columns "
        "name (required), login, extension, caller_id, credit_limit_micros",
    )


class BatchItemOut(BaseModel):
    account_id: int
    name: str
    login: str
    password: str
    extension: str
    secret: str
    caller_id: str | None


class BatchOut(BaseModel):
    items: list[BatchItemOut]
    count: int


def _account(view: AccountView) -> AccountOut:
    return AccountOut(**asdict(view))


def _created(created: Created) -> CreatedOut:
    ext = created.extension
    return CreatedOut(
        **asdict(created.account),
        login=created.login,
        password=created.password,
        extension=None if ext is None else ExtensionOut(**asdict(ext)),
    )


def _given(body: BaseModel, name: str) -> bool:
    return name in body.model_fields_set


# -- accounts -------------------------------------------------------------------------------


@router.get("/me/account", response_model=AccountOut, responses=ERRORS)
async def my_account(ctx: Ctx, user: User) -> AccountOut:
    """The caller's own account (the operator has none: 404)."""
    return _account(await customers_accounts.my_account(ctx, user))


@router.get("/accounts/{account_id}", response_model=AccountOut, responses=ERRORS)
async def get_account(account_id: Id, ctx: Ctx, user: User) -> AccountOut:
    """One account the caller may see: balances, limits, live holds."""
    return _account(await customers_accounts.get_account(ctx, user, account_id))


# -- customers ------------------------------------------------------------------------------

Q = Annotated[str | None, Query(max_length=200, description="Name contains (any case)")]
StatusQ = Annotated[
    Literal["active", "disabled", "removed"] | None,
    Query(description="Default: all but removed"),
]
ParentQ = Annotated[int | None, Query(ge=1, le=BIGINT_MAX)]


async def _list(
    ctx: Ctx,
    user: Manager,
    kind: str,
    page: Page,
    q: str | None,
    status: str | None,
    parent_id: int | None,
) -> AccountList:
    items, total = await customers_accounts.list_accounts(
        ctx, user, kind, page, AccountFilter(q, status, parent_id)
    )
    return AccountList(
        items=[_account(v) for v in items], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/customers", response_model=AccountList, responses=ERRORS)
async def list_customers(
    ctx: Ctx,
    user: Manager,
    page: Page,
    q: Q = None,
    status: StatusQ = None,
    parent_id: ParentQ = None,
) -> AccountList:
    """Customers the caller may see; sort by id, name, balance_micros, created_at, status."""
    return await _list(ctx, user, "customer", page, q, status, parent_id)


@router.post("/customers", status_code=201, response_model=CreatedOut, responses=ERRORS)
async def create_customer(body: CustomerIn, ctx: Ctx, user: Manager) -> CreatedOut:
    """Create a customer, optionally with its portal user and a first extension."""
    ext = body.extension
    spec = AccountSpec(
        name=body.name,
        rate_group_id=body.rate_group_id,
        parent_id=body.parent_id,
        parent_given=_given(body, "parent_id"),
        credit_limit_micros=body.credit_limit_micros,
        max_concurrent_calls=body.max_concurrent_calls,
        currency=body.currency,
        contact_emails=tuple(body.contact_emails),
        login=body.login,
        password=body.password,
        extension=None if ext is None else ExtensionSpec(ext.username, ext.secret, ext.description),
    )
    return _created(await customers.create_customer(ctx, user, spec))


BATCH_CSV_HEADER = ("account_id", "name", "login", "password", "extension", "secret", "caller_id")


@router.post(
    "/customers/batch",
    status_code=201,
    response_model=BatchOut,
    responses={**ERRORS, 201: {"content": {"text/csv": {}}}},
)
async def create_batch(
    body: BatchIn,
    ctx: Ctx,
    user: Manager,
    format: Annotated[Literal["json", "csv"], Query(description="csv: a download")] = "json",
) -> Any:
    """Create up to 1000 customers with generated logins and extensions, all or none.

    Passwords and SIP secrets are in this response only. Bad CSV rows: 422 with
    ``loc`` = ["body", "csv", line, column].
    """
    spec = customers_batch.BatchSpec(
        rate_group_id=body.rate_group_id,
        parent_id=body.parent_id,
        parent_given=_given(body, "parent_id"),
        credit_limit_micros=body.credit_limit_micros,
        max_concurrent_calls=body.max_concurrent_calls,
        currency=body.currency,
        contact_emails=tuple(body.contact_emails),
        count=body.count,
        name_prefix=body.name_prefix,
        csv=body.csv,
    )
    try:
        items = await customers_batch.create_batch(ctx, user, spec)
    except customers_batch.BatchInvalid as exc:
        raise RequestValidationError(
            [
                {"loc": ("body", "csv", p.line, p.field), "msg": p.message, "type": exc.code}
                for p in exc.problems
            ]
        ) from None
    if format == "csv":
        reply = csv_response(
            "customers-batch.csv",
            BATCH_CSV_HEADER,
            ([getattr(i, h) for h in BATCH_CSV_HEADER] for i in items),
        )
        reply.status_code = 201
        return reply
    return BatchOut(items=[BatchItemOut(**asdict(i)) for i in items], count=len(items))


@router.get("/customers/{customer_id}", response_model=AccountOut, responses=ERRORS)
async def get_customer(customer_id: Id, ctx: Ctx, user: User) -> AccountOut:
    """One customer (a customer user sees only itself)."""
    return _account(await customers_accounts.get_customer(ctx, user, customer_id))


@router.patch("/customers/{customer_id}", response_model=AccountOut, responses=ERRORS)
async def update_customer(customer_id: Id, body: CustomerPatch, ctx: Ctx, user: User) -> AccountOut:
    """Change the fields given; status active|disabled; max_concurrent_calls null = no limit."""
    changes = body.model_dump(exclude_unset=True)
    return _account(await customers.update_customer(ctx, user, customer_id, changes))


@router.delete("/customers/{customer_id}", status_code=204, responses=ERRORS)
async def remove_customer(customer_id: Id, ctx: Ctx, user: User) -> Response:
    """Remove (soft) a customer with no call up; its ledger and CDRs stay."""
    await customers.remove_customer(ctx, user, customer_id)
    return Response(status_code=204)


# -- agents -----------------------------------------------------------------------------------


@router.get("/agents", response_model=AccountList, responses=ERRORS)
async def list_agents(
    ctx: Ctx,
    user: Manager,
    page: Page,
    q: Q = None,
    status: StatusQ = None,
    parent_id: ParentQ = None,
) -> AccountList:
    """Agents the caller may see (for an agent: its sub-agents)."""
    return await _list(ctx, user, "agent", page, q, status, parent_id)


@router.post("/agents", status_code=201, response_model=CreatedOut, responses=ERRORS)
async def create_agent(body: AgentIn, ctx: Ctx, user: Admin) -> CreatedOut:
    """Create an agent (operator only), optionally with its portal user."""
    spec = AccountSpec(
        name=body.name,
        rate_group_id=body.rate_group_id,
        parent_id=body.parent_id,
        parent_given=True,  # absent means top level for agents
        credit_limit_micros=body.credit_limit_micros,
        max_concurrent_calls=body.max_concurrent_calls,
        currency=body.currency,
        contact_emails=tuple(body.contact_emails),
        login=body.login,
        password=body.password,
        billing_mode=body.billing_mode,
        commission_rate_bp=body.commission_rate_bp,
    )
    return _created(await customers.create_agent(ctx, user, spec))


# -- caller-IDs -------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/caller-ids", response_model=CallerIdList, responses=ERRORS)
async def list_caller_ids(customer_id: Id, ctx: Ctx, user: User, page: Page) -> CallerIdList:
    """The customer's caller-IDs; sort by id, number, created_at."""
    items, total = await numbers.list_caller_ids(ctx, user, customer_id, page)
    return CallerIdList(
        items=[CallerIdOut(**asdict(i)) for i in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/customers/{customer_id}/caller-ids",
    status_code=201,
    response_model=CallerIdOut,
    responses=ERRORS,
)
async def add_caller_id(customer_id: Id, body: CallerIdIn, ctx: Ctx, user: User) -> CallerIdOut:
    """Add a caller-ID (normalized; unique system-wide: 409 CALLER_ID_TAKEN)."""
    added = await numbers.add_caller_id(ctx, user, customer_id, body.number, body.description)
    return CallerIdOut(**asdict(added))


@router.patch("/agents/{agent_id}", response_model=AccountOut, responses=ERRORS)
async def update_agent(agent_id: Id, body: CustomerPatch, ctx: Ctx, user: Manager) -> AccountOut:
    """Change a sub-agent's fields (the operator: any agent's); as for customers."""
    changes = body.model_dump(exclude_unset=True)
    return _account(await customers.update_customer(ctx, user, agent_id, changes, "agent"))


@router.patch("/caller-ids/{caller_id}", response_model=CallerIdOut, responses=ERRORS)
async def change_caller_id(caller_id: Id, body: CallerIdPatch, ctx: Ctx, user: User) -> CallerIdOut:
    """Change a caller-ID's number or description."""
    changed = await numbers.change_caller_id(
        ctx, user, caller_id, body.model_dump(exclude_unset=True)
    )
    return CallerIdOut(**asdict(changed))


@router.delete("/caller-ids/{caller_id}", status_code=204, responses=ERRORS)
async def delete_caller_id(caller_id: Id, ctx: Ctx, user: User) -> Response:
    """Delete a caller-ID."""
    await numbers.delete_caller_id(ctx, user, caller_id)
    return Response(status_code=204)


# -- extensions -------------------------------------------------------------------------------


@router.get("/customers/{customer_id}/extensions", response_model=ExtensionList, responses=ERRORS)
async def list_extensions(customer_id: Id, ctx: Ctx, user: User, page: Page) -> ExtensionList:
    """The customer's extensions with their SIP secrets; sort by id, username, status,
    created_at."""
    items, total = await numbers.list_extensions(ctx, user, customer_id, page)
    return ExtensionList(
        items=[ExtensionOut(**asdict(i)) for i in items],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "/customers/{customer_id}/extensions",
    status_code=201,
    response_model=ExtensionOut,
    responses=ERRORS,
)
async def add_extension(customer_id: Id, body: ExtensionNew, ctx: Ctx, user: User) -> ExtensionOut:
    """Add an extension billed to the customer (unique system-wide: 409 EXTENSION_TAKEN)."""
    added = await numbers.add_extension(
        ctx, user, customer_id, body.username, body.secret, body.description
    )
    return ExtensionOut(**asdict(added))


@router.patch("/extensions/{extension_id}", response_model=ExtensionOut, responses=ERRORS)
async def change_extension(
    extension_id: Id, body: ExtensionPatch, ctx: Ctx, user: User
) -> ExtensionOut:
    """Change an extension's username, secret, status (active|disabled) or description."""
    changed = await numbers.change_extension(
        ctx, user, extension_id, body.model_dump(exclude_unset=True)
    )
    return ExtensionOut(**asdict(changed))


@router.delete("/extensions/{extension_id}", status_code=204, responses=ERRORS)
async def delete_extension(extension_id: Id, ctx: Ctx, user: User) -> Response:
    """Delete an extension; calls with its username are refused from then on."""
    await numbers.delete_extension(ctx, user, extension_id)
    return Response(status_code=204)
