"""The Prometheus files: promtool accepts the rules and the config, and the rules'
own unit tests (deploy/prometheus/alerts_test.yml) pass."""

from __future__ import annotations

from tests.deploy.conftest import DEPLOY, REPO, load_yaml, run, tool
from tests.deploy.test_metric_names import alert_exprs

PROMETHEUS = DEPLOY / "prometheus"


def test_promtool_checks_the_alert_rules() -> None:
    done = run(tool("promtool"), "check", "rules", "deploy/prometheus/alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_checks_the_config_from_the_repository_root() -> None:
    # rule_files are relative to prometheus.yml, so alerts.yml is found from here too.
    done = run(tool("promtool"), "check", "config", "deploy/prometheus/prometheus.yml", cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


def test_alert_rules_fire_as_their_unit_tests_expect() -> None:
    done = run(tool("promtool"), "test", "rules", "deploy/prometheus/alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_asked_for_alerts_exist_with_severity_and_summary() -> None:
    rules = [r for g in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    for wanted in (
        "GatewayDown",  # up == 0
        "GatewayBackendErrors",
        "GatewayRejectSpike",
        "GatewayAuthLatencyHigh",
        "GatewayCommitterLag",
        "GatewaySettlementBacklogGrowing",
        "GatewayRadiusOverload",
        "GatewayUnknownRadiusClient",
        "GatewayRadiusBadPackets",
    ):
        assert wanted in names
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    exprs = dict(alert_exprs())
    assert "histogram_quantile(0.99" in exprs["GatewayAuthLatencyHigh"]
    assert "gateway_radius_request_seconds_bucket" in exprs["GatewayAuthLatencyHigh"]
    assert exprs["GatewayDown"].startswith("up{")


def test_prometheus_scrapes_the_gateway_service_on_its_metrics_port() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gateway"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["gateway:9812"]
