"""The low-balance care panel of the customer page: the threshold, the auto-refill
settings and what the watch did last, read from and written to ``/api/v1/accounts/
{id}/low-balance``. Amounts are typed in the account's currency units."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.api.portal.render import to_micros

# API field -> form field, so a refusal lands next to its input.
RENAME = {
    "threshold_micros": "lb_threshold",
    "auto_refill_micros": "lb_refill",
    "auto_refill_monthly_limit_micros": "lb_limit",
}
# What the last auto-refill's status means, in words.
REFILL_OUTCOMES = {
    "moved": "moved from the agent",
    "no_funds": "skipped: the agent lacks funds",
    "limit_reached": "skipped: monthly limit reached",
    "not_transfer_mode": "skipped: the agent is not in transfer mode",
    "refused": "refused",
}


def _units(micros: int | None) -> str:
    return "" if not micros else f"{Decimal(micros) / 1_000_000:f}"


def values(care: dict[str, Any] | None) -> dict[str, str]:
    """The form's values from the API's view of the account's care."""
    if care is None:
        return {}
    threshold = care["threshold_micros"]
    return {
        "lb_threshold": "" if threshold is None else f"{Decimal(threshold) / 1_000_000:f}",
        "lb_refill": _units(care["auto_refill_micros"]),
        "lb_limit": _units(care["auto_refill_monthly_limit_micros"]),
    }


def body(f: dict[str, str]) -> dict[str, Any]:
    """The API body from the posted form: a blank threshold is none, blank amounts 0."""
    threshold = f.get("lb_threshold", "").strip()
    return {
        "threshold_micros": to_micros(threshold) if threshold else None,
        "auto_refill_micros": to_micros(f.get("lb_refill", "").strip() or "0"),
        "auto_refill_monthly_limit_micros": to_micros(f.get("lb_limit", "").strip() or "0"),
    }
