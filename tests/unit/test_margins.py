"""The margin comparison: every prefix either table holds, each side priced by its
longest matching prefix, as calls are."""

from __future__ import annotations

from gateway.rating.margins import compare


def test_prefixes_of_both_sides_are_compared_by_longest_match() -> None:
    sell = {"44": (12_000, "UK"), "447": (45_000, "UK mobile"), "49": (15_000, "Germany")}
    cost = {"44": (10_000, "UK"), "4478": (50_000, "UK mobile premium"), "33": (9_000, "FR")}
    rows = {m.prefix: m for m in compare(sell, cost)}
    assert set(rows) == {"44", "447", "4478"}  # 49 and 33 are priced on one side only
    assert rows["44"].margin_micros == 2_000
    assert (rows["447"].sell_prefix, rows["447"].cost_prefix) == ("447", "44")
    assert rows["447"].margin_micros == 35_000
    # Calls to 4478 sell at the 447 price and cost the 4478 one: a loss.
    loss = rows["4478"]
    assert (loss.sell_micros, loss.cost_micros, loss.margin_micros) == (45_000, 50_000, -5_000)
    assert loss.destination == "UK mobile premium"


def test_empty_tables() -> None:
    assert compare({}, {"1": (1, "x")}) == []
