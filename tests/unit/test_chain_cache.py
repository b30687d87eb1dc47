"""build_chain shares one result between calls priced alike, and only between them."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.reasons import Refusal
from gateway.rating.chain import ChainAccount, build_chain
from gateway.rating.prefix_index import RateTable, RatingIndex
from gateway.rating.rates import Rate

AT = datetime(2026, 11, 28, tzinfo=UTC)
CHAIN = (
    ChainAccount(3, 1, "customer", None, 10),
    ChainAccount(2, 1, "agent", "transfer", None),
    ChainAccount(1, 1, "agent", "wholesale", 20),
)


def _index(retail: int, wholesale: int) -> RatingIndex:
    return RatingIndex(
        {
            10: RateTable([Rate("4930", "Berlin", retail), Rate("44", "UK", retail * 2)]),
            20: RateTable([Rate("49", "Germany", wholesale), Rate("44", "UK", wholesale)]),
        }
    )


def test_calls_priced_alike_share_the_chain() -> None:
    index = _index(15_000, 9_000)
    first = build_chain(CHAIN, index, "4930123", AT)
    again = build_chain(CHAIN, index, "4930999", AT)  # same rates, another number
    assert not isinstance(first, Refusal) and first is again
    chain, prefixes, groups = first.chain, first.prefixes, first.rate_groups
    assert [lv.account_id for lv in chain.levels] == [3, 2, 1]
    assert [lv.charged for lv in chain.levels] == [True, False, True]
    assert prefixes == ("4930", "", "49") and groups == (10, 0, 20)
    assert chain.script_levels.startswith("[[1,15000,")


def test_other_rates_or_accounts_get_their_own() -> None:
    index = _index(15_000, 9_000)
    base = build_chain(CHAIN, index, "4930123", AT)
    uk = build_chain(CHAIN, index, "44123", AT)
    repriced = build_chain(CHAIN, _index(16_000, 9_000), "4930123", AT)
    other_accounts = build_chain(tuple(list(CHAIN)), index, "4930123", AT)  # equal, not same
    assert not isinstance(base, Refusal) and not isinstance(uk, Refusal)
    assert not isinstance(repriced, Refusal) and not isinstance(other_accounts, Refusal)
    assert uk.prefixes == ("44", "", "44") and uk is not base
    assert repriced.chain.levels[0].rate is not None
    assert repriced.chain.levels[0].rate.price_per_min_micros == 16_000
    assert other_accounts == base and other_accounts is not base  # built again, alike


def test_an_unrated_level_is_refused() -> None:
    refused = build_chain(CHAIN, _index(15_000, 9_000), "3312345", AT)
    assert isinstance(refused, Refusal) and refused.account_id == 3
