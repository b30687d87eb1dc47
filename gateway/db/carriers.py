"""Routes in PostgreSQL (migration 0005): load them for the SIP front, write them.

Every change to ``routes`` or ``route_gateways`` is announced on the
``gateway_routes`` channel with the changed rate group ids (``*``: all);
``gateway.calls.routecache.RouteCache`` listens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

from gateway.db import Connection
from gateway.rating.carriers import Gateway, RouteTable

CHANNEL = "gateway_routes"

_LOAD = """
SELECT r.rate_group_id, r.prefix, g.host, g.port, g.transport, g.priority, g.weight
FROM routes r
LEFT JOIN route_gateways g ON g.route_id = r.id
WHERE $1::bigint[] IS NULL OR r.rate_group_id = ANY($1::bigint[])
ORDER BY r.rate_group_id, r.prefix, g.priority, g.id
"""


async def load_tables(conn: Connection, group_ids: Collection[int] | None) -> dict[int, RouteTable]:
    """The route tables of ``group_ids`` (every group when None); groups without
    routes are absent."""
    wanted = None if group_ids is None else list(group_ids)
    rows = await conn.fetch(_LOAD, wanted)
    grouped: dict[int, dict[str, list[Gateway]]] = defaultdict(dict)
    for row in rows:
        gateways = grouped[row["rate_group_id"]].setdefault(row["prefix"], [])
        if row["host"] is not None:  # a route without gateways blocks its prefix
            gateways.append(
                Gateway(row["host"], row["port"], row["transport"], row["priority"], row["weight"])
            )
    return {group: RouteTable(routes) for group, routes in grouped.items()}


async def set_route(
    conn: Connection,
    rate_group_id: int,
    prefix: str,
    gateways: Sequence[Gateway],
    description: str = "",
) -> int:
    """Create or replace the route of ``prefix`` in a rate group, in one transaction;
    return its id. An empty ``gateways`` blocks the prefix."""
    async with conn.transaction():
        route_id: int = await conn.fetchval(
            "INSERT INTO routes (rate_group_id, prefix, description) VALUES ($1, $2, $3) "
            "ON CONFLICT (rate_group_id, prefix) DO UPDATE "
            "SET description = EXCLUDED.description, updated_at = now() RETURNING id",
            rate_group_id,
            prefix,
            description,
        )
        await conn.execute("DELETE FROM route_gateways WHERE route_id = $1", route_id)
        await conn.executemany(
            "INSERT INTO route_gateways (route_id, host, port, transport, priority, weight) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            [(route_id, g.host, g.port, g.transport, g.priority, g.weight) for g in gateways],
        )
    return route_id


async def delete_route(conn: Connection, rate_group_id: int, prefix: str) -> bool:
    """Remove a route; False when there was none."""
    status = await conn.execute(
        "DELETE FROM routes WHERE rate_group_id = $1 AND prefix = $2", rate_group_id, prefix
    )
    return status != "DELETE 0"
