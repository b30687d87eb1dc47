"""The monthly invoicing job: every account's statement of the previous month.

Every gateway process runs it and needs no lock: ``invoices.issue`` is once-only per
account and period and gapless per issuer by itself (the issuer's counter row, then
the look for an existing invoice, then the insert, in one transaction). A round
first skips the accounts already invoiced, so a second gateway or a restart after a
crash costs one cheap query. Each account is issued in its own transaction: one
failure does not hold back the others, and the next round retries it.

An account that already has an invoice issued on demand inside the month gets one
for the rest of the month, from where its invoices end (a gap someone left before
them stays theirs to fill).

A month is invoiced ``issue_delay_s`` after it ends (default 10 minutes), so money
moves still in flight at midnight have committed: an entry stamped 23:59:59.9 but
committed later would otherwise be missing from both months.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.agents import invoices
from gateway.agents.context import ManagementContext
from gateway.agents.errors import Conflict
from gateway.core.errors import BackendUnavailable
from gateway.core.periodic import Periodic
from gateway.db.pool import pg_errors

log = logging.getLogger(__name__)

# Accounts alive at some point of the period whose invoices do not reach its end yet,
# with how far they reach (covered_to; NULL: no invoice in the period). $3 limits the
# round to some trees (tests pass their own; NULL: all).
_DUE = """
SELECT * FROM (
    SELECT a.*, (SELECT max(i.period_end) FROM invoices i
                 WHERE i.account_id = a.id AND i.period_end > $1 AND i.period_start < $2)
                AS covered_to
    FROM accounts a
    WHERE a.created_at < $2 AND (a.removed_at IS NULL OR a.removed_at >= $1)
      AND ($3::bigint[] IS NULL OR a.root_id = ANY($3::bigint[]))
) due
WHERE coalesce(due.covered_to, $1) < $2
ORDER BY due.id
"""


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round did: the period, invoices it created, accounts found invoiced."""

    period_start: datetime
    period_end: datetime
    issued: tuple[int, ...] = ()  # invoice ids
    already: int = 0  # found issued by someone else between the look and the issue
    failed: int = 0


def due_period(now: datetime, issue_delay_s: float) -> tuple[datetime, datetime]:
    """The month a round at ``now`` invoices: the last one ended ``issue_delay_s`` ago."""
    return invoices.previous_month(now - timedelta(seconds=issue_delay_s))


async def run(
    ctx: ManagementContext, now: datetime, *, roots: Sequence[int] | None = None
) -> RoundResult:
    """Issue the due month's invoice of every account that has none yet."""
    config = ctx.config.invoices
    start, end = due_period(now, config.issue_delay_s)
    trees = None if roots is None else list(roots)
    issued: list[int] = []
    already = failed = 0
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            accounts = await conn.fetch(_DUE, start, end, trees)
            for account in accounts:
                # An invoice issued on demand inside the month (say the 1st to the
                # 10th): the round invoices the rest of it.
                since = max(start, account["covered_to"] or start)
                try:
                    done = await invoices.issue(
                        conn, account, since, end, operator_prefix=config.operator_prefix
                    )
                except Conflict as exc:  # one issued meanwhile overlaps the rest
                    log.warning(
                        "invoices.overlap", extra={"account": account["id"], "error": str(exc)}
                    )
                    failed += 1
                    continue
                if done.created:
                    issued.append(done.detail.invoice.id)
                else:
                    already += 1
    if issued:
        log.info(
            "invoices.round",
            extra={"period": f"{start:%Y-%m}", "issued": len(issued), "already": already},
        )
    return RoundResult(start, end, tuple(issued), already, failed)


class InvoiceJob(Periodic):
    """Runs an invoicing round every ``invoices.check_interval_s``."""

    name = "invoices"

    def __init__(self, ctx: ManagementContext) -> None:
        super().__init__(ctx.config.invoices.check_interval_s)
        self.ctx = ctx

    async def step(self) -> None:
        try:
            await run(self.ctx, datetime.now(UTC))
        except BackendUnavailable:
            raise  # Periodic logs it and tries again next round
        except (asyncpg.PostgresError, OSError):
            log.exception("invoices.round_failed")
