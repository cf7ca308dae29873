"""The command line as an operator meets it: exit codes, one line per problem, no traceback."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from binaries import cli
from configs import http, hybrid_routing, level, line_of, metric_rule, to_yaml


def flags(deadline: str = "2m", url: str = "http://127.0.0.1:9/admin/flags") -> dict[str, Any]:
    return level(1, "feature-flags", http(url, json={"enabled": False}), deadline=deadline)


def good(**overrides: Any) -> dict[str, Any]:
    """The smallest config the daemon takes: no aws section, no state file, one level."""
    return hybrid_routing(**{"aws_endpoint": None, "interval": "30s", "levels": [flags()], **overrides})


GOOD = to_yaml(good())


def test_check_config_accepts_the_shipped_example():
    env = {
        "WATCHDOG_API_TOKEN": "t0ken", "COMPLIANCE_URL": "http://127.0.0.1:9/compliance",
        "ADMIN_API_URL": "http://127.0.0.1:9", "ADMIN_TOKEN": "adm1n", "APP_URL": "http://127.0.0.1:9",
        "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack", "PAGERDUTY_ROUTING_KEY": "r0ute", "SMTP_PASSWORD": "pw",
        "AUDIT_WEBHOOK_URL": "http://127.0.0.1:9/audit", "AUDIT_WEBHOOK_SECRET": "s3cret",
        "PROMETHEUS_URL": "http://127.0.0.1:9090",
    }
    r = cli("check-config", "-c", "config.yaml", env=env)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


FULL = level(3, "full", {"type": "command", "argv": ["true"]}, deadline="1m")
BAD = [  # the config, the problem, and what stands on the line the problem names
    (good(rule={"colour": "red"}), "targets[0].rules[0].colour: unknown key (a typo?)", "colour:"),
    (good(interval="30 seconds"),
     "sources[0].interval: bad duration '30 seconds': write it like 500ms, 30s, 5m or 1h", "interval:"),
    (good(levels=[flags(deadline="soon")]),
     "targets[0].levels[0].deadline: bad duration 'soon': write it like 500ms, 30s, 5m or 1h", "deadline:"),
    (good(rule={"source": "prometheus"}),
     "targets[0].rules[0].source: no source named 'prometheus' (sources: cloudwatch)", "source: prometheus"),
    (good(levels=[flags(), FULL]),
     "targets[0].levels: levels must be numbered 1..2 without gaps or repeats, got [1, 3]", "levels:"),
    (good(levels=[flags(url="${ADMIN_API_URL}/admin/flags")]),
     "targets[0].levels[0].actions[0].url: environment variable ADMIN_API_URL is not set", "ADMIN_API_URL"),
    (good(listen=[1, 2]), "watchdog.listen: Input should be a valid string", "listen:"),
]


@pytest.mark.parametrize(
    "text, expected",
    [(to_yaml(config), f"{problem} (line {line_of(to_yaml(config), at)})") for config, problem, at in BAD]
    + [(GOOD.replace("targets:", "targets: [\n"), "YAML syntax error")],
    ids=["unknown-key", "bad-interval", "bad-deadline", "missing-source", "level-gap", "unset-var", "wrong-type", "yaml"],
)
def test_check_config_reports_each_problem_on_one_line(write_config, text, expected):
    path = write_config(text)
    r = cli("check-config", "-c", path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]


def test_yaml_syntax_error_names_its_line(write_config):
    path = write_config(GOOD.replace("targets:", "targets: [\n"))
    r = cli("check-config", "-c", path)
    assert r.returncode == 2
    assert "(line " in r.stderr


def test_several_problems_give_several_lines(write_config):
    path = write_config(to_yaml(good(interval="30x", levels=[flags(deadline="2")])))
    r = cli("check-config", "-c", path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 2


def test_missing_file_and_bad_usage_exit_2():
    r = cli("check-config", "-c", "/nonexistent/config.yaml")
    assert (r.returncode, "Traceback" in r.stderr) == (2, False)
    assert "cannot read" in r.stderr
    r = cli("frobnicate")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_run_with_a_bad_config_exits_2_without_traceback(write_config):
    r = cli("run", "-c", write_config(to_yaml(good(stat="Median"))))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("targets[0].rules[0].metric.stat: unknown statistic 'Median'")
    assert "Traceback" not in r.stderr


def once(aws: str, ns: str, admin: str, **overrides: Any) -> str:
    """Two rules on what _put writes: latency (2 of 3 over 1500 alarm) and errors; the flags off at level 1."""
    rules = [metric_rule(namespace=ns, stat="Maximum", datapoints_to_alarm=2, evaluation_periods=3),
             metric_rule("errors", namespace=ns, metric="Errors", stat="Sum", threshold="> 10")]
    levels = [flags(url=f"{admin}/admin/flags")]
    return to_yaml(hybrid_routing(aws_endpoint=aws, interval="30s", rules=rules, levels=levels, **overrides))


def _put(moto_url: str, ns: str, name: str, values: list[float]) -> None:
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url)
    now = datetime.now(timezone.utc)
    # One value per complete minute bucket, newest first: buckets -1, -2, -3 before the current one.
    base = now.replace(second=0, microsecond=0)
    for i, v in enumerate(values, start=1):
        cw.put_metric_data(Namespace=ns, MetricData=[{"MetricName": name, "Value": v, "Timestamp": base - timedelta(minutes=i) + timedelta(seconds=5)}])


@pytest.mark.parametrize("latency, code, state", [([2000, 2100, 100], 1, "alarm"), ([100, 2100, 100], 0, "ok")])
def test_run_once_prints_every_rule_and_exits_1_on_alarm(write_config, moto_url, aws_env, admin_api, latency, code, state):
    # The buckets are real minutes: keep the write and the read inside the same one.
    second = datetime.now(timezone.utc).second
    if second >= 45:
        time.sleep(61 - second)
    ns = f"ONCE{time.monotonic_ns()}"
    _put(moto_url, ns, "Latency", latency)
    _put(moto_url, ns, "Errors", [3, 4, 5])
    path = write_config(once(moto_url, ns, admin_api.url))
    r = cli("run", "-c", path, "--once", env=aws_env)
    assert r.returncode == code, r.stdout + r.stderr
    rows = {ln.split()[1]: ln.split() for ln in r.stdout.splitlines()[1:] if ln.strip()}
    assert rows["latency"][3] == state
    assert rows["errors"][3] == "ok" and rows["errors"][4] == "3"
    assert admin_api.calls == []  # --once never acts


def test_run_once_with_cloudwatch_down_is_not_an_alarm(write_config, aws_env, admin_api):
    path = write_config(once("http://127.0.0.1:9", "X", admin_api.url, retry={"attempts": 1}))
    r = cli("run", "-c", path, "--once", env=aws_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "insufficient_data" in r.stdout
    assert "source cloudwatch is down" in r.stdout


def test_run_that_cannot_start_says_why_in_one_line(write_config, tmp_path):
    cfg = good(aws={"profile": "no-such-profile"}, state_path=tmp_path / "w.db")
    r = cli("run", "-c", write_config(to_yaml(cfg)), env={"AWS_CONFIG_FILE": str(tmp_path / "none"),
                                                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")})
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "Unclosed" not in r.stderr
    assert "cannot start: ProfileNotFound" in r.stderr
