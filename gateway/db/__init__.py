"""PostgreSQL: the ledger of record (asyncpg, plain SQL, numbered migrations)."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one borrowed from a pool: the SQL helpers take either.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# PostgreSQL's integer ranges: what a column (or a query parameter of its type) takes.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
INTEGER_MAX = 2**31 - 1
