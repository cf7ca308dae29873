"""The deploy/ kit: Prometheus scrape config and alerts, the Grafana dashboard, the IAM policy and
install.sh; and, end to end, a real Prometheus scraping the real daemon through a rollback.

Metric names in the alerts and the dashboard are checked against the daemon's own exposition
(watchdog.support.metrics.Metrics with every metric given a label set), so a renamed metric or label
breaks these tests rather than a dashboard in production.

promtool and prometheus: missing, the tests fail when CI is set and skip otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

import story
from binaries import binary_or_skip
from configs import write
from loopback import free_ports
from story import Publisher
from tests.daemon import Daemon
from watchdog.actions import action_kind
from watchdog.shared.kinds import ACTIONS
from watchdog.support.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PROM = DEPLOY / "prometheus"
SCRAPE = PROM / "scrape.yml"
ALERTS = PROM / "alerts.yml"
ALERTS_TEST = PROM / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "rollback-watchdog.json"
POLICY = DEPLOY / "iam" / "policy.json"
QUEUE_ARN = "arn:aws:sqs:*:*:rollback-watchdog-alarm-events"  # the queue deploy/cloudformation/alarm-events.yaml makes
STATE_TABLE_ARN = "arn:aws:dynamodb:*:*:table/rollback-watchdog"  # SPEC 3.2's example name of the shared table
INSTALL = DEPLOY / "install.sh"

# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# Series Prometheus makes itself, with their labels.
PROMETHEUS_SERIES = {"up": TARGET_LABELS}


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


# --- the daemon's exposition -----------------------------------------------------------------


def exposition() -> dict[str, set[str]]:
    """Sample name -> label names, from a Metrics registry where every metric has a label set."""
    m = Metrics()
    for metric in vars(m).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    m.rule_series.read_from(lambda: [("x", "x", "x", 0, 0.0)])  # the per-rule series are read from the rules judged
    text = generate_latest(m.registry).decode()
    names: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            names.setdefault(sample.name, set()).update(set(sample.labels) - {"le"} | TARGET_LABELS)
            if sample.name.endswith("_bucket"):
                names[sample.name].add("le")
    return names


EXPOSED = exposition()


def test_the_exposition_helper_sees_every_metric() -> None:
    # Guards the helper: a labelled metric without a child would be missing from the text.
    for name in ("watchdog_target_level", "watchdog_rollbacks_total", "watchdog_source_poll_duration_seconds_bucket",
                 "watchdog_notifications_pending", "watchdog_build_info", "watchdog_paused", "watchdog_rule_state",
                 "watchdog_rule_value"):
        assert name in EXPOSED, name
    assert EXPOSED["watchdog_rollbacks_total"] >= {"target", "level", "outcome"}


PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana label_values() query) selects."""
    e = re.sub(r"label_values\((.*),\s*\w+\s*\)", r"\1", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges
    e = re.sub(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    idents = re.findall(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", e)
    return {i for i in idents if i.lower() not in PROMQL_WORDS}


def labels_used(expr: str) -> set[str]:
    """Label names in matchers, by/on/without/ignoring clauses and label_values()."""
    used: set[str] = set()
    for clause in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        used |= {x.strip() for x in clause.split(",") if x.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        used |= set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    used |= set(re.findall(r"label_values\([^,]*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)", expr))
    return used


def known(name: str) -> set[str] | None:
    if name in PROMETHEUS_SERIES:
        return PROMETHEUS_SERIES[name]
    return EXPOSED.get(name)


def check_expr(expr: str, where: str, extra_labels: set[str] = frozenset()) -> set[str]:
    """Every metric exists in the exposition and every label used exists on them; returns the labels."""
    names = metric_names(expr)
    assert names, f"{where}: no metric found in {expr!r}"
    labels: set[str] = set()
    for name in names:
        have = known(name)
        assert have is not None, f"{where}: {name} is not in the daemon's /metrics (nor made by Prometheus)"
        labels |= have
    unknown = labels_used(expr) - labels - {"le"}
    assert not unknown, f"{where}: labels {unknown} are on none of {sorted(names)}"
    return labels | extra_labels


def test_the_expression_helpers_catch_a_wrong_name_and_a_wrong_label() -> None:
    with pytest.raises(AssertionError, match="watchdog_target_levels"):
        check_expr('watchdog_target_levels{target="a"}', "probe")
    with pytest.raises(AssertionError, match="targt"):
        check_expr('sum by (targt) (watchdog_target_level)', "probe")
    assert metric_names('time() - watchdog_last_evaluation_timestamp_seconds > 300') == {
        "watchdog_last_evaluation_timestamp_seconds"}
    assert metric_names('a and on (instance, target) (b == 1) or c{x="y"} unless d offset 10m') == {"a", "b", "c", "d"}
    assert metric_names('histogram_quantile(0.9, sum by (le) (rate(h_bucket{j=~"$job"}[$__rate_interval]))) * 60') == {
        "h_bucket"}
    assert metric_names('label_values(watchdog_build_info{job=~"$job"}, instance)') == {"watchdog_build_info"}


# --- Prometheus: alerts and scrape config ---------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_passes() -> None:
    promtool = binary_or_skip("promtool")
    r = run([promtool, "check", "rules", str(ALERTS)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    promtool = binary_or_skip("promtool")
    r = run([promtool, "test", "rules", ALERTS_TEST.name], cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_fail_when_an_alert_breaks(tmp_path: Path) -> None:
    """The unit tests are not vacuous: an alert that never fires fails them."""
    promtool = binary_or_skip("promtool")
    broken = ALERTS.read_text().replace("expr: watchdog_target_blind == 1", "expr: watchdog_target_blind == 2")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    r = run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert r.returncode != 0
    assert "WatchdogTargetBlind" in r.stdout + r.stderr


REQUIRED_ALERTS = {
    "WatchdogDown", "WatchdogEvaluationsStale", "WatchdogSourceDown", "WatchdogTargetBlind",
    "WatchdogRollbackHappened", "WatchdogRollbackFailed", "WatchdogNotificationsFailing",
    "WatchdogNotificationsStuck", "WatchdogPaused", "WatchdogIncidentUnresolved",
}


def test_every_alert_is_complete_and_names_real_metrics_and_labels() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    assert REQUIRED_ALERTS <= set(names), REQUIRED_ALERTS - set(names)
    for rule in rules:
        where = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, where
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), f"{where}: summary and description"
        labels = check_expr(rule["expr"], where)
        if "absent(" in rule["expr"]:
            labels = set(re.findall(r'(\w+)="', rule["expr"]))  # absent() keeps only equality matchers
        for text in ann.values():
            for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text):
                assert label in labels, f"{where}: annotation uses $labels.{label}, which the expression lacks"
        # An alert about a target, a source or a channel says which one, in both texts.
        for label in {"target", "source", "channel"} & labels:
            for key in ("summary", "description"):
                assert f"$labels.{label}" in ann[key], f"{where}: its {key} does not name the {label}"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), f"alerts never tested firing: {names - firing}"
    assert names - silent == set(), f"alerts never tested silent: {names - silent}"


def scrape_text(port: int | None = None, interval: str | None = None) -> str:
    text = SCRAPE.read_text()
    if port is not None:
        assert text.count("127.0.0.1:9718") == 1
        text = text.replace("127.0.0.1:9718", f"127.0.0.1:{port}")
    if interval is not None:
        assert text.count("scrape_interval: 15s") == 1
        text = text.replace("scrape_interval: 15s", f"scrape_interval: {interval}")
    return text


def prometheus_yml(directory: Path, port: int | None = None, interval: str | None = None,
                   evaluation: str = "15s") -> Path:
    """A full prometheus.yml: global settings, the alerts (copied next to it) and the scrape snippet."""
    shutil.copy(ALERTS, directory / "alerts.yml")
    path = directory / "prometheus.yml"
    path.write_text(f"global:\n  evaluation_interval: {evaluation}\nrule_files:\n  - alerts.yml\n"
                    + scrape_text(port, interval))
    return path


def test_the_scrape_snippet_is_the_watchdog_job() -> None:
    doc = yaml.safe_load(SCRAPE.read_text())
    (job,) = doc["scrape_configs"]
    assert job["job_name"] == "rollback-watchdog"  # WatchdogDown matches on it
    assert job["scrape_interval"] == "15s"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9718"]}]
    assert "rule_files" in SCRAPE.read_text() and "alerts.yml" in SCRAPE.read_text()
    # The same job name in the alerts and in the dashboard's queries.
    assert 'job="rollback-watchdog"' in ALERTS.read_text()
    moved = yaml.safe_load(scrape_text(port=12345, interval="1s"))["scrape_configs"][0]
    assert (moved["static_configs"][0]["targets"], moved["scrape_interval"]) == (["127.0.0.1:12345"], "1s")


def test_promtool_check_config_passes_on_a_prometheus_yml_built_from_the_snippet(tmp_path: Path) -> None:
    promtool = binary_or_skip("promtool")
    path = prometheus_yml(tmp_path)
    r = run([promtool, "check", "config", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr
    # ... and with the substitutions the acceptance test makes.
    r = run([promtool, "check", "config", str(prometheus_yml(tmp_path, port=19999, interval="1s", evaluation="1s"))])
    assert r.returncode == 0, r.stdout + r.stderr


# --- Grafana ----------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dash: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(where, expr, legendFormat) of every query: panel targets, template variables, annotations."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r} {t['refId']}", t["expr"], t.get("legendFormat", "")))
    for v in dash["templating"]["list"]:
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        out.append((f"variable {v['name']}", q, ""))
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']}", a["expr"], a.get("textFormat", "")))
    return out


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = dashboard()
    assert dash["schemaVersion"] == 39
    assert dash["title"] and dash["uid"]
    (inp,) = dash["__inputs"]
    assert (inp["name"], inp["type"], inp["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    datasources = []
    for p in all_panels(dash):
        if p["type"] != "row":
            datasources.append(p["datasource"])
            datasources += [t["datasource"] for t in p["targets"]]
    datasources += [v["datasource"] for v in dash["templating"]["list"]]
    datasources += [a["datasource"] for a in dash["annotations"]["list"] if a.get("builtIn") != 1]
    assert datasources and all(ds == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for ds in datasources)
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    # The grid: inside 24 columns and no two panels on the same cell.
    cells: dict[tuple[int, int], str] = {}
    for p in all_panels(dash):
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_shows_what_an_sre_needs() -> None:
    dash = dashboard()
    exprs = " ".join(e for _, e, _ in queries(dash))
    for name in ("watchdog_target_level", "watchdog_rule_value", "watchdog_rule_state", "watchdog_rollbacks_total",
                 "watchdog_source_up", "watchdog_source_poll_duration_seconds_bucket", "watchdog_notifications_total",
                 "watchdog_notifications_pending", "watchdog_cloudwatch_requests_total"):
        assert name in exprs, f"the dashboard does not show {name}"
    assert re.search(r"histogram_quantile\([^,]+,\s*sum by \([^)]*\ble\b[^)]*\)\s*"
                     r"\(rate\(watchdog_source_poll_duration_seconds_bucket", exprs)
    assert re.search(r"increase\(watchdog_rollbacks_total", exprs)
    assert re.search(r"sum by \([^)]*outcome[^)]*\) \(increase\(watchdog_rollbacks_total", exprs)
    assert re.search(r"rate\(watchdog_cloudwatch_requests_total[^)]*\)\)\s*\*\s*60", exprs), "requests per minute"
    # Rule values next to rule state: the same row, side by side.
    by_title = {p["title"]: p for p in all_panels(dash)}
    values, states = by_title["Rule values"]["gridPos"], by_title["Rule state"]["gridPos"]
    assert values["y"] == states["y"] and values["x"] + values["w"] <= states["x"]


def test_every_dashboard_query_names_real_metrics_and_labels() -> None:
    for where, expr, legend in queries(dashboard()):
        labels = check_expr(expr, where)
        for label in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend):
            # The legend must name a label the result keeps: one of the query's by() labels, if any.
            kept = set(re.findall(r"\bby\s*\(([^)]*)\)", expr))
            kept_labels = {x.strip() for c in kept for x in c.split(",")} if kept else labels
            assert label in kept_labels, f"{where}: legend {{{{{label}}}}} is not a label of the result"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), with Grafana's variables filled in."""
    promtool = binary_or_skip("promtool")
    rules = []
    for i, (_, expr, _) in enumerate(queries(dashboard())):
        if expr.startswith("label_values("):
            expr = re.sub(r"label_values\((.*),\s*\w+\)$", r"\1", expr)
        expr = expr.replace("$__rate_interval", "1m")
        expr = re.sub(r"\$(job|instance|target)\b", ".*", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    r = run([promtool, "check", "rules", str(tmp_path / "rules.yml")])
    assert r.returncode == 0, r.stdout + r.stderr


# --- IAM --------------------------------------------------------------------------------------


def test_iam_policy_grants_only_what_the_sources_call() -> None:
    policy = json.loads(POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    sids = [s["Sid"] for s in statements]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    actions: dict[str, str] = {}
    for s in statements:
        # None of them has resource-level permissions but SQS's, which name the queue deploy/cloudformation makes,
        # and the shared state table's, which name the table the README says.
        named = {"OptionalAlarmEventsQueue": QUEUE_ARN, "OptionalSharedStateTable": STATE_TABLE_ARN}
        assert s["Effect"] == "Allow" and s["Resource"] == named.get(s["Sid"], "*"), s["Sid"]
        assert set(s) == {"Sid", "Effect", "Action", "Resource"}, s["Sid"]
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        for a in acts:
            assert "*" not in a, f"{s['Sid']}: wildcard action {a}"
            actions[a] = s["Sid"]
    reads = {"cloudwatch:GetMetricData", "ce:GetCostAndUsage", "securityhub:GetFindings", "cloudwatch:DescribeAlarms",
             "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    # Each AWS action type's calls, as its kind declares them (tests/aws_runs.py holds every runner to its
    # declaration: an operation it sends that is not declared fails there).
    kinds = {k.type: set(action_kind(k.type).aws_calls) for k in ACTIONS if action_kind(k.type).aws_calls}
    assert {"ssm_parameter", "elbv2_weights", "lambda_alias", "ecs_service", "appconfig"} <= set(kinds)
    # The shared state table (watchdog/state/dynamodb/): every call its code makes on the client, as one statement.
    table_calls = {"ConditionCheckItem"}  # what TransactWriteItems needs for its ConditionCheck (the lease fence)
    for path in (REPO / "watchdog" / "state" / "dynamodb").glob("*.py"):
        table_calls |= {"".join(w.capitalize() for w in op.split("_"))
                        for op in re.findall(r"\b_client\.([a-z][a-z0-9_]*)\(", path.read_text())}
    # a waiter polls DescribeTable; CreateTable is `state init`'s, run with an operator's rights (README)
    table_calls -= {"GetWaiter", "CreateTable"}
    assert {a for a, sid in actions.items() if sid == "OptionalSharedStateTable"} == {f"dynamodb:{c}" for c in table_calls}
    assert "OptionalSharedStateTable" in (DEPLOY / "iam" / "README.md").read_text()
    actions = {a: sid for a, sid in actions.items() if sid != "OptionalSharedStateTable"}
    assert set(actions) == reads | set().union(*kinds.values())
    for kind, calls in kinds.items():  # one statement per type, holding its calls and nothing else
        sids = {actions[a] for a in calls}
        assert len(sids) == 1 and {a for a, sid in actions.items() if sid in sids} == calls, kind
    # The optional ones are separate statements, so they can be dropped one by one.
    assert len({actions[a] for a in actions}) == 5 + len(kinds)
    readme = (DEPLOY / "iam" / "README.md").read_text()
    assert "drop" in readme.lower()
    for a in ("ce:GetCostAndUsage", "securityhub:GetFindings", "cloudwatch:DescribeAlarms", "sqs:ReceiveMessage",
              *(sorted(c)[0] for c in kinds.values())):
        assert actions[a] in readme, f"the README names statement {actions[a]}"
    # Every AWS API the daemon's sources call is granted (CamelCase of the boto3 method).
    called = set()
    for path in (REPO / "watchdog").rglob("*.py"):
        if "demo" in path.parts:  # the demo writes metrics to its own local endpoint
            continue
        if path.parent.name == "dynamodb":  # the shared table's own statement, checked above
            continue
        text = path.read_text()
        for op in re.findall(r"\b_client\.([a-z][a-z0-9_]*)\(", text):
            if op.startswith(("get_", "list_", "describe_", "put_", "batch_")):
                called.add("".join(w.capitalize() for w in op.split("_")))
        # AwsSource._call(operation, boto3 method, ...): every source's calls go through it.
        for op, method in re.findall(r"\._call\(\s*\"([A-Za-z]+)\",\s*\"([a-z][a-z0-9_]*)\"", text):
            assert op == "".join(w.capitalize() for w in method.split("_")), f"{path.name}: {op} is not {method}"
            called.add(op)
    assert called, "found no AWS calls in watchdog/: the scan is broken"
    called |= {a.split(":")[1] for calls in kinds.values() for a in calls}
    granted = {a.split(":")[1] for a in actions}
    assert called <= granted, f"not granted: {called - granted}"
    assert granted <= called, f"granted but never called: {granted - called}"


# --- install.sh -------------------------------------------------------------------------------


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run([str(INSTALL), *args], env={**os.environ, **(env or {})})


def snapshot(root: Path) -> list[tuple[str, ...]]:
    """Every path below root with its type, mode, owner and (files) sha256."""
    out = []
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        entry: tuple[str, ...] = (str(p.relative_to(root)), stat.filemode(st.st_mode), f"{st.st_uid}:{st.st_gid}")
        if p.is_symlink():
            entry += (os.readlink(p),)
        elif p.is_file():
            entry += (hashlib.sha256(p.read_bytes()).hexdigest(),)
        out.append(entry)
    return out


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def fake_source(tmp_path: Path, unit: str | None) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "config.yaml", src)
    if unit is not None:
        (src / "systemd").mkdir()
        (src / "systemd" / "rollback-watchdog.service").write_text(unit)
    return src


def test_install_sh_is_strict_bash() -> None:
    text = INSTALL.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(INSTALL, os.X_OK)
    r = run(["bash", "-n", str(INSTALL)])
    assert r.returncode == 0, r.stderr


def test_install_twice_into_a_root_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install("--root", str(root), "--no-venv")
    assert first.returncode == 0, first.stdout + first.stderr
    after_first = snapshot(root)
    second = install("--root", str(root), "--no-venv")
    assert second.returncode == 0, second.stdout + second.stderr
    assert snapshot(root) == after_first, "a second run changed files"
    # What the first run made.
    etc = root / "etc" / "rollback-watchdog"
    assert mode(root / "opt" / "rollback-watchdog") == 0o755
    assert mode(etc) == 0o750
    assert mode(root / "var" / "lib" / "rollback-watchdog") == 0o700
    installed = (etc / "config.yaml").read_text()
    assert "  state_path: /var/lib/rollback-watchdog/watchdog.db\n" in installed  # the unit's StateDirectory
    assert installed.replace("/var/lib/rollback-watchdog/watchdog.db", "./state/watchdog.db") == (
        REPO / "config.yaml").read_text()  # and nothing else changed
    assert mode(etc / "config.yaml") == 0o640
    assert mode(etc / "env") == 0o600
    assert not (root / "opt" / "rollback-watchdog" / "venv").exists()
    unit = root / "etc" / "systemd" / "system" / "rollback-watchdog.service"
    if (REPO / "systemd" / "rollback-watchdog.service").exists():
        assert unit.read_bytes() == (REPO / "systemd" / "rollback-watchdog.service").read_bytes()
        assert mode(unit) == 0o644
    # It says what it did, and that it left the user alone under --root.
    assert "created" in first.stdout and "installed" in first.stdout
    assert "skipped" in first.stdout and "system user" in first.stdout
    assert "created" not in second.stdout and "kept" in second.stdout


def test_install_never_overwrites_the_operators_config_or_env(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert install("--root", str(root), "--no-venv").returncode == 0
    etc = root / "etc" / "rollback-watchdog"
    (etc / "config.yaml").write_text("# the operator's own config\nwatchdog: {listen: 127.0.0.1:9999}\n")
    (etc / "env").write_text("WATCHDOG_API_TOKEN=s3cret\n")
    before = snapshot(root)
    r = install("--root", str(root), "--no-venv")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (etc / "config.yaml").read_text().startswith("# the operator's own config")
    assert (etc / "env").read_text() == "WATCHDOG_API_TOKEN=s3cret\n"
    assert snapshot(root) == before
    assert "never overwritten" in r.stdout


def test_install_copies_the_unit_when_the_source_has_one_and_follows_user(tmp_path: Path) -> None:
    unit = "[Service]\nUser=rollback-watchdog\nGroup=rollback-watchdog\nExecStart=/bin/true\n"
    src = fake_source(tmp_path, unit)
    root = tmp_path / "root"
    r = install("--root", str(root), "--no-venv", "--source", str(src), "--user", "wd")
    assert r.returncode == 0, r.stdout + r.stderr
    installed = root / "etc" / "systemd" / "system" / "rollback-watchdog.service"
    assert installed.read_text() == "[Service]\nUser=wd\nGroup=wd\nExecStart=/bin/true\n"
    assert mode(installed) == 0o644
    # A newer unit in the checkout replaces the installed one (it belongs to the package).
    (src / "systemd" / "rollback-watchdog.service").write_text(unit + "Restart=on-failure\n")
    r = install("--root", str(root), "--no-venv", "--source", str(src), "--user", "wd")
    assert r.returncode == 0 and "updated" in r.stdout
    assert installed.read_text().endswith("Restart=on-failure\n")


def test_install_without_a_unit_in_the_source_skips_it(tmp_path: Path) -> None:
    src = fake_source(tmp_path, None)
    root = tmp_path / "root"
    for _ in range(2):
        r = install("--root", str(root), "--no-venv", "--source", str(src))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "skipped    systemd unit" in r.stdout
    assert not (root / "etc" / "systemd").exists()
    assert (root / "etc" / "rollback-watchdog" / "config.yaml").exists()


def test_install_refuses_bad_arguments(tmp_path: Path) -> None:
    for args in (["--bogus"], ["--root"], ["--source", str(tmp_path / "nowhere")], ["--source", str(tmp_path)],
                 ["--user", "Not A User"]):
        r = install("--root", str(tmp_path / "root"), "--no-venv", *args) if args[0] != "--root" else install(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "install.sh:" in r.stderr
    r = install("--help")
    assert r.returncode == 0 and "--no-venv" in r.stdout


def test_env_file_has_a_placeholder_for_every_variable_the_config_needs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert install("--root", str(root), "--no-venv").returncode == 0
    etc = root / "etc" / "rollback-watchdog"
    env_text = (etc / "env").read_text()
    placeholders = set(re.findall(r"^#([A-Z][A-Z0-9_]*)=", env_text, re.M))
    # No value is set, only placeholders.
    assert all(line.startswith("#") or not line.strip() for line in env_text.splitlines())
    # check-config names every unset variable; each one has a placeholder.
    clean = {k: v for k, v in os.environ.items() if not re.fullmatch(r"[A-Z][A-Z0-9_]*", k) or k in
             {"PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV"}}
    r = run([sys.executable, "-m", "watchdog", "check-config", "-c", str(etc / "config.yaml")], env=clean, cwd=REPO)
    assert r.returncode == 2, r.stdout + r.stderr
    needed = set(re.findall(r"environment variable ([A-Z][A-Z0-9_]*) is not set", r.stdout + r.stderr))
    assert needed, r.stdout + r.stderr
    assert needed <= placeholders, f"no placeholder for {needed - placeholders}"


# --- end to end: a real Prometheus scrapes the real daemon through a rollback ------------------

async def prom_query(session: aiohttp.ClientSession, base: str, query: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": query}) as r:
        body = await r.json()
    assert body["status"] == "success", (query, body)
    return body["data"]["result"]


@pytest.mark.slow
async def test_prometheus_scrapes_the_daemon_and_sees_the_rollback(tmp_path, moto_url, aws_env, admin_api):
    prometheus = binary_or_skip("prometheus")
    wd_port, prom_port = free_ports(2)
    ns = f"PROM{time.monotonic_ns()}"
    # Without health checks and level 3: Prometheus is to see levels 1 and 2, nothing else decides.
    config = write(tmp_path, story.config(tmp_path, moto_url, admin_api.url, ns, listen=f"127.0.0.1:{wd_port}",
                                          shutdown_grace=None, levels=story.levels(admin_api.url, checks=False,
                                                                                   redeploy=False)))
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    prom_config = prometheus_yml(prom_dir, port=wd_port, interval="1s", evaluation="1s")
    base = f"http://127.0.0.1:{prom_port}"
    prom_log = (tmp_path / "prometheus.log").open("w")
    prom = subprocess.Popen(
        [prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={prom_dir / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=prom_log, stderr=subprocess.STDOUT,
    )
    pub = Publisher(moto_url, ns)
    # Level 1 does not cure it; level 2 does.
    pub.start(heal_when=lambda: admin_api.count("/admin/routing") > 0)
    d = await Daemon(config).start()

    def why() -> str:
        prom_log.flush()
        return "\nprometheus log:\n" + (tmp_path / "prometheus.log").read_text()[-3000:] + \
            "\ndaemon log:\n" + "\n".join(d.raw[-20:])

    async def until(query: str, ok: Any, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                result = await prom_query(session, base, query)
            except aiohttp.ClientError:
                result = []
            if result and ok(result):
                return result
            assert prom.poll() is None, "prometheus exited" + why()
            await asyncio.sleep(0.5)
        raise AssertionError(f"{query}: last answer {result}" + why())

    try:
        assert await d.port() == wd_port
        async with aiohttp.ClientSession() as session:
            await until('up{job="rollback-watchdog"}', lambda r: r[0]["value"][1] == "1", 30)
            levels = await until('watchdog_target_level{target="hybrid-routing"}',
                                 lambda r: float(r[0]["value"][1]) >= 1, 60)
            assert levels[0]["metric"]["job"] == "rollback-watchdog"
            assert levels[0]["metric"]["instance"] == f"127.0.0.1:{wd_port}"
            assert admin_api.count("/admin/feature-flags/hybrid-routing", "PUT") >= 1
            # The alert for it, from the shipped rules, evaluated by this Prometheus: the counter
            # is born at 1, so only the rule's new-series term can make it fire.
            alerts = await until(
                'ALERTS{alertname="WatchdogRollbackHappened", alertstate="firing", target="hybrid-routing"}',
                lambda r: any(a["metric"]["level"] == "1" for a in r), 30)
            assert {a["metric"]["outcome"] for a in alerts} <= {"succeeded", "failed"}
            assert all(a["metric"]["severity"] == "info" for a in alerts)
            # The watchdog is healthy: none of its health alerts fires.
            health = await prom_query(session, base, 'ALERTS{alertname=~"WatchdogDown|WatchdogEvaluationsStale|'
                                                     'WatchdogSourceDown|WatchdogTargetBlind"}')
            assert health == [], health
            # Every dashboard query runs against this Prometheus; the level panel shows the target.
            for where, expr, _ in queries(dashboard()):
                if expr.startswith("label_values("):
                    continue
                expr = expr.replace("$__rate_interval", "1m")
                expr = re.sub(r"\$(job|instance|target)\b", ".*", expr)
                result = await prom_query(session, base, expr)
                if "watchdog_target_level" in expr and "changes(" not in expr:
                    assert any(s["metric"].get("target") == "hybrid-routing" for s in result), (where, result)
        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
    finally:
        await pub.stop()
        await d.stop()
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        prom_log.close()
