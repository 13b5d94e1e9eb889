"""deploy/: the alert rules and the Grafana dashboard use only series /metrics exports.

promtool is not installed here, so the rules are checked structurally: YAML shape, every
metric an expression names is exported (with the label names the expression relies on),
brackets balance. The scrape config's relabelling (the app's `job` label → `job_name`) is
applied to the exported label sets before comparing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from automation.metrics import observe_finished_run, observe_retry, observe_summary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b(automation_[a-z0-9_]+|up)\b")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\b(automation_[a-z0-9_]+|up)\{([^}]*)\}")
FUNCTIONS = {"time", "max", "min", "sum", "rate", "increase", "deriv", "histogram_quantile",
             "max_over_time", "label_values"}


@pytest.fixture
def exported(community) -> dict[str, set[str]]:
    """Sample name → label names, as Prometheus stores them after prometheus.yml.

    A community enables the scheduled jobs, so their expected period is exported.
    """
    observe_finished_run("probe_job", "automation", "succeeded", 0.5, 1_700_000_000.0)
    observe_finished_run("probe_job", "automation", "failed", 0.5, 1_700_000_000.0)
    observe_retry("probe_job", "automation")
    observe_summary("probe_job", "automation", {"sent": 1})
    body = Client().get("/metrics").content.decode()
    names: dict[str, set[str]] = {"up": {"job", "instance"}}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = {"job_name" if k == "job" else k for k in sample.labels}
            names.setdefault(sample.name, set()).update(labels)
    return names


def _check_expr(expr: str, exported: dict[str, set[str]], where: str) -> list[str]:
    problems = []
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append(f"{where}: unbalanced brackets")
    # Label values in quotes are not names: drop them before looking for metric names.
    bare = re.sub(r'"[^"]*"', '""', expr)
    metrics = set(METRIC.findall(bare)) - FUNCTIONS
    if not metrics:
        problems.append(f"{where}: names no metric")
    for name in metrics:
        if name not in exported:
            problems.append(f"{where}: {name} is not exported")
    for name, matchers in MATCHERS.findall(bare):
        for label in re.findall(r"(\w+)\s*=~?", matchers):
            if label not in exported.get(name, set()):
                problems.append(f"{where}: {name} has no label {label}")
    for group in GROUPING.findall(bare):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label == "le":
                continue
            lacking = [m for m in metrics if m in exported and label not in exported[m]]
            if lacking:
                problems.append(f"{where}: grouping label {label} missing on {lacking}")
    return problems


def test_alert_rules_reference_exported_metrics(exported) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names, problems = [], []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Automation[A-Za-z]+", rule["alert"])
            assert rule["labels"]["severity"] in ("page", "warning")
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["runbook"] == \
                f"docs/monitoring.md#{rule['alert'].lower()}"
            assert re.fullmatch(r"\d+[smh]", rule["for"])
            names.append(rule["alert"])
            problems += _check_expr(rule["expr"], exported, rule["alert"])
    assert not problems, problems
    assert len(names) == len(set(names))
    # The four the issue asks for are there.
    assert {"AutomationJobFailingRepeatedly", "AutomationJobNotSucceeding",
            "AutomationBeatNotTicking", "AutomationQueueBacklogGrowing"} <= set(names)
    # Each has a section in the docs, where the runbook points.
    docs = (DEPLOY.parent / "docs" / "monitoring.md").read_text()
    for name in names:
        assert f"### {name}" in docs, name


def test_scrape_config_matches_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [scrape] = config["scrape_configs"]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["authorization"]["type"] == "Bearer"
    assert scrape["authorization"]["credentials_file"]
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    assert f'up{{job="{scrape["job_name"]}"}}' in rules
    relabel = scrape["metric_relabel_configs"]
    assert relabel[0] == {"source_labels": ["exported_job"], "regex": "(.+)",
                          "target_label": "job_name"}
    assert relabel[1] == {"regex": "exported_job", "action": "labeldrop"}


def test_grafana_dashboard_queries_exported_metrics(exported) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "automation-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    problems = []
    covered: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            expr = target["expr"].replace("$job", "x")
            problems += _check_expr(expr, exported, panel["title"])
            covered |= set(METRIC.findall(expr))
            for label in re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]):
                assert any(label in exported.get(m, ()) for m in METRIC.findall(expr)), label
    assert not problems, problems
    # The figures the alerts are about all have a panel.
    for name in ("automation_queue_depth", "automation_beat_last_tick_timestamp_seconds",
                 "automation_job_consecutive_failures", "automation_job_expected_period_seconds",
                 "automation_job_last_success_timestamp_seconds"):
        assert name in covered, name
    variable = dashboard["templating"]["list"][1]
    assert variable["query"]["query"] == \
        "label_values(automation_job_enabled_communities, job_name)"


def test_the_checker_catches_mistakes(exported) -> None:
    assert _check_expr("automation_no_such_metric > 1", exported, "r")
    assert _check_expr("max by (section) (automation_queue_depth) > 1", exported, "r")
    assert _check_expr('automation_queue_depth{job_name="x"} > 1', exported, "r")
    assert _check_expr("max(automation_queue_depth > 1", exported, "r")
    assert not _check_expr("max by (queue) (automation_queue_depth) > 1", exported, "r")
