"""contrib/: the Grafana dashboard and the alert rules query only metrics the daemon exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tcsms_poller.emulator import EmulatorOptions, run_emulator
from tests.support.daemon_process import daemon_config, running_daemon
from tests.support.ports import free_port

CONTRIB = Path(__file__).parents[2] / "contrib"
ALERTS = CONTRIB / "prometheus" / "alerts.yaml"
DASHBOARD = CONTRIB / "grafana" / "tcsms-poller.json"
# Our metrics and the process collector's; PromQL functions and keywords never match this.
METRIC = re.compile(r"\b(?:tcsms_poller|process|python)_[a-z0-9_]+\b")
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
}


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition can carry, labelled metrics with no sample yet included."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def balanced(expr: str) -> bool:
    """Brackets pair up outside quoted strings (what a typo in a hand-edited rule breaks)."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in unquoted:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


@pytest.mark.anyio
async def test_every_queried_metric_is_on_the_metrics_page_of_a_running_daemon(
    tmp_path: Path,
) -> None:
    """A renamed or removed metric breaks a panel or an alert silently; here it fails."""
    port = free_port()
    server = {"listen": f"127.0.0.1:{port}", "token": "t" * 24, "callback_secret": "c" * 24}
    async with run_emulator(EmulatorOptions(seed=5)) as emulator:
        config = daemon_config(emulator.url, tmp_path, server=server)
        async with running_daemon(tmp_path, config) as daemon, httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            await daemon.stop()
    exported = exported_names(text)
    queried = {
        name
        for expr in rule_expressions() + dashboard_expressions()
        for name in METRIC.findall(expr)
    }
    assert "tcsms_poller_http_requests_total" in queried
    assert queried - exported == set()


def test_the_alert_rules_have_the_shape_prometheus_loads() -> None:
    """Groups of rules, each with a unique name, an expression, a duration, severity, summary."""
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    assert set(rules) == {"groups"}
    names: list[str] = []
    for group in rules["groups"]:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            names.append(rule["alert"])
            assert re.fullmatch(r"Tcsms[A-Za-z]+", rule["alert"])
            assert isinstance(rule["expr"], str)
            assert balanced(rule["expr"]), rule["alert"]
            assert DURATION.match(rule.get("for", "0s")), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
    assert len(names) == len(set(names))


def test_the_dashboard_is_grafana_json_with_one_query_per_target() -> None:
    """Unique panel ids, a query in every target, and every panel within the 24-column grid."""
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"]
            assert all(balanced(target["expr"]) for target in panel["targets"]), panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
