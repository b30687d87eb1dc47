"""Who the generator calls as: customers it creates in PostgreSQL, or the demo's.

``create`` writes a test population through the gateway's own tables, in one
transaction: a retail and a wholesale rate group pricing the same destinations, a
wholesale agent with a large balance, and N customers under it, each with an
extension (and password) and two caller-IDs. Balances are booked as ledger
refills, as the demo does, so PostgreSQL's balances equal their ledger sums. The
gateway picks the rows up through its NOTIFY triggers within a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.core.reasons import Refusal
from gateway.db import Connection
from gateway.db.rates import load_index
from gateway.loadgen.plan import Caller, Population
from gateway.rating.chain import ChainAccount, build_chain
from gateway.rating.numbers import InvalidNumber, NumberPlan, normalize
from gateway.rating.rates import Rate
from gateway.runtime import demo

# (prefix, destination, retail price per minute, connect fee, first and next
# increment, minimum duration, grace): a mix of increments, a connect fee, a
# minimum and a grace period, so the check covers every rounding rule.
RETAIL: tuple[tuple[str, str, int, int, int, int, int, int], ...] = (
    ("4930", "Germany Berlin", 15_000, 0, 60, 60, 0, 0),
    ("447", "United Kingdom mobile", 45_000, 0, 30, 6, 0, 0),
    ("1212", "USA New York", 8_000, 0, 1, 1, 0, 0),
    ("63", "Philippines", 120_000, 50_000, 60, 60, 0, 0),
    ("91", "India", 35_000, 0, 6, 6, 30, 3),
)
WHOLESALE_PERCENT = 60  # the agent buys at 60% of the retail price
UNRATED = ("99912",)  # no rate group here prices these: refused calls dial them
SUFFIX_DIGITS = 7  # random digits after a destination prefix
CUSTOMER_BALANCE_MICROS = 10**12
AGENT_BALANCE_MICROS = 10**14  # Lua numbers are doubles: stay far below 2**53


def retail_rates() -> tuple[Rate, ...]:
    return tuple(Rate(p, d, price, fee, f, n, m, g) for p, d, price, fee, f, n, m, g in RETAIL)


def wholesale_rates() -> tuple[Rate, ...]:
    return tuple(
        Rate(p, d, price * WHOLESALE_PERCENT // 100, fee, f, n, m, g)
        for p, d, price, fee, f, n, m, g in RETAIL
    )


async def create_rate_group(
    conn: Connection, name: str, rates: Sequence[Rate], description: str = "gateway loadgen"
) -> int:
    """A new operator rate group holding ``rates``; its id."""
    group_id: int = await conn.fetchval(
        "INSERT INTO rate_groups (name, description) VALUES ($1, $2) RETURNING id",
        name,
        description,
    )
    await conn.executemany(
        "INSERT INTO rates (rate_group_id, prefix, destination, price_per_min_micros, "
        "connect_fee_micros, first_increment_s, next_increment_s, min_duration_s, grace_s) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                group_id,
                r.prefix,
                r.destination,
                r.price_per_min_micros,
                r.connect_fee_micros,
                r.first_increment_s,
                r.next_increment_s,
                r.min_duration_s,
                r.grace_s,
            )
            for r in rates
        ],
    )
    return group_id


async def _openings(conn: Connection, run_id: str, balances: dict[int, int]) -> None:
    await conn.executemany(
        "INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key, note) "
        "VALUES ($1, 'refill', $2, $3, 'loadgen opening balance')",
        [
            (account_id, amount, f"loadgen:{run_id}:opening:{account_id}")
            for account_id, amount in balances.items()
        ],
    )


async def create(
    conn: Connection,
    count: int,
    run_id: str,
    *,
    customer_balance: int = CUSTOMER_BALANCE_MICROS,
    agent_balance: int = AGENT_BALANCE_MICROS,
    call_rules: bool = False,
) -> Population:
    """Create ``count`` customers under one wholesale agent (see the module docstring);
    ``call_rules``: give every account rules that refuse none of the planned calls
    but make the gateway check every kind (what they cost, measured)."""
    if count < 1:
        raise ValueError("a population needs at least one customer")
    retail, wholesale = retail_rates(), wholesale_rates()
    async with conn.transaction():
        retail_id = await create_rate_group(conn, f"loadgen {run_id} retail", retail)
        wholesale_id = await create_rate_group(conn, f"loadgen {run_id} wholesale", wholesale)
        agent: int = await conn.fetchval(
            "INSERT INTO accounts (kind, name, billing_mode, rate_group_id, balance_micros) "
            "VALUES ('agent', $1, 'wholesale', $2, $3) RETURNING id",
            f"loadgen {run_id} agent",
            wholesale_id,
            agent_balance,
        )
        names = [f"loadgen {run_id} customer {i}" for i in range(count)]
        rows = await conn.fetch(
            "INSERT INTO accounts (kind, name, parent_id, rate_group_id, balance_micros) "
            "SELECT 'customer', n, $2, $3, $4 FROM unnest($1::text[]) AS n RETURNING id, name",
            names,
            agent,
            retail_id,
            customer_balance,
        )
        by_name = {r["name"]: int(r["id"]) for r in rows}
        customers = [by_name[name] for name in names]
        await _openings(
            conn, run_id, {agent: agent_balance, **dict.fromkeys(customers, customer_balance)}
        )
        callers = [
            Caller(
                account_id=account_id,
                extension=f"lg{run_id}x{i}",
                password=f"pw{run_id}{i}",
                caller_ids=(f"4478{account_id:09d}", f"4479{account_id:09d}"),
                destinations=tuple(r.prefix for r in retail),
            )
            for i, account_id in enumerate(customers)
        ]
        await conn.executemany(
            "INSERT INTO extensions (account_id, username, secret, description) "
            "VALUES ($1, $2, $3, 'gateway loadgen')",
            [(c.account_id, c.extension, c.password) for c in callers],
        )
        await conn.executemany(
            "INSERT INTO caller_ids (account_id, number, description) "
            "VALUES ($1, $2, 'gateway loadgen')",
            [(c.account_id, number) for c in callers for number in c.caller_ids],
        )
        if call_rules:
            await _permissive_rules(conn, [agent, *customers], [r.prefix for r in retail])
    pricing = {
        (account_id, r.prefix): ((account_id, r), (agent, w))
        for account_id in customers
        for r, w in zip(retail, wholesale, strict=True)
    }
    return Population(
        callers=tuple(callers),
        unrated=UNRATED,
        suffix_digits=SUFFIX_DIGITS,
        pricing=pricing,
        opening=await balances(conn, [agent, *customers]),
    )


# Rules no planned call breaks: blocked ranges the plan never dials, every rated
# prefix allowed (the unrated numbers are refused before, as unrated), limits far off.
_NEVER_DIALLED = tuple(f"88{i:02d}" for i in range(20))
_FAR = 10**15


async def _permissive_rules(conn: Connection, accounts: list[int], allowed: list[str]) -> None:
    await conn.executemany(
        "INSERT INTO call_rules (account_id, allow_prefixes, block_prefixes, "
        "  max_price_per_min_micros, negative_margin, max_spend_hour_micros, "
        "  max_spend_day_micros, max_spend_call_micros, max_attempts_per_s, "
        "  max_attempts_per_min) "
        "VALUES ($1, $2, $3, $4, 'refuse', $4, $4, $4, 1000000, 60000000)",
        [(a, allowed, list(_NEVER_DIALLED), _FAR) for a in accounts],
    )


async def _chain_accounts(conn: Connection, customer_id: int) -> list[ChainAccount]:
    """The customer, then each agent from its parent up to the top."""
    rows = await conn.fetch(
        "SELECT a.id, a.root_id, a.kind, a.billing_mode, a.rate_group_id "
        "FROM accounts c JOIN accounts a ON a.id = c.id OR a.id = ANY(c.ancestors) "
        "WHERE c.id = $1 "
        "ORDER BY a.id = c.id DESC, array_position(c.ancestors, a.id) DESC",
        customer_id,
    )
    return [
        ChainAccount(r["id"], r["root_id"], r["kind"], r["billing_mode"], r["rate_group_id"])
        for r in rows
    ]


async def from_demo(conn: Connection, plan: NumberPlan | None = None) -> Population:
    """The demo's callers (seeding the demo data first if it is missing), priced
    from the rate groups in PostgreSQL the way the gateway prices them."""
    summary = await demo.seed(conn)
    index = await load_index(conn)
    now = datetime.now(UTC)
    callers: list[Caller] = []
    pricing: dict[tuple[int, str], tuple[tuple[int, Rate], ...]] = {}
    checked: set[int] = set()
    for entry in summary.callers:
        account_id = await conn.fetchval(
            "SELECT account_id FROM extensions WHERE username = $1", entry.extension
        )
        if account_id is None:
            continue
        accounts = await _chain_accounts(conn, account_id)
        try:
            number = normalize(entry.dial, plan or NumberPlan())
        except InvalidNumber:
            continue
        built = build_chain(accounts, index, number, now)
        if isinstance(built, Refusal):
            continue
        chain = built.chain
        paying = tuple(
            (level.account_id, level.rate)
            for level in chain.levels
            if level.charged and level.rate is not None
        )
        pricing[(account_id, entry.dial)] = paying
        checked.update(a.id for a in accounts)
        callers.append(
            Caller(account_id, entry.extension, entry.secret, (entry.caller_id,), (entry.dial,))
        )
    return Population(
        callers=tuple(callers),
        unrated=UNRATED,
        suffix_digits=0,
        pricing=pricing,
        opening=await balances(conn, sorted(checked)),
    )


async def balances(conn: Connection, account_ids: list[int]) -> dict[int, int]:
    """PostgreSQL's balance (micro-units) of each account."""
    rows = await conn.fetch(
        "SELECT id, balance_micros FROM accounts WHERE id = ANY($1::bigint[])", account_ids
    )
    return {int(r["id"]): int(r["balance_micros"]) for r in rows}
