"""Money moves (refills, payments, transfers, commission withdrawal) and add-funds requests.

A fresh move answers 201; a replay of its idempotency key answers 200 with the same
ledger ids and ``"duplicate": true``. ``mirrored: false`` means Redis could not be
updated: the money moved all the same (PostgreSQL is the truth), and a replay or
``gateway reconcile`` brings the mirror back in line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from gateway.agents import money
from gateway.agents.money import MoveOutcome
from gateway.api.deps import Admin, Ctx, Manager, Page, User
from gateway.db import BIGINT_MAX

router = APIRouter(prefix="/api/v1", tags=["money"])

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL

AccountId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Account id")]
RequestId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Add-funds request id")]
Amount = Annotated[
    int,
    Field(gt=0, le=money.MAX_AMOUNT_MICROS, description="Micro-units (1e-6 of the currency)"),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=money.MAX_KEY_LEN,
        pattern=NO_NUL,
        description="Client-chosen key; a retry with the same key moves the money once",
    ),
]
Note = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]


class RefillIn(BaseModel):
    amount_micros: Amount
    idempotency_key: IdempotencyKey
    note: Note = ""


class PaymentIn(BaseModel):
    amount_micros: Amount
    idempotency_key: IdempotencyKey
    reference: Annotated[
        str, Field(min_length=1, max_length=200, pattern=NO_NUL, description="Invoice/bank ref")
    ]
    note: Note = ""


class TransferIn(BaseModel):
    to_account_id: Annotated[int, Field(ge=1, le=BIGINT_MAX)]
    amount_micros: Amount
    idempotency_key: IdempotencyKey
    note: Note = ""


class WithdrawIn(BaseModel):
    amount_micros: Amount
    idempotency_key: IdempotencyKey


class AddFundsIn(BaseModel):
    amount_micros: Amount
    note: Note = ""


class DecisionIn(BaseModel):
    note: Note = ""


class MoveOut(BaseModel):
    ledger_ids: list[int] = Field(description="Ledger entries of the move, in posting order")
    duplicate: bool = Field(description="The key was used before: nothing moved this time")
    mirrored: bool = Field(
        description="Redis reflects the move; false still means the money moved (PostgreSQL)"
    )
    account_id: int
    balance_micros: int = Field(description="The account's main balance now (PostgreSQL)")
    commission_balance_micros: int
    payer_account_id: int | None = Field(description="The agent debited, if any")
    payer_balance_micros: int | None


class AddFundsOut(BaseModel):
    id: int
    account_id: int
    account_name: str
    amount_micros: int
    note: str
    status: str
    requested_by: int
    requested_by_login: str
    decided_by: int | None
    decided_at: datetime | None
    decision_note: str
    ledger_entry_id: int | None
    created_at: datetime


class AddFundsPage(BaseModel):
    items: list[AddFundsOut]
    total: int
    limit: int
    offset: int


class ApprovalOut(BaseModel):
    request: AddFundsOut
    move: MoveOut


_MOVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": MoveOut, "description": "Replay of a key already used: nothing moved"},
    401: {},
    403: {},
    404: {},
    409: {},
    422: {},
}


def _move_out(outcome: MoveOutcome, response: Response) -> MoveOut:
    response.status_code = 200 if outcome.duplicate else 201
    return MoveOut(
        ledger_ids=list(outcome.ledger_ids),
        duplicate=outcome.duplicate,
        mirrored=outcome.mirrored,
        account_id=outcome.account_id,
        balance_micros=outcome.balance_micros,
        commission_balance_micros=outcome.commission_balance_micros,
        payer_account_id=outcome.payer_account_id,
        payer_balance_micros=outcome.payer_balance_micros,
    )


@router.post(
    "/accounts/{account_id}/refills",
    response_model=MoveOut,
    status_code=201,
    responses=_MOVE_RESPONSES,
)
async def refill(
    account_id: AccountId, body: RefillIn, ctx: Ctx, user: Manager, response: Response
) -> MoveOut:
    """Credit an account (a transfer-mode agent pays for it from its own balance)."""
    outcome = await money.refill(
        ctx, user, account_id, body.amount_micros, body.idempotency_key, body.note
    )
    return _move_out(outcome, response)


@router.post(
    "/accounts/{account_id}/payments",
    response_model=MoveOut,
    status_code=201,
    responses=_MOVE_RESPONSES,
)
async def payment(
    account_id: AccountId, body: PaymentIn, ctx: Ctx, user: Manager, response: Response
) -> MoveOut:
    """Record money the account holder paid (cash, bank); no commission is due."""
    outcome = await money.record_payment(
        ctx, user, account_id, body.amount_micros, body.idempotency_key, body.reference, body.note
    )
    return _move_out(outcome, response)


@router.post("/transfers", response_model=MoveOut, status_code=201, responses=_MOVE_RESPONSES)
async def transfer(body: TransferIn, ctx: Ctx, user: User, response: Response) -> MoveOut:
    """Move the calling agent's credit to an account below it (never beyond available)."""
    outcome = await money.transfer(
        ctx, user, body.to_account_id, body.amount_micros, body.idempotency_key, body.note
    )
    return _move_out(outcome, response)


@router.post(
    "/me/commission/withdraw", response_model=MoveOut, status_code=201, responses=_MOVE_RESPONSES
)
async def withdraw_commission(
    body: WithdrawIn, ctx: Ctx, user: User, response: Response
) -> MoveOut:
    """Move commission into the calling agent's main balance (never below zero)."""
    outcome = await money.withdraw_commission(ctx, user, body.amount_micros, body.idempotency_key)
    return _move_out(outcome, response)


@router.post(
    "/me/add-funds-requests",
    response_model=AddFundsOut,
    status_code=201,
    responses={401: {}, 403: {}, 422: {}},
)
async def request_funds(body: AddFundsIn, ctx: Ctx, user: User) -> AddFundsOut:
    """Ask the operator to refill the caller's own account."""
    return AddFundsOut(**await money.request_funds(ctx, user, body.amount_micros, body.note))


StatusFilter = Annotated[
    str | None, Query(pattern="^(pending|approved|rejected)$", description="Only this status")
]
AccountFilter = Annotated[int | None, Query(ge=1, le=BIGINT_MAX, description="Only this account")]


@router.get("/me/add-funds-requests", response_model=AddFundsPage, responses={401: {}, 422: {}})
async def my_funds_requests(
    ctx: Ctx, user: User, page: Page, status: StatusFilter = None
) -> AddFundsPage:
    """The caller's own add-funds requests (the operator: every request)."""
    return await _list(ctx, user, page, own_only=not user.is_admin, status=status, account=None)


@router.get("/add-funds-requests", response_model=AddFundsPage, responses={401: {}, 422: {}})
async def funds_requests(
    ctx: Ctx,
    user: User,
    page: Page,
    status: StatusFilter = None,
    account_id: AccountFilter = None,
) -> AddFundsPage:
    """Add-funds requests of the accounts the caller may see."""
    return await _list(ctx, user, page, own_only=False, status=status, account=account_id)


async def _list(
    ctx: Ctx, user: User, page: Page, *, own_only: bool, status: str | None, account: int | None
) -> AddFundsPage:
    items, total = await money.list_funds_requests(
        ctx,
        user,
        own_only=own_only,
        status=status,
        account_id=account,
        order_by=page.order_by(money.ADD_FUNDS_SORTS, "r.id"),
        limit=page.limit,
        offset=page.offset,
    )
    return AddFundsPage(
        items=[AddFundsOut(**i) for i in items], total=total, limit=page.limit, offset=page.offset
    )


@router.get(
    "/add-funds-requests/{request_id}", response_model=AddFundsOut, responses={401: {}, 404: {}}
)
async def funds_request(request_id: RequestId, ctx: Ctx, user: User) -> AddFundsOut:
    """One add-funds request."""
    return AddFundsOut(**await money.get_funds_request(ctx, user, request_id))


@router.post(
    "/add-funds-requests/{request_id}/approve",
    response_model=ApprovalOut,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def approve(
    request_id: RequestId, ctx: Ctx, user: Admin, body: DecisionIn | None = None
) -> ApprovalOut:
    """Approve a request: the refill is booked once, however often this is called."""
    request, outcome = await money.approve_funds_request(
        ctx, user, request_id, body.note if body else ""
    )
    return ApprovalOut(request=AddFundsOut(**request), move=_move_out(outcome, Response()))


@router.post(
    "/add-funds-requests/{request_id}/reject",
    response_model=AddFundsOut,
    responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}},
)
async def reject(request_id: RequestId, body: DecisionIn, ctx: Ctx, user: Admin) -> AddFundsOut:
    """Reject a pending request."""
    return AddFundsOut(**await money.reject_funds_request(ctx, user, request_id, body.note))
