"""What a load run measured: counters, latency percentiles, the live progress line
and the end-of-run summary (a dict for ``--json``, text for people)."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

AUTH, START, INTERIM, STOP = 0, 1, 2, 3
KINDS = ("auth", "start", "interim", "stop")


def percentile(ordered: list[float] | array[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of sorted values; 0 if none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "mean_ms": round(self.mean_ms, 3),
        }


class LatencyStats:
    """The latencies of one request type, in seconds, kept whole (8 bytes each) so
    percentiles are exact: a million requests cost 8 MB."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: array[float] = array("d")

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def __len__(self) -> int:
        return len(self.values)

    def summary(self, start: int = 0) -> LatencySummary:
        """Percentiles of the values from index ``start`` on (all by default)."""
        part = sorted(self.values[start:])
        if not part:
            return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        return LatencySummary(
            count=len(part),
            p50_ms=percentile(part, 50) * 1000,
            p95_ms=percentile(part, 95) * 1000,
            p99_ms=percentile(part, 99) * 1000,
            max_ms=part[-1] * 1000,
            mean_ms=math.fsum(part) / len(part) * 1000,
        )


def _per_kind() -> list[int]:
    return [0, 0, 0, 0]


@dataclass
class Counters:
    """Everything the engine counts; per-kind lists are indexed AUTH..STOP."""

    started: int = 0
    finished: int = 0
    accepted: int = 0
    refused: int = 0
    refused_unexpected: int = 0  # meant to go through, refused
    accepted_unexpected: int = 0  # meant to be refused, accepted
    auth_failed: int = 0  # the Access-Request was never answered
    stops_acked: int = 0
    stops_unacked: int = 0
    sent: list[int] = field(default_factory=_per_kind)  # first transmissions
    retransmits: list[int] = field(default_factory=_per_kind)
    timeouts: list[int] = field(default_factory=_per_kind)  # given up after every retry
    replies: int = 0
    stale_replies: int = 0  # nothing waits on that identifier, or the authenticator differs
    send_errors: int = 0  # the socket refused (ICMP unreachable, buffer full)
    slot_waits: int = 0  # every identifier of every socket was busy
    refusals: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.sent) + sum(self.retransmits)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counters at one instant, for the rates of the progress line."""

    at: float
    cpu_s: float
    finished: int
    requests: int
    auth_index: int


def progress_line(
    counters: Counters,
    auth: LatencyStats,
    previous: Snapshot,
    now: Snapshot,
    *,
    elapsed_s: float,
    in_flight: int,
    active: int,
) -> str:
    """One line: the last interval's rates and auth p99, then the running totals."""
    span = max(now.at - previous.at, 1e-9)
    calls_s = (now.finished - previous.finished) / span
    req_s = (now.requests - previous.requests) / span
    cpu = (now.cpu_s - previous.cpu_s) / span * 100
    p99 = auth.summary(previous.auth_index).p99_ms
    return (
        f"[{elapsed_s:6.1f}s] {calls_s:7.0f} calls/s {req_s:8.0f} req/s  "
        f"auth p99 {p99:6.1f} ms  up {active:5d}  in flight {in_flight:5d}  "
        f"done {counters.finished}/{counters.started}  refused {counters.refused}  "
        f"timeouts {sum(counters.timeouts)}  retrans {sum(counters.retransmits)}  "
        f"cpu {cpu:3.0f}%"
    )


def summary(
    counters: Counters,
    latencies: list[LatencyStats],
    *,
    planned: int,
    target_rate: float,
    wall_s: float,
    cpu_s: float,
    precompute_s: float,
) -> dict[str, Any]:
    """The machine-readable summary of a run (``--json``)."""
    wall = max(wall_s, 1e-9)
    requests = counters.requests
    return {
        "planned_calls": planned,
        "target_calls_per_s": target_rate,
        "elapsed_s": round(wall_s, 3),
        "calls_per_s": round(counters.finished / wall, 1),
        "requests_per_s": round(requests / wall, 1),  # retransmissions included
        "replies_per_s": round(counters.replies / wall, 1),
        "calls": {
            "started": counters.started,
            "finished": counters.finished,
            "accepted": counters.accepted,
            "refused": counters.refused,
            "refused_unexpected": counters.refused_unexpected,
            "accepted_unexpected": counters.accepted_unexpected,
            "auth_failed": counters.auth_failed,
            "stops_acked": counters.stops_acked,
            "stops_unacked": counters.stops_unacked,
        },
        "requests": {
            "sent": requests,
            "replies": counters.replies,
            "stale_replies": counters.stale_replies,
            "send_errors": counters.send_errors,
            "slot_waits": counters.slot_waits,
        },
        "latency": {kind: latencies[i].summary().as_dict() for i, kind in enumerate(KINDS)},
        "retransmits": dict(zip(KINDS, counters.retransmits, strict=True)),
        "timeouts": dict(zip(KINDS, counters.timeouts, strict=True)),
        "refusals": dict(counters.refusals.most_common()),
        "generator": {
            "cpu_s": round(cpu_s, 3),
            "cpu_percent": round(cpu_s / wall * 100, 1),
            "cpu_us_per_request": round(cpu_s / requests * 1e6, 2) if requests else 0.0,
            "precompute_s": round(precompute_s, 3),
        },
    }


def format_summary(data: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    calls, reqs, gen = data["calls"], data["requests"], data["generator"]
    mode = data.get("mode", "calls")
    label = "calls" if mode == "calls" else f"calls ({mode}: Access-Requests only)"
    lines = [
        f"{label}: {calls['finished']} of {data['planned_calls']} in {data['elapsed_s']:.1f}s = "
        f"{data['calls_per_s']:.0f} calls/s (target {data['target_calls_per_s']:g}); "
        f"{reqs['sent']} requests = {data['requests_per_s']:.0f} req/s, "
        f"{data['replies_per_s']:.0f} answered/s",
        f"  accepted {calls['accepted']}, refused {calls['refused']} "
        f"({calls['refused_unexpected']} unexpected), accepted though meant to be refused "
        f"{calls['accepted_unexpected']}, authorization unanswered {calls['auth_failed']}",
        f"  Stops acknowledged {calls['stops_acked']}, unacknowledged {calls['stops_unacked']}",
        "latency (ms)     count      p50      p95      p99      max",
    ]
    for kind, lat in data["latency"].items():
        lines.append(
            f"  {kind:8} {lat['count']:10d} {lat['p50_ms']:8.2f} {lat['p95_ms']:8.2f} "
            f"{lat['p99_ms']:8.2f} {lat['max_ms']:8.2f}"
        )
    lines.append(
        "retransmits: "
        + ", ".join(f"{k} {v}" for k, v in data["retransmits"].items())
        + "; timeouts: "
        + ", ".join(f"{k} {v}" for k, v in data["timeouts"].items())
    )
    lines.append(
        f"replies {reqs['replies']}, stale {reqs['stale_replies']}, send errors "
        f"{reqs['send_errors']}, identifier waits {reqs['slot_waits']}"
    )
    for reason, count in data["refusals"].items():
        lines.append(f"  refused {count:8d}  {reason}")
    lines.append(
        f"generator: {gen['cpu_s']:.2f}s CPU = {gen['cpu_percent']:.0f}% of one core, "
        f"{gen['cpu_us_per_request']:.1f} µs per request (precompute {gen['precompute_s']:.2f}s)"
    )
    return "\n".join(lines)
