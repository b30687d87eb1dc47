"""Call rules over a chain (rating/limits.py): every level applies its own, the
strictest wins, and margins are taken against the nearest charged level below."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.core.reasons import Reason
from gateway.rating import limits
from gateway.rating.chain import Chain, ChainAccount, Level, Priced
from gateway.rating.periods import Periods, parse_periods
from gateway.rating.rules import CallRules, PrefixSet
from tests.factories import rate

NUMBER = "4930123456"


def chain(
    *prices: int | None, rules: dict[int, CallRules] | None = None
) -> tuple[list[ChainAccount], Priced]:
    """Customer first; a None price is a transfer agent (not charged)."""
    rules = rules or {}
    accounts, levels = [], []
    for depth, price in enumerate(prices):
        kind = "customer" if depth == 0 else "agent"
        mode = None if depth == 0 else ("transfer" if price is None else "wholesale")
        accounts.append(ChainAccount(depth + 1, len(prices), kind, mode, 1, rules.get(depth)))
        if price is None:
            levels.append(Level(depth + 1, charged=False))
        else:
            levels.append(Level(depth + 1, True, rate(price, prefix="49"), 1))
    priced = Priced(Chain(len(prices), tuple(levels)), ("49",) * len(prices), (1,) * len(prices))
    return accounts, priced


def reason(accounts: list[ChainAccount], priced: Priced, number: str = NUMBER) -> object:
    refusal = limits.check(accounts, priced, number)
    return None if refusal is None else (refusal.reason, refusal.level)


def test_no_rules_no_refusal() -> None:
    assert reason(*chain(60_000, 30_000)) is None


def test_a_block_anywhere_in_the_chain_blocks() -> None:
    top = CallRules(block=PrefixSet.of(["4930"]))
    assert reason(*chain(60_000, None, 20_000, rules={2: top})) == (
        Reason.DESTINATION_BLOCKED,
        2,
    )
    assert reason(*chain(60_000, None, 20_000, rules={2: top}), number="4989123") is None


def test_each_allow_list_must_allow() -> None:
    agent = CallRules(allow=PrefixSet.of(["49"]))
    customer = CallRules(allow=PrefixSet.of(["4989"]))  # narrower: it binds the customer
    assert reason(*chain(60_000, 30_000, rules={0: customer, 1: agent})) == (
        Reason.DESTINATION_BLOCKED,
        0,
    )
    wider = CallRules(allow=PrefixSet.of(["4", "1"]))  # wider than the agent's: no help
    assert reason(*chain(60_000, 30_000, rules={0: wider, 1: agent}), number="1212") == (
        Reason.DESTINATION_BLOCKED,
        1,
    )


@pytest.mark.parametrize(
    ("customer_limit", "agent_limit", "expected"),
    [
        (None, 60_000, None),  # at the limit is allowed
        (100_000, 59_999, (Reason.PRICE_LIMIT, 1)),  # the agent's lower limit binds
        (59_999, 100_000, (Reason.PRICE_LIMIT, 0)),
    ],
)
def test_the_lowest_price_limit_binds(
    customer_limit: int | None, agent_limit: int | None, expected: object
) -> None:
    rules = {
        0: CallRules(max_price_per_min_micros=customer_limit),
        1: CallRules(max_price_per_min_micros=agent_limit),
    }
    assert reason(*chain(60_000, 30_000, rules=rules)) == expected


def test_negative_margin_is_refused_only_where_the_agent_says_so() -> None:
    refuse = CallRules(negative_margin="refuse")
    assert reason(*chain(60_000, 70_000)) is None  # allowed by default
    assert reason(*chain(60_000, 70_000, rules={1: refuse})) == (Reason.NEGATIVE_MARGIN, 1)
    assert reason(*chain(60_000, 60_000, rules={1: refuse})) is None  # zero margin is not below


def test_the_margin_is_against_the_nearest_charged_level_below() -> None:
    refuse = CallRules(negative_margin="refuse")
    # customer 0.06 -> transfer agent -> wholesale top at 0.07: the top sells below cost
    assert reason(*chain(60_000, None, 70_000, rules={2: refuse})) == (
        Reason.NEGATIVE_MARGIN,
        2,
    )
    # customer 0.06 -> sub-agent 0.05 -> top 0.055: the top sells to the sub-agent at 0.05
    assert reason(*chain(60_000, 50_000, 55_000, rules={2: refuse})) == (
        Reason.NEGATIVE_MARGIN,
        2,
    )
    assert reason(*chain(60_000, 56_000, 55_000, rules={2: refuse})) is None


def test_prices_in_two_currencies_are_not_compared_for_the_margin() -> None:
    refuse = CallRules(negative_margin="refuse")
    accounts, priced = chain(60_000, 70_000, rules={1: refuse})
    in_eur = [dataclasses.replace(accounts[0], currency="EUR"), accounts[1]]
    in_usd = [in_eur[0], dataclasses.replace(accounts[1], currency="USD")]
    assert reason(in_eur, priced) == (Reason.NEGATIVE_MARGIN, 1)  # the agent's unknown
    assert reason(in_usd, priced) is None  # 0.06 EUR against 0.07 USD: no rate to say
    same = [in_eur[0], dataclasses.replace(accounts[1], currency="EUR")]
    assert reason(same, priced) == (Reason.NEGATIVE_MARGIN, 1)


def test_a_minimum_margin_per_minute() -> None:
    wants = CallRules(negative_margin="refuse", min_margin_micros=30_000)
    assert reason(*chain(60_000, 30_000, rules={1: wants})) is None
    assert reason(*chain(60_000, 30_001, rules={1: wants})) == (Reason.NEGATIVE_MARGIN, 1)


def test_prefix_sets_match_leading_digits_only() -> None:
    prefixes = PrefixSet.of(["881", "4470", ""])
    assert prefixes.matches("88161234") and prefixes.matches("447012")
    assert not prefixes.matches("4471") and not prefixes.matches("188")
    assert not PrefixSet.of([])
    with pytest.raises(ValueError, match="negative_margin"):
        CallRules(negative_margin="sometimes")


def test_a_rate_with_periods_is_held_to_its_dearest_period() -> None:
    accounts, priced = chain(60_000, 30_000, rules={1: CallRules(max_price_per_min_micros=80_000)})
    assert reason(accounts, priced) is None
    peak = Periods(parse_periods("mon-fri 08:00-18:00 0.09"))
    customer = priced.chain.levels[0]
    assert customer.rate is not None
    timed = Level(1, True, dataclasses.replace(customer.rate, periods=peak), 1)
    levels = (timed, *priced.chain.levels[1:])
    dearer = Priced(Chain(priced.chain.root_id, levels), priced.prefixes, priced.rate_groups)
    assert reason(accounts, dearer) == (Reason.PRICE_LIMIT, 1)
