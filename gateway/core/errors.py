"""The gateway's own exception tree, in one place.

Third-party errors (redis, asyncpg, OS) are translated into these at the storage
edge (``pg_errors()``, ``redis_errors()``), so the call path only ever handles our
types. The whole tree, with where each error is raised::

    GatewayError
    ├── BackendUnavailable        Redis or PostgreSQL did not answer: degrade as designed
    ├── Duplicate                 a unique constraint (db, translated by pg_errors)
    ├── StillReferenced           a foreign key forbids the change (db)
    ├── MigrationError            the schema cannot be brought current (db/migrate)
    ├── EmbeddedError             an embedded engine would not start (runtime/embedded)
    ├── MoveRefused               a money move would overdraw (balance/moves)
    ├── RateGroupNotFound         rate decks (db/rates)
    ├── AmbiguousRateGroup        rate decks (db/rates)
    ├── RateFileInvalid           rate decks: every bad row (db/rates)
    └── ManagementError           the management service's refusals (agents/errors),
        ├── NotFound  Unauthenticated  Forbidden  Conflict  RateLimited
        ├── Conflict ── NoExchangeRate (agents/exchange)
        ├── Invalid ── DeckInvalid (agents/rates), BatchInvalid (agents/customers_batch)
        └── (each with a stable code; api/errors maps each to one HTTP status)

Signals that never leave their layer are plain exceptions beside the code that
raises them: the session states of ``balance/store`` (NotLoaded, UnknownSession,
SessionEnded, SessionExists), malformed input of the fronts (``MalformedPacket``,
``MalformedMessage``, ``NotARequest``), of rating (``InvalidNumber``,
``UnknownRateGroup``) and of settlement (``MalformedSettlement``, ``RowsRejected``),
and ``ConfigError`` (configkit), which start-up turns into a one-line message.
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
