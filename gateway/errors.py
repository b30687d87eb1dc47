"""The gateway's own exception tree, in one place.

Third-party errors (redis, asyncpg, OS) are translated into these at the storage
edge, so the call path only ever handles our types.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class BackendUnavailable(GatewayError):
    """Redis or PostgreSQL could not answer in time; the caller degrades as designed."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class Duplicate(GatewayError):
    """A row with the same unique values is already stored (a unique constraint)."""

    def __init__(self, constraint: str, detail: str) -> None:
        super().__init__(f"{constraint}: {detail}" if detail else constraint)
        self.constraint = constraint
        self.detail = detail


class StillReferenced(GatewayError):
    """The row is still referred to by another (a foreign key forbids the change)."""

    def __init__(self, constraint: str, detail: str) -> None:
        super().__init__(f"{constraint}: {detail}" if detail else constraint)
        self.constraint = constraint
        self.detail = detail


class MigrationError(GatewayError):
    """The schema cannot be brought up to date (bad file, changed history, SQL error)."""
