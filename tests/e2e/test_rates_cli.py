"""`gateway rates import|export` as a real subprocess against the test database."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import asyncpg
import pytest

from gateway.balance.keys import Keys

HEADER = (
    "prefix,destination,price_per_min,connect_fee,first_increment_s,next_increment_s,"
    "min_duration_s,grace_s,effective_from,effective_to\n"
)
DECK = (
    HEADER.replace("\n", ",periods,next_increment_ms\n")
    + "1,USA,0.008,0,30,6,0,0,,,,\n"
    + '44,"UK, fixed",0.012,0,60,60,0,0,,,mon-fri 08:00-18:00 0.02,\n'
    + "447,UK mobile,0.045,0.01,30,6,0,0,2025-01-01T00:00:00+00:00,,,\n"
)


class Gateway:
    """Runs ``python -m gateway`` with this run's database and Redis namespace."""

    def __init__(self, database_url: str, redis_url: str, keys: Keys, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.env.update(
            {
                "GATEWAY_DATABASE_URL": database_url,
                "GATEWAY_REDIS_URL": redis_url,
                "GATEWAY_REDIS_KEY_PREFIX": keys.prefix,
                "GATEWAY_STATE_DIR": str(tmp_path / "state"),
                "GATEWAY_LOG_FORMAT": "json",
            }
        )

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def gateway(database_url: str, redis_url: str, keys: Keys, tmp_path: Path) -> Gateway:
    return Gateway(database_url, redis_url, keys, tmp_path)


async def _new_group(database_url: str) -> tuple[int, str]:
    name = f"cli-{secrets.token_hex(4)}"
    conn = await asyncpg.connect(database_url)
    try:
        group: int = await conn.fetchval(
            "INSERT INTO rate_groups (name) VALUES ($1) RETURNING id", name
        )
    finally:
        await conn.close()
    return group, name


async def _count(database_url: str, group: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM rates WHERE rate_group_id = $1", group
        )
    finally:
        await conn.close()
    return value


async def test_import_then_export(gateway: Gateway, database_url: str, tmp_path: Path) -> None:
    group, name = await _new_group(database_url)
    deck = tmp_path / "deck.csv"
    deck.write_text(DECK, encoding="utf-8")

    code, out, err = await gateway("rates", "import", name, str(deck))
    assert code == 0, err
    assert f"imported 3 rates into rate group {group}: 3 new" in out

    code, out, err = await gateway("rates", "export", str(group))
    assert code == 0, err
    assert out == DECK
    assert "exported 3 rates" in err

    target = tmp_path / "out" / "export.csv"
    target.parent.mkdir()
    code, out, err = await gateway("rates", "export", name, str(target))
    assert code == 0, err
    assert target.read_text(encoding="utf-8") == DECK
    assert [p.name for p in target.parent.iterdir()] == ["export.csv"]

    smaller = tmp_path / "smaller.csv"
    smaller.write_text(HEADER + "44,UK,0.02,,,,,,,\n", encoding="utf-8")
    code, out, err = await gateway("rates", "import", name, str(smaller), "--replace")
    assert code == 0, err
    assert "1 changed" in out and "2 removed" in out
    assert await _count(database_url, group) == 1


async def test_bad_file_exits_1_listing_each_row(
    gateway: Gateway, database_url: str, tmp_path: Path
) -> None:
    group, name = await _new_group(database_url)
    deck = tmp_path / "bad.csv"
    deck.write_text(
        HEADER
        + "44,UK,0.01,,,,,,,\n49,Germany,x,,,,,,,\n33,France,0.01,,,,,,,\n44,UK,0.02,,,,,,,\n",
        encoding="utf-8",
    )
    code, out, err = await gateway("rates", "import", str(group), str(deck), "--replace")
    assert code == 1
    lines = err.splitlines()
    assert any(line.startswith("line 3: price_per_min") for line in lines), err
    assert any(line.startswith("line 5: duplicate rate for prefix 44") for line in lines), err
    assert "2 bad row(s); nothing imported" in err
    assert out == ""
    assert await _count(database_url, group) == 0

    code, _, err = await gateway("rates", "import", name, str(tmp_path / "missing.csv"))
    assert code == 1 and "no such file" in err
    code, _, err = await gateway("rates", "export", "no-such-group-xyz")
    assert code == 1 and "'no-such-group-xyz'" in err


async def test_large_import_shows_progress(
    gateway: Gateway, database_url: str, tmp_path: Path
) -> None:
    group, _ = await _new_group(database_url)
    deck = tmp_path / "large.csv"
    rows = 60_000
    deck.write_text(
        HEADER + "".join(f"{100000 + i},Dest,0.01,,,,,,,\n" for i in range(rows)),
        encoding="utf-8",
    )
    code, out, err = await gateway("rates", "import", str(group), str(deck))
    assert code == 0, err
    progress = [line for line in err.splitlines() if line.startswith("importing large.csv")]
    # Not a terminal: a plain line at each 25% mark reached (after each 20k-row batch).
    marks = [int(line.split(":")[1].split("%")[0]) for line in progress]
    assert marks == sorted(set(marks)) and marks[-1] == 100, err
    assert all(mark % 25 == 0 for mark in marks), err
    assert "\r" not in err
    assert f"imported {rows:,} rates" in out
    assert await _count(database_url, group) == rows
