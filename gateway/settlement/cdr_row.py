"""From a settlement stream entry to a checked CDR row, or to the dead letters.

Everything a malformed entry could make PostgreSQL or asyncpg refuse is caught
here, with a reason naming the field: a wrong type, a NUL character, text that is
not UTF-8, a number out of range, lists of the wrong length.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from gateway.db import BIGINT_MAX, BIGINT_MIN, INTEGER_MAX
from gateway.settlement.entry import SettlementEntry

EntryRef = tuple[str, str]  # (stream, entry id)


class MalformedSettlement(ValueError):
    """A stream entry that can never become a CDR (bad JSON, missing or wrong fields)."""


CdrKey = tuple[str, str, str, datetime]


@dataclass(slots=True)  # not frozen: its __init__ is on the hot path; treat as read-only
class CdrRow:
    """One call's CDR, checked and typed, ready for PostgreSQL."""

    nas: str
    session_id: str
    leg: str
    setup_at: datetime
    connect_at: datetime | None
    disconnect_at: datetime
    chain: tuple[int, ...]  # customer first; chain[0] is the CDR's account
    caller: str
    called_dialled: str
    called: str
    rate_groups: tuple[int, ...]
    prefixes: tuple[str, ...]
    prices_micros: tuple[int, ...]
    duration_s: int
    billed_s: tuple[int, ...]
    costs_micros: tuple[int, ...]
    cause: str  # as the switch wrote it: disconnect_cause_raw
    remote_addr: str
    overrun_s: int = 0
    cause_q850: int | None = None  # disconnect_cause, when the cause reads as Q.850

    @property
    def key(self) -> CdrKey:
        return (self.nas, self.session_id, self.leg, self.setup_at)

    def record(self) -> tuple[Any, ...]:
        """The values in ``INPUT_COLUMNS`` order."""
        return (
            self.nas,
            self.session_id,
            self.leg,
            self.setup_at,
            self.connect_at,
            self.disconnect_at,
            list(self.chain),
            self.caller,
            self.called_dialled,
            self.called,
            list(self.rate_groups),
            list(self.prefixes),
            list(self.prices_micros),
            self.duration_s,
            list(self.billed_s),
            list(self.costs_micros),
            self.cause,
            self.remote_addr,
            self.overrun_s,
            self.cause_q850,
        )

    def as_json(self) -> dict[str, Any]:
        connect_at = self.connect_at
        return {
            "nas": self.nas,
            "session_id": self.session_id,
            "leg": self.leg,
            "setup_at": self.setup_at.isoformat(),
            "connect_at": None if connect_at is None else connect_at.isoformat(),
            "disconnect_at": self.disconnect_at.isoformat(),
            "chain": self.chain,
            "caller": self.caller,
            "called_dialled": self.called_dialled,
            "called": self.called,
            "rate_groups": self.rate_groups,
            "prefixes": self.prefixes,
            "prices": self.prices_micros,
            "duration_s": self.duration_s,
            "billed": self.billed_s,
            "costs": self.costs_micros,
            "cause": self.cause,
            "remote_addr": self.remote_addr,
            "overrun_s": self.overrun_s,
            "cause_q850": self.cause_q850,
        }


# -- checking a settlement ---------------------------------------------------------------


def _text(name: str, value: object) -> str:
    if type(value) is str and value.isascii() and "\x00" not in value:
        return value  # the common case, checked cheaply
    if type(value) is not str:
        raise MalformedSettlement(f"{name} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise MalformedSettlement(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedSettlement(f"{name} is not valid UTF-8 text: {exc}") from exc
    return value


def _int(name: str, value: object, low: int = BIGINT_MIN, high: int = BIGINT_MAX) -> int:
    if type(value) is not int:
        raise MalformedSettlement(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise MalformedSettlement(f"{name} out of range: {value}")
    return value


def _time(name: str, value: object) -> datetime:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise MalformedSettlement(f"{name} must be a finite number of seconds, got {value!r}")
    try:
        return datetime.fromtimestamp(value, UTC)  # type: ignore[arg-type]
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedSettlement(f"{name} out of range: {value!r}") from exc


def _ints(name: str, values: Iterable[object], low: int = BIGINT_MIN) -> tuple[int, ...]:
    items = tuple(values)
    if all(type(v) is int for v in items):
        ints = cast(tuple[int, ...], items)
        if not ints or (low <= min(ints) and max(ints) <= BIGINT_MAX):
            return ints  # the common case, checked cheaply
    return tuple(_int(f"{name}[{i}]", v, low) for i, v in enumerate(items))


def to_cdr_row(entry: SettlementEntry) -> CdrRow:
    """Check a parsed settlement and map it onto a CDR; raise ``MalformedSettlement``."""
    meta, end = entry.meta, entry.end
    chain = _ints("accounts", entry.account_ids, 1)
    levels = len(chain)
    if levels == 0:
        raise MalformedSettlement("no accounts")
    for name, values in (
        ("levels", entry.rates),
        ("billed", entry.billed_s),
        ("costs", entry.costs_micros),
    ):
        if len(values) != levels:
            raise MalformedSettlement(f"{name} has {len(values)} items for {levels} accounts")
    if any(len(rate) < 2 for rate in entry.rates):
        raise MalformedSettlement("a level's rate has no price")
    duration = _int("duration", entry.duration_s, 0, INTEGER_MAX)
    connect_at: datetime | None = None
    if duration > 0:
        connected = end.connect_at if end.connect_at is not None else entry.answered_at
        if connected is not None:
            connect_at = _time("connect_at", connected)
    if not isinstance(meta.prefixes, tuple) or not isinstance(meta.rate_groups, tuple):
        raise MalformedSettlement("meta.prefixes and meta.rate_groups must be lists")
    return CdrRow(
        nas=_text("meta.nas", meta.nas),
        session_id=_text("meta.session_id", meta.session_id),
        leg=_text("meta.leg", meta.leg),
        setup_at=_time("meta.setup_at", meta.setup_at),
        connect_at=connect_at,
        disconnect_at=_time("end.disconnect_at", end.disconnect_at),
        chain=chain,
        caller=_text("meta.caller", meta.caller),
        called_dialled=_text("meta.called_dialled", meta.called_dialled),
        called=_text("meta.called", meta.called),
        rate_groups=_ints("meta.rate_groups", meta.rate_groups),
        prefixes=tuple([_text("meta.prefixes[]", p) for p in meta.prefixes]),
        prices_micros=_ints("price", [rate[1] for rate in entry.rates]),
        duration_s=duration,
        billed_s=_ints("billed", entry.billed_s, 0),
        costs_micros=_ints("costs", entry.costs_micros, 0),
        cause=_text("end.cause", end.cause),
        remote_addr=_text("meta.remote_addr", meta.remote_addr),
        overrun_s=_int("overrun", entry.overrun_s, 0, INTEGER_MAX),
        # Entries spooled before Q.850 causes were read carry none.
        cause_q850=None
        if end.cause_q850 is None
        else _int("end.cause_q850", end.cause_q850, 1, 127),
    )


def unique_rows(rows: Iterable[CdrRow]) -> list[CdrRow]:
    """One row per CDR key (the first seen), sorted by key so concurrent batches
    touch the unique index in the same order."""
    seen: dict[CdrKey, CdrRow] = {}
    for row in rows:
        seen.setdefault(row.key, row)
    return [seen[k] for k in sorted(seen)]


def months_of(rows: Iterable[CdrRow]) -> set[date]:
    """The first day of each month the rows' setup_at falls in (partition key)."""
    return {date(r.setup_at.year, r.setup_at.month, 1) for r in rows}


# -- stream entries --------------------------------------------------------------------

# What a malformed entry makes the parser raise.
_MALFORMED: tuple[type[BaseException], ...] = (
    MalformedSettlement,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    RecursionError,
)


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(slots=True)
class StreamEntry:
    """One settlement stream entry in the committer's hands."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    row: CdrRow | None = None
    error: str = ""  # why it goes to the dead-letter stream

    @property
    def ref(self) -> EntryRef:
        return (self.stream, self.entry_id)

    @property
    def gone(self) -> bool:
        """Read from the pending list after it left the stream: nothing to write."""
        return not self.fields


def parse_entry(stream: str, entry_id: str, fields: Mapping[Any, Any] | None) -> StreamEntry:
    """A stream entry checked and mapped onto a CDR, or marked for the dead letters."""
    item = StreamEntry(
        stream, entry_id, {_as_bytes(k): _as_bytes(v) for k, v in (fields or {}).items()}
    )
    if item.gone:
        return item
    raw = item.fields.get(b"s")
    if raw is None:
        item.error = "no field 's'"
        return item
    try:
        item.row = to_cdr_row(SettlementEntry.from_json(raw))
    except _MALFORMED as exc:
        item.error = f"{type(exc).__name__}: {exc}"
    return item


def dead_letter_fields(item: StreamEntry) -> dict[Any, Any]:
    """What goes to the dead-letter stream: the entry as it was, its id, the reason."""
    fields: dict[Any, Any] = {b"id": item.entry_id.encode(), b"stream": item.stream.encode()}
    fields[b"error"] = item.error.encode("utf-8", "replace")
    raw = item.fields.get(b"s")
    if raw is not None:
        fields[b"s"] = raw
    else:
        original = {
            k.decode(errors="replace"): v.decode(errors="replace") for k, v in item.fields.items()
        }
        fields[b"fields"] = json.dumps(original).encode()
    return fields
