"""Schema migrations: numbered ``.sql`` files applied in order, once each.

Applied versions are recorded with a checksum in ``schema_migrations``; a file that
changed after it was applied stops the start instead of leaving two schemas in the
field. Every run holds a session advisory lock, so gateways starting together apply
each migration exactly once: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from gateway.core.errors import MigrationError
from gateway.db import Connection

log = logging.getLogger(__name__)

# pg_advisory_lock key: "gwmigr" in ASCII, so it does not collide with other users.
MIGRATION_LOCK_KEY = 0x67776D696772
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    folder = resources.files("gateway.db") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file {entry.name}: name must be NNNN_name.sql")
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def applied(conn: Connection) -> dict[int, str]:
    """Applied versions and their checksums (empty when the schema is new)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {int(r["version"]): str(r["checksum"]) for r in rows}


async def pending(conn: Connection) -> list[Migration]:
    """Migrations not yet applied; raise when an applied one no longer matches its file."""
    done = await applied(conn)
    todo: list[Migration] = []
    for migration in available():
        checksum = done.get(migration.version)
        if checksum is None:
            todo.append(migration)
        elif checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it "
                "was applied; add a new migration instead"
            )
    return todo


async def migrate(conn: Connection) -> list[int]:
    """Apply every pending migration under the advisory lock; return the versions applied."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        done: list[int] = []
        for migration in await pending(conn):
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            log.info(
                "db.migrated", extra={"version": migration.version, "migration": migration.name}
            )
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def is_current(conn: Connection) -> bool:
    """True when every shipped migration is applied unchanged (for readiness checks)."""
    try:
        return not await pending(conn)
    except MigrationError:
        return False
