"""Portal pages: rates, the CDR report and the monthly traffic chart.

Every number comes from the API (``/api/v1/rate-groups``, ``/api/v1/cdrs``,
``/api/v1/reports/traffic``); the pages only choose what to ask and draw it. CSV
downloads are the API's own exports, passed through as attachments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.portal.listing import (
    attachment,
    error_page,
    pager_base,
    query_url,
    refusal_page,
    sort_columns,
)
from gateway.api.portal.render import money, page
from gateway.api.portal.session import Portal, PortalUser

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE_SIZE = 50
ACCOUNT_OPTIONS_MAX = 500
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# -- links, sortable headers, downloads ------------------------------------------------


def _order(text: str, default: str) -> str:
    return text if text in ("asc", "desc") else default


async def _currency(portal: Portal) -> str:
    account = await portal.get("/api/v1/me/account")
    return str(account.body["currency"]) if account.ok else ""


async def account_options(portal: Portal, user: PortalUser) -> list[tuple[str, str]] | None:
    """The accounts a report may be narrowed to: customers, then sub-agents (whole subtree).
    Empty for customers, who only see their own calls; None when there are too many to
    list (the operator, a large agent): the page asks for an account number instead."""
    if user.role == "customer":
        return []
    if user.role == "admin":
        return None
    options: list[tuple[str, str]] = [("", "All my accounts")]
    for kind, path in (("customer", "/api/v1/customers"), ("agent", "/api/v1/agents")):
        found = await portal.get(path, limit=ACCOUNT_OPTIONS_MAX, sort="name")
        if not found.ok or found.body["total"] > len(found.body["items"]):
            return None
        items = found.body["items"]
        options += [(str(a["id"]), f"{a['name']} ({kind} #{a['id']})") for a in items]
    return options


# -- rates -----------------------------------------------------------------------------

RATE_COLUMNS = [
    ("Prefix", "prefix", False),
    ("Destination", "destination", False),
    ("Price / min", "price_per_min_micros", True),
    ("Connect fee", "", True),
    ("Increments", "", True),
    ("Min / grace", "", True),
    ("From", "effective_from", False),
    ("Until", "", False),
    ("Peak / off-peak", "", False),
]
RATE_FILTERS = ("prefix", "destination", "number", "in_force")


def _pick_group(groups: list[dict[str, Any]], asked: str, own: int | None) -> dict[str, Any] | None:
    by_id = {str(g["id"]): g for g in groups}
    if asked:
        return by_id.get(asked)
    if own is not None and str(own) in by_id:
        return by_id[str(own)]
    return groups[0] if groups else None


@router.get("/rates")
async def rates_page(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    q = {k: v.strip() for k, v in request.query_params.items()}
    groups_reply = await portal.get("/api/v1/rate-groups", limit=100, sort="name")
    groups: list[dict[str, Any]] = groups_reply.body["items"] if groups_reply.ok else []
    account = await portal.get("/api/v1/me/account")
    own = account.body.get("rate_group_id") if account.ok else None
    group = _pick_group(groups, q.get("group", ""), own)
    if group is None and q.get("group"):
        return page(request, "error.html", status=404, title="No such rate group")
    sort = q.get("sort") or "prefix"
    order = _order(q.get("order", ""), "asc")
    params = {k: q.get(k, "") for k in ("group", *RATE_FILTERS)} | {"sort": sort, "order": order}
    context: dict[str, Any] = {
        "groups": groups,
        "group": group,
        "values": q,
        "errors": {},
        "rates": [],
        "listing": None,
        "columns": sort_columns("/portal/rates", params, RATE_COLUMNS, sort, order),
        "pager_base": pager_base("/portal/rates", params),
    }
    if group is None:
        return page(request, "rates.html", **context)
    reply = await portal.get(
        f"/api/v1/rate-groups/{group['id']}/rates",
        prefix=q.get("prefix"),
        destination=q.get("destination"),
        number=q.get("number"),
        in_force="true" if q.get("in_force") else None,
        sort=sort,
        order=order,
        offset=q.get("offset"),
        limit=PAGE_SIZE,
    )
    if refused := refusal_page(request, reply, "rates.html", "Rates cannot be shown", context):
        return refused
    context["rates"] = reply.body["items"]
    context["listing"] = reply.body
    return page(request, "rates.html", **context)


@router.get("/rates/{group_id}.csv")
async def rates_csv(request: Request, group_id: str) -> Response:
    portal = Portal(request)
    await portal.login_required()
    if not group_id.isdigit():
        return page(request, "error.html", status=404, title="No such rate group")
    reply = await portal.get(f"/api/v1/rate-groups/{group_id}/rates.csv")
    if not reply.ok:
        return error_page(request, reply, "The rates cannot be downloaded")
    return attachment(reply, f"rates-{group_id}.csv")


# -- CDRs ------------------------------------------------------------------------------

CDR_FILTERS = ("from", "to", "account_id", "called_prefix", "caller", "status")
CDR_COLUMNS = [
    ("Start (UTC)", "setup_at", False),
    ("Customer", "account_id", False),
    ("Caller", "caller", False),
    ("Called", "called", False),
    ("Destination", "", False),
    ("Status", "status", False),
    ("Duration", "duration_s", True),
    ("Billed", "", True),
    ("Cost", "cost_micros", True),
]


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def cdr_api_params(q: Mapping[str, str]) -> dict[str, Any]:
    """The API's query for the form: whole UTC days, ``to`` inclusive. A typed value
    that is no date goes through unchanged, so the API's error names the field."""
    params: dict[str, Any] = {k: q.get(k) for k in ("account_id", "called_prefix", "caller")}
    params["status"] = q.get("status")
    start, end = q.get("from", ""), q.get("to", "")
    first, last = _day(start), _day(end)
    params["from"] = first.isoformat() + "T00:00:00Z" if first else start
    if last is not None:
        params["to"] = (last + timedelta(days=1)).isoformat() + "T00:00:00Z"
    else:
        params["to"] = end
    return params


def _shown_window(body: Mapping[str, Any]) -> tuple[str, str]:
    """The API's window as the form's inclusive ``from``/``to`` days."""
    start = datetime.fromisoformat(body["from"]).astimezone(UTC)
    end = datetime.fromisoformat(body["to"]).astimezone(UTC)
    midnight = end.replace(hour=0, minute=0, second=0, microsecond=0)
    last = midnight - timedelta(days=1) if end == midnight else midnight
    return start.date().isoformat(), last.date().isoformat()


def duration(seconds: Any) -> str:
    """Seconds as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    if seconds is None or seconds == "":
        return ""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


@router.get("/cdrs")
async def cdrs_page(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    q = {k: v.strip() for k, v in request.query_params.items()}
    sort = q.get("sort") or "setup_at"
    order = _order(q.get("order", ""), "desc")
    params = {k: q.get(k, "") for k in CDR_FILTERS} | {"sort": sort, "order": order}
    spec = list(CDR_COLUMNS)
    if user.role == "agent":
        spec.append(("My cost", "", True))
    context: dict[str, Any] = {
        "values": dict(q),
        "errors": {},
        "report": None,
        "currency": await _currency(portal),
        "accounts": await account_options(portal, user),
        "columns": sort_columns("/portal/cdrs", params, spec, sort, order),
        "pager_base": pager_base("/portal/cdrs", params),
        "csv_url": query_url("/portal/cdrs.csv", params),
        "duration": duration,
    }
    reply = await portal.get(
        "/api/v1/cdrs",
        **cdr_api_params(q),
        sort=sort,
        order=order,
        offset=q.get("offset"),
        limit=PAGE_SIZE,
    )
    if refused := refusal_page(
        request, reply, "cdrs.html", "The call report cannot be shown", context
    ):
        return refused
    context["report"] = reply.body
    shown_from, shown_to = _shown_window(reply.body)
    context["values"] = {**context["values"], "from": shown_from, "to": shown_to}
    return page(request, "cdrs.html", **context)


@router.get("/cdrs.csv")
async def cdrs_csv(request: Request) -> Response:
    portal = Portal(request)
    await portal.login_required()
    q = {k: v.strip() for k, v in request.query_params.items()}
    reply = await portal.get(
        "/api/v1/cdrs",
        **cdr_api_params(q),
        sort=q.get("sort") or "setup_at",
        order=_order(q.get("order", ""), "desc"),
        format="csv",
    )
    if not reply.ok:
        return error_page(request, reply, "The calls cannot be downloaded")
    return attachment(reply, "cdrs.csv")


# -- monthly traffic -------------------------------------------------------------------

METRICS = {
    "minutes": ("Minutes", "minutes", "min"),
    "calls": ("Calls", "calls", "calls"),
    "revenue": ("Revenue", "revenue_micros", ""),
}


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    year: int
    month: int
    value: int
    title: str
    css: str


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart in SVG user units (the ``viewBox``): two bars per month."""

    width: int
    height: int
    left: int
    top: int
    bottom: float
    bars: list[Bar]
    ticks: list[Tick]
    months: list[tuple[float, str]]


def value_axis(largest: int, most_ticks: int = 5) -> tuple[int, int]:
    """``(step, ticks)``: the smallest step of 1, 2 or 5 x 10^n that covers ``largest``
    in at most ``most_ticks`` steps, and how many steps that takes (at least one)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            ticks = -(-largest // (step * factor))
            if ticks <= most_ticks:
                return step * factor, max(ticks, 1)
        step *= 10


def traffic_chart(
    months: list[Mapping[str, Any]],
    year: int,
    field: str,
    unit: str,
    *,
    in_money: bool = False,
    width: int = 720,
    height: int = 300,
) -> Chart:
    """Bars of ``field`` per month, last year beside this year, scaled to the largest;
    ``in_money``: the values are micro-units."""

    def label(value: int) -> str:
        return money(value) if in_money else f"{value:,}"

    left, right, top, bottom_margin = 72, 8, 36, 30
    plot_w, plot_h = width - left - right, height - top - bottom_margin
    bottom = top + plot_h
    values = [int(m[side][field]) for m in months for side in ("last_year", "this_year")]
    step, steps = value_axis(max(values, default=0))
    scale_max = step * steps
    slot = plot_w / 12
    bar_w = slot * 0.36
    bars: list[Bar] = []
    labels: list[tuple[float, str]] = []
    for m in months:
        month = int(m["month"])
        x0 = left + (month - 1) * slot
        labels.append((round(x0 + slot / 2, 2), MONTHS[month - 1]))
        for i, (side, shown_year) in enumerate((("last_year", year - 1), ("this_year", year))):
            value = int(m[side][field])
            h = plot_h * value / scale_max
            bars.append(
                Bar(
                    x=round(x0 + slot * 0.12 + i * bar_w, 2),
                    y=round(bottom - h, 2),
                    width=round(bar_w, 2),
                    height=round(h, 2),
                    year=shown_year,
                    month=month,
                    value=value,
                    title=f"{MONTHS[month - 1]} {shown_year}: {label(value)} {unit}".rstrip(),
                    css="last" if side == "last_year" else "this",
                )
            )
    tick_places = max(6 - (len(str(step)) - len(str(step).rstrip("0"))), 0)

    def tick(value: int) -> str:
        return money(value, places=tick_places) if in_money else f"{value:,}"

    ticks = [Tick(round(bottom - plot_h * i / steps, 2), tick(step * i)) for i in range(steps + 1)]
    return Chart(width, height, left, top, bottom, bars, ticks, labels)


@router.get("/traffic")
async def traffic_page(request: Request) -> Response:
    portal = Portal(request)
    user = await portal.login_required()
    q = {k: v.strip() for k, v in request.query_params.items()}
    metric = q.get("metric") if q.get("metric") in METRICS else "minutes"
    assert metric is not None
    metric_label, field, unit = METRICS[metric]
    currency = await _currency(portal)
    unit = unit or currency
    context: dict[str, Any] = {
        "values": {**q, "metric": metric},
        "errors": {},
        "metrics": [(k, v[0]) for k, v in METRICS.items()],
        "metric_label": metric_label,
        "accounts": await account_options(portal, user),
        "currency": currency,
        "traffic": None,
        "chart": None,
    }
    reply = await portal.get(
        "/api/v1/reports/traffic", year=q.get("year"), account_id=q.get("account_id")
    )
    if refused := refusal_page(
        request, reply, "traffic.html", "The traffic report cannot be shown", context
    ):
        return refused
    body = reply.body
    year = int(body["year"])

    context["traffic"] = body
    context["values"]["year"] = str(year)
    context["chart"] = traffic_chart(
        body["months"], year, field, unit, in_money=metric == "revenue"
    )
    context["unit"] = unit
    context["month_names"] = MONTHS
    context["year"] = year
    return page(request, "traffic.html", **context)
