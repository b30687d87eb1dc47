"""The accounts of a customer's chain, read from PostgreSQL."""

from __future__ import annotations

from gateway.db import Connection
from gateway.rating.chain import ChainAccount


async def fetch_chain_accounts(conn: Connection, customer_id: int) -> list[ChainAccount]:
    """The customer and every agent above it, customer first (empty if unknown)."""
    rows = await conn.fetch(
        "SELECT a.id, a.root_id, a.kind, a.billing_mode, a.rate_group_id, "
        "       array_position(c.ancestors, a.id) AS depth "
        "FROM accounts c JOIN accounts a ON a.id = c.id OR a.id = ANY(c.ancestors) "
        "WHERE c.id = $1",
        customer_id,
    )
    # Customer first (no position in its own ancestors), then from the parent up.
    ordered = sorted(rows, key=lambda r: (0, 0) if r["id"] == customer_id else (1, -r["depth"]))
    return [
        ChainAccount(r["id"], r["root_id"], r["kind"], r["billing_mode"], r["rate_group_id"])
        for r in ordered
    ]
