"""The dormancy job: agents whose whole tree stopped calling are disabled, then removed.

One round, at time ``now``, in this order:

1. Re-activate: an agent disabled *for dormancy* (never one a person disabled) whose
   tree made a call after ``disabled_at`` (when ``reactivate_on`` has ``call``), or
   that was credited by a refill, payment or transfer after it (``refill``), is made
   active again.
2. Remove: an agent disabled for dormancy ``remove_after_days`` ago, with neither a
   call in its tree nor a credit since, is removed (soft: the row, its CDRs and its
   ledger stay; its users can no longer log in). A removal notice is queued.
3. Disable: an active agent whose tree has been silent ``disable_after_days`` is
   disabled (``disabled_reason = 'dormancy'``) and a notice is queued to each of its
   contact addresses (``accounts.contact_emails`` and its users' e-mails).

"Silent since" is the latest of: the agent's creation (a new agent is not dormant),
its last re-activation (``reactivated_at``, migration 0010: a refilled agent gets a
full period again), and the last call anywhere in its tree. The committer already
keeps ``accounts.last_call_at`` on every level of a call's chain, so the agent's own
column covers its tree; the job still takes the maximum over the tree's rows (via
``ancestors``, GIN-indexed), so rows written by other means count too. Each update
re-checks its condition on the locked row, so a call committed meanwhile wins.

Every gateway process runs the job (``gateway run`` and ``gateway api``); a Redis
lock (``SET NX PX`` with a random token, released by compare-and-delete) lets one act
per round. The steps are idempotent anyway: a second round finds nothing to do and
the outbox's ``dedupe_key`` keeps a notice from being queued twice.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.agents import outbox
from gateway.agents.context import ManagementContext
from gateway.balance.mirror import AccountMirror
from gateway.balance.redisconn import redis_errors
from gateway.config import DormancyConfig
from gateway.core import metrics
from gateway.core.errors import BackendUnavailable
from gateway.core.periodic import Periodic
from gateway.db import Connection
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

LOCK_NAME = "dormancy"
# Longer than any round takes; a round that overran it would only repeat idempotent work.
LOCK_TTL_MS = 600_000

# KEYS[1] the lock, ARGV[1] our token: delete the lock only while it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# The latest call anywhere in agent a's tree (itself and every account below it).
_TREE_LAST_CALL = (
    "greatest(a.last_call_at, (SELECT max(d.last_call_at) FROM accounts d "
    "WHERE d.ancestors @> ARRAY[a.id]))"
)
# Money that came into agent a's main balance after it was disabled.
_CREDITED_SINCE_DISABLED = (
    "EXISTS (SELECT 1 FROM ledger_entries l WHERE l.account_id = a.id "
    "AND l.kind IN ('refill', 'payment', 'transfer') AND l.pocket = 'main' "
    "AND l.amount_micros > 0 AND l.created_at > a.disabled_at)"
)
# $2: the trees the round is limited to (NULL: all; tests pass their own).
_DORMANT_AGENT = (
    "a.kind = 'agent' AND a.status = 'disabled' AND a.disabled_reason = 'dormancy' "
    "AND ($2::bigint[] IS NULL OR a.root_id = ANY($2::bigint[]))"
)

_REACTIVATE = f"""
UPDATE accounts a SET status = 'active', disabled_reason = '', disabled_at = NULL,
                      reactivated_at = $1
WHERE {_DORMANT_AGENT}
  AND (('call' = ANY($3::text[]) AND {_TREE_LAST_CALL} > a.disabled_at)
       OR ('refill' = ANY($3::text[]) AND {_CREDITED_SINCE_DISABLED}))
RETURNING a.id
"""

_REMOVE = f"""
UPDATE accounts a SET status = 'removed', removed_at = $1
WHERE {_DORMANT_AGENT}
  AND a.disabled_at <= $1::timestamptz - make_interval(days => $3::int)
  AND NOT coalesce({_TREE_LAST_CALL} > a.disabled_at, false)
  AND NOT {_CREDITED_SINCE_DISABLED}
RETURNING a.id, a.name, a.contact_emails
"""

_DISABLE = f"""
UPDATE accounts a SET status = 'disabled', disabled_reason = 'dormancy', disabled_at = $1
WHERE a.kind = 'agent' AND a.status = 'active'
  AND ($2::bigint[] IS NULL OR a.root_id = ANY($2::bigint[]))
  AND greatest(a.created_at, a.reactivated_at, {_TREE_LAST_CALL})
      <= $1::timestamptz - make_interval(days => $3::int)
RETURNING a.id, a.name, a.contact_emails, {_TREE_LAST_CALL} AS last_call_at
"""


@dataclass(frozen=True, slots=True)
class DormancyResult:
    """What one round changed (account ids) and how many notices it queued."""

    reactivated: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    disabled: tuple[int, ...] = ()
    notices: int = 0


async def _recipients(conn: Connection, account_id: int, contacts: Iterable[str]) -> list[str]:
    """The account's contact addresses and its active users' e-mails, each once."""
    users = await conn.fetch(
        "SELECT email FROM users WHERE account_id = $1 AND status = 'active' AND email <> ''",
        account_id,
    )
    found: dict[str, str] = {}
    for address in [*contacts, *(r["email"] for r in users)]:
        address = address.strip()
        local, at, domain = address.partition("@")
        if at and local and domain and address.lower() not in found:
            found[address.lower()] = address
    return list(found.values())


def _reactivation_hint(config: DormancyConfig) -> str:
    ways = {"call": "a call by any of its customers", "refill": "a refill or payment"}
    chosen = [ways[w] for w in config.reactivate_on if w in ways]
    if not chosen:
        return "Contact the operator to have it re-activated."
    return f"It is re-activated automatically by {' or '.join(chosen)}."


async def _notify(
    conn: Connection,
    account_id: int,
    contacts: Iterable[str],
    *,
    kind: str,
    subject: str,
    body: str,
    day: str,
) -> int:
    queued = 0
    for address in await _recipients(conn, account_id, contacts):
        key = f"{kind}:{account_id}:{day}:{address.lower()}"
        if await outbox.enqueue(
            conn, kind=kind, recipient=address, subject=subject, body=body, dedupe_key=key
        ):
            queued += 1
    return queued


async def _remove(
    conn: Connection, config: DormancyConfig, now: datetime, roots: list[int] | None
) -> tuple[list[int], int]:
    rows = await conn.fetch(_REMOVE, now, roots, config.remove_after_days)
    notices = 0
    for row in rows:
        name = row["name"]
        notices += await _notify(
            conn,
            row["id"],
            row["contact_emails"],
            kind="dormancy-removed",
            subject=f"Account {name} removed for inactivity",
            body=(
                f"The agent account {name} (id {row['id']}) stayed silent for "
                f"{config.remove_after_days} days after it was disabled, and was removed on "
                f"{now:%Y-%m-%d}. Its history is kept; contact the operator to restore it.\n"
            ),
            day=f"{now:%Y-%m-%d}",
        )
    return [r["id"] for r in rows], notices


async def _disable(
    conn: Connection, config: DormancyConfig, now: datetime, roots: list[int] | None
) -> tuple[list[int], int]:
    rows = await conn.fetch(_DISABLE, now, roots, config.disable_after_days)
    removal = now + timedelta(days=config.remove_after_days)
    notices = 0
    for row in rows:
        name, last = row["name"], row["last_call_at"]
        since = f"since {last:%Y-%m-%d}" if last is not None else "ever"
        notices += await _notify(
            conn,
            row["id"],
            row["contact_emails"],
            kind="dormancy-disabled",
            subject=f"Account {name} disabled for inactivity",
            body=(
                f"The agent account {name} (id {row['id']}) and its customers made no call "
                f"{since} ({config.disable_after_days} days or more), so it was disabled on "
                f"{now:%Y-%m-%d}: its customers cannot call.\n"
                f"{_reactivation_hint(config)}\n"
                f"If it stays silent, it will be removed on {removal:%Y-%m-%d}.\n"
            ),
            day=f"{now:%Y-%m-%d}",
        )
    return [r["id"] for r in rows], notices


async def check(
    ctx: ManagementContext, now: datetime, *, roots: Sequence[int] | None = None
) -> DormancyResult:
    """One round at ``now`` without the lock (``run`` takes it); ``roots`` limits the trees.

    Each step is its own transaction, and a step's notices commit with its changes.
    """
    config = ctx.config.dormancy
    trees = None if roots is None else list(roots)
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            async with conn.transaction():
                woken = await conn.fetch(_REACTIVATE, now, trees, list(config.reactivate_on))
            async with conn.transaction():
                removed, removal_notices = await _remove(conn, config, now, trees)
            async with conn.transaction():
                disabled, disable_notices = await _disable(conn, config, now, trees)
    result = DormancyResult(
        reactivated=tuple(r["id"] for r in woken),
        removed=tuple(removed),
        disabled=tuple(disabled),
        notices=removal_notices + disable_notices,
    )
    for action, ids in (
        ("reactivated", result.reactivated),
        ("removed", result.removed),
        ("disabled", result.disabled),
    ):
        for account_id in ids:
            log.info(f"dormancy.{action}", extra={"account": account_id})
        if ids:
            metrics.DORMANCY_ACTIONS.labels(action).inc(len(ids))
    await _mirror(ctx, [*result.reactivated, *result.removed, *result.disabled])
    return result


async def _mirror(ctx: ManagementContext, account_ids: list[int]) -> None:
    """Push the new statuses to Redis now; the call path's directory does it as well."""
    if not account_ids:
        return
    try:
        await AccountMirror(ctx.pool, ctx.pipeliner, ctx.keys).sync_many(account_ids)
    except BackendUnavailable as exc:
        log.warning("dormancy.mirror_failed", extra={"error": str(exc)})


async def run(
    ctx: ManagementContext, now: datetime, *, roots: Sequence[int] | None = None
) -> DormancyResult | None:
    """One round at ``now`` if this process wins the lock; None when another holds it."""
    key = ctx.keys.lock(LOCK_NAME)
    token = secrets.token_hex(16)
    with redis_errors():
        won = await ctx.redis.set(key, token, nx=True, px=LOCK_TTL_MS)
    if not won:
        metrics.DORMANCY_RUNS.labels("skipped").inc()
        log.info("dormancy.skipped", extra={"why": "another gateway holds the lock"})
        return None
    try:
        result = await check(ctx, now, roots=roots)
    finally:
        try:
            with redis_errors():
                await ctx.redis.eval(_RELEASE, 1, key, token)
        except BackendUnavailable as exc:
            # The lock expires by itself; the next round waits at most its TTL.
            log.warning("dormancy.unlock_failed", extra={"error": str(exc)})
    metrics.DORMANCY_RUNS.labels("acted").inc()
    log.info(
        "dormancy.round",
        extra={
            "reactivated": len(result.reactivated),
            "removed": len(result.removed),
            "disabled": len(result.disabled),
            "notices": result.notices,
        },
    )
    return result


class DormancyJob(Periodic):
    """Runs a dormancy round every ``dormancy.check_interval_s``."""

    name = "dormancy"

    def __init__(self, ctx: ManagementContext) -> None:
        super().__init__(ctx.config.dormancy.check_interval_s)
        self.ctx = ctx

    async def step(self) -> None:
        try:
            await run(self.ctx, datetime.now(UTC))
        except BackendUnavailable:
            raise  # Periodic logs it and tries again next round
        except (asyncpg.PostgresError, OSError):
            log.exception("dormancy.round_failed")
