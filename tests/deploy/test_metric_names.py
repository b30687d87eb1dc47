"""Every query in the alert rules and the Grafana dashboard names metrics (and labels)
that gateway/core/metrics.py and the default collectors really export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import promql
from tests.deploy.conftest import DEPLOY, load_yaml, run, tool

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gateway.json"
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def alert_exprs() -> list[tuple[str, str]]:
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    return [(r.get("alert") or r["record"], r["expr"]) for r in rules]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
        for p in panels(dashboard())
        for t in p.get("targets", [])
    ]


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, selector, label) of each label_values() template variable."""
    found = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {var['name']}: not a label_values() query: {query!r}"
        found.append((var["name"], match["selector"], match["label"]))
    return found


@pytest.fixture(scope="module")
def known() -> dict[str, frozenset[str]]:
    names = promql.exported()
    # The collectors really are there: a check against an empty list would pass.
    assert "gateway_radius_requests_total" in names and "process_cpu_seconds_total" in names
    return names


def test_alert_rules_name_exported_metrics(known: dict[str, frozenset[str]]) -> None:
    exprs = alert_exprs()
    assert len(exprs) >= 10
    bad = {name: found for name, expr in exprs if (found := promql.problems(expr, known))}
    assert not bad, bad


def test_dashboard_queries_name_exported_metrics(known: dict[str, frozenset[str]]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    bad = {name: found for name, expr in exprs if (found := promql.problems(expr, known))}
    assert not bad, bad


def test_dashboard_variables_use_exported_labels(known: dict[str, frozenset[str]]) -> None:
    for name, selector, label in variable_queries():
        assert not promql.problems(selector, known), (name, selector)
        (metric, _), *_ = promql.references(selector).selectors
        assert label in known[metric], f"variable {name}: {metric} has no label {label}"


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("rate(gateway_radius_request_total[5m])", "unknown metric 'gateway_radius_request_total'"),
        ("gateway_committer_lag > 60", "unknown metric 'gateway_committer_lag'"),
        (  # a counter without its _total suffix
            "rate(gateway_backend_errors[5m]) > 0",
            "unknown metric 'gateway_backend_errors'",
        ),
        (  # a histogram read without _bucket
            "histogram_quantile(0.99, rate(gateway_radius_request_seconds[5m]))",
            "unknown metric 'gateway_radius_request_seconds'",
        ),
        (
            'gateway_radius_dropped_total{reson="overload"}',
            "gateway_radius_dropped_total has no label 'reson'",
        ),
        (
            "sum by (clinet) (rate(gateway_radius_requests_total[5m]))",
            "no metric of this expression has the label 'clinet'",
        ),
        ("rate(process_cpu_second_total[5m])", "unknown metric 'process_cpu_second_total'"),
    ],
)
def test_a_misspelled_name_is_caught(
    known: dict[str, frozenset[str]], expr: str, complaint: str
) -> None:
    assert complaint in promql.problems(expr, known)


def test_correct_names_pass(known: dict[str, frozenset[str]]) -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, type) (rate("
        'gateway_radius_request_seconds_bucket{type="auth", job=~"$job"}[$__rate_interval])))'
        " > 0.05 and on (job) up == 1 or max(gateway_money_held_micros) / 1e6 > 2.5e3"
    )
    assert promql.problems(expr, known) == []


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query (Grafana variables given plain values)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for n, (_, expr) in enumerate(dashboard_exprs()):
        plain = re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
        plain = re.sub(r"\$\{?\w+\}?", ".*", plain)
        lines += [f"      - record: dashboard:query_{n}", f"        expr: {json.dumps(plain)}"]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    done = run(tool("promtool"), "check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
