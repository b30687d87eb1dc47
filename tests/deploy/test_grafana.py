"""The Grafana dashboard and its provisioning."""

from __future__ import annotations

from tests.deploy.conftest import DEPLOY, load_yaml, mounts
from tests.deploy.test_metric_names import dashboard, panels

GRAFANA = DEPLOY / "grafana"


def test_every_panel_has_a_datasource_and_a_query() -> None:
    board = dashboard()
    shown = [p for p in panels(board) if p["type"] != "row"]
    assert len(shown) >= 20
    for panel in shown:
        where = f"panel {panel['id']} {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        targets = panel.get("targets", [])
        assert targets, f"{where}: no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: repeated refId"
        for target in targets:
            assert target["expr"].strip(), where
            assert target["datasource"] == panel["datasource"], where
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where


def test_panel_ids_are_unique_and_the_datasource_is_a_variable() -> None:
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_the_asked_for_panels_are_there() -> None:
    exprs = " ".join(t["expr"] for p in panels(dashboard()) for t in p.get("targets", []))
    for metric in (
        "gateway_radius_requests_total",
        "gateway_radius_request_seconds_bucket",
        "gateway_authz_decisions_total",
        "gateway_calls_active",
        "gateway_money_held_micros",
        "gateway_settlement_backlog",
        "gateway_committer_lag_seconds",
        "gateway_backend_call_seconds_bucket",
        "gateway_backend_errors_total",
        "gateway_radius_dropped_total",
        "gateway_radius_disconnects_total",
        "gateway_orphans_swept_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert metric in exprs, metric
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, type)" in exprs


def test_provisioning_points_at_the_compose_services_and_mounts() -> None:
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "gateway.yml")["providers"]
    grafana = mounts(load_yaml(DEPLOY / "compose.yaml")["services"]["grafana"])
    assert grafana["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
