"""The [invoices] section: the monthly invoicing job and the operator's number prefix;
``gateway.config`` assembles it with the rest."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.configkit import at_least, key


def prefix(value: str) -> str | None:
    import re

    if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}", value):
        return f"{value!r}: 1 to 10 capital letters and digits, a letter first"
    return None


@dataclass(frozen=True, slots=True)
class InvoicesConfig:
    """[invoices]: each account's statement of the previous month, issued once."""

    enabled: bool = key(
        True,
        "Run the monthly invoicing job (every gateway may: an account's period is issued once).",
    )
    check_interval_s: float = key(
        3600.0,
        "How often the job looks for accounts whose last month is not invoiced.",
        at_least(1),
    )
    issue_delay_s: float = key(
        600.0,
        "Wait this long after a month ends before invoicing it, so money moves in flight "
        "at midnight have committed.",
        at_least(0),
    )
    operator_prefix: str = key(
        "OP", "Number prefix of the operator's invoices (agents': A{account id}).", prefix
    )
