"""Mapping a settlement onto a CDR, and refusing what can never be one."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.settlement.cdr_row import MalformedSettlement, parse_entry, to_cdr_row, unique_rows
from gateway.settlement.entry import SettlementEntry

ENTRY: dict[str, Any] = {
    "session": "gw:{s0}:sess:n:1",
    "accounts": ["gw:{s0}:acct:3", "gw:{s0}:acct:1"],
    "levels": [[1, 60000, 1000, 30, 6, 0, 0], [0, 0, 0, 1, 1, 0, 0]],
    "billed": [66, 0],
    "costs": [67000, 0],
    "duration": 65,
    "granted": 7200,
    "answered_at": 1767225602,
    "reserved_at": 1767225600,
    "meta": {
        "nas": "10.0.0.1",
        "session_id": "abc",
        "setup_at": 1767225600.25,
        "leg": "",
        "caller": "4930123",
        "called": "447700900123",
        "called_dialled": "00447700900123",
        "remote_addr": "192.0.2.7",
        "prefixes": ["44", ""],
        "rate_groups": [1, 0],
    },
    "end": {"disconnect_at": 1767225667.25, "cause": "16", "connect_at": None},
}


def entry(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ENTRY)
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for name in parents:
            target = target[name]
        target[leaf] = value
    return data


def row_of(data: dict[str, Any]) -> Any:
    return to_cdr_row(SettlementEntry.from_json(json.dumps(data)))


def test_mapping() -> None:
    row = row_of(ENTRY)
    assert row.key == ("10.0.0.1", "abc", "", datetime(2026, 1, 1, 0, 0, 0, 250000, tzinfo=UTC))
    assert row.connect_at == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert row.disconnect_at == datetime(2026, 1, 1, 0, 1, 7, 250000, tzinfo=UTC)
    assert row.chain == (3, 1)
    assert row.prices_micros == (60000, 0)
    assert (row.billed_s, row.costs_micros) == ((66, 0), (67000, 0))
    assert (row.rate_groups, row.prefixes) == ((1, 0), ("44", ""))
    assert row.cause == "16"


def test_connect_time_from_the_switch_wins_and_failed_calls_have_none() -> None:
    assert row_of(entry(end__connect_at=1767225601)).connect_at == datetime(
        2026, 1, 1, 0, 0, 1, tzinfo=UTC
    )
    assert row_of(entry(duration=0, answered_at=None)).connect_at is None
    assert row_of(entry(duration=0)).connect_at is None  # answered, but 0 s: no connect
    assert row_of(entry(answered_at=None)).connect_at is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"costs": [1]}, "costs has 1 items"),
        ({"billed": [1, 2, 3]}, "billed has 3 items"),
        ({"duration": -1}, "duration out of range"),
        ({"costs": [-5, 0]}, r"costs\[0\] out of range"),
        ({"meta__nas": 7}, "meta.nas must be a string"),
        ({"meta__caller": "a\x00b"}, "NUL"),
        ({"meta__called": "\ud800"}, "not valid UTF-8"),
        ({"meta__setup_at": 1e300}, "out of range"),
        ({"meta__setup_at": True}, "finite number"),
        ({"meta__rate_groups": ["x", 1]}, r"rate_groups\[0\] must be an integer"),
        ({"end__cause": None}, "end.cause must be a string"),
    ],
)
def test_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(MalformedSettlement, match=reason):
        row_of(entry(**changes))


def test_parse_entry_marks_what_cannot_be_read() -> None:
    assert parse_entry("s", "1-0", {b"s": b"{"}).error.startswith("JSONDecodeError")
    assert parse_entry("s", "1-0", {b"x": b"1"}).error == "no field 's'"
    missing = {k: v for k, v in ENTRY.items() if k != "end"}
    assert "end" in parse_entry("s", "1-0", {b"s": json.dumps(missing).encode()}).error
    bad_key = entry(accounts=["gw:{s0}:acct:x", "gw:{s0}:acct:1"])
    assert parse_entry("s", "1-0", {"s": json.dumps(bad_key)}).error.startswith("ValueError")
    gone = parse_entry("s", "1-0", {})  # a pending entry already deleted from the stream
    assert gone.gone and not gone.error
    good = parse_entry("s", "1-0", {b"s": json.dumps(ENTRY).encode()})
    assert good.row is not None and not good.error


def test_unique_rows_keeps_one_per_key_in_key_order() -> None:
    a, b = row_of(entry(meta__session_id="b")), row_of(entry(meta__session_id="a"))
    again = row_of(entry(meta__session_id="b"))
    assert [r.session_id for r in unique_rows([a, b, again])] == ["a", "b"]
