"""``gateway db migrate`` / ``db status`` on a database of their own: what the
command did, and what the database holds."""

from __future__ import annotations

from pathlib import Path

from gateway.balance.keys import Keys
from gateway.db import migrate
from tests.e2e.test_rates_cli import Gateway


async def test_migrate_reports_what_it_applied_then_that_the_schema_is_current(
    empty_database_url: str, redis_url: str, keys: Keys, tmp_path: Path
) -> None:
    gateway = Gateway(empty_database_url, redis_url, keys, tmp_path)
    shipped = migrate.available()
    code, out, err = await gateway("db", "migrate")
    assert code == 0, err
    first, last = out.strip().splitlines()
    assert first.startswith(f"applied {len(shipped)} migration(s): 0001_")
    assert last == f"schema current, {len(shipped)} migrations"
    code, out, err = await gateway("db", "migrate")
    assert code == 0, err
    assert out.strip() == f"schema current, {len(shipped)} migrations"
    code, out, err = await gateway("db", "status")
    assert code == 0, err
    assert out.count(": applied") == len(shipped)
