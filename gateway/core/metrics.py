"""Prometheus metrics, named once here (base units, ``_total`` for counters).

Label values are bounded: client names come from configuration, reasons and types
from fixed sets, never from packet contents.
"""

from __future__ import annotations

import functools
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

_M = TypeVar("_M", Counter, Gauge, Histogram)


@functools.lru_cache(maxsize=4096)
def _child(metric: Counter | Gauge | Histogram, labels: tuple[str, ...]) -> object:
    return metric.labels(*labels)


def child(metric: _M, *labels: str) -> _M:
    """``metric.labels(*labels)``, looked up once: the call path counts every request,
    and ``labels`` costs more than the increment. Label values are bounded (see above),
    so is this cache."""
    return _child(metric, labels)  # type: ignore[return-value]


RADIUS_REQUESTS = Counter(
    "gateway_radius_requests_total",
    "RADIUS requests answered or dropped, by packet type, result and client.",
    ["type", "result", "client"],
)
RADIUS_DROPPED = Counter(
    "gateway_radius_dropped_total",
    "RADIUS datagrams dropped before processing, by reason.",
    ["reason"],
)
RADIUS_DUPLICATES = Counter(
    "gateway_radius_duplicates_total",
    "Retransmitted RADIUS requests answered from the reply cache or dropped in progress.",
    ["client", "outcome"],
)
RADIUS_LATENCY = Histogram(
    "gateway_radius_request_seconds",
    "Time from receiving a RADIUS request to sending its reply, by packet type.",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RADIUS_IN_FLIGHT = Gauge(
    "gateway_radius_in_flight",
    "RADIUS requests being processed now.",
    multiprocess_mode="livesum",
)
RADIUS_CONNECTIONS = Gauge(
    "gateway_radius_connections_open",
    "RADIUS/TCP and RADIUS/TLS connections open now, by transport.",
    ["transport"],
    multiprocess_mode="livesum",
)
RADIUS_CONNECTION_EVENTS = Counter(
    "gateway_radius_connections_total",
    "RADIUS/TCP and RADIUS/TLS connections by transport and result: accepted; refused "
    "(tls_handshake_failed, unknown_client, identity_mismatch, too_many); or closed by "
    "the gateway (bad_framing, idle_timeout).",
    ["transport", "result"],
)
AUTHZ_DECISIONS = Counter(
    "gateway_authz_decisions_total",
    "Call authorization decisions, by result (accept or the refusal reason).",
    ["result"],
)
DISCONNECTS = Counter(
    "gateway_radius_disconnects_total",
    "Disconnect-Requests sent to switches when a call's credit ran out, by answer.",
    ["client", "answer"],
)
COA_REQUESTS = Counter(
    "gateway_coa_requests_total",
    "CoA-Requests (Session-Timeout) sent to switches when a call's credit was cut, by answer.",
    ["client", "answer"],
)
CALLS_UP = Gauge(
    "gateway_calls_active",
    "Calls holding a reservation now (reserved or answered), per top-level agent.",
    ["agent"],
    multiprocess_mode="max",
)
MONEY_HELD = Gauge(
    "gateway_money_held_micros",
    "Money held for calls in progress, in micro-units, per top-level agent.",
    ["agent"],
    multiprocess_mode="max",
)
CREDIT_EXPOSURE = Gauge(
    "gateway_credit_exposure_micros",
    "Slice mode: money granted to the customers of a top-level agent's tree for calls "
    "in progress but not held (what they could overspend if no hang-up reached the "
    "switch), in the customers' micro-units.",
    ["agent"],
    multiprocess_mode="max",
)
SLICES = Counter(
    "gateway_slice_extensions_total",
    "Slice-mode hold extensions, by result (extended; cut: no more could be held, the "
    "call ends when its held time runs out).",
    ["result"],
)
OVERRUN_SECONDS = Counter(
    "gateway_overrun_seconds_total",
    "Seconds of Stops past their call's limit (its grant, or its held time once cut) "
    "plus the overrun grace, by client; billed or not per the client's overrun policy.",
    ["client"],
)
UNRESERVED_CALLS = Counter(
    "gateway_unreserved_calls_total",
    "Answered calls that found no hold and could not reserve one, by client and outcome "
    "(disconnected: the switch was told to hang up; running: it cannot be told).",
    ["client", "outcome"],
)
SETTLEMENT_BACKLOG = Gauge(
    "gateway_settlement_backlog",
    "Settlements in the Redis streams that PostgreSQL does not have yet.",
    multiprocess_mode="max",
)
COMMITTER_LAG = Gauge(
    "gateway_committer_lag_seconds",
    "Age of the oldest settlement not yet committed to PostgreSQL.",
    multiprocess_mode="max",
)
COMMITTED = Counter(
    "gateway_committer_settlements_total",
    "Settlements the committer handled, by outcome (committed, duplicate, dead_letter).",
    ["outcome"],
)
COMMIT_BATCH_SECONDS = Histogram(
    "gateway_committer_batch_seconds",
    "Time to write one batch of settlements to PostgreSQL.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BACKEND_SECONDS = Histogram(
    "gateway_backend_call_seconds",
    "Latency of Redis pipelines and PostgreSQL batches on the call path, by backend.",
    ["backend"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
BACKEND_ERRORS = Counter(
    "gateway_backend_errors_total",
    "Redis or PostgreSQL calls that failed because the backend was unavailable.",
    ["backend"],
)
REDIS_UNREPLICATED = Counter(
    "gateway_redis_unreplicated_total",
    "Balance pipelines answered before redis.replica_acks replicas held their writes "
    "(WAIT timed out: a failover now could lose them).",
)
REDIS_REROUTES = Counter(
    "gateway_redis_reroutes_total",
    "Balance script calls sent again to another Redis Cluster node, by cause: moved "
    "(slot map changed), ask (slot being migrated), failover (node unreachable, busy).",
    ["cause"],
)
REDIS_REROUTE_CAUSES = ("moved", "ask", "failover")
ORPHANS_SWEPT = Counter(
    "gateway_orphans_swept_total",
    "Holds ended by the sweeper because no Stop came, by action (settled, released).",
    ["action"],
)
SIP_REQUESTS = Counter(
    "gateway_sip_requests_total",
    "SIP requests by method and the response code sent.",
    ["method", "code"],
)
DORMANCY_ACTIONS = Counter(
    "gateway_dormancy_actions_total",
    "Agent accounts the dormancy job changed, by action (disabled, removed, reactivated).",
    ["action"],
)
DORMANCY_RUNS = Counter(
    "gateway_dormancy_runs_total",
    "Dormancy rounds, by outcome (acted, skipped: another gateway held the lock).",
    ["outcome"],
)
OUTBOX_MAILS = Counter(
    "gateway_outbox_mails_total",
    "Outbox mails, by outcome (sent, failed: will retry, gave_up: max attempts reached).",
    ["outcome"],
)

WEBHOOKS = Counter(
    "gateway_webhooks_total",
    "Webhook POSTs, by outcome (sent, failed: will retry, gave_up: max attempts reached).",
    ["outcome"],
)
SPEND = Counter(
    "gateway_spend_micros_total",
    "What customers were billed for calls, in their micro-units, per top-level agent "
    "(the first metrics.top_agents seen; the rest as 'other'): rate() is its spend rate.",
    ["agent"],
)
FRAUD_BLOCKS = Counter(
    "gateway_fraud_blocks_total",
    "Accounts disabled by a velocity check, by rule (new_countries, unrated_attempts, "
    "short_calls).",
    ["rule"],
)
LOW_BALANCE = Counter(
    "gateway_low_balance_total",
    "Low-balance care, by event (crossed: an account fell below its threshold, "
    "rearmed: back above it).",
    ["event"],
)
AUTO_REFILLS = Counter(
    "gateway_auto_refills_total",
    "Automatic refills from the parent agent, by outcome (moved, no_funds, "
    "limit_reached, not_transfer_mode, refused).",
    ["outcome"],
)


# -- Label values known before the first event --------------------------------------
# Each family's label values, so that a fresh or quiet gateway's first scrape shows
# every family at 0: rate() in alert rules and dashboard panels need a sample before
# the first event, or they show "No data" where the truth is 0. Codes that count
# with another value fail tests/unit/test_metrics_primed.py.

RADIUS_RESULTS: dict[str, tuple[str, ...]] = {
    "access": ("accept", "reject", "no_reply_backend"),
    "accounting": (
        "start",
        "interim",
        "stop",
        "failed",
        "accounting_on",
        "accounting_off",
        "other",
        "other_leg",
        "no_reply_backend",
    ),
    "status": ("alive",),
}
# Reasons a datagram is dropped; ``malformed_*`` are MalformedPacket's reasons.
RADIUS_DROP_REASONS = (
    "short",
    "unknown_client",
    "overload",
    "stopping",
    "unsupported_code",
    "bad_authenticator",
    "bad_message_authenticator",
    "missing_message_authenticator",
    "no_session_id",
    "malformed_short",
    "malformed_bad_code",
    "malformed_bad_length",
    "malformed_length_mismatch",
    "malformed_bad_attribute_length",
    "malformed_bad_user_password",
)
RADIUS_DUPLICATE_OUTCOMES = ("resent", "in_progress")
RADIUS_STREAM_TRANSPORTS = ("tcp", "tls")
RADIUS_CONNECTION_RESULTS = (
    "accepted",
    "tls_handshake_failed",
    "unknown_client",
    "identity_mismatch",
    "too_many",
    "bad_framing",
    "idle_timeout",
)
RADIUS_PORT_KINDS = ("auth", "acct")
DISCONNECT_ANSWERS = ("ack", "nak", "timeout")
UNRESERVED_OUTCOMES = ("disconnected", "running")
SLICE_RESULTS = ("extended", "cut")
COMMIT_OUTCOMES = ("committed", "duplicate", "dead_letter")
BACKENDS = ("redis", "postgresql")
SWEEP_ACTIONS = ("settled", "released")
DORMANCY_ACTION_NAMES = ("disabled", "removed", "reactivated")
DORMANCY_OUTCOMES = ("acted", "skipped")
OUTBOX_OUTCOMES = ("sent", "failed", "gave_up")
FRAUD_RULES = ("new_countries", "unrated_attempts", "short_calls")
LOW_BALANCE_EVENTS = ("crossed", "rearmed")
AUTO_REFILL_OUTCOMES = ("moved", "no_funds", "limit_reached", "not_transfer_mode", "refused")


def prime_gateway(reasons: tuple[str, ...]) -> None:
    """The families every gateway process has, whatever it serves: authorization
    decisions (accept and each refusal ``reasons``), slices, settlement, backends,
    the sweeper and the management jobs."""
    for result in ("accept", *reasons):
        child(AUTHZ_DECISIONS, result)
    for value in BACKENDS:
        child(BACKEND_SECONDS, value)
    counters: tuple[tuple[Counter, tuple[str, ...]], ...] = (
        (SLICES, SLICE_RESULTS),
        (COMMITTED, COMMIT_OUTCOMES),
        (BACKEND_ERRORS, BACKENDS),
        (ORPHANS_SWEPT, SWEEP_ACTIONS),
        (DORMANCY_ACTIONS, DORMANCY_ACTION_NAMES),
        (DORMANCY_RUNS, DORMANCY_OUTCOMES),
        (OUTBOX_MAILS, OUTBOX_OUTCOMES),
        (WEBHOOKS, OUTBOX_OUTCOMES),
        (FRAUD_BLOCKS, FRAUD_RULES),
        (LOW_BALANCE, LOW_BALANCE_EVENTS),
        (AUTO_REFILLS, AUTO_REFILL_OUTCOMES),
        (REDIS_REROUTES, REDIS_REROUTE_CAUSES),
    )
    for family, values in counters:
        for value in values:
            child(family, value)


def prime_radius(clients: tuple[str, ...]) -> None:
    """The RADIUS front's families, for each configured client (called again when a
    reload adds clients; a removed client's series stay, as Prometheus expects)."""
    for reason in RADIUS_DROP_REASONS:
        child(RADIUS_DROPPED, reason)
    for kind in RADIUS_PORT_KINDS:
        child(RADIUS_LATENCY, kind)
    for client in clients:
        for kind, results in RADIUS_RESULTS.items():
            for result in results:
                child(RADIUS_REQUESTS, kind, result, client)
        for outcome in RADIUS_DUPLICATE_OUTCOMES:
            child(RADIUS_DUPLICATES, client, outcome)
        for answer in DISCONNECT_ANSWERS:
            child(DISCONNECTS, client, answer)
            child(COA_REQUESTS, client, answer)
        for outcome in UNRESERVED_OUTCOMES:
            child(UNRESERVED_CALLS, client, outcome)
        child(OVERRUN_SECONDS, client)


def prime_radius_streams(transports: tuple[str, ...]) -> None:
    """The connection families of the RADIUS/TCP and RADIUS/TLS listeners that run."""
    for transport in transports:
        child(RADIUS_CONNECTIONS, transport)
        for result in RADIUS_CONNECTION_RESULTS:
            child(RADIUS_CONNECTION_EVENTS, transport, result)


def prime_sip(answers: tuple[tuple[str, str], ...]) -> None:
    """The SIP front's request counter for each (method, code) it can answer with."""
    for method, code in answers:
        child(SIP_REQUESTS, method, code)
