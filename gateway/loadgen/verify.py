"""The billing check after a run: PostgreSQL must hold exactly what the calls cost.

- Every acknowledged Stop has one CDR (none lost); no call has two (none billed
  twice); no call that was never authorized has one.
- Each CDR has the length the Stop reported and, per level of the chain, the cost
  ``gateway.rating.billing.cost`` gives for the rate that level pays.
- Every checked account's balance is its opening balance minus the expected cost
  of each of its billed calls. A Stop that was never acknowledged may or may not
  have been billed (the switch would retry it); if it was, it counts once.

CDRs and balances are read in one repeatable-read snapshot: the committer writes a
batch's CDRs and balances in one transaction, so the two always agree there.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.db import Connection
from gateway.loadgen.plan import CallSpec, Population, session_prefix
from gateway.rating.billing import cost

POLL_S = 0.2
SETTLE_S = 1.0  # the CDR count must hold still this long to count as drained
SHOWN = 10  # examples listed per kind of mismatch


@dataclass(frozen=True, slots=True)
class Placed:
    """A call as the generator saw it end."""

    spec: CallSpec
    accepted: bool  # Access-Accept received
    stop_acked: bool


@dataclass
class Verdict:
    stops_acked: int = 0
    cdrs: int = 0
    billed_calls: int = 0
    drained: bool = False
    waited_s: float = 0.0
    lost: list[str] = field(default_factory=list)
    double_billed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # billed though never authorized
    wrong: list[str] = field(default_factory=list)  # CDR length or cost not as expected
    balances_checked: int = 0
    balance_mismatches: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.drained and not (
            self.lost
            or self.double_billed
            or self.unexpected
            or self.wrong
            or self.balance_mismatches
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "drained": self.drained,
            "waited_s": round(self.waited_s, 2),
            "stops_acked": self.stops_acked,
            "cdrs": self.cdrs,
            "billed_calls": self.billed_calls,
            "lost": len(self.lost),
            "double_billed": len(self.double_billed),
            "unexpected": len(self.unexpected),
            "wrong": len(self.wrong),
            "balances_checked": self.balances_checked,
            "balance_mismatches": len(self.balance_mismatches),
            "examples": {
                "lost": self.lost[:SHOWN],
                "double_billed": self.double_billed[:SHOWN],
                "unexpected": self.unexpected[:SHOWN],
                "wrong": self.wrong[:SHOWN],
                "balance_mismatches": [
                    {"account": a, "expected": e, "actual": x}
                    for a, e, x in self.balance_mismatches[:SHOWN]
                ],
            },
        }

    def describe(self) -> str:
        head = "verify: OK" if self.ok else "verify: MISMATCH"
        lines = [
            f"{head}: {self.stops_acked} Stops acknowledged, {self.cdrs} CDRs for "
            f"{self.billed_calls} calls, {len(self.lost)} lost, {len(self.double_billed)} "
            f"billed twice, {len(self.unexpected)} billed though never authorized, "
            f"{len(self.wrong)} with a wrong length or cost; {self.balances_checked} balances "
            f"checked, {len(self.balance_mismatches)} off"
        ]
        if not self.drained:
            lines.append(f"  the CDRs did not settle within {self.waited_s:.0f}s")
        for label, items in (
            ("lost", self.lost),
            ("billed twice", self.double_billed),
            ("never authorized", self.unexpected),
            ("wrong", self.wrong),
        ):
            for item in items[:SHOWN]:
                lines.append(f"  {label}: {item}")
        for account, expected, actual in self.balance_mismatches[:SHOWN]:
            lines.append(
                f"  account {account}: balance {actual}, expected {expected} "
                f"({actual - expected:+d})"
            )
        return "\n".join(lines)


def expected_costs(population: Population, spec: CallSpec) -> dict[int, int]:
    """What the call must have cost each paying account of its chain."""
    if spec.customer_id is None:
        return {}
    levels = population.pricing.get((spec.customer_id, spec.dial_prefix), ())
    return {account: cost(rate, spec.duration_s) for account, rate in levels}


async def _count(conn: Connection, customers: list[int], prefix: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM cdrs WHERE account_id = ANY($1::bigint[]) "
        "AND starts_with(session_id, $2)",
        customers,
        prefix,
    )
    return count


async def wait_drained(
    conn: Connection, customers: list[int], prefix: str, at_least: int, timeout_s: float
) -> tuple[bool, float]:
    """Poll the CDR count until it reaches ``at_least`` and holds still (the
    committer drained), or ``timeout_s`` passes; (drained, seconds waited)."""
    began = time.monotonic()
    last, still_since = -1, began
    while True:
        now = time.monotonic()
        count = await _count(conn, customers, prefix)
        if count != last:
            last, still_since = count, now
        if count >= at_least and now - still_since >= SETTLE_S:
            return True, now - began
        if now - began >= timeout_s:
            return False, now - began
        await asyncio.sleep(POLL_S)


async def verify(
    conn: Connection,
    population: Population,
    run_id: str,
    placed: Iterable[Placed],
    timeout_s: float,
) -> Verdict:
    """Wait for the committer, then compare PostgreSQL with what the calls cost."""
    calls = {p.spec.session_id: p for p in placed}
    customers = sorted({c.account_id for c in population.callers})
    prefix = session_prefix(run_id)
    verdict = Verdict(stops_acked=sum(p.stop_acked for p in calls.values()))
    verdict.drained, verdict.waited_s = await wait_drained(
        conn, customers, prefix, verdict.stops_acked, timeout_s
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT session_id, duration_s, chain, cost_per_level_micros FROM cdrs "
            "WHERE account_id = ANY($1::bigint[]) AND starts_with(session_id, $2)",
            customers,
            prefix,
        )
        accounts = list(population.opening)
        balance_rows = await conn.fetch(
            "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])", accounts
        )
    actual = {int(r["id"]): int(r["balance_micros"]) for r in balance_rows}
    verdict.cdrs = len(rows)
    per_session = Counter(r["session_id"] for r in rows)
    verdict.double_billed = sorted(s for s, n in per_session.items() if n > 1)
    verdict.lost = sorted(s for s, p in calls.items() if p.stop_acked and s not in per_session)
    spent: defaultdict[int, int] = defaultdict(int)
    seen: set[str] = set()
    for row in rows:
        session = row["session_id"]
        call = calls.get(session)
        if call is None or not call.accepted:
            verdict.unexpected.append(session)
            continue
        expected = expected_costs(population, call.spec)
        charged = dict(zip(row["chain"], row["cost_per_level_micros"], strict=False))
        got = {a: charged.get(a, 0) for a in expected}
        if row["duration_s"] != call.spec.duration_s or got != expected:
            verdict.wrong.append(
                f"{session}: {row['duration_s']}s costing {got}, expected "
                f"{call.spec.duration_s}s costing {expected}"
            )
        if session not in seen:
            seen.add(session)
            for account, amount in expected.items():
                spent[account] += amount
    verdict.billed_calls = len(seen)
    for account, opening in sorted(population.opening.items()):
        expected_balance = opening - spent[account]
        verdict.balances_checked += 1
        if actual.get(account) != expected_balance:
            verdict.balance_mismatches.append((account, expected_balance, actual.get(account, 0)))
    return verdict
