"""The FastAPI application: routers, error table, OpenAPI at ``/docs``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from gateway.agents.context import ManagementContext
from gateway.api import errors
from gateway.api.endpoints import (
    auth,
    billing,
    call_rules,
    cdrs,
    customers,
    exchange_rates,
    invoices,
    low_balance,
    money,
    products,
    rates,
    tickets,
)
from gateway.api.portal import billing as portal_billing
from gateway.api.portal import customers as portal_customers
from gateway.api.portal import invoices as portal_invoices
from gateway.api.portal import reports, session, views
from gateway.api.portal import rules as portal_rules
from gateway.api.portal import services as portal_services
from gateway.api.portal import tickets as portal_tickets

API_TITLE = "gateway management API"


def create_app(ctx: ManagementContext) -> FastAPI:
    """The API and portal over an already started management context."""
    app = FastAPI(
        title=API_TITLE,
        version="1",
        description="Agents, customers, money moves, rates, reports and tickets of the "
        "prepaid gateway. Money is in integer micro-units (1e-6 of the currency).",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    session.install(app)
    app.mount("/static", StaticFiles(packages=[("gateway.api", "static")]), name="static")
    app.include_router(views.router)
    app.include_router(reports.router)
    app.include_router(portal_customers.router)
    app.include_router(portal_rules.router)
    app.include_router(portal_services.router)
    app.include_router(portal_billing.router)
    app.include_router(portal_tickets.router)
    app.include_router(portal_invoices.router)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/portal", status_code=307)

    for router in (
        auth.router,
        customers.router,
        money.router,
        billing.router,
        rates.router,
        cdrs.router,
        tickets.router,
        call_rules.router,
        products.router,
        invoices.router,
        low_balance.router,
        exchange_rates.router,
    ):
        app.include_router(router)
    return app
