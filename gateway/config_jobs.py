"""The background jobs' sections of the configuration: [dormancy], [smtp], [fraud],
[alerts]; ``gateway.config`` assembles them with the rest."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.configkit import at_least, each_of, key, non_empty, port

# -- sections --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DormancyConfig:
    """[dormancy]: agents whose whole subtree stopped calling are disabled, then removed."""

    enabled: bool = key(True, "Run the dormancy job (one gateway acts at a time, by Redis lock).")
    disable_after_days: int = key(
        120, "Disable an agent with no call anywhere in its subtree for this long.", at_least(1)
    )
    remove_after_days: int = key(
        30, "Remove (soft) a disabled dormant agent still silent this long after.", at_least(1)
    )
    check_interval_s: float = key(3600.0, "How often the job looks.", at_least(1))
    reactivate_on: tuple[str, ...] = key(
        ("call", "refill"),
        "What re-activates an agent disabled for dormancy: call, refill (either, both, none).",
        each_of("call", "refill"),
    )


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """[smtp]: outgoing mail (dormancy notices); queued in an outbox and retried."""

    host: str = key("", "SMTP server. Empty: mail stays in the outbox, unsent.")
    port: int = key(25, "SMTP port.", port())
    sender: str = key("gateway@localhost", "From address.", non_empty)
    username: str = key("", "SMTP login; empty for none.")
    password: str = key("", "SMTP password.")
    starttls: bool = key(False, "Upgrade the connection with STARTTLS.")
    timeout_s: float = key(10.0, "Timeout of one SMTP conversation.", at_least(0.1))
    retry_delay_s: float = key(
        300.0, "First retry delay of a failed mail; doubles each attempt.", at_least(1)
    )
    max_attempts: int = key(10, "Give up on a mail after this many failures.", at_least(1))
    send_interval_s: float = key(10.0, "How often the outbox is drained.", at_least(0.1))


@dataclass(frozen=True, slots=True)
class FraudConfig:
    """[fraud]: velocity checks per customer that disable it (disabled_reason fraud); 0: off."""

    new_countries_per_hour: int = key(
        0,
        "More countries than this first dialled within an hour (E.164 codes) disable the "
        "customer; e.g. 5.",
        at_least(0),
    )
    unrated_attempts_per_hour: int = key(
        0,
        "More attempts than this to numbers no rate prices, in one clock hour; e.g. 20.",
        at_least(0),
    )
    short_call_ratio: float = key(
        0.0,
        "More than this share of answered calls under short_call_s in one clock hour "
        "(after short_call_min_calls); e.g. 0.8.",
        at_least(0),
    )
    short_call_s: int = key(10, "What counts as a short call (s).", at_least(1))
    short_call_min_calls: int = key(
        20, "Answered calls in the hour before the short-call ratio is judged.", at_least(1)
    )


def http_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r}: an http:// or https:// URL with a host"
    return None


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """[alerts]: where fraud blocks and low-balance crossings go besides contact e-mails."""

    operator_email: str = key("", "The operator's address for fraud notices; empty: none.")
    webhook_url: str = key(
        "",
        "HTTP(S) URL that gets a JSON POST per fraud block and low-balance crossing; empty: none.",
        http_url,
    )
    timeout_s: float = key(10.0, "Timeout of one webhook POST.", at_least(0.1))
    retry_delay_s: float = key(
        30.0, "First retry delay of a failed POST; doubles each attempt.", at_least(1)
    )
    max_attempts: int = key(10, "Give up on a POST after this many failures.", at_least(1))
    send_interval_s: float = key(5.0, "How often due webhooks are sent.", at_least(0.1))


@dataclass(frozen=True, slots=True)
class RecurringConfig:
    """[recurring]: the job that charges monthly fees, DID rentals and setup fees."""

    enabled: bool = key(
        True, "Run the charge job (every gateway may: each period is charged once)."
    )
    check_interval_s: float = key(60.0, "How often the job looks for due charges.", at_least(1))
    retry_interval_s: float = key(
        3600.0, "How long an unpaid charge waits before it is tried again.", at_least(1)
    )
    batch: int = key(200, "Charges taken per round.", at_least(1))
