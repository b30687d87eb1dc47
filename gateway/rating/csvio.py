"""Reading and writing rate decks as CSV.

Format (header row required, columns matched by name, any order)::

    prefix,destination,price_per_min,connect_fee,first_increment_s,next_increment_s,
    min_duration_s,grace_s,effective_from,effective_to,periods,next_increment_ms

``prefix``, ``destination`` and ``price_per_min`` are required; the other columns
may be left out of the header or left empty in a row to take the ``Rate`` default.
Money columns are decimal currency strings (at most 6 decimals); dates are ISO 8601
dates or datetimes, naive ones meaning UTC; an empty date means an open period.
``periods`` holds time-of-day prices (``gateway.rating.periods`` text form), read
in the rate group's time zone; empty: one price at all times. ``next_increment_ms``
(a divisor of 1000, with ``next_increment_s`` 1) bills in sub-second steps.
"""

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.rating.money import format_money, parse_money
from gateway.rating.periods import Periods, parse_periods
from gateway.rating.rates import Rate

COLUMNS: tuple[str, ...] = (
    "prefix",
    "destination",
    "price_per_min",
    "connect_fee",
    "first_increment_s",
    "next_increment_s",
    "min_duration_s",
    "grace_s",
    "effective_from",
    "effective_to",
    "periods",
    "next_increment_ms",
)
REQUIRED_COLUMNS: frozenset[str] = frozenset({"prefix", "destination", "price_per_min"})

_INT_COLUMNS = ("first_increment_s", "next_increment_s", "min_duration_s", "grace_s")
_DATE_COLUMNS = ("effective_from", "effective_to")
_INTEGER = re.compile(r"-?[0-9]+")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one line of a rate file was rejected; ``line`` is 1-based, header is 1."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _parse_int(column: str, text: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"{column}: expected a whole number, got {text!r}")
    return int(text)


def _parse_date(column: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{column}: expected an ISO 8601 date or datetime, got {text!r}") from None
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _parse_row(fields: dict[str, str]) -> Rate:
    """Build a Rate from named, stripped fields; ValueError lists every bad field."""
    problems: list[str] = []
    kwargs: dict[str, Any] = {"prefix": fields["prefix"], "destination": fields["destination"]}

    price = fields["price_per_min"]
    if price:
        try:
            kwargs["price_per_min_micros"] = parse_money(price)
        except ValueError as exc:
            problems.append(f"price_per_min: {exc}")
    else:
        problems.append("price_per_min: required")

    fee = fields.get("connect_fee", "")
    if fee:
        try:
            kwargs["connect_fee_micros"] = parse_money(fee)
        except ValueError as exc:
            problems.append(f"connect_fee: {exc}")

    for column in _INT_COLUMNS:
        text = fields.get(column, "")
        if text:
            try:
                kwargs[column] = _parse_int(column, text)
            except ValueError as exc:
                problems.append(str(exc))

    for column in _DATE_COLUMNS:
        text = fields.get(column, "")
        if text:
            try:
                kwargs[column] = _parse_date(column, text)
            except ValueError as exc:
                problems.append(str(exc))

    step_ms = fields.get("next_increment_ms", "")
    if step_ms:
        try:
            kwargs["next_increment_ms"] = _parse_int("next_increment_ms", step_ms)
        except ValueError as exc:
            problems.append(str(exc))

    timed = fields.get("periods", "")
    if timed:
        try:
            # The zone is the rate group's, applied when the group is loaded.
            kwargs["periods"] = Periods(parse_periods(timed))
        except ValueError as exc:
            problems.append(f"periods: {exc}")

    if problems:
        raise ValueError("; ".join(problems))
    # Cross-field and range checks live in Rate itself so they cannot drift.
    return Rate(**kwargs)


def _check_header(names: list[str]) -> str | None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        return f"duplicate column(s) in header: {', '.join(duplicates)}"
    # Rejecting unknown names catches typos such as "conect_fee", which would
    # otherwise silently price every row with the default.
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        return f"unknown column(s) in header: {', '.join(unknown)} (expected {', '.join(COLUMNS)})"
    missing = sorted(REQUIRED_COLUMNS.difference(names))
    if missing:
        return f"missing required column(s) in header: {', '.join(missing)}"
    return None


def _rows(text_lines: Iterable[str]) -> Iterator[tuple[int, list[str] | RowError]]:
    """Yield (start line, cells or CSV syntax error) for every non-blank record."""
    if isinstance(text_lines, str):
        # A whole document passed as one string would otherwise be read per character.
        text_lines = io.StringIO(text_lines)
    # skipinitialspace lets hand-edited files write `44, "UK, London"`.
    reader = csv.reader(text_lines, strict=True, skipinitialspace=True)
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            # The reader resumes on the next line, so later rows still get checked.
            previous_end = reader.line_num
            yield start, RowError(start, f"malformed CSV: {exc}")
            continue
        if row is None:
            return
        previous_end = reader.line_num
        if any(cell.strip() for cell in row):
            yield start, row


def iter_rows(
    text_lines: Iterable[str], *, detect_duplicates: bool = True
) -> Iterator[tuple[int, Rate | RowError]]:
    """Yield ``(line_no, Rate | RowError)`` for each non-blank data row, in file order.

    ``line_no`` is the 1-based physical line the row starts on (header is line 1
    when the file does not begin with blank lines). Streams: memory does not grow
    with the file, except for the ``(prefix, effective_from)`` keys kept to report
    duplicates (disable with ``detect_duplicates=False`` for decks known to be
    unique). A later duplicate is a ``RowError`` naming the earlier line. A missing
    or invalid header yields one ``RowError`` and nothing else.
    """
    rows = _rows(text_lines)
    first = next(rows, None)
    if first is None:
        yield 1, RowError(1, "missing header row")
        return
    header_line, header = first
    if isinstance(header, RowError):
        yield header_line, header
        return
    names = [cell.strip().lower() for cell in header]
    # Spreadsheet exports often start the file with a byte-order mark.
    names[0] = names[0].removeprefix(_BOM).strip()
    header_problem = _check_header(names)
    if header_problem is not None:
        yield header_line, RowError(header_line, header_problem)
        return

    first_seen: dict[tuple[str, datetime | None], int] = {}
    for line_no, row in rows:
        if isinstance(row, RowError):
            yield line_no, row
            continue
        if len(row) != len(names):
            yield line_no, RowError(line_no, f"expected {len(names)} fields, got {len(row)}")
            continue
        try:
            rate = _parse_row({name: cell.strip() for name, cell in zip(names, row, strict=True)})
        except (ValueError, TypeError) as exc:
            yield line_no, RowError(line_no, str(exc))
            continue
        if detect_duplicates:
            key = (rate.prefix, rate.effective_from)
            earlier = first_seen.setdefault(key, line_no)
            if earlier != line_no:
                when = "open" if key[1] is None else key[1].isoformat()
                message = (
                    f"duplicate rate for prefix {rate.prefix} with effective_from {when} "
                    f"(first defined on line {earlier})"
                )
                yield line_no, RowError(line_no, message)
                continue
        yield line_no, rate


def read_rates(text_lines: Iterable[str]) -> tuple[list[Rate], list[RowError]]:
    """Validate every row of a rate file and return ``(rates, errors)``.

    Never stops at the first problem: all bad rows are reported, in line order,
    including duplicate ``(prefix, effective_from)`` pairs. Callers should refuse
    the whole deck when ``errors`` is non-empty; ``rates`` holds the good rows.
    """
    rates: list[Rate] = []
    errors: list[RowError] = []
    for _, item in iter_rows(text_lines):
        if isinstance(item, RowError):
            errors.append(item)
        else:
            rates.append(item)
    return rates, errors


def _format_date(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def write_rates(rates: Iterable[Rate], out: TextIO) -> None:
    """Write ``rates`` as CSV with a header and every column filled in.

    The output reads back with ``read_rates`` into equal ``Rate`` objects.
    Destinations with leading/trailing whitespace do not round-trip: the reader
    strips fields.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for rate in rates:
        writer.writerow(
            (
                rate.prefix,
                rate.destination,
                format_money(rate.price_per_min_micros),
                format_money(rate.connect_fee_micros),
                rate.first_increment_s,
                rate.next_increment_s,
                rate.min_duration_s,
                rate.grace_s,
                _format_date(rate.effective_from),
                _format_date(rate.effective_to),
                "" if rate.periods is None else rate.periods.text(),
                "" if rate.next_increment_ms is None else rate.next_increment_ms,
            )
        )
