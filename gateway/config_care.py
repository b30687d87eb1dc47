"""The [low_balance] section of the configuration (low-balance care of accounts);
``gateway.config`` assembles it with the rest."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.configkit import at_least, key


@dataclass(frozen=True, slots=True)
class LowBalanceConfig:
    """[low_balance]: notices and auto-refills when an account falls below its threshold."""

    enabled: bool = key(
        True,
        "Run the low-balance watch (every gateway may; each crossing is acted on once).",
    )
    check_interval_s: float = key(
        10.0,
        "How often the watch compares the accounts that have a threshold with it.",
        at_least(0.5),
    )
