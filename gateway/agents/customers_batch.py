"""Creating many customers at once, from a count or from CSV text.

Every customer of a batch gets a portal user (role customer) and one extension;
what is not given is generated (random 10-digit login and SIP username, the same
digits for both when neither is given; random password and SIP secret). The
response is the only place the passwords ever appear.

CSV: a header line, then one customer per line. Columns (any order, only ``name``
required): ``name, login, extension, caller_id, credit_limit_micros``; an empty cell
means "generate" (login, extension), "none" (caller_id) or "the batch's default"
(credit_limit_micros). Every row is checked first, against the other rows and
against the database; when any is bad, nothing is created and every bad row is
reported with its line number (the header is line 1). The batch is one
transaction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway.agents.context import ManagementContext
from gateway.agents.customers import (
    AccountSpec,
    account_currency,
    check_emails,
    check_login,
    check_name,
    hash_generated,
    insert_account,
    insert_user,
    new_login,
    new_password,
    resolve_parent,
)
from gateway.agents.errors import Invalid
from gateway.agents.numbers import (
    check_username,
    insert_caller_id,
    insert_extension,
    normalize_caller_id,
)
from gateway.agents.principal import Principal
from gateway.db import Connection
from gateway.db.pool import pg_errors

MAX_BATCH = 1000
COLUMNS = ("name", "login", "extension", "caller_id", "credit_limit_micros")
MAX_CREDIT_LIMIT_MICROS = 10**15
_GENERATE_TRIES = 10


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int
    field: str
    message: str


class BatchInvalid(Invalid):
    """Bad rows of a batch; ``problems`` lists each by line number and column."""

    code = "INVALID_ROWS"

    def __init__(self, problems: list[RowProblem]) -> None:
        first = problems[0]
        super().__init__("csv", f"line {first.line}: {first.field}: {first.message}")
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.field)))


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """What the customers of a batch share, and either ``count`` or ``csv`` rows."""

    rate_group_id: int
    parent_id: int | None = None
    parent_given: bool = False
    credit_limit_micros: int = 0
    max_concurrent_calls: int | None = None
    currency: str | None = None
    contact_emails: tuple[str, ...] = ()
    count: int | None = None
    name_prefix: str = "customer-"
    csv: str | None = None


@dataclass(slots=True)
class _Row:
    line: int
    name: str
    login: str | None = None
    extension: str | None = None
    caller_id: str | None = None
    credit_limit_micros: int | None = None
    problems: list[RowProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BatchItem:
    account_id: int
    name: str
    login: str
    password: str
    extension: str
    secret: str
    caller_id: str | None


def _count_rows(spec: BatchSpec) -> list[_Row]:
    assert spec.count is not None
    if not 1 <= spec.count <= MAX_BATCH:
        raise Invalid("count", f"must be 1..{MAX_BATCH}")
    if len(spec.name_prefix) > 190:
        raise Invalid("name_prefix", "must be at most 190 characters")
    width = len(str(spec.count))
    return [_Row(0, f"{spec.name_prefix}{i:0{width}d}") for i in range(1, spec.count + 1)]


def _cell(record: dict[str | None, object], name: str) -> str:
    value = record.get(name)
    return value.strip() if isinstance(value, str) else ""


def _parse_row(line: int, record: dict[str | None, object]) -> _Row:
    row = _Row(line, _cell(record, "name"))

    def check(column: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Invalid as exc:
            row.problems.append(RowProblem(line, column, exc.message))

    check("name", lambda: check_name(row.name))
    if None in record:
        row.problems.append(RowProblem(line, "csv", "more cells than the header has columns"))
    if login := _cell(record, "login"):
        row.login = login
        check("login", lambda: check_login(login))
    if extension := _cell(record, "extension"):
        row.extension = extension
        check("extension", lambda: check_username(extension))
    if number := _cell(record, "caller_id"):

        def caller_id() -> None:
            row.caller_id = normalize_caller_id(number, "caller_id")

        check("caller_id", caller_id)
    if limit := _cell(record, "credit_limit_micros"):
        if limit.isascii() and limit.isdigit() and int(limit) <= MAX_CREDIT_LIMIT_MICROS:
            row.credit_limit_micros = int(limit)
        else:
            message = f"must be a whole number 0..{MAX_CREDIT_LIMIT_MICROS}"
            row.problems.append(RowProblem(line, "credit_limit_micros", message))
    return row


def _csv_rows(text: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)
    try:
        header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise Invalid("csv", f"line 1: {exc}") from None
    if not header:
        raise Invalid("csv", "empty: a header line is needed (" + ", ".join(COLUMNS) + ")")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown or "name" not in header or len(set(header)) != len(header):
        raise Invalid(
            "csv",
            "line 1: the header must name distinct columns of: "
            + ", ".join(COLUMNS)
            + " (name required)",
        )
    reader.fieldnames = header
    rows: list[_Row] = []
    try:
        for record in reader:
            if not any(isinstance(v, str) and v.strip() for v in record.values()):
                continue  # blank line
            if len(rows) == MAX_BATCH:
                raise Invalid("csv", f"at most {MAX_BATCH} rows")
            rows.append(_parse_row(reader.line_num, record))
    except csv.Error as exc:
        raise Invalid("csv", f"line {reader.line_num}: {exc}") from None
    if not rows:
        raise Invalid("csv", "no rows after the header")
    return rows


def _duplicates(rows: list[_Row]) -> None:
    """Flag values that two rows of the file share (logins in any letter case)."""
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        for column, value in (
            ("login", row.login and row.login.lower()),
            ("extension", row.extension),
            ("caller_id", row.caller_id),
        ):
            if not value:
                continue
            first = seen.setdefault((column, value), row.line)
            if first != row.line:
                row.problems.append(RowProblem(row.line, column, f"same as line {first}"))


async def _taken(conn: Connection, rows: list[_Row]) -> None:
    """Flag values already in use in the database (without saying by whom)."""
    logins = {r.login.lower() for r in rows if r.login}
    extensions = {r.extension for r in rows if r.extension}
    numbers = {r.caller_id for r in rows if r.caller_id}
    used_logins = {
        r[0]
        for r in await conn.fetch(
            "SELECT lower(login) FROM users WHERE lower(login) = ANY($1::text[])", list(logins)
        )
    }
    used_extensions = {
        r[0]
        for r in await conn.fetch(
            "SELECT username FROM extensions WHERE username = ANY($1::text[])", list(extensions)
        )
    }
    used_numbers = {
        r[0]
        for r in await conn.fetch(
            "SELECT number FROM caller_ids WHERE number = ANY($1::text[])", list(numbers)
        )
    }
    for row in rows:
        if row.login and row.login.lower() in used_logins:
            row.problems.append(RowProblem(row.line, "login", "already in use"))
        if row.extension and row.extension in used_extensions:
            row.problems.append(RowProblem(row.line, "extension", "already in use"))
        if row.caller_id and row.caller_id in used_numbers:
            row.problems.append(RowProblem(row.line, "caller_id", "already in use"))


def _check_spec(spec: BatchSpec) -> list[_Row]:
    check_emails(spec.contact_emails)
    if spec.credit_limit_micros < 0:
        raise Invalid("credit_limit_micros", "must be >= 0")
    if spec.max_concurrent_calls is not None and spec.max_concurrent_calls < 0:
        raise Invalid("max_concurrent_calls", "must be >= 0")
    if (spec.count is None) == (spec.csv is None):
        raise Invalid("count", "give either count or csv")
    return _count_rows(spec) if spec.count is not None else _csv_rows(spec.csv or "")


async def _insert_row(
    conn: Connection,
    base: AccountSpec,
    parent_id: int | None,
    currency: str,
    row: _Row,
    password_hash: str,
    password: str,
) -> BatchItem:
    limit = row.credit_limit_micros
    spec = replace(
        base,
        name=row.name,
        credit_limit_micros=base.credit_limit_micros if limit is None else limit,
    )
    account = await insert_account(conn, "customer", spec, parent_id, currency)
    account_id: int = account["id"]
    login = row.login
    if login is not None:
        if await insert_user(conn, login, password_hash, "customer", account_id) is None:
            raise BatchInvalid([RowProblem(row.line, "login", "already in use")])
    else:
        for _ in range(_GENERATE_TRIES):
            candidate = new_login()
            if (
                await insert_user(conn, candidate, password_hash, "customer", account_id)
                is not None
            ):
                login = candidate
                break
        else:
            raise BatchInvalid([RowProblem(row.line, "login", "could not generate a free login")])
    # The same digits as a generated login make one thing for the customer to remember.
    wanted = row.extension or (login if row.login is None else None)
    extension = await insert_extension(conn, account_id, wanted, None)
    if extension is None and row.extension is None:
        extension = await insert_extension(conn, account_id, None, None)
    if extension is None:
        raise BatchInvalid([RowProblem(row.line, "extension", "already in use")])
    if (
        row.caller_id is not None
        and await insert_caller_id(conn, account_id, row.caller_id) is None
    ):
        raise BatchInvalid([RowProblem(row.line, "caller_id", "already in use")])
    assert extension.secret is not None
    return BatchItem(
        account_id, row.name, login, password, extension.username, extension.secret, row.caller_id
    )


async def create_batch(
    ctx: ManagementContext, principal: Principal, spec: BatchSpec
) -> list[BatchItem]:
    """Create every customer of the batch, or none (422 ``BatchInvalid`` with the bad rows)."""
    rows = _check_spec(spec)
    base = AccountSpec(
        name="-",
        rate_group_id=spec.rate_group_id,
        parent_id=spec.parent_id,
        parent_given=spec.parent_given,
        credit_limit_micros=spec.credit_limit_micros,
        max_concurrent_calls=spec.max_concurrent_calls,
        currency=spec.currency,
        contact_emails=spec.contact_emails,
    )
    with pg_errors():
        async with ctx.pool.acquire() as conn:
            parent = await resolve_parent(conn, principal, spec.parent_id, spec.parent_given)
            await account_currency(conn, principal, base, parent)
            _duplicates(rows)
            await _taken(conn, rows)
    problems = [p for r in rows for p in r.problems]
    if problems:
        raise BatchInvalid(problems)
    passwords = [new_password() for _ in rows]
    hashes = await hash_generated(passwords)  # seconds for a big batch: no connection held
    with pg_errors():
        async with ctx.pool.acquire() as conn, conn.transaction():
            # Again inside the transaction: the parent may have gone meanwhile.
            parent = await resolve_parent(conn, principal, spec.parent_id, spec.parent_given)
            currency = await account_currency(conn, principal, base, parent)
            parent_id = None if parent is None else parent["id"]
            return [
                await _insert_row(conn, base, parent_id, currency, row, h, pw)
                for row, h, pw in zip(rows, hashes, passwords, strict=True)
            ]
