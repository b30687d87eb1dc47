"""Invoices over the API: the statement, numbering, tax, access, PDF and CSV.

Money moves go through the API (and ``move_money`` for an adjustment), calls through
the committer's own SQL (``write_batch``), so the ledger and the balances are the ones
production writes; every invoice's closing balance is checked against the account.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from gateway.agents.context import ManagementContext
from gateway.balance.moves import MoneyMove, Posting, move_money
from tests.api.invoice_support import commit_call, pdf_pgm, pdf_picture, pdf_text, pdf_words
from tests.api.world import World, headers

V1 = "/api/v1"
_keys = itertools.count(1)


def key() -> str:
    return f"inv-{next(_keys)}"


async def pg_now(db_pool: asyncpg.Pool) -> datetime:
    stamp: datetime = await db_pool.fetchval("SELECT clock_timestamp()")
    return stamp


async def balance(db_pool: asyncpg.Pool, account: int) -> int:
    value: int = await db_pool.fetchval(
        "SELECT balance_micros FROM accounts WHERE id = $1", account
    )
    return value


async def recurring_allowed(db_pool: asyncpg.Pool) -> bool:
    """Whether the ledger takes kind ``recurring`` yet (migration 0014, another branch)."""
    check: str = await db_pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'ledger_entries'::regclass AND pg_get_constraintdef(oid) LIKE '%refill%'"
    )
    return "recurring" in check


async def issue(
    api: httpx.AsyncClient, auth: dict[str, str], account: int, start: datetime, end: datetime
) -> httpx.Response:
    body = {"account_id": account, "period_start": start.isoformat(), "period_end": end.isoformat()}
    return await api.post(f"{V1}/invoices", json=body, headers=auth)


async def destinations(db_pool: asyncpg.Pool, world: World) -> None:
    """Name the world's UK rate and add a German one, so calls group by destination."""
    await db_pool.execute(
        "UPDATE rates SET destination = 'United Kingdom' WHERE rate_group_id = $1", world.rate_group
    )
    await db_pool.execute(
        "INSERT INTO rates (rate_group_id, prefix, destination, price_per_min_micros) "
        "VALUES ($1, '49', 'Germany', 30000)",
        world.rate_group,
    )


async def test_statement_of_a_customer(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool, ctx: ManagementContext
) -> None:
    await destinations(db_pool, world)
    admin, agent = await headers(api, world, "admin"), await headers(api, world, "agent_a")
    taxed = await api.patch(
        f"{V1}/customers/{world.a1}",
        json={"tax_rate_bp": 2000, "tax_inclusive": False},
        headers=admin,
    )
    assert taxed.status_code == 200, taxed.text
    assert (taxed.json()["tax_rate_bp"], taxed.json()["tax_inclusive"]) == (2000, False)
    start = await pg_now(db_pool)
    opening = await balance(db_pool, world.a1)

    refill = {"amount_micros": 4_000_000, "idempotency_key": key(), "note": "top-up"}
    assert (
        await api.post(f"{V1}/accounts/{world.a1}/refills", json=refill, headers=agent)
    ).is_success
    pay = {"amount_micros": 2_000_000, "idempotency_key": key(), "reference": "BANK-77"}
    assert (
        await api.post(f"{V1}/accounts/{world.a1}/payments", json=pay, headers=agent)
    ).is_success
    await move_money(
        ctx.pool,
        ctx.pipeliner,
        ctx.keys,
        MoneyMove("adjustment", key(), (Posting(world.a1, -250_000),), note="goodwill back"),
    )
    recurring = 0
    if await recurring_allowed(db_pool):
        recurring = 500_000
        await db_pool.execute(
            "WITH e AS (INSERT INTO ledger_entries (account_id, kind, amount_micros, "
            "idempotency_key, note) VALUES ($1, 'recurring', $2, $3, 'DID rental') RETURNING 1) "
            "UPDATE accounts SET balance_micros = balance_micros + $2 WHERE id = $1",
            world.a1,
            -recurring,
            key(),
        )
    chain = (world.a1, world.agent_a)
    await commit_call(db_pool, chain, (120_000, 60_000), group=world.rate_group, billed_s=120)
    await commit_call(db_pool, chain, (60_000, 30_000), group=world.rate_group, billed_s=60)
    await commit_call(
        db_pool, chain, (45_000, 20_000), group=world.rate_group, prefix="49",
        called="4930123456", billed_s=90,
    )  # fmt: skip
    end = await pg_now(db_pool)

    reply = await issue(api, agent, world.a1, start, end)
    assert reply.status_code == 201, reply.text
    inv = reply.json()
    assert inv["number"] == f"A{world.agent_a}-{start.year}-000001"
    assert inv["issuer_account_id"] == world.agent_a
    assert inv["opening_balance_micros"] == opening
    # The statement adds up, and to the account's balance: nothing moved since.
    moved = sum(m["amount_micros"] for m in inv["moves"] if m["pocket"] == "main")
    assert inv["calls_micros"] == -225_000
    assert inv["closing_balance_micros"] == opening + moved + inv["calls_micros"]
    assert inv["closing_balance_micros"] == await balance(db_pool, world.a1)
    kinds = [(m["kind"], m["label"], m["amount_micros"]) for m in inv["moves"]]
    expected = [
        ("refill", "Refill", 4_000_000),
        ("payment", "Payment", 2_000_000),
        ("adjustment", "Adjustment", -250_000),
    ]
    if recurring:
        expected.append(("recurring", "Recurring charge", -recurring))
    assert kinds == expected
    assert [m["reference"] for m in inv["moves"]][1] == "BANK-77"
    calls = {(c["prefix"], c["destination"]): c for c in inv["calls"]}
    uk, de = calls[("44", "United Kingdom")], calls[("49", "Germany")]
    assert (uk["calls"], uk["billed_s"], uk["cost_micros"]) == (2, 180, 180_000)
    assert (de["calls"], de["billed_s"], de["cost_micros"]) == (1, 90, 45_000)
    # Tax, exclusive: 20 % on top of the charges (calls and recurring fees).
    charges = 225_000 + recurring
    assert inv["charges_micros"] == charges
    assert (inv["net_micros"], inv["tax_micros"], inv["gross_micros"]) == (
        charges,
        charges // 5,
        charges + charges // 5,
    )

    # The same period again is the same invoice; an overlapping one is refused.
    again = await issue(api, agent, world.a1, start, end)
    assert again.status_code == 200 and again.json()["id"] == inv["id"], again.text
    overlap = await issue(api, agent, world.a1, start + timedelta(microseconds=1), end)
    assert overlap.status_code == 409 and overlap.json()["detail"]["code"] == "PERIOD_INVOICED"
    future = await issue(api, agent, world.a1, end, datetime.now(UTC) + timedelta(hours=1))
    assert future.status_code == 422, future.text
    ancient = datetime(1999, 12, 1, tzinfo=UTC)
    for body in (
        {"account_id": world.a1, "period_start": ancient.isoformat()},
        {"account_id": world.a1, "period_start": "9999-12-01T00:00:00Z"},
        {"account_id": world.a1, "period_end": end.isoformat()},
        {"account_id": world.a1, "period_start": end.isoformat(), "period_end": start.isoformat()},
    ):
        refused = await api.post(f"{V1}/invoices", json=body, headers=agent)
        assert refused.status_code == 422, (body, refused.text)

    # The next period up to now: nothing moved, the balance carried over, next number.
    later = await pg_now(db_pool)
    nxt = await issue(api, agent, world.a1, end, later)
    assert nxt.status_code == 201, nxt.text
    body = nxt.json()
    assert body["number"] == f"A{world.agent_a}-{start.year}-000002"
    assert body["opening_balance_micros"] == inv["closing_balance_micros"]
    assert body["closing_balance_micros"] == await balance(db_pool, world.a1)
    assert body["moves"] == [] and body["calls"] == [] and body["tax_micros"] == 0


async def test_statement_of_agents_at_their_level(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    """A wholesale agent's invoice counts its customers' calls at its own price; a
    transfer agent's shows transfers and its commission pocket apart from the balance."""
    admin, agent_b = await headers(api, world, "admin"), await headers(api, world, "agent_b")
    await db_pool.execute(
        "UPDATE accounts SET commission_rate_bp = 1000 WHERE id = $1", world.agent_b
    )
    start = await pg_now(db_pool)
    await commit_call(db_pool, (world.a1, world.agent_a), (90_000, 40_000), group=world.rate_group)
    await commit_call(
        db_pool,
        (world.a11, world.agent_a1, world.agent_a),
        (70_000, 50_000, 30_000),
        group=world.rate_group,
    )
    move = {"to_account_id": world.b1, "amount_micros": 1_000_000, "idempotency_key": key()}
    assert (await api.post(f"{V1}/transfers", json=move, headers=agent_b)).status_code == 201
    refill = {"amount_micros": 2_000_000, "idempotency_key": key()}
    assert (
        await api.post(f"{V1}/accounts/{world.b1}/refills", json=refill, headers=agent_b)
    ).is_success
    # A transfer agent is on its customer's chain at no cost: not a call of its own.
    await commit_call(db_pool, (world.b1, world.agent_b), (50_000, 0), group=world.rate_group)
    withdraw = {"amount_micros": 100_000, "idempotency_key": key()}
    reply = await api.post(f"{V1}/me/commission/withdraw", json=withdraw, headers=agent_b)
    assert reply.status_code == 201, reply.text
    end = await pg_now(db_pool)

    wholesale = await issue(api, admin, world.agent_a, start, end)
    assert wholesale.status_code == 201, wholesale.text
    inv = wholesale.json()
    assert inv["issuer_account_id"] is None and re.fullmatch(r"OP-\d{4}-\d{6}", inv["number"])
    assert [(c["calls"], c["cost_micros"]) for c in inv["calls"]] == [(2, 70_000)]
    assert inv["calls_micros"] == -70_000
    assert inv["closing_balance_micros"] == await balance(db_pool, world.agent_a)

    transfer = await issue(api, admin, world.agent_b, start, end)
    assert transfer.status_code == 201, transfer.text
    out = transfer.json()
    pockets = [(m["kind"], m["pocket"], m["amount_micros"]) for m in out["moves"]]
    assert ("transfer", "main", -1_000_000) in pockets
    assert ("commission", "commission", 200_000) in pockets
    assert ("commission_withdraw", "main", 100_000) in pockets
    assert ("commission_withdraw", "commission", -100_000) in pockets
    assert out["calls"] == [] and out["calls_micros"] == 0
    main = sum(m["amount_micros"] for m in out["moves"] if m["pocket"] == "main")
    assert out["closing_balance_micros"] == out["opening_balance_micros"] + main
    assert out["closing_balance_micros"] == await balance(db_pool, world.agent_b)
    # Operator numbers run on without a gap across its invoices.
    first, second = (int(n.rsplit("-", 1)[1]) for n in (inv["number"], out["number"]))
    assert second == first + 1


async def test_tax_included_in_the_prices(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    """The README's example: 20 % inclusive on 12.00 of calls is 2.00 of tax, 10.00 net."""
    agent = await headers(api, world, "agent_a")
    patch = {"tax_rate_bp": 2000, "tax_inclusive": True}
    assert (await api.patch(f"{V1}/customers/{world.a2}", json=patch, headers=agent)).is_success
    bad = await api.patch(f"{V1}/customers/{world.a2}", json={"tax_rate_bp": 10_001}, headers=agent)
    assert bad.status_code == 422, bad.text
    start = await pg_now(db_pool)
    await commit_call(db_pool, (world.a2, world.agent_a), (12_000_000, 1), group=world.rate_group)
    reply = await issue(api, agent, world.a2, start, await pg_now(db_pool))
    assert reply.status_code == 201, reply.text
    inv = reply.json()
    assert (inv["gross_micros"], inv["tax_micros"], inv["net_micros"]) == (
        12_000_000,
        2_000_000,
        10_000_000,
    )
    assert inv["closing_balance_micros"] == await balance(db_pool, world.a2)


async def _numbers(api: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> set[int]:
    reply = await api.get(f"{V1}/invoices", params=params, headers=auth)
    assert reply.status_code == 200, reply.text
    return {i["account_id"] for i in reply.json()["items"]}


async def test_who_sees_and_issues_which_invoices(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    auth = {
        w: await headers(api, world, w)
        for w in ("admin", "agent_a", "agent_a1", "agent_b", "a1", "b1")
    }
    made: dict[int, int] = {}
    for who, account in (
        ("agent_a", world.a1),
        ("agent_a", world.a2),
        ("agent_a1", world.a11),
        ("agent_b", world.b1),
        ("admin", world.agent_a),
        ("admin", world.agent_a1),
    ):
        reply = await api.post(f"{V1}/invoices", json={"account_id": account}, headers=auth[who])
        assert reply.status_code == 201, (who, reply.text)
        made[account] = reply.json()["id"]
    # An account sees its own; an agent its subtree's and its own; the operator all.
    assert await _numbers(api, auth["a1"]) == {world.a1}
    tree_a = {world.a1, world.a2, world.a11, world.agent_a, world.agent_a1}
    assert await _numbers(api, auth["agent_a"]) == tree_a
    assert await _numbers(api, auth["agent_a1"]) == {world.a11, world.agent_a1}
    assert await _numbers(api, auth["agent_b"]) == {world.b1}
    for account in made:
        assert await _numbers(api, auth["admin"], account_id=account) == {account}
    for who, account, status in (
        ("a1", world.a1, 200),
        ("a1", world.a2, 404),
        ("agent_b", world.a1, 404),
        ("b1", world.b1, 200),
        ("agent_a1", world.a1, 404),
        ("agent_a", world.a11, 200),
    ):
        for suffix in ("", "/pdf", "/csv"):
            reply = await api.get(f"{V1}/invoices/{made[account]}{suffix}", headers=auth[who])
            assert reply.status_code == status, (who, account, suffix, reply.text[:200])
    filtered = await api.get(
        f"{V1}/invoices", params={"account_id": world.a1}, headers=auth["agent_b"]
    )
    assert filtered.status_code == 404
    # Issuing is for whoever manages the account: not the customer, not the agent itself.
    own = await api.post(f"{V1}/invoices", json={"account_id": world.a1}, headers=auth["a1"])
    assert own.status_code == 403
    self_issued = await api.post(
        f"{V1}/invoices", json={"account_id": world.agent_a}, headers=auth["agent_a"]
    )
    assert self_issued.status_code == 403, self_issued.text
    other = await api.post(f"{V1}/invoices", json={"account_id": world.b1}, headers=auth["agent_a"])
    assert other.status_code == 404


def _ink(pixels: bytes, width: int, box: tuple[int, int, int, int]) -> float:
    """The share of dark pixels (below mid-grey) in ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    dark = total = 0
    for y in range(y0, y1):
        row = pixels[y * width + x0 : y * width + x1]
        dark += sum(1 for p in row if p < 128)
        total += len(row)
    return dark / total if total else 0.0


async def test_pdf_and_csv_show_the_invoice(
    api: httpx.AsyncClient, world: World, db_pool: asyncpg.Pool
) -> None:
    await destinations(db_pool, world)
    agent = await headers(api, world, "agent_a")
    patch = {"tax_rate_bp": 1900, "tax_inclusive": False}
    assert (await api.patch(f"{V1}/customers/{world.a1}", json=patch, headers=agent)).is_success
    start = await pg_now(db_pool)
    for n in range(3):
        refill = {"amount_micros": 1_000_000 * (n + 1), "idempotency_key": key()}
        assert (
            await api.post(f"{V1}/accounts/{world.a1}/refills", json=refill, headers=agent)
        ).is_success
    chain = (world.a1, world.agent_a)
    await commit_call(db_pool, chain, (300_000, 100_000), group=world.rate_group, billed_s=180)
    await commit_call(
        db_pool, chain, (50_000, 20_000), group=world.rate_group, prefix="49", called="49301"
    )
    reply = await issue(api, agent, world.a1, start, await pg_now(db_pool))
    assert reply.status_code == 201, reply.text
    inv = reply.json()

    pdf = await api.get(f"{V1}/invoices/{inv['id']}/pdf", headers=agent)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    text = pdf_text(pdf.content)
    closing = f"{inv['closing_balance_micros'] / 1e6:,.2f} USD"
    assert f"Invoice {inv['number']}" in text
    assert re.search(rf"Closing balance\s+{re.escape(closing)}", text), text
    tax = f"{inv['tax_micros'] / 1e6:,.2f} USD"
    assert re.search(rf"Tax 19 % \(on top\)\s+{re.escape(tax)}", text), text
    assert "United Kingdom" in text and "Germany" in text

    # The picture: a page with ink where the text says the rows are, and none in the
    # margins. pdftotext gives each word's box in points; the PNG is at 60 dpi.
    picture = pdf_picture(pdf.content, f"invoice-{world.suffix}")
    assert picture.stat().st_size > 5_000
    dpi = 60
    width, height, pixels = pdf_pgm(pdf.content, dpi)
    scale = dpi / 72
    assert _ink(pixels, width, (0, 0, width, height)) > 0.005, "the page is blank"
    words = pdf_words(pdf.content)
    rows = [w for w in words if w[0] in ("Refill", "United", "Germany", "Closing")]
    assert len([w for w in rows if w[0] == "Refill"]) >= 3, words[:40]
    for text_, x0, y0, x1, y1 in rows:
        box = (int(x0 * scale), int(y0 * scale), int(x1 * scale) + 1, int(y1 * scale) + 1)
        assert _ink(pixels, width, box) > 0.05, f"no ink where {text_!r} is: {box}"
    margin = int(15 * 72 / 25.4 * scale)  # 15 mm of the 20 mm left margin
    assert _ink(pixels, width, (0, 0, margin, height)) == 0.0, "ink in the left margin"
    lowest = max(y1 for *_, y1 in words) * scale
    assert lowest < height * 0.9, "the invoice should end well before the page foot"
    assert _ink(pixels, width, (0, int(lowest) + 3, width, height)) == 0.0

    csv_reply = await api.get(f"{V1}/invoices/{inv['id']}/csv", headers=agent)
    assert csv_reply.status_code == 200 and csv_reply.headers["content-type"].startswith("text/csv")
    assert inv["number"] in csv_reply.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(csv_reply.text)))
    assert table[0] == [
        "section",
        "date",
        "item",
        "detail",
        "calls",
        "minutes",
        "amount",
        "currency",
    ]
    moves = [r for r in table if r[0] == "move"]
    assert [r[6] for r in moves] == ["1.000000", "2.000000", "3.000000"]
    calls = {r[3]: r for r in table if r[0] == "calls"}
    assert calls["United Kingdom"][4:7] == ["1", "3.0", "0.300000"]
    totals = {r[2]: r[6] for r in table if r[0] == "total"}
    assert totals["Closing balance"] == f"{inv['closing_balance_micros'] / 1e6:.6f}"
    assert totals["Tax 19 % (on top)"] == f"{inv['tax_micros'] / 1e6:.6f}"
