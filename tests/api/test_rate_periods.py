"""Time-of-day rates and cost rounding through the API: a group's time zone and
rounding, periods on rates by JSON and CSV, and what a gateway loads of them."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from gateway.db import rates as rates_db
from gateway.rating.rounding import Rounding
from tests.api.world import World, headers

V1 = "/api/v1"
_names = itertools.count(1)
PEAK = "mon-fri 08:00-18:00 0.1 0.05; sat 09:00-13:00 0.08"


def _name(world: World) -> str:
    return f"tod-{world.suffix}-{next(_names)}"


def _errors(reply: httpx.Response) -> set[tuple[str, ...]]:
    assert reply.status_code == 422, reply.text
    return {tuple(str(p) for p in e["loc"]) for e in reply.json()["detail"]}


async def test_group_time_zone_and_rounding(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    plain = await api.post(f"{V1}/rate-groups", json={"name": _name(world)}, headers=auth)
    assert plain.status_code == 201, plain.text
    body = plain.json()
    assert (body["time_zone"], body["cost_decimals"], body["cost_rounding"]) == ("UTC", 6, "up")
    made = await api.post(
        f"{V1}/rate-groups",
        json={
            "name": _name(world),
            "time_zone": "Europe/Paris",
            "cost_decimals": 4,
            "cost_rounding": "half_up",
        },
        headers=auth,
    )
    assert made.status_code == 201, made.text
    group: dict[str, Any] = made.json()
    assert (group["time_zone"], group["cost_decimals"], group["cost_rounding"]) == (
        "Europe/Paris",
        4,
        "half_up",
    )
    url = f"{V1}/rate-groups/{group['id']}"
    changed = await api.patch(url, json={"time_zone": "America/New_York"}, headers=auth)
    assert changed.status_code == 200, changed.text
    assert changed.json()["time_zone"] == "America/New_York"
    assert changed.json()["cost_decimals"] == 4  # untouched
    for patch, field in (
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "America"}, "time_zone"),  # a folder of the zone database
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"time_zone": ""}, "time_zone"),
        ({"cost_decimals": 7}, "cost_decimals"),
        ({"cost_rounding": "down"}, "cost_rounding"),
    ):
        reply = await api.patch(url, json=patch, headers=auth)
        assert ("body", field) in _errors(reply), (patch, reply.text)


async def test_periods_by_json_and_csv_reach_the_rating_index(
    api: httpx.AsyncClient, world: World, database_url: str
) -> None:
    auth = await headers(api, world, "agent_b")  # transfer mode: its own private group
    made = await api.post(
        f"{V1}/rate-groups",
        json={"name": _name(world), "time_zone": "Europe/Paris", "cost_decimals": 4},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    url = f"{V1}/rate-groups/{gid}/rates"
    created = await api.post(
        url,
        json={
            "prefix": "33",
            "price_per_min_micros": 50_000,
            "periods": "Mon-Fri 8:00-18:00 0.10 0.05;sat 09:00-13:00 0.080",
        },
        headers=auth,
    )
    assert created.status_code == 201, created.text
    assert created.json()["periods"] == PEAK  # stored in canonical form
    for body in (
        {"prefix": "34", "price_per_min_micros": 1, "periods": "mon 18:00-08:00 0.1"},
        {"prefix": "34", "price_per_min_micros": 1, "periods": "weekdays 08:00-18:00 0.1"},
        {
            "prefix": "34",
            "price_per_min_micros": 1,
            "periods": "mon 08:00-10:00 0.1; mon 09:00-11:00 0.2",
        },
    ):
        assert ("periods",) in {
            e[-1:] for e in _errors(await api.post(url, json=body, headers=auth))
        }
    rate_url = f"{url}/{created.json()['id']}"
    cleared = await api.patch(rate_url, json={"periods": ""}, headers=auth)
    assert cleared.status_code == 200 and cleared.json()["periods"] == ""
    restored = await api.patch(rate_url, json={"periods": PEAK}, headers=auth)
    assert restored.json()["periods"] == PEAK

    deck = (
        "prefix,destination,price_per_min,connect_fee,periods\n"
        '44,UK,0.02,0,"mon-fri 08:00-18:00 0.04; sat-sun 00:00-24:00 0.01"\n'
        "45,DK,0.02,0,\n"
    )
    csv_headers = {**auth, "Content-Type": "text/csv"}
    imported = await api.post(f"{url}/import", content=deck, headers=csv_headers)
    assert imported.status_code == 200, imported.text
    bad = await api.post(
        f"{url}/import",
        content="prefix,destination,price_per_min,periods\n46,NO,0.1,mon 25:00-26:00 0.1\n",
        headers=csv_headers,
    )
    assert bad.status_code == 422
    assert "periods" in bad.json()["detail"][0]["msg"]
    exported = await api.get(f"{url[: -len('/rates')]}/rates.csv", headers=auth)
    rows = {r["prefix"]: r["periods"] for r in csv.DictReader(io.StringIO(exported.text))}
    assert rows == {
        "33": PEAK,
        "44": "mon-fri 08:00-18:00 0.04; sat-sun 00:00-24:00 0.01",
        "45": "",
    }

    # What a gateway loads: the periods in the group's zone, and its rounding.
    conn = await asyncpg.connect(database_url)
    try:
        table = (await rates_db.load_tables(conn, [gid]))[gid]
    finally:
        await conn.close()
    assert table.rounding == Rounding(4, "up")
    rate = table.lookup("3312345", datetime.now(UTC))
    assert rate is not None and rate.periods is not None
    assert (rate.periods.zone, rate.periods.text()) == ("Europe/Paris", PEAK)
    plain = table.lookup("4512345", datetime.now(UTC))
    assert plain is not None and plain.periods is None


async def test_sub_second_increments_by_api(api: httpx.AsyncClient, world: World) -> None:
    auth = await headers(api, world, "admin")
    made = await api.post(f"{V1}/rate-groups", json={"name": _name(world)}, headers=auth)
    url = f"{V1}/rate-groups/{made.json()['id']}/rates"
    base = {"prefix": "44", "price_per_min_micros": 60_000, "first_increment_s": 1}
    created = await api.post(
        url, json={**base, "next_increment_s": 1, "next_increment_ms": 100}, headers=auth
    )
    assert created.status_code == 201, created.text
    assert created.json()["next_increment_ms"] == 100
    for body, field in (
        (
            {**base, "prefix": "45", "next_increment_s": 1, "next_increment_ms": 300},
            "next_increment_ms",
        ),
        ({**base, "prefix": "45", "next_increment_ms": 1000}, "next_increment_ms"),
        (
            {**base, "prefix": "45", "next_increment_s": 6, "next_increment_ms": 100},
            "next_increment_s",
        ),
    ):
        reply = await api.post(url, json=body, headers=auth)
        assert (field,) in {e[-1:] for e in _errors(reply)}, (body, reply.text)
    cleared = await api.patch(
        f"{url}/{created.json()['id']}", json={"next_increment_ms": None}, headers=auth
    )
    assert cleared.status_code == 200 and cleared.json()["next_increment_ms"] is None
