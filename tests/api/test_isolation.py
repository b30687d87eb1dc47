"""The isolation matrix: another tree's things do not exist for the caller.

Every management API route with a path parameter (an id) is listed in ``ROUTES``,
with the kind of thing its ids name and what each probing role must get back. A
fixture builds agent_b's tree the way its owners would (through the API): b1 with a
caller-ID, an extension, tickets, add-funds requests, money moves and a call, a
sub-agent, and agent_b's private rate group (b1 uses it) with a rate. Then each route
is called on each of those things as agent_a, agent_a1 and customer a1, with a
minimal valid body. The answer must be 404 ``NOT_FOUND`` (the access rule of
``gateway/agents/principal.py``: as if it did not exist), or 403 ``FORBIDDEN`` where
the route refuses the role whatever the id (``Manager``/``Admin`` routes, see
``gateway/api/deps.py``), and nothing of either tree may change in the database.
agent_b itself gets a 2xx on every GET, so a test cannot pass on a wrong id.

The same is done for ids in query parameters (``QUERIES``: list and report filters
answer 404 or an empty page, as each route's code does) and in JSON bodies
(``BODIES``: 422 on the field, 403 or 404), and every list or report read without a
filter (``LISTS``) must show no row of agent_b's tree. Each table must equal what
the app has (its OpenAPI document, and ``app.routes`` for routes left out of it): a
new id route, id filter, id field or list fails ``test_*_table_is_complete`` until it
is given an entry here.

Announcements belong to no tree (the operator's, read by audience), so their rows
say so: agents read one for ``agents``, the customer does not, nobody but the
operator changes one.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from gateway.agents.context import ManagementContext
from gateway.api.app import create_app
from gateway.balance.keys import Keys
from gateway.config import from_mapping
from tests import factories
from tests.api import world as world_mod
from tests.api.test_cdrs import Call, insert_calls
from tests.api.world import World, headers

V1 = "/api/v1"
ROLES: Final = ("agent_a", "agent_a1", "a1")  # the probing side: agent_a's tree
HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
EMPTY: Final = "200 with no rows"  # a list filter that selects nothing
CODES: Final = {403: "FORBIDDEN", 404: "NOT_FOUND"}

Outcome = int | str
Refs = dict[str, int]  # names of the world's and agent_b's things -> ids

# -- what each role gets ------------------------------------------------------------------

HIDDEN: Final[dict[str, Outcome]] = {"agent_a": 404, "agent_a1": 404, "a1": 404}
# ``Manager`` routes (agents and the operator): a customer gets 403 whatever the id.
MANAGERS: Final[dict[str, Outcome]] = {"agent_a": 404, "agent_a1": 404, "a1": 403}
# ``Admin`` routes: everyone else gets 403 whatever the id.
OPERATOR: Final[dict[str, Outcome]] = {"agent_a": 403, "agent_a1": 403, "a1": 403}
# An announcement for ``agents``: shared operator content, not a tree's.
AGENTS_READ: Final[dict[str, Outcome]] = {"agent_a": 200, "agent_a1": 200, "a1": 404}
NOTHING: Final[dict[str, Outcome]] = {"agent_a": EMPTY, "agent_a1": EMPTY, "a1": EMPTY}
MANAGERS_NOTHING: Final[dict[str, Outcome]] = {"agent_a": EMPTY, "agent_a1": EMPTY, "a1": 403}
# An id in a create body is "said about the field" (422 on it), like any unknown id.
MANAGERS_FIELD: Final[dict[str, Outcome]] = {"agent_a": 422, "agent_a1": 422, "a1": 403}

# -- agent_b's things, by kind: the path parameters of each variant -------------------------

RESOURCES: Final[dict[str, tuple[dict[str, str], ...]]] = {
    "account": ({"account_id": "b1"}, {"account_id": "agent_b"}, {"account_id": "b_sub"}),
    "wholesale_agent": ({"account_id": "b_sub"},),
    "customer": ({"customer_id": "b1"},),
    "agent": ({"agent_id": "agent_b"}, {"agent_id": "b_sub"}),
    "caller_id": ({"caller_id": "b1_caller_id"},),
    "extension": ({"extension_id": "b1_extension"},),
    "add_funds_request": ({"request_id": "b1_request"}, {"request_id": "agent_b_request"}),
    "rate_group": ({"rate_group_id": "b_group"},),
    "rate": ({"rate_group_id": "b_group", "rate_id": "b_rate"},),
    "ticket": ({"ticket_id": "b1_ticket"}, {"ticket_id": "agent_b_ticket"}),
    "announcement": ({"announcement_id": "announcement"},),
    "product": ({"product_id": "b_product"},),
    "subscription": ({"subscription_id": "b1_subscription"},),
    "did": ({"did_id": "b1_did"},),
    "invoice": ({"invoice_id": "b1_invoice"}, {"invoice_id": "agent_b_invoice"}),
}

_PROBE_NUMBER = f"4989{secrets.randbelow(10**9):09d}"
_DECK = "prefix,destination,price_per_min\n49,Germany,0.001\n"


@dataclass(frozen=True)
class Route:
    """A route with ids in its path: what they name, what each role gets, the body."""

    resource: str
    expect: dict[str, Outcome]
    body: dict[str, Any] | None = None
    csv: str | None = None


ROUTES: Final[dict[tuple[str, str], Route]] = {
    # accounts and customers (customers_accounts.py, customers.py: require_account first)
    ("GET", f"{V1}/accounts/{{account_id}}"): Route("account", HIDDEN),
    ("GET", f"{V1}/customers/{{customer_id}}"): Route("customer", HIDDEN),
    # call rules (call_rules.py: require_account before the may-set check)
    ("GET", f"{V1}/accounts/{{account_id}}/call-rules"): Route("account", HIDDEN),
    ("PUT", f"{V1}/accounts/{{account_id}}/call-rules"): Route(
        "account", HIDDEN, {"block_prefixes": ["881"]}
    ),
    ("DELETE", f"{V1}/accounts/{{account_id}}/call-rules"): Route("account", HIDDEN),
    ("GET", f"{V1}/accounts/{{account_id}}/margin-report"): Route("wholesale_agent", HIDDEN),
    # low-balance care (low_balance_settings.py: require_account before the may-set check)
    ("GET", f"{V1}/accounts/{{account_id}}/low-balance"): Route("account", HIDDEN),
    ("PUT", f"{V1}/accounts/{{account_id}}/low-balance"): Route(
        "account", HIDDEN, {"threshold_micros": 1}
    ),
    ("PATCH", f"{V1}/customers/{{customer_id}}"): Route("customer", HIDDEN, {"name": "probe"}),
    ("DELETE", f"{V1}/customers/{{customer_id}}"): Route("customer", HIDDEN),
    ("PATCH", f"{V1}/agents/{{agent_id}}"): Route("agent", MANAGERS, {"name": "probe"}),
    # caller-IDs and extensions (numbers.py: the account check comes before the role check)
    ("GET", f"{V1}/customers/{{customer_id}}/caller-ids"): Route("customer", HIDDEN),
    ("POST", f"{V1}/customers/{{customer_id}}/caller-ids"): Route(
        "customer", HIDDEN, {"number": _PROBE_NUMBER}
    ),
    ("PATCH", f"{V1}/caller-ids/{{caller_id}}"): Route(
        "caller_id", HIDDEN, {"description": "probe"}
    ),
    ("DELETE", f"{V1}/caller-ids/{{caller_id}}"): Route("caller_id", HIDDEN),
    ("GET", f"{V1}/customers/{{customer_id}}/extensions"): Route("customer", HIDDEN),
    ("POST", f"{V1}/customers/{{customer_id}}/extensions"): Route("customer", HIDDEN, {}),
    ("PATCH", f"{V1}/extensions/{{extension_id}}"): Route(
        "extension", HIDDEN, {"description": "probe"}
    ),
    ("DELETE", f"{V1}/extensions/{{extension_id}}"): Route("extension", HIDDEN),
    # money (money.py): refills and payments are Manager routes
    ("POST", f"{V1}/accounts/{{account_id}}/refills"): Route(
        "account", MANAGERS, {"amount_micros": 1_000_000, "idempotency_key": "probe"}
    ),
    ("POST", f"{V1}/accounts/{{account_id}}/payments"): Route(
        "account",
        MANAGERS,
        {"amount_micros": 1_000_000, "idempotency_key": "probe", "reference": "probe"},
    ),
    ("GET", f"{V1}/add-funds-requests/{{request_id}}"): Route("add_funds_request", HIDDEN),
    # approving and rejecting are the operator's (Admin)
    ("POST", f"{V1}/add-funds-requests/{{request_id}}/approve"): Route(
        "add_funds_request", OPERATOR, {"note": "probe"}
    ),
    ("POST", f"{V1}/add-funds-requests/{{request_id}}/reject"): Route(
        "add_funds_request", OPERATOR, {"note": "probe"}
    ),
    # rate groups and rates (rate_groups.py, rates.py): visibility before the right to change
    ("GET", f"{V1}/rate-groups/{{rate_group_id}}"): Route("rate_group", HIDDEN),
    ("PATCH", f"{V1}/rate-groups/{{rate_group_id}}"): Route(
        "rate_group", MANAGERS, {"description": "probe"}
    ),
    ("DELETE", f"{V1}/rate-groups/{{rate_group_id}}"): Route("rate_group", MANAGERS),
    ("GET", f"{V1}/rate-groups/{{rate_group_id}}/rates"): Route("rate_group", HIDDEN),
    ("POST", f"{V1}/rate-groups/{{rate_group_id}}/rates"): Route(
        "rate_group", MANAGERS, {"prefix": "49", "price_per_min_micros": 1_000}
    ),
    ("GET", f"{V1}/rate-groups/{{rate_group_id}}/rates.csv"): Route("rate_group", HIDDEN),
    ("POST", f"{V1}/rate-groups/{{rate_group_id}}/rates/import"): Route(
        "rate_group", MANAGERS, csv=_DECK
    ),
    ("GET", f"{V1}/rate-groups/{{rate_group_id}}/rates/{{rate_id}}"): Route("rate", HIDDEN),
    ("PATCH", f"{V1}/rate-groups/{{rate_group_id}}/rates/{{rate_id}}"): Route(
        "rate", MANAGERS, {"price_per_min_micros": 1}
    ),
    ("DELETE", f"{V1}/rate-groups/{{rate_group_id}}/rates/{{rate_id}}"): Route("rate", MANAGERS),
    # tickets (tickets.py: visibility first, then opener/handler side)
    ("GET", f"{V1}/tickets/{{ticket_id}}"): Route("ticket", HIDDEN),
    ("POST", f"{V1}/tickets/{{ticket_id}}/messages"): Route("ticket", HIDDEN, {"body": "probe"}),
    ("POST", f"{V1}/tickets/{{ticket_id}}/close"): Route("ticket", HIDDEN),
    # announcements: the operator's, for everyone of an audience (announcements.py)
    ("GET", f"{V1}/announcements/{{announcement_id}}"): Route("announcement", AGENTS_READ),
    ("PATCH", f"{V1}/announcements/{{announcement_id}}"): Route(
        "announcement", OPERATOR, {"title": "probe"}
    ),
    ("DELETE", f"{V1}/announcements/{{announcement_id}}"): Route("announcement", OPERATOR),
    # products, subscriptions, charges, DIDs (products.py, dids.py: require_account first;
    # products are found only among the caller's own)
    ("PATCH", f"{V1}/products/{{product_id}}"): Route("product", MANAGERS, {"price_micros": 1}),
    ("GET", f"{V1}/accounts/{{account_id}}/subscriptions"): Route("account", HIDDEN),
    ("POST", f"{V1}/accounts/{{account_id}}/subscriptions"): Route(
        "account", MANAGERS, {"product_id": 1}
    ),
    ("POST", f"{V1}/subscriptions/{{subscription_id}}/end"): Route("subscription", MANAGERS, {}),
    ("GET", f"{V1}/accounts/{{account_id}}/charges"): Route("account", HIDDEN),
    ("POST", f"{V1}/accounts/{{account_id}}/charges/retry"): Route("account", HIDDEN),
    ("GET", f"{V1}/customers/{{customer_id}}/dids"): Route("customer", HIDDEN),
    ("POST", f"{V1}/customers/{{customer_id}}/dids"): Route(
        "customer", MANAGERS, {"number": _PROBE_NUMBER}
    ),
    ("DELETE", f"{V1}/dids/{{did_id}}"): Route("did", MANAGERS),
    # invoices (invoices.py: the invoice's account must be visible)
    ("GET", f"{V1}/invoices/{{invoice_id}}"): Route("invoice", HIDDEN),
    ("GET", f"{V1}/invoices/{{invoice_id}}/pdf"): Route("invoice", HIDDEN),
    ("GET", f"{V1}/invoices/{{invoice_id}}/csv"): Route("invoice", HIDDEN),
}


@dataclass(frozen=True)
class Query:
    """An id filter of a list or report: agent_b's ids to put in it, what each role gets,
    the one with which agent_b must see rows of its own, and extra parameter sets."""

    probes: tuple[str, ...]
    expect: dict[str, Outcome]
    owner_probe: str
    variants: tuple[dict[str, str], ...] = ({},)


_REPORT = Query(("b1", "agent_b"), HIDDEN, "b1", ({}, {"format": "csv"}))

QUERIES: Final[dict[tuple[str, str, str], Query]] = {
    # customers_accounts.list_accounts: the parent filter narrows the visible accounts
    ("GET", f"{V1}/customers", "parent_id"): Query(
        ("agent_b", "b_sub"), MANAGERS_NOTHING, "agent_b"
    ),
    ("GET", f"{V1}/agents", "parent_id"): Query(("agent_b",), MANAGERS_NOTHING, "agent_b"),
    # money.list_funds_requests: the account filter narrows the visible requests
    ("GET", f"{V1}/add-funds-requests", "account_id"): Query(("b1", "agent_b"), NOTHING, "b1"),
    # billing._check_account: an account filter must be visible (404)
    ("GET", f"{V1}/reports/balances", "account_id"): _REPORT,
    ("GET", f"{V1}/reports/refills", "account_id"): _REPORT,
    ("GET", f"{V1}/reports/payments", "account_id"): _REPORT,
    ("GET", f"{V1}/reports/payment-log", "account_id"): _REPORT,
    ("GET", f"{V1}/reports/commissions", "account_id"): Query(
        ("b1", "agent_b"), HIDDEN, "agent_b", ({}, {"format": "csv"})
    ),
    # cdr_reports._conditions: require_account on the filter (404)
    ("GET", f"{V1}/cdrs", "account_id"): _REPORT,
    ("GET", f"{V1}/reports/traffic", "account_id"): Query(("b1", "agent_b"), HIDDEN, "b1"),
    # tickets.list_tickets: the account filter narrows the visible tickets
    ("GET", f"{V1}/tickets", "account_id"): Query(("b1", "agent_b"), NOTHING, "b1"),
    # invoices.list_invoices: require_account on the filter (404)
    ("GET", f"{V1}/invoices", "account_id"): Query(("b1", "agent_b"), HIDDEN, "b1"),
}


_keys = itertools.count(1)


def _transfer(probe: int, refs: Refs) -> dict[str, Any]:
    key = f"probe-{next(_keys)}"
    return {"to_account_id": probe, "amount_micros": 1_000, "idempotency_key": key}


def _customer(parent: int, refs: Refs) -> dict[str, Any]:
    return {"name": "probe", "rate_group_id": refs["shared_group"], "parent_id": parent}


def _customer_group(group: int, refs: Refs) -> dict[str, Any]:
    return {"name": "probe", "rate_group_id": group}


def _batch(parent: int, refs: Refs) -> dict[str, Any]:
    return {"rate_group_id": refs["shared_group"], "parent_id": parent, "count": 1}


def _batch_group(group: int, refs: Refs) -> dict[str, Any]:
    return {"rate_group_id": group, "count": 1}


def _agent(parent: int, refs: Refs) -> dict[str, Any]:
    return {"name": "probe", "billing_mode": "transfer", "parent_id": parent}


def _agent_group(group: int, refs: Refs) -> dict[str, Any]:
    return {"name": "probe", "billing_mode": "wholesale", "rate_group_id": group}


_days = itertools.count(1)


def _invoice(account: int, refs: Refs) -> dict[str, Any]:
    """A period of its own per call (a day in 2001), so each issue is a new invoice."""
    start = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=next(_days))
    end = start + timedelta(days=1)
    return {
        "account_id": account,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
    }


def _group_change(group: int, refs: Refs) -> dict[str, Any]:
    return {"rate_group_id": group}


def _inbound_group(group: int, refs: Refs) -> dict[str, Any]:
    return {"inbound_rate_group_id": group}


def _resold(product: int, refs: Refs) -> dict[str, Any]:
    return {
        "name": f"probe {next(_keys)}",
        "kind": "monthly",
        "price_micros": 1,
        "base_product_id": product,
    }


def _subscription(product: int, refs: Refs) -> dict[str, Any]:
    return {"product_id": product}


def _did_subscription(did: int, refs: Refs) -> dict[str, Any]:
    return {"product_id": refs["b_rental"], "did_id": did}


def _did(product: int, refs: Refs) -> dict[str, Any]:
    return {"number": f"4987{secrets.randbelow(10**9):09d}", "rental_product_id": product}


# A path id in a body row's route names the caller's own thing: a customer it manages
# (agent_a: a2, agent_a1: a11), or for the customer role its own account.
OWN_CUSTOMER: Final = {"agent_a": "a2", "agent_a1": "a11", "a1": "a1", "agent_b": "b1"}
# The same for an agent: a sub-agent it manages (agent_a1 has none: its own, refused 403).
OWN_AGENT: Final = {"agent_a": "agent_a1", "agent_a1": "agent_a1", "a1": "a1", "agent_b": "b_sub"}
# Only agent_a has a sub-agent to change; agent_a1 may not change itself.
AGENT_FIELD: Final[dict[str, Outcome]] = {"agent_a": 422, "agent_a1": 403, "a1": 403}


@dataclass(frozen=True)
class BodyRef:
    """An id in a JSON body: agent_b's ids to put there, the body, what each role gets,
    and what agent_b gets with the same body (None: the route is not agent_b's)."""

    probes: tuple[str, ...]
    body: Callable[[int, Refs], dict[str, Any]]
    expect: dict[str, Outcome]
    owner_status: int | None


BODIES: Final[dict[tuple[str, str, str], BodyRef]] = {
    # money.transfer: agents only (403 for a customer), then require_account (404)
    ("POST", f"{V1}/transfers", "to_account_id"): BodyRef(
        ("b1", "b_sub"), _transfer, MANAGERS, 201
    ),
    # customers.resolve_parent / rate_group_currency: 422 on the field
    ("POST", f"{V1}/customers", "parent_id"): BodyRef(
        ("agent_b", "b_sub"), _customer, MANAGERS_FIELD, 201
    ),
    ("POST", f"{V1}/customers", "rate_group_id"): BodyRef(
        ("b_group",), _customer_group, MANAGERS_FIELD, 201
    ),
    ("POST", f"{V1}/customers/batch", "parent_id"): BodyRef(
        ("agent_b", "b_sub"), _batch, MANAGERS_FIELD, 201
    ),
    ("POST", f"{V1}/customers/batch", "rate_group_id"): BodyRef(
        ("b_group",), _batch_group, MANAGERS_FIELD, 201
    ),
    ("PATCH", f"{V1}/customers/{{customer_id}}", "rate_group_id"): BodyRef(
        ("b_group",), _group_change, MANAGERS_FIELD, 200
    ),
    ("PATCH", f"{V1}/customers/{{customer_id}}", "inbound_rate_group_id"): BodyRef(
        ("b_group",), _inbound_group, MANAGERS_FIELD, 200
    ),
    ("PATCH", f"{V1}/agents/{{agent_id}}", "rate_group_id"): BodyRef(
        ("b_group",), _group_change, AGENT_FIELD, 200
    ),
    ("PATCH", f"{V1}/agents/{{agent_id}}", "inbound_rate_group_id"): BodyRef(
        ("b_group",), _inbound_group, AGENT_FIELD, 200
    ),
    # products.create_product: a base must be the caller's parent's (agent_b's parent is
    # the operator, so its own product is no base for it either)
    ("POST", f"{V1}/products", "base_product_id"): BodyRef(
        ("b_product",), _resold, MANAGERS_FIELD, None
    ),
    # products.subscribe: the DID, then the product, must be the account's / its parent's
    ("POST", f"{V1}/accounts/{{account_id}}/subscriptions", "product_id"): BodyRef(
        ("b_product",), _subscription, MANAGERS_FIELD, 201
    ),
    ("POST", f"{V1}/accounts/{{account_id}}/subscriptions", "did_id"): BodyRef(
        ("b1_did",), _did_subscription, MANAGERS_FIELD, 201
    ),
    ("POST", f"{V1}/customers/{{customer_id}}/dids", "rental_product_id"): BodyRef(
        ("b_rental",), _did, MANAGERS_FIELD, 201
    ),
    # creating agents is the operator's
    ("POST", f"{V1}/agents", "parent_id"): BodyRef(("agent_b",), _agent, OPERATOR, None),
    ("POST", f"{V1}/agents", "rate_group_id"): BodyRef(("b_group",), _agent_group, OPERATOR, None),
    # invoices.issue_on_demand: Manager, then require_account (404)
    ("POST", f"{V1}/invoices", "account_id"): BodyRef(("b1", "b_sub"), _invoice, MANAGERS, 201),
}

# -- enumerating the app ---------------------------------------------------------------------


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route object, into included routers and mounts."""
    for route in routes:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if isinstance(path, str) and methods:
            yield prefix + path, set(methods)
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _walk(list(inner.routes), prefix + getattr(context, "prefix", ""))
        elif getattr(route, "routes", None) and isinstance(path, str):  # a mount
            yield from _walk(list(route.routes), prefix + path)


def _api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(METHOD, path) of the management API: from the OpenAPI document and app.routes."""
    published = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.upper() in HTTP_METHODS
    }
    walked = {
        (method, path)
        for path, methods in _walk(list(app.routes))
        for method in methods
        if method in HTTP_METHODS and path.startswith("/api/")
    }
    # If FastAPI hides its routes some new way, say so rather than check less.
    assert published <= walked, f"not found walking app.routes: {sorted(published - walked)}"
    return published | walked


def _path_params(path: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", path))


def _schema_refs(schema: Any) -> Iterator[str]:
    """Names of the components a schema refers to (directly, in anyOf, items...)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield schema["$ref"].rsplit("/", 1)[-1]
        for value in schema.values():
            yield from _schema_refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _schema_refs(value)


def _id_fields(
    components: dict[str, Any], name: str, seen: frozenset[str] = frozenset()
) -> Iterator[str]:
    """The ``*_id`` fields of component ``name`` and of the models nested in it (dotted)."""
    for prop, schema in components[name].get("properties", {}).items():
        if prop.endswith("_id"):
            yield prop
        for inner in set(_schema_refs(schema)) - seen - {name}:
            yield from (f"{prop}.{f}" for f in _id_fields(components, inner, seen | {name}))


def test_path_id_table_is_complete(iso_app: FastAPI) -> None:
    with_ids = {(m, p) for m, p in _api_routes(iso_app) if _path_params(p)}
    assert with_ids == set(ROUTES), (
        f"routes without an entry in ROUTES: {sorted(with_ids - set(ROUTES))}; "
        f"entries of no route: {sorted(set(ROUTES) - with_ids)}"
    )


def test_query_id_table_is_complete(iso_app: FastAPI) -> None:
    schema = iso_app.openapi()
    found = {
        (method.upper(), path, p["name"])
        for path, operations in schema["paths"].items()
        for method, op in operations.items()
        for p in op.get("parameters", [])
        if p["in"] == "query" and p["name"].endswith("_id")
    }
    assert found == set(QUERIES), (
        f"id filters without an entry in QUERIES: {sorted(found - set(QUERIES))}; "
        f"entries of no filter: {sorted(set(QUERIES) - found)}"
    )


def test_body_id_table_is_complete(iso_app: FastAPI) -> None:
    schema = iso_app.openapi()
    components = schema["components"]["schemas"]
    found: set[tuple[str, str, str]] = set()
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            for name in _schema_refs(body):
                found |= {(method.upper(), path, f) for f in _id_fields(components, name)}
    assert found == set(BODIES), (
        f"body ids without an entry in BODIES: {sorted(found - set(BODIES))}; "
        f"entries of no body field: {sorted(set(BODIES) - found)}"
    )


def test_tables_are_consistent() -> None:
    for (_, path), route in ROUTES.items():
        assert set(route.expect) == set(ROLES), path
        for variant in RESOURCES[route.resource]:
            assert set(variant) == _path_params(path), (path, variant)
    for key, query in QUERIES.items():
        assert set(query.expect) == set(ROLES), key
    for key, body in BODIES.items():
        assert set(body.expect) == set(ROLES), key


# -- agent_b's tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class Trees:
    world: World
    refs: Refs
    auth: dict[str, dict[str, str]]
    users: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
async def iso_ctx(
    db_pool: asyncpg.Pool,
    redis_client: aioredis.Redis,
    database_url: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ManagementContext]:
    keys = Keys(f"{redis_namespace}:isolation")
    config = from_mapping(
        {
            "service": {
                "state_dir": str(tmp_path_factory.mktemp("isolation") / "state"),
                "log_format": "text",
            },
            "redis": {"url": redis_url, "key_prefix": keys.prefix},
            "database": {"url": database_url},
        }
    )
    context = ManagementContext.create(config, db_pool, redis_client, keys)
    await context.start()
    yield context
    await context.close()


@pytest.fixture(scope="module")
def iso_app(iso_ctx: ManagementContext) -> FastAPI:
    return create_app(iso_ctx)


@pytest.fixture(scope="module")
async def iso_api(iso_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=iso_app, client=("127.0.0.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client


async def _created(reply: httpx.Response) -> int:
    assert reply.status_code == 201, reply.text
    created: int = reply.json()["id"]
    return created


@pytest.fixture(scope="module")
async def trees(iso_api: httpx.AsyncClient, db_pool: asyncpg.Pool) -> Trees:
    """The world, with agent_b's tree filled in through the API by its own users."""
    api = iso_api
    async with db_pool.acquire() as conn:
        world = await world_mod.build(conn)
        b_sub = await factories.account(
            conn,
            kind="agent",
            mode="wholesale",
            parent=world.agent_b,
            balance=1_000_000,
            rate_group_id=world.rate_group,
        )
        # agent_b earns commission on what it moves to its customers.
        await conn.execute(
            "UPDATE accounts SET commission_rate_bp = 1000 WHERE id = $1", world.agent_b
        )
    auth = {
        who: await headers(api, world, who)
        for who in ("admin", "agent_a", "agent_a1", "agent_b", "a1", "b1")
    }
    b, b1 = auth["agent_b"], world.b1
    refs: Refs = {
        "agent_a": world.agent_a,
        "agent_a1": world.agent_a1,
        "a1": world.a1,
        "a2": world.a2,
        "a11": world.a11,
        "agent_b": world.agent_b,
        "b1": b1,
        "b_sub": b_sub,
        "shared_group": world.rate_group,
    }
    number = f"4988{secrets.randbelow(10**9):09d}"
    refs["b1_caller_id"] = await _created(
        await api.post(f"{V1}/customers/{b1}/caller-ids", json={"number": number}, headers=b)
    )
    refs["b1_extension"] = await _created(
        await api.post(f"{V1}/customers/{b1}/extensions", json={}, headers=b)
    )
    group_name = f"b-private-{world.suffix}"
    refs["b_group"] = group = await _created(
        await api.post(f"{V1}/rate-groups", json={"name": group_name}, headers=b)
    )
    refs["b_rate"] = await _created(
        await api.post(
            f"{V1}/rate-groups/{group}/rates",
            json={"prefix": "44", "price_per_min_micros": 20_000},
            headers=b,
        )
    )
    moved = await api.patch(f"{V1}/customers/{b1}", json={"rate_group_id": group}, headers=b)
    assert moved.status_code == 200, moved.text
    refill = {"amount_micros": 2_000_000, "idempotency_key": f"setup-{world.suffix}"}
    reply = await api.post(f"{V1}/accounts/{b1}/refills", json=refill, headers=b)
    assert reply.status_code == 201, reply.text
    payment = {**refill, "idempotency_key": f"setup-pay-{world.suffix}", "reference": "INV-B-1"}
    reply = await api.post(f"{V1}/accounts/{b1}/payments", json=payment, headers=b)
    assert reply.status_code == 201, reply.text
    for who in ("b1", "agent_b"):
        ticket = {"subject": f"{who} asks", "body": "Calls drop."}
        refs[f"{who}_ticket"] = await _created(
            await api.post(f"{V1}/tickets", json=ticket, headers=auth[who])
        )
        request = {"amount_micros": 5_000_000, "note": f"{who} needs credit"}
        refs[f"{who}_request"] = await _created(
            await api.post(f"{V1}/me/add-funds-requests", json=request, headers=auth[who])
        )
    refs["announcement"] = await _created(
        await api.post(
            f"{V1}/announcements",
            json={"title": f"maintenance {world.suffix}", "audience": "agents"},
            headers=auth["admin"],
        )
    )
    product = {"name": f"b-seat-{world.suffix}", "kind": "monthly", "price_micros": 1_000}
    refs["b_product"] = await _created(await api.post(f"{V1}/products", json=product, headers=b))
    rental = {"name": f"b-did-{world.suffix}", "kind": "did_rental", "price_micros": 2_000}
    refs["b_rental"] = await _created(await api.post(f"{V1}/products", json=rental, headers=b))
    did = {"number": f"4986{secrets.randbelow(10**9):09d}", "rental_product_id": refs["b_rental"]}
    reply = await api.post(f"{V1}/customers/{b1}/dids", json=did, headers=b)
    refs["b1_did"] = await _created(reply)
    refs["b1_subscription"] = reply.json()["subscription_id"]
    for who, account in (("agent_b", b1), ("admin", world.agent_b)):
        invoice = {"account_id": account}  # the previous month
        refs[f"{'b1' if account == b1 else 'agent_b'}_invoice"] = await _created(
            await api.post(f"{V1}/invoices", json=invoice, headers=auth[who])
        )
    now = datetime.now(UTC)
    call_at = max(now - timedelta(minutes=1), datetime(now.year, 1, 1, tzinfo=UTC))
    await insert_calls(
        db_pool, world, [Call(f"iso-{world.suffix}", b1, call_at, 60, (60_000, 30_000))]
    )
    return Trees(world, refs, auth, list(world.users.values()))


# -- the database, before and after --------------------------------------------------------

_TREE = "(SELECT id FROM accounts WHERE id = ANY($1::bigint[]) OR ancestors && $1::bigint[])"
_GROUPS = (
    "(SELECT id FROM rate_groups WHERE owner_user_id = ANY($1::bigint[]) OR id = ANY($2::bigint[]))"
)
# table -> (query, its parameters): roots of both trees, the world's users, the rate
# groups (agent_b's own and the shared one), the announcement.
_SNAPSHOT: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "accounts": (f"SELECT * FROM accounts WHERE id IN {_TREE} ORDER BY id", ("roots",)),
    "ledger_entries": (
        f"SELECT * FROM ledger_entries WHERE account_id IN {_TREE} ORDER BY id",
        ("roots",),
    ),
    "caller_ids": (f"SELECT * FROM caller_ids WHERE account_id IN {_TREE} ORDER BY id", ("roots",)),
    "extensions": (f"SELECT * FROM extensions WHERE account_id IN {_TREE} ORDER BY id", ("roots",)),
    "users": (
        f"SELECT * FROM users WHERE account_id IN {_TREE} OR id = ANY($2::bigint[]) ORDER BY id",
        ("roots", "users"),
    ),
    "user_account_access": (
        f"SELECT * FROM user_account_access WHERE account_id IN {_TREE} "
        "OR user_id = ANY($2::bigint[]) ORDER BY user_id, account_id",
        ("roots", "users"),
    ),
    "add_funds_requests": (
        f"SELECT * FROM add_funds_requests WHERE account_id IN {_TREE} ORDER BY id",
        ("roots",),
    ),
    "tickets": (f"SELECT * FROM tickets WHERE account_id IN {_TREE} ORDER BY id", ("roots",)),
    "ticket_messages": (
        "SELECT * FROM ticket_messages WHERE ticket_id IN "
        f"(SELECT id FROM tickets WHERE account_id IN {_TREE}) ORDER BY id",
        ("roots",),
    ),
    "rate_groups": (
        f"SELECT * FROM rate_groups WHERE id IN {_GROUPS} ORDER BY id",
        ("users", "groups"),
    ),
    "rates": (
        f"SELECT * FROM rates WHERE rate_group_id IN {_GROUPS} ORDER BY id",
        ("users", "groups"),
    ),
    "announcements": (
        "SELECT * FROM announcements WHERE id = ANY($1::bigint[]) ORDER BY id",
        ("announcements",),
    ),
    "products": (
        f"SELECT * FROM products WHERE owner_account_id IN {_TREE} ORDER BY id",
        ("roots",),
    ),
    "subscriptions": (
        f"SELECT * FROM subscriptions WHERE account_id IN {_TREE} ORDER BY id",
        ("roots",),
    ),
    "recurring_charges": (
        "SELECT * FROM recurring_charges WHERE subscription_id IN (SELECT id FROM "
        f"subscriptions WHERE account_id IN {_TREE}) ORDER BY id",
        ("roots",),
    ),
    "dids": (f"SELECT * FROM dids WHERE account_id IN {_TREE} ORDER BY id", ("roots",)),
    "invoices": (f"SELECT * FROM invoices WHERE account_id IN {_TREE} ORDER BY id", ("roots",)),
    "invoice_counters": (
        f"SELECT * FROM invoice_counters WHERE issuer_key IN {_TREE} ORDER BY issuer_key, year",
        ("roots",),
    ),
}


async def _snapshot(db_pool: asyncpg.Pool, trees: Trees) -> dict[str, list[dict[str, Any]]]:
    """Every row of both trees that a route could change (sessions left out)."""
    refs = trees.refs
    values: dict[str, list[int]] = {
        "roots": [refs["agent_a"], refs["agent_b"]],
        "users": trees.users,
        "groups": [refs["shared_group"], refs["b_group"]],
        "announcements": [refs["announcement"]],
    }
    async with db_pool.acquire() as conn:
        return {
            table: [dict(r) for r in await conn.fetch(sql, *(values[n] for n in names))]
            for table, (sql, names) in _SNAPSHOT.items()
        }


def _assert_unchanged(
    before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]], label: str
) -> None:
    changed = [table for table in before if before[table] != after[table]]
    assert not changed, f"{label} changed {changed}: " + "; ".join(
        f"{t}: {[r for r in after[t] if r not in before[t]]} "
        f"(was {[r for r in before[t] if r not in after[t]]})"
        for t in changed
    )


def _assert_outcome(reply: httpx.Response, expected: Outcome, label: str) -> None:
    if expected == EMPTY:
        assert reply.status_code == 200, f"{label}: {reply.status_code} {reply.text[:300]}"
        body = reply.json()
        assert body["items"] == [] and body["total"] == 0, f"{label} leaks: {reply.text[:500]}"
        return
    assert reply.status_code == expected, f"{label}: {reply.status_code} {reply.text[:500]}"
    if expected in CODES:
        # The service's refusal, not a route the path failed to match (FastAPI's plain 404).
        detail = reply.json()["detail"]
        assert isinstance(detail, dict) and detail["code"] == CODES[expected], (label, detail)


async def _send(
    api: httpx.AsyncClient,
    method: str,
    url: str,
    auth: dict[str, str],
    *,
    body: dict[str, Any] | None = None,
    csv: str | None = None,
) -> httpx.Response:
    if csv is not None:
        return await api.request(
            method, url, content=csv, headers={**auth, "Content-Type": "text/csv"}
        )
    if body is not None:
        return await api.request(method, url, json=body, headers=auth)
    return await api.request(method, url, headers=auth)


# -- the matrix -----------------------------------------------------------------------------


def _label(values: dict[str, str]) -> str:
    return ",".join(values.values())


PATH_CASES = [
    pytest.param(method, path, variant, role, id=f"{method} {path} [{_label(variant)}] {role}")
    for (method, path), route in ROUTES.items()
    for variant in RESOURCES[route.resource]
    for role in ROLES
]


@pytest.mark.parametrize(("method", "path", "variant", "role"), PATH_CASES)
async def test_path_id_of_another_tree(
    iso_api: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    trees: Trees,
    method: str,
    path: str,
    variant: dict[str, str],
    role: str,
) -> None:
    route = ROUTES[(method, path)]
    url = path.format(**{name: trees.refs[ref] for name, ref in variant.items()})
    label = f"{method} {url} as {role}"
    before = await _snapshot(db_pool, trees)
    reply = await _send(iso_api, method, url, trees.auth[role], body=route.body, csv=route.csv)
    after = await _snapshot(db_pool, trees)
    _assert_outcome(reply, route.expect[role], label)
    _assert_unchanged(before, after, label)


OWNER_CASES = [
    pytest.param(path, variant, id=f"GET {path} [{_label(variant)}]")
    for (method, path), route in ROUTES.items()
    if method == "GET"
    for variant in RESOURCES[route.resource]
]


@pytest.mark.parametrize(("path", "variant"), OWNER_CASES)
async def test_owner_reads_its_own(
    iso_api: httpx.AsyncClient, trees: Trees, path: str, variant: dict[str, str]
) -> None:
    """The positive control: the ids of the matrix are agent_b's, and agent_b sees them."""
    url = path.format(**{name: trees.refs[ref] for name, ref in variant.items()})
    reply = await iso_api.get(url, headers=trees.auth["agent_b"])
    assert 200 <= reply.status_code < 300, f"GET {url} as agent_b: {reply.text[:300]}"


async def test_rate_of_another_tree_through_a_visible_group(
    iso_api: httpx.AsyncClient, db_pool: asyncpg.Pool, trees: Trees
) -> None:
    """A rate id of agent_b's group under the shared group's id is no rate of it."""
    refs = trees.refs
    url = f"{V1}/rate-groups/{refs['shared_group']}/rates/{refs['b_rate']}"
    for role in ROLES:
        _assert_outcome(await iso_api.get(url, headers=trees.auth[role]), 404, role)
    assert (await iso_api.get(url, headers=trees.auth["agent_b"])).status_code == 404
    own = f"{V1}/rate-groups/{refs['b_group']}/rates/{refs['b_rate']}"
    assert (await iso_api.get(own, headers=trees.auth["agent_b"])).status_code == 200


QUERY_CASES = [
    pytest.param(
        method,
        path,
        name,
        probe,
        extra,
        role,
        id=f"{method} {path}?{name}={probe}{''.join(f'&{k}={v}' for k, v in extra.items())} {role}",
    )
    for (method, path, name), query in QUERIES.items()
    for probe in query.probes
    for extra in query.variants
    for role in ROLES
]


@pytest.mark.parametrize(("method", "path", "name", "probe", "extra", "role"), QUERY_CASES)
async def test_query_id_of_another_tree(
    iso_api: httpx.AsyncClient,
    trees: Trees,
    method: str,
    path: str,
    name: str,
    probe: str,
    extra: dict[str, str],
    role: str,
) -> None:
    query = QUERIES[(method, path, name)]
    params = {name: str(trees.refs[probe]), **extra}
    reply = await iso_api.request(method, path, params=params, headers=trees.auth[role])
    _assert_outcome(reply, query.expect[role], f"{method} {path} {params} as {role}")


@pytest.mark.parametrize(
    ("method", "path", "name"), [pytest.param(*key, id=" ".join(key)) for key in QUERIES]
)
async def test_owner_filters_its_own(
    iso_api: httpx.AsyncClient, trees: Trees, method: str, path: str, name: str
) -> None:
    """The positive control: the same filter shows agent_b rows of its tree."""
    query = QUERIES[(method, path, name)]
    params = {name: str(trees.refs[query.owner_probe])}
    reply = await iso_api.request(method, path, params=params, headers=trees.auth["agent_b"])
    assert reply.status_code == 200, reply.text
    body = reply.json()
    if "items" in body:
        assert body["items"], f"agent_b sees nothing with {params}: {reply.text[:300]}"
    else:  # the traffic report: monthly figures
        assert body["this_year"]["calls"] >= 1, reply.text[:300]


BODY_CASES = [
    pytest.param(method, path, name, probe, role, id=f"{method} {path} {name}={probe} {role}")
    for (method, path, name), ref in BODIES.items()
    for probe in ref.probes
    for role in ROLES
]


def _body_url(path: str, trees: Trees, who: str) -> str:
    if _path_params(path):
        own = trees.refs[OWN_CUSTOMER[who]]
        return path.format(customer_id=own, account_id=own, agent_id=trees.refs[OWN_AGENT[who]])
    return path


@pytest.mark.parametrize(("method", "path", "name", "probe", "role"), BODY_CASES)
async def test_body_id_of_another_tree(
    iso_api: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    trees: Trees,
    method: str,
    path: str,
    name: str,
    probe: str,
    role: str,
) -> None:
    ref = BODIES[(method, path, name)]
    url = _body_url(path, trees, role)
    body = ref.body(trees.refs[probe], trees.refs)
    label = f"{method} {url} {body} as {role}"
    before = await _snapshot(db_pool, trees)
    reply = await _send(iso_api, method, url, trees.auth[role], body=body)
    after = await _snapshot(db_pool, trees)
    _assert_outcome(reply, ref.expect[role], label)
    if ref.expect[role] == 422:  # refused for that very field
        assert [e["loc"][-1] for e in reply.json()["detail"]] == [name], label
    _assert_unchanged(before, after, label)


@pytest.mark.parametrize(
    ("method", "path", "name", "probe"),
    [
        pytest.param(*key, probe, id=f"{' '.join(key)}={probe}")
        for key, ref in BODIES.items()
        if ref.owner_status is not None
        for probe in ref.probes
    ],
)
async def test_owner_uses_its_own_ids(
    iso_api: httpx.AsyncClient, trees: Trees, method: str, path: str, name: str, probe: str
) -> None:
    """The positive control: agent_b's ids are good ids in agent_b's own requests."""
    ref = BODIES[(method, path, name)]
    body = ref.body(trees.refs[probe], trees.refs)
    reply = await _send(
        iso_api, method, _body_url(path, trees, "agent_b"), trees.auth["agent_b"], body=body
    )
    assert reply.status_code == ref.owner_status, reply.text[:500]


# -- lists and reports without any filter ---------------------------------------------------

ALL_OK: Final[dict[str, Outcome]] = {"agent_a": 200, "agent_a1": 200, "a1": 200}
MANAGERS_OK: Final[dict[str, Outcome]] = {"agent_a": 200, "agent_a1": 200, "a1": 403}
_LEDGER = {"id": "ledger", "account_id": "accounts", "counterparty_account_id": "accounts"}


@dataclass(frozen=True)
class Listing:
    """A GET without path ids: item fields that must never hold agent_b's ids (by kind),
    and what each role gets."""

    fields: dict[str, str]
    expect: dict[str, Outcome] = field(default_factory=lambda: dict(ALL_OK))


LISTS: Final[dict[tuple[str, str], Listing]] = {
    ("GET", f"{V1}/auth/me"): Listing({"account_id": "accounts"}),
    ("GET", f"{V1}/me/account"): Listing({"id": "accounts", "parent_id": "accounts"}),
    ("GET", f"{V1}/customers"): Listing({"id": "accounts", "parent_id": "accounts"}, MANAGERS_OK),
    ("GET", f"{V1}/agents"): Listing({"id": "accounts", "parent_id": "accounts"}, MANAGERS_OK),
    ("GET", f"{V1}/me/add-funds-requests"): Listing({"id": "requests", "account_id": "accounts"}),
    ("GET", f"{V1}/add-funds-requests"): Listing({"id": "requests", "account_id": "accounts"}),
    ("GET", f"{V1}/reports/balances"): Listing({"account_id": "accounts", "parent_id": "accounts"}),
    ("GET", f"{V1}/reports/refills"): Listing(_LEDGER),
    ("GET", f"{V1}/reports/payments"): Listing(_LEDGER),
    ("GET", f"{V1}/reports/payment-log"): Listing(_LEDGER),
    ("GET", f"{V1}/reports/commissions"): Listing(_LEDGER),
    ("GET", f"{V1}/rate-groups"): Listing({"id": "groups"}),
    ("GET", f"{V1}/cdrs"): Listing({"id": "cdrs", "account_id": "accounts"}),
    # Monthly sums, no rows: agent_a's tree has no calls, so any call counted is agent_b's.
    ("GET", f"{V1}/reports/traffic"): Listing({}),
    ("GET", f"{V1}/tickets"): Listing({"id": "tickets", "account_id": "accounts"}),
    ("GET", f"{V1}/announcements"): Listing({}),  # the operator's, by audience
    ("GET", f"{V1}/products"): Listing(
        {"id": "products", "owner_account_id": "accounts", "base_product_id": "products"},
        MANAGERS_OK,
    ),
    ("GET", f"{V1}/invoices"): Listing(
        {"id": "invoices", "account_id": "accounts", "issuer_account_id": "accounts"}
    ),
    # The operator's quotes, no tree's: agents read them, customers do not.
    ("GET", f"{V1}/exchange-rates"): Listing({}, MANAGERS_OK),
}

_B_IDS: Final = {
    "accounts": "SELECT id FROM accounts WHERE id = $1 OR $1 = ANY(ancestors)",
    "ledger": "SELECT e.id FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors)",
    "requests": "SELECT r.id FROM add_funds_requests r JOIN accounts a ON a.id = r.account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors)",
    "tickets": "SELECT t.id FROM tickets t JOIN accounts a ON a.id = t.account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors)",
    "cdrs": "SELECT id FROM cdrs WHERE chain @> ARRAY[$1::bigint]",
    "products": "SELECT p.id FROM products p JOIN accounts a ON a.id = p.owner_account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors)",
    "invoices": "SELECT i.id FROM invoices i JOIN accounts a ON a.id = i.account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors)",
    "groups": "SELECT id FROM rate_groups WHERE owner_user_id IN "
    "(SELECT u.id FROM users u JOIN accounts a ON a.id = u.account_id "
    "WHERE a.id = $1 OR $1 = ANY(a.ancestors))",
}


def test_list_table_is_complete(iso_app: FastAPI) -> None:
    lists = {(m, p) for m, p in _api_routes(iso_app) if m == "GET" and not _path_params(p)}
    assert lists == set(LISTS), (
        f"GET routes without an entry in LISTS: {sorted(lists - set(LISTS))}; "
        f"entries of no route: {sorted(set(LISTS) - lists)}"
    )
    for key, listing in LISTS.items():
        assert set(listing.expect) == set(ROLES), key
        assert set(listing.fields.values()) <= set(_B_IDS), key


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [pytest.param(m, p, role, id=f"{m} {p} {role}") for m, p in LISTS for role in ROLES],
)
async def test_unfiltered_list_shows_nothing_of_another_tree(
    iso_api: httpx.AsyncClient,
    db_pool: asyncpg.Pool,
    trees: Trees,
    method: str,
    path: str,
    role: str,
) -> None:
    listing = LISTS[(method, path)]
    reply = await iso_api.request(method, path, params={"limit": 500}, headers=trees.auth[role])
    expected = listing.expect[role]
    _assert_outcome(reply, expected, f"{method} {path} as {role}")
    if expected != 200:
        return
    body = reply.json()
    if path.endswith("/reports/traffic"):
        assert body["this_year"]["calls"] == 0 and body["last_year"]["calls"] == 0, body
        return
    theirs: dict[str, set[int]] = {}
    async with db_pool.acquire() as conn:
        for kind in set(listing.fields.values()):
            found = await conn.fetch(_B_IDS[kind], trees.refs["agent_b"])
            theirs[kind] = {r["id"] for r in found}
    leaked = [
        (name, row[name])
        for row in body.get("items", [body])
        for name, kind in listing.fields.items()
        if row.get(name) in theirs[kind]
    ]
    assert not leaked, f"{method} {path} as {role} shows agent_b's {leaked}"
