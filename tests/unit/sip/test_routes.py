"""Routes: gateway parsing, longest-prefix lookup per rate group, per-call ordering."""

from __future__ import annotations

from collections import Counter

import pytest

from gateway.rating.carriers import Gateway, RouteIndex, RouteTable, ordered


def test_gateway_parse() -> None:
    assert Gateway.parse("gw.example:5080") == Gateway("gw.example", 5080)
    assert Gateway.parse("gw.example") == Gateway("gw.example", 5060)
    assert Gateway.parse("[2001:db8::1]:5070;transport=TCP", priority=2) == Gateway(
        "2001:db8::1", 5070, "tcp", 2
    )
    assert Gateway.parse("2001:db8::1") == Gateway("2001:db8::1", 5060)
    for bad in ("gw.example:0", "gw..example", "gw:x", "[::1]5060", "gw;lr", "[zz::1]:5"):
        with pytest.raises(ValueError):
            Gateway.parse(bad)


def test_longest_prefix_per_group_and_blocked_prefixes() -> None:
    a, b, c = Gateway("a"), Gateway("b"), Gateway("c")
    index = RouteIndex(
        {
            1: RouteTable({"49": [a], "4930": [b, c], "4915": [], "": [c]}),
            2: RouteTable({"44": [b]}),
        }
    )
    assert index.lookup(1, "4930123") == (b, c)
    assert index.lookup(1, "4989") == (a,)
    assert index.lookup(1, "4915123") == ()  # blocked
    assert index.lookup(1, "33") == (c,)  # the group's catch-all
    assert index.lookup(2, "4930123") is None
    assert index.lookup(3, "44") is None


def test_table_sorts_by_priority() -> None:
    table = RouteTable({"1": [Gateway("late", priority=5), Gateway("early", priority=1)]})
    assert [g.host for g in table.lookup("1") or ()] == ["early", "late"]


def test_order_is_stable_per_call_and_weighted_across_calls() -> None:
    heavy, light = Gateway("heavy", weight=3), Gateway("light", weight=1)
    backup = Gateway("backup", priority=1)
    spare = Gateway("spare", weight=0)
    assert ordered([backup, light, heavy], "call-1") == ordered([heavy, light, backup], "call-1")
    firsts = Counter(ordered([heavy, light, spare, backup], f"c{i}")[0].host for i in range(4000))
    assert set(firsts) == {"heavy", "light"}
    assert 0.70 < firsts["heavy"] / 4000 < 0.80  # 3:1
    for i in range(50):
        order = ordered([backup, spare, heavy, light], f"c{i}")
        assert order[2:] == (spare, backup)  # weight 0 last in its priority
