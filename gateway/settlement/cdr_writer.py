"""The SQL of one committer batch: CDR rows, their ledger debits, the balances.

A batch is one transaction and is idempotent by CDR key (nas, session_id, leg,
setup_at). One statement does the work: CDRs are inserted with ``ON CONFLICT DO
NOTHING``, and the ledger rows and balance changes are derived, in SQL, from the
CDRs that statement actually inserted (``RETURNING``). A replayed settlement
therefore inserts nothing and moves no money, and balances move by exactly the
ledger rows inserted.

How the rows reach PostgreSQL (``Method``), measured by ``tests/bench``: one JSON
parameter read with ``json_to_recordset`` (the default: the least client CPU, as
fast as the others on the server), arrays through ``unnest``, or ``COPY`` into a
temporary table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from gateway.db import Connection
from gateway.settlement.cdr_row import CdrRow, unique_rows

Method = Literal["json", "unnest", "copy"]
METHODS: tuple[Method, ...] = ("json", "unnest", "copy")

# pg_advisory_xact_lock key for partition creation: "gwcdrp" in ASCII.
PARTITION_LOCK_KEY = 0x677763647270


# -- the batch ---------------------------------------------------------------------------

# The rows as the write statement reads them, whatever carried them.
INPUT_COLUMNS = (
    ("nas", "text"),
    ("session_id", "text"),
    ("leg", "text"),
    ("setup_at", "timestamptz"),
    ("connect_at", "timestamptz"),
    ("disconnect_at", "timestamptz"),
    ("chain", "bigint[]"),
    ("caller", "text"),
    ("called_dialled", "text"),
    ("called", "text"),
    ("rate_groups", "bigint[]"),
    ("prefixes", "text[]"),
    ("prices", "bigint[]"),
    ("duration_s", "integer"),
    ("billed", "integer[]"),
    ("costs", "bigint[]"),
    ("cause", "text"),
    ("remote_addr", "text"),
    ("overrun_s", "integer"),
    ("cause_q850", "integer"),
)
_NAMES = ", ".join(name for name, _ in INPUT_COLUMNS)
_TYPED = ", ".join(f"{name} {kind}" for name, kind in INPUT_COLUMNS)

_STAGE_TABLE = "committer_cdr_in"
_SOURCES: dict[Method, str] = {
    "json": f"json_to_recordset($1::json) AS i({_TYPED})",
    # unnest cannot carry ragged arrays: array columns travel as text literals.
    "unnest": "(SELECT {casts} FROM unnest({params}) AS u({names})) AS i".format(
        casts=", ".join(f"{n}::{k} AS {n}" if k.endswith("[]") else n for n, k in INPUT_COLUMNS),
        params=", ".join(
            f"${i}::{'text' if k.endswith('[]') else k}[]"
            for i, (_, k) in enumerate(INPUT_COLUMNS, 1)
        ),
        names=_NAMES,
    ),
    "copy": f"{_STAGE_TABLE} AS i",
}
_CREATE_STAGE = f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_TABLE} ({_TYPED}) ON COMMIT DELETE ROWS"

# Every account row of the batch is locked first, in id order: two committers
# sharing an agent then queue instead of deadlocking.
_LOCK_ACCOUNTS = """
SELECT id FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE
"""

# The ledger's reference is the CDR key as text, ':' and '%' escaped so that no two
# keys read the same: cdr:<nas>:<session_id>:<leg>:<setup_at in unix microseconds>.
# The idempotency key is call:<same>:<account id>, or a hash of it when longer than
# ledger_entries allows (200).
_WRITE = """
WITH inserted AS (
    INSERT INTO cdrs (nas, session_id, leg, setup_at, connect_at, disconnect_at, account_id,
                      chain, caller, called_dialled, called, rate_group_per_level,
                      prefix_per_level, price_per_level_micros, duration_s, billed_s_per_level,
                      cost_per_level_micros, cost_micros, status, disconnect_cause_raw, remote_addr,
                      overrun_s, disconnect_cause)
    SELECT nas, session_id, leg, setup_at, connect_at, disconnect_at, chain[1], chain, caller,
           called_dialled, called, rate_groups, prefixes, prices, duration_s, billed, costs,
           costs[1], CASE WHEN duration_s > 0 THEN 'answered' ELSE 'failed' END, cause,
           remote_addr, overrun_s, cause_q850
    FROM {source}
    ON CONFLICT (nas, session_id, leg, setup_at) DO NOTHING
    RETURNING nas, session_id, leg, setup_at, disconnect_at, chain, cost_per_level_micros
), levels AS (
    SELECT l.account_id, l.cost, c.disconnect_at,
           replace(replace(c.nas, '%', '%25'), ':', '%3A') || ':'
           || replace(replace(c.session_id, '%', '%25'), ':', '%3A') || ':'
           || replace(replace(c.leg, '%', '%25'), ':', '%3A') || ':'
           || (extract(epoch FROM c.setup_at) * 1000000)::bigint AS cdr_key
    FROM inserted AS c
    CROSS JOIN LATERAL unnest(c.chain, c.cost_per_level_micros) AS l(account_id, cost)
), ledger AS (
    INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key, reference)
    SELECT account_id, 'call_debit', -cost,
           CASE WHEN length(cdr_key) + length(account_id::text) <= 194
                THEN 'call:' || cdr_key || ':' || account_id
                ELSE 'call:h:' || encode(sha256(convert_to(cdr_key, 'UTF8')), 'hex')
                     || ':' || account_id
           END,
           'cdr:' || cdr_key
    FROM levels
    WHERE cost > 0
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING account_id, amount_micros
), balances AS (
    UPDATE accounts AS a
    SET balance_micros = a.balance_micros + coalesce(m.amount, 0),
        last_call_at = greatest(coalesce(a.last_call_at, '-infinity'), t.last_call_at)
    FROM (SELECT account_id, max(disconnect_at) AS last_call_at
          FROM levels GROUP BY account_id) AS t
    LEFT JOIN (SELECT account_id, sum(amount_micros)::bigint AS amount
               FROM ledger GROUP BY account_id) AS m USING (account_id)
    WHERE a.id = t.account_id
    RETURNING a.id
)
SELECT (SELECT count(*) FROM inserted) AS cdrs,
       (SELECT count(*) FROM ledger) AS ledger_rows,
       (SELECT count(*) FROM balances) AS accounts
"""
_WRITES = {method: _WRITE.format(source=source) for method, source in _SOURCES.items()}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch changed: CDRs inserted, ledger rows inserted, rows already there."""

    cdrs: int
    ledger_rows: int
    duplicates: int


def _array_literal(values: Sequence[int] | Sequence[str]) -> str:
    quoted = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _unnest_args(rows: Sequence[CdrRow]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in INPUT_COLUMNS]
    arrays = [kind.endswith("[]") for _, kind in INPUT_COLUMNS]
    for row in rows:
        for column, value, is_array in zip(columns, row.record(), arrays, strict=True):
            column.append(_array_literal(value) if is_array else value)
    return columns


async def _run_write(conn: Connection, rows: Sequence[CdrRow], method: Method) -> Any:
    query = _WRITES[method]
    if method == "json":
        return await conn.fetchrow(query, json.dumps([r.as_json() for r in rows]))
    if method == "unnest":
        return await conn.fetchrow(query, *_unnest_args(rows))
    await conn.execute(_CREATE_STAGE)
    names = [name for name, _ in INPUT_COLUMNS]
    await conn.copy_records_to_table(
        _STAGE_TABLE, records=[r.record() for r in rows], columns=names
    )
    return await conn.fetchrow(query)


async def write_batch(
    conn: Connection, rows: Sequence[CdrRow], method: Method = "json"
) -> BatchResult:
    """Commit ``rows`` in one transaction; replayed rows insert and change nothing.

    Raises asyncpg's errors as they are: the caller decides what is an outage and
    what is a bad row.
    """
    unique = unique_rows(rows)
    if not unique:
        return BatchResult(0, 0, len(rows))
    accounts = sorted({a for row in unique for a in row.chain})
    async with conn.transaction():
        await conn.execute(_LOCK_ACCOUNTS, accounts)
        result = await _run_write(conn, unique, method)
    cdrs = int(result["cdrs"])
    return BatchResult(cdrs, int(result["ledger_rows"]), len(rows) - cdrs)


async def ensure_partition(conn: Connection, month: date) -> int:
    """Create the month's CDR partition if missing (serialized across committers)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        created: int = await conn.fetchval("SELECT cdrs_ensure_partitions($1, 1)", month)
    return created
