"""Call rules an account sets for itself and everything below it, checked when a call
is priced: which destinations may be dialled, the dearest price per minute a customer
may pay, and whether a reseller may sell below its own cost.

Every level of a call's chain applies its own rules, and the strictest wins: a block
anywhere blocks, each allow-list must allow, the lowest price limit binds. So rules
are inherited downward, and a customer (or a sub-agent) can narrow its agent's rules
but never widen them. Pure, no I/O: the directory loads the rules with the accounts.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.reasons import Reason, Refusal
from gateway.rating.chain import ChainAccount, Level, Priced


def check(accounts: Sequence[ChainAccount], priced: Priced, number: str) -> Refusal | None:
    """The first rule of the chain the call breaks, from the customer up; None: none.

    The price limit is on what the customer pays per minute (the dearest of its
    rate's periods). Margin (on the rates' own, off-peak, prices): for each charged
    agent with ``negative_margin = "refuse"``, the nearest charged level below it is
    what it sells to; that level's per-minute price must be at least the agent's own
    plus its minimum margin (connect fees aside: a per-minute loss is what repeats).
    Prices in two currencies are not compared (rating does no I/O, so no exchange
    rate): the margin rule binds only a level selling in its own currency.
    """
    levels = priced.chain.levels
    customer_rate = levels[0].rate
    for depth, account in enumerate(accounts):
        rules = account.rules
        if rules is None:
            continue
        if rules.block and rules.block.matches(number):
            return Refusal(Reason.DESTINATION_BLOCKED, account.id, depth, "blocked prefix")
        if rules.allow and not rules.allow.matches(number):
            return Refusal(Reason.DESTINATION_BLOCKED, account.id, depth, "not in allow-list")
        limit = rules.max_price_per_min_micros
        # A rate with periods is held to its dearest period: a call may run into it.
        price = customer_rate.dearest_price_micros if customer_rate is not None else 0
        if limit is not None and price > limit:
            return Refusal(Reason.PRICE_LIMIT, account.id, depth, f"{price}/min over {limit}/min")
        if rules.negative_margin == "refuse" and depth > 0 and levels[depth].charged:
            refusal = _margin(accounts, levels, depth, rules.min_margin_micros)
            if refusal is not None:
                return refusal
    return None


def _margin(
    accounts: Sequence[ChainAccount], levels: Sequence[Level], depth: int, minimum: int
) -> Refusal | None:
    cost_rate = levels[depth].rate
    under = next((d for d in range(depth - 1, -1, -1) if levels[d].charged), None)
    if cost_rate is None or under is None:
        return None
    below = levels[under]
    seller, buyer = accounts[depth].currency, accounts[under].currency
    if below.rate is None or (seller and buyer and seller != buyer):
        return None
    account_id = accounts[depth].id
    sold, cost = below.rate.price_per_min_micros, cost_rate.price_per_min_micros
    if sold < cost + minimum:
        return Refusal(
            Reason.NEGATIVE_MARGIN, account_id, depth, f"sold {sold}/min, costs {cost}/min"
        )
    return None
