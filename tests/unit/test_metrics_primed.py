"""Every label value the code counts with is one the metrics module primes at 0, so a
fresh gateway's first scrape shows each series an alert or panel will read."""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client import REGISTRY

from gateway.core import metrics
from gateway.core.reasons import Reason
from gateway.radius.process import _STATUS_NAMES

PACKAGE = Path(metrics.__file__).resolve().parents[1]

# Family -> the label positions that are bounded by a table (client names aside).
TABLES: dict[str, list[tuple[int, tuple[str, ...]]]] = {
    "RADIUS_DROPPED": [(0, metrics.RADIUS_DROP_REASONS)],
    "RADIUS_REQUESTS": [
        (0, tuple(metrics.RADIUS_RESULTS)),
        (1, tuple(r for rs in metrics.RADIUS_RESULTS.values() for r in rs)),
    ],
    "RADIUS_DUPLICATES": [(1, metrics.RADIUS_DUPLICATE_OUTCOMES)],
    "RADIUS_LATENCY": [(0, metrics.RADIUS_PORT_KINDS)],
    "DISCONNECTS": [(1, metrics.DISCONNECT_ANSWERS)],
    "UNRESERVED_CALLS": [(1, metrics.UNRESERVED_OUTCOMES)],
    "SLICES": [(0, metrics.SLICE_RESULTS)],
    "COMMITTED": [(0, metrics.COMMIT_OUTCOMES)],
    "BACKEND_ERRORS": [(0, metrics.BACKENDS)],
    "BACKEND_SECONDS": [(0, metrics.BACKENDS)],
    "ORPHANS_SWEPT": [(0, metrics.SWEEP_ACTIONS)],
    "DORMANCY_ACTIONS": [(0, metrics.DORMANCY_ACTION_NAMES)],
    "DORMANCY_RUNS": [(0, metrics.DORMANCY_OUTCOMES)],
    "OUTBOX_MAILS": [(0, metrics.OUTBOX_OUTCOMES)],
    "WEBHOOKS": [(0, metrics.OUTBOX_OUTCOMES)],
    "FRAUD_BLOCKS": [(0, metrics.FRAUD_RULES)],
    "AUTHZ_DECISIONS": [(0, ("accept", *(r.value for r in Reason)))],
}


def _family(node: ast.expr) -> str | None:
    """``metrics.X`` -> X."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "metrics"
    ):
        return node.attr
    return None


def _counted() -> list[tuple[str, str, tuple[ast.expr, ...]]]:
    """(where, family, label arguments) of every counting call in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            if node.func.attr == "labels" and (family := _family(node.func.value)):
                found.append((where, family, tuple(node.args)))
            elif node.func.attr == "child" and node.args and (family := _family(node.args[0])):
                found.append((where, family, tuple(node.args[1:])))
    return found


def test_every_literal_label_value_is_in_its_table() -> None:
    counted = _counted()
    assert len(counted) > 30  # the scan sees the code
    unknown = []
    for where, family, args in counted:
        for position, allowed in TABLES.get(family, []):
            arg = args[position] if position < len(args) else None
            if isinstance(arg, ast.Constant) and arg.value not in allowed:
                unknown.append(f"{where} {family} {arg.value!r}")
    assert unknown == []


def test_malformed_packet_reasons_and_accounting_kinds_are_in_the_tables() -> None:
    reasons = set()
    for path in (PACKAGE / "radius").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "MalformedPacket"
                and isinstance(node.args[0], ast.Constant)
            ):
                reasons.add(f"malformed_{node.args[0].value}")
    assert reasons and reasons <= set(metrics.RADIUS_DROP_REASONS)
    assert set(_STATUS_NAMES.values()) <= set(metrics.RADIUS_RESULTS["accounting"])


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_priming_creates_every_series_at_zero() -> None:
    metrics.prime_radius(("primed-switch",))
    metrics.prime_gateway(tuple(r.value for r in Reason))
    metrics.prime_sip((("INVITE", "302"),))
    for kind, results in metrics.RADIUS_RESULTS.items():
        for result in results:
            labels = {"type": kind, "result": result, "client": "primed-switch"}
            assert _value("gateway_radius_requests_total", **labels) == 0.0
    assert _value("gateway_radius_disconnects_total", client="primed-switch", answer="nak") == 0
    assert _value("gateway_authz_decisions_total", result="AGENT_CAP") is not None
    assert _value("gateway_sip_requests_total", method="INVITE", code="302") is not None
    assert _value("gateway_backend_call_seconds_count", backend="postgresql") is not None
