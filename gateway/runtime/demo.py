"""Demo data: a small realistic reseller tree to place calls with.

Seeding is idempotent: it runs once (when the demo admin does not exist yet) and
every later call only returns what to print. Balances are booked as ledger refills,
so PostgreSQL's balances equal the sum of their ledger entries from the start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources

from gateway.agents.passwords import hash_password
from gateway.config import Config, RadiusClientConfig
from gateway.db import Connection

DEMO_RADIUS_SECRET = "testing123"
DEMO_NAS = "127.0.0.1"
# Where the demo's SIP answers send calls: a carrier this machine would run.
DEMO_SIP_CARRIER = "127.0.0.1:5080"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    login: str
    password: str
    role: str
    account: str


@dataclass(frozen=True, slots=True)
class DemoCaller:
    account: str
    extension: str
    secret: str
    caller_id: str
    dial: str
    destination: str


@dataclass(frozen=True, slots=True)
class DemoSummary:
    created: bool
    logins: tuple[DemoLogin, ...]
    callers: tuple[DemoCaller, ...]


# (prefix, destination, price per minute in micro-units, connect fee, first, next)
_RETAIL = (
    ("44", "United Kingdom fixed", 12_000, 0, 60, 60),
    ("447", "United Kingdom mobile", 45_000, 0, 30, 6),
    ("1", "USA and Canada", 8_000, 0, 30, 6),
    ("49", "Germany fixed", 15_000, 0, 60, 60),
    ("4915", "Germany mobile", 60_000, 0, 30, 6),
    ("4917", "Germany mobile", 60_000, 0, 30, 6),
    ("33", "France fixed", 14_000, 0, 60, 60),
    ("91", "India", 35_000, 0, 1, 1),
    ("63", "Philippines", 120_000, 50_000, 60, 60),
)
# Agents buy lower than they sell: the wholesale chain is charged at these.
_WHOLESALE_TOP = tuple((p, d, price * 60 // 100, fee, f, n) for p, d, price, fee, f, n in _RETAIL)
_WHOLESALE_SUB = tuple((p, d, price * 80 // 100, fee, f, n) for p, d, price, fee, f, n in _RETAIL)

_LOGINS = (
    DemoLogin("admin", "admin-demo", "admin", "-"),
    DemoLogin("acme", "acme-demo", "agent", "Acme Telecom (wholesale agent)"),
    DemoLogin("acmenorth", "acmenorth-demo", "agent", "Acme North (wholesale sub-agent)"),
    DemoLogin("beta", "beta-demo", "agent", "Beta Reseller (transfer agent)"),
    DemoLogin("alice", "alice-demo", "customer", "Alice Cafe"),
    DemoLogin("bob", "bob-demo", "customer", "Bob Taxi"),
    DemoLogin("carol", "carol-demo", "customer", "Carol Shop"),
)

_CALLERS = (
    DemoCaller("Alice Cafe", "1001", "alice-sip", "442071230001", "4930901820", "Germany fixed"),
    DemoCaller(
        "Bob Taxi", "1002", "bob-sip", "12125550100", "447700900123", "United Kingdom mobile"
    ),
    DemoCaller("Carol Shop", "2001", "carol-sip", "4930123456", "12125550199", "USA and Canada"),
)


async def _rate_group(
    conn: Connection,
    name: str,
    owner: int | None,
    rates: tuple[tuple[str, str, int, int, int, int], ...],
) -> int:
    group_id: int = await conn.fetchval(
        "INSERT INTO rate_groups (name, owner_user_id, description) VALUES ($1, $2, $3) "
        "RETURNING id",
        name,
        owner,
        f"demo: {name}",
    )
    await conn.executemany(
        "INSERT INTO rates (rate_group_id, prefix, destination, price_per_min_micros, "
        "connect_fee_micros, first_increment_s, next_increment_s) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(group_id, *rate) for rate in rates],
    )
    return group_id


async def _account(
    conn: Connection,
    *,
    kind: str,
    name: str,
    parent: int | None,
    mode: str | None,
    rate_group: int,
    balance_micros: int,
    credit_limit_micros: int = 0,
    max_calls: int | None = None,
    commission_bp: int = 0,
    emails: tuple[str, ...] = (),
) -> int:
    account_id: int = await conn.fetchval(
        "INSERT INTO accounts (kind, name, parent_id, billing_mode, rate_group_id, "
        "credit_limit_micros, max_concurrent_calls, commission_rate_bp, contact_emails) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        kind,
        name,
        parent,
        mode,
        rate_group,
        credit_limit_micros,
        max_calls,
        commission_bp,
        list(emails),
    )
    await conn.execute(
        "INSERT INTO ledger_entries (account_id, kind, amount_micros, idempotency_key, note) "
        "VALUES ($1, 'refill', $2, $3, 'demo opening balance')",
        account_id,
        balance_micros,
        f"demo:opening:{account_id}",
    )
    await conn.execute(
        "UPDATE accounts SET balance_micros = balance_micros + $2 WHERE id = $1",
        account_id,
        balance_micros,
    )
    return account_id


async def _user(conn: Connection, login: DemoLogin, account_id: int | None) -> int:
    user_id: int = await conn.fetchval(
        "INSERT INTO users (login, password_hash, role, account_id) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        login.login,
        hash_password(login.password),
        login.role,
        account_id,
    )
    return user_id


async def _seed(conn: Connection) -> None:
    by_login = {entry.login: entry for entry in _LOGINS}
    await _user(conn, by_login["admin"], None)
    retail = await _rate_group(conn, "Retail", None, _RETAIL)
    top = await _rate_group(conn, "Wholesale A", None, _WHOLESALE_TOP)
    sub = await _rate_group(conn, "Wholesale B", None, _WHOLESALE_SUB)

    acme = await _account(
        conn,
        kind="agent",
        name="Acme Telecom",
        parent=None,
        mode="wholesale",
        rate_group=top,
        balance_micros=500_000_000,
        max_calls=200,
        commission_bp=500,
        emails=("noc@acme.example",),
    )
    north = await _account(
        conn,
        kind="agent",
        name="Acme North",
        parent=acme,
        mode="wholesale",
        rate_group=sub,
        balance_micros=200_000_000,
        max_calls=50,
        commission_bp=300,
        emails=("ops@acme-north.example",),
    )
    beta = await _account(
        conn,
        kind="agent",
        name="Beta Reseller",
        parent=None,
        mode="transfer",
        rate_group=retail,
        balance_micros=300_000_000,
        emails=("billing@beta.example",),
    )
    alice = await _account(
        conn,
        kind="customer",
        name="Alice Cafe",
        parent=north,
        mode=None,
        rate_group=retail,
        balance_micros=20_000_000,
        max_calls=2,
    )
    bob = await _account(
        conn,
        kind="customer",
        name="Bob Taxi",
        parent=acme,
        mode=None,
        rate_group=retail,
        balance_micros=15_000_000,
        max_calls=4,
        credit_limit_micros=5_000_000,
    )
    carol = await _account(
        conn,
        kind="customer",
        name="Carol Shop",
        parent=beta,
        mode=None,
        rate_group=retail,
        balance_micros=10_000_000,
        max_calls=2,
    )
    accounts = {
        "Acme Telecom": acme,
        "Acme North": north,
        "Beta Reseller": beta,
        "Alice Cafe": alice,
        "Bob Taxi": bob,
        "Carol Shop": carol,
    }

    for entry in _LOGINS[1:]:
        account_name = entry.account.split(" (")[0]
        account_id = accounts[account_name]
        user_id = await _user(conn, entry, account_id)
        await conn.execute(
            "INSERT INTO user_account_access (user_id, account_id) "
            "SELECT $1, id FROM accounts WHERE id = $2 OR $2 = ANY(ancestors)",
            user_id,
            account_id,
        )
        if entry.role == "agent":
            await conn.execute(
                "INSERT INTO user_rate_group_access (user_id, rate_group_id) "
                "SELECT $1, rate_group_id FROM accounts WHERE id = $2 OR $2 = ANY(ancestors)"
                " ON CONFLICT DO NOTHING",
                user_id,
                account_id,
            )

    for caller in _CALLERS:
        account_id = accounts[caller.account]
        await conn.execute(
            "INSERT INTO caller_ids (account_id, number, description) VALUES ($1, $2, 'demo')",
            account_id,
            caller.caller_id,
        )
        await conn.execute(
            "INSERT INTO extensions (account_id, username, secret) VALUES ($1, $2, $3)",
            account_id,
            caller.extension,
            caller.secret,
        )


async def seed(conn: Connection) -> DemoSummary:
    """Create the demo tree unless it exists; say which, and what to log in and call as."""
    async with conn.transaction():
        # Two gateways seeding at once must not both insert: serialize on a lock.
        await conn.execute("SELECT pg_advisory_xact_lock(1735877733)")
        exists = await conn.fetchval("SELECT 1 FROM users WHERE login = 'admin'")
        if not exists:
            await _seed(conn)
    return DemoSummary(created=not exists, logins=_LOGINS, callers=_CALLERS)


def demo_clients() -> tuple[RadiusClientConfig, ...]:
    """The switch the demo's radclient lines play: this machine, the demo secret."""
    return tuple(
        RadiusClientConfig(
            name=name,
            address=address,
            secret=DEMO_RADIUS_SECRET,
            profile="cisco",
            country_code="44",
        )
        for name, address in (("demo-local", "127.0.0.1"), ("demo-local6", "::1"))
    )


@dataclass(frozen=True, slots=True)
class DemoPorts:
    """Where the printed commands send: the configured ports (0 for SIP: off)."""

    auth: int = 1812
    acct: int = 1813
    sip: int = 0

    @classmethod
    def of(cls, config: Config) -> DemoPorts:
        sip = config.sip.port if config.sip.enabled else 0
        return cls(config.radius.auth_port, config.radius.acct_port, sip)


def with_demo_network(config: Config) -> Config:
    """The demo's switch when none is configured: the radclient lines' client on this
    machine, and the SIP front on loopback for a local proxy or SIPp, accounted as
    that switch. A configured ``[[radius.clients]]`` means the operator's own network:
    then nothing is changed."""
    if config.radius.clients:
        return config
    radius = dataclasses.replace(config.radius, clients=demo_clients())
    sip = config.sip
    if not sip.enabled:
        sip = dataclasses.replace(
            sip,
            enabled=True,
            bind=("127.0.0.1", "::1"),
            accounting_nas="demo-local",
            default_route=sip.default_route or (DEMO_SIP_CARRIER,),
        )
    return dataclasses.replace(config, radius=radius, sip=sip)


def sipp_scenario() -> str:
    """The SIPp scenario the printed SIP line runs (INVITE, expect 302, ACK)."""
    return str(resources.files("gateway.runtime") / "sipp" / "demo_call.xml")


def radclient_lines(caller: DemoCaller, ports: DemoPorts = DemoPorts()) -> list[str]:
    """The radclient command lines that place one call as ``caller`` (auth, start, stop)."""
    session = f"demo-{caller.extension}-1"
    common = (
        f'User-Name = "{caller.extension}", Calling-Station-Id = "{caller.caller_id}", '
        f'Called-Station-Id = "{caller.dial}", NAS-IP-Address = {DEMO_NAS}'
    )
    auth = (
        f'echo \'{common}, User-Password = "{caller.secret}", '
        f"Message-Authenticator = 0x00' | radclient -x 127.0.0.1:{ports.auth} auth "
        f"{DEMO_RADIUS_SECRET}"
    )
    start = (
        f"echo '{common}, Acct-Status-Type = Start, Acct-Session-Id = \"{session}\"' "
        f"| radclient -x 127.0.0.1:{ports.acct} acct {DEMO_RADIUS_SECRET}"
    )
    stop = (
        f'echo \'{common}, Acct-Status-Type = Stop, Acct-Session-Id = "{session}", '
        f"Acct-Session-Time = 95' | radclient -x 127.0.0.1:{ports.acct} acct "
        f"{DEMO_RADIUS_SECRET}"
    )
    return [auth, start, stop]


def sipp_line(caller: DemoCaller, port: int) -> str:
    """One SIPp INVITE as ``caller``'s extension; exits 0 when answered 302."""
    return (
        f"sipp -sf {sipp_scenario()} -s {caller.dial} -key caller {caller.extension} "
        f"-m 1 -t u1 -i 127.0.0.1 -nostdin 127.0.0.1:{port}"
    )


def describe(summary: DemoSummary, portal_url: str = "", ports: DemoPorts = DemoPorts()) -> str:
    """The text printed at every start: logins and how to place a call."""
    out = [
        "",
        "Demo data " + ("created." if summary.created else "already present."),
        "",
        "Logins (management API / portal):",
    ]
    if portal_url:
        out.insert(
            -1, f"Agent portal: {portal_url}  (API docs: {portal_url[: -len('/portal')]}/docs)"
        )
        out.insert(-1, "")
    for entry in summary.logins:
        out.append(
            f"  {entry.login:10} password {entry.password:15} {entry.role:8} {entry.account}"
        )
    out += ["", "Place a call (radclient from Debian's freeradius-utils):"]
    for caller in summary.callers:
        out.append(
            f"  # {caller.account}: extension {caller.extension}, caller-ID "
            f"{caller.caller_id}, dialling {caller.dial} ({caller.destination})"
        )
        out += [f"  {line}" for line in radclient_lines(caller, ports)]
    if ports.sip and summary.callers:
        caller = summary.callers[0]
        out += [
            "",
            "Authorize a call over SIP (SIPp from Debian's sip-tester): the INVITE is",
            f"answered 302 with the route and X-Credit-Time; {caller.account} dials "
            f"{caller.destination}:",
            f"  {sipp_line(caller, ports.sip)}",
        ]
    out.append("")
    return "\n".join(out)
