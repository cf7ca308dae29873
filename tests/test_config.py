"""config.yaml loading (SPEC 3.2): shape, ${VAR}, secrets, one-line problems with paths and lines."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from watchdog.config import Config, ConfigError, load_config, parse_config
from watchdog.actions.command import CommandAction
from watchdog.actions.http import HttpAction
from watchdog.sources.cloudwatch import CloudWatchSource
from watchdog.sources.http_json import HttpJsonSource
from watchdog.config.types import Threshold

BASE = """\
watchdog:
  listen: 127.0.0.1:9718
  state_path: ./state/watchdog.db
  dry_run: false
  api_token: ${WATCHDOG_API_TOKEN}
aws:
  region: us-east-1
  endpoint_url: null
sources:
  - {name: cloudwatch, type: cloudwatch, interval: 30s}
  - {name: compliance, type: http_json, url: "${COMPLIANCE_URL}", interval: 60s}
targets:
  - name: hybrid-routing
    rules:
      - name: latency
        category: performance
        source: cloudwatch
        metric: {namespace: HybridRouting, name: Latency, dimensions: {Service: router}, stat: p99, period: 60s}
        threshold: "> 1500"
        datapoints_to_alarm: 3
        evaluation_periods: 5
        missing_data: missing
        level: 1
      - name: gdpr
        category: security
        source: compliance
        field: gdpr.compliant
        threshold: "== false"
        level: 2
    escalation:
      verify_window: 2m
      max_rollbacks_per_hour: 3
    levels:
      - level: 1
        name: feature-flags
        deadline: 2m
        actions:
          - type: http
            method: PUT
            url: "${ADMIN_API_URL}/admin/feature-flags/hybrid-routing"
            headers: {Authorization: "Bearer ${ADMIN_TOKEN}"}
            json: {enabled: false}
        checks:
          - {type: http, url: "${APP_URL}/health", expect_status: 200}
      - level: 2
        name: traffic-routing
        deadline: 5m
        actions:
          - {type: http, method: PUT, url: "${ADMIN_API_URL}/admin/routing", json: {mode: mcp_only}}
      - level: 3
        name: full-system
        deadline: 10m
        actions:
          - {type: command, argv: [/usr/local/bin/deploy-rollback, --to, previous], timeout: 8m}
notifications:
  - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
"""

API_TOKEN = "api-tok-7f3e9a"
ADMIN_TOKEN = "admin-s3cr3t-41d2"
SLACK = "https://hooks.slack.com/services/T000/B000/XyZsecret"
ENV = {
    "WATCHDOG_API_TOKEN": API_TOKEN,
    "COMPLIANCE_URL": "http://compliance.local/status",
    "ADMIN_API_URL": "http://admin.local",
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "APP_URL": "http://app.local",
    "SLACK_WEBHOOK_URL": SLACK,
}


@pytest.fixture(autouse=True)
def _clean_watchdog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # WATCHDOG_* in the runner's environment would override the YAML.
    for name in list(os.environ):
        if name.startswith("WATCHDOG_"):
            monkeypatch.delenv(name)


def mutate(old: str, new: str) -> str:
    assert BASE.count(old) == 1, f"{old!r} must occur exactly once in BASE"
    return BASE.replace(old, new)


def line_of(text: str, needle: str) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def problems_of(text: str, env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# --- a valid configuration ---------------------------------------------------


@pytest.fixture
def cfg() -> Config:
    return parse_config(BASE, ENV)


def test_full_config_loads_with_typed_values(cfg: Config) -> None:
    assert cfg.watchdog.listen_host == "127.0.0.1" and cfg.watchdog.listen_port == 9718
    assert cfg.watchdog.state_path == Path("./state/watchdog.db")
    assert cfg.watchdog.dry_run is False
    assert cfg.aws.region == "us-east-1" and cfg.aws.endpoint_url is None

    cw, comp = cfg.sources
    assert isinstance(cw, CloudWatchSource) and cw.interval == timedelta(seconds=30)
    assert isinstance(comp, HttpJsonSource) and comp.url == "http://compliance.local/status"
    assert cfg.source("compliance") is comp

    (target,) = cfg.targets
    latency, gdpr = target.rules
    assert latency.threshold == Threshold(">", 1500.0)
    assert (latency.m, latency.evaluation_periods, latency.level) == (3, 5, 1)
    assert latency.metric is not None
    assert latency.metric.period == timedelta(minutes=1) and latency.metric.stat == "p99"
    assert latency.metric.dimensions == {"Service": "router"}
    assert gdpr.threshold == Threshold("==", False)
    assert (gdpr.m, gdpr.evaluation_periods, gdpr.field, gdpr.missing_data) == (1, 1, "gdpr.compliant", "missing")

    assert target.escalation.verify_window == timedelta(minutes=2)
    assert target.escalation.max_rollbacks_per_hour == 3
    assert [lv.deadline for lv in target.levels] == [timedelta(minutes=2), timedelta(minutes=5), timedelta(minutes=10)]
    assert target.max_level == 3 and target.level(2).name == "traffic-routing" and target.level(4) is None

    flags = target.levels[0].actions[0]
    assert isinstance(flags, HttpAction)
    assert flags.method == "PUT" and flags.url == "http://admin.local/admin/feature-flags/hybrid-routing"
    assert flags.json_body == {"enabled": False}
    assert target.levels[0].checks[0].url == "http://app.local/health"
    assert target.levels[0].checks[0].expect_status == 200
    rollback = target.levels[2].actions[0]
    assert isinstance(rollback, CommandAction)
    assert rollback.argv == ["/usr/local/bin/deploy-rollback", "--to", "previous"]
    assert rollback.timeout == timedelta(minutes=8)


def test_secrets_are_secret_types_and_never_printed(cfg: Config) -> None:
    header = cfg.targets[0].levels[0].actions[0].headers["Authorization"]
    webhook = cfg.notifications[0].webhook_url
    token = cfg.watchdog.api_token
    for secret in (header, webhook, token):
        assert isinstance(secret, SecretStr)
    assert header.get_secret_value() == f"Bearer {ADMIN_TOKEN}"
    assert webhook.get_secret_value() == SLACK
    assert token is not None and token.get_secret_value() == API_TOKEN
    for text in (repr(cfg), str(cfg), cfg.model_dump_json(), repr(cfg.model_dump()), repr(cfg.targets[0])):
        for value in (API_TOKEN, ADMIN_TOKEN, SLACK):
            assert value not in text


def test_load_config_reads_a_file_and_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(BASE, encoding="utf-8")
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(path)
    assert cfg.targets[0].levels[0].checks[0].url == "http://app.local/health"
    # An explicit environ feeds ${VAR} instead of os.environ.
    cfg2 = load_config(path, {**ENV, "APP_URL": "http://other"})
    assert cfg2.targets[0].levels[0].checks[0].url == "http://other/health"


def test_load_config_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, ENV)
    assert info.value.problems == [f"{missing}: cannot read: No such file or directory"]


@pytest.mark.parametrize(
    "path, value",
    [
        (lambda c: c, "aws"),
        (lambda c: c.watchdog, "dry_run"),
        (lambda c: c.targets[0], "name"),
        (lambda c: c.targets[0].rules[0], "level"),
        (lambda c: c.targets[0].escalation, "verify_window"),
        (lambda c: c.targets[0].levels[0].actions[0], "url"),
        (lambda c: c.sources[0], "interval"),
    ],
)
def test_models_are_frozen(cfg: Config, path, value: str) -> None:
    obj = path(cfg)
    before = getattr(obj, value)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(obj, value, None)
    assert getattr(obj, value) == before


# --- one problem, one line, the right path -----------------------------------

CASES = [
    # id, old -> new, expected problem ({line}: the line that holds `at`), at
    ('unknown-key', '        missing_data: missing\n', '        missing_data: missing\n        evaluation_period: 4\n',
     'targets[0].rules[0].evaluation_period: unknown key (a typo?) (line {line})',
     'evaluation_period: 4'),
    ('unknown-top-level-key', 'aws:\n', 'awss:\n',
     'awss: unknown key (a typo?) (line {line})',
     'awss:'),
    ('top-level-typo-near-watchdog', 'aws:\n', 'watchdogs: {dry_run: true}\naws:\n',
     'watchdogs: unknown key (a typo?) (line {line})',
     'watchdogs:'),
    ('wrong-type', 'evaluation_periods: 5', 'evaluation_periods: five',
     'targets[0].rules[0].evaluation_periods: Input should be a valid integer, unable to parse string as '
     'an integer (line {line})',
     'evaluation_periods: five'),
    ('bad-duration', 'verify_window: 2m', 'verify_window: 2 minutes',
     "targets[0].escalation.verify_window: bad duration '2 minutes': write it like 500ms, 30s, 5m or 1h "
     '(line {line})',
     'verify_window:'),
    ('bare-number-duration', 'deadline: 5m', 'deadline: 300',
     'targets[0].levels[1].deadline: expected a duration like 500ms, 30s, 5m or 1h, got 300 (line {line})',
     'deadline: 300'),
    ('bad-duration-in-flow-source', 'interval: 30s}', 'interval: 30 sec}',
     "sources[0].interval: bad duration '30 sec': write it like 500ms, 30s, 5m or 1h (line {line})",
     'name: cloudwatch,'),
    ('bad-threshold', 'threshold: "== false"', 'threshold: "=> false"',
     "targets[0].rules[1].threshold: bad threshold '=> false': write an operator (> >= < <= == !=) and a "
     'value, like "> 1500" (line {line})',
     '=> false'),
    ('missing-source', 'source: compliance', 'source: complaince',
     "targets[0].rules[1].source: no source named 'complaince' (sources: cloudwatch, compliance) (line "
     '{line})',
     'source: complaince'),
    ('level-gap', '- level: 3', '- level: 4',
     'targets[0].levels: levels must be numbered 1..3 without gaps or repeats, got [1, 2, 4] (line {line})',
     '    levels:'),
    ('m-greater-than-n', 'datapoints_to_alarm: 3', 'datapoints_to_alarm: 6',
     'targets[0].rules[0].datapoints_to_alarm: 6 is more than evaluation_periods (5) (line {line})',
     'datapoints_to_alarm: 6'),
    ('rule-level-undefined', '"== false"\n        level: 2', '"== false"\n        level: 7',
     "targets[0].rules[1].level: level 7 is not defined in this target's levels (line {line})",
     'level: 7'),
    ('unknown-action-type', 'type: command', 'type: shell',
     "targets[0].levels[2].actions[0].type: unknown type 'shell' (expected one of 'http', 'command', "
     "'ssm_parameter', 'elbv2_weights', 'lambda_alias', 'ecs_service', 'appconfig') (line {line})",
     'type: shell'),
    ('unknown-source-type', 'type: http_json', 'type: graphite',
     "sources[1].type: unknown type 'graphite' (expected one of 'cloudwatch', 'http_json', 'prometheus', "
     "'securityhub', 'cost_explorer', 'alertmanager', 'cloudwatch_alarms') (line {line})",
     'type: graphite'),
    ('unknown-key-inside-tagged-union', 'timeout: 8m}', 'timeout: 8m, tmeout: 1m}',
     'targets[0].levels[2].actions[0].tmeout: unknown key (a typo?) (line {line})',
     'tmeout'),
    ('bad-category', 'category: security', 'category: securty',
     "targets[0].rules[1].category: must be one of: 'performance', 'security' or 'cost' (line {line})",
     'securty'),
    ('required-field', '        deadline: 10m\n', '',
     'targets[0].levels[2].deadline: required (line {line})',
     '- level: 3'),
    ('watchdog-bad-listen', 'listen: 127.0.0.1:9718', 'listen: nowhere',
     "watchdog.listen: expected host:port, like 127.0.0.1:9718, got 'nowhere' (line {line})",
     'listen: nowhere'),
    ('watchdog-unknown-key', 'dry_run: false', 'dryrun: false',
     'watchdog.dryrun: unknown key (a typo?) (line {line})',
     'dryrun'),
    ('unknown-channel-type', 'type: slack,', 'type: teams,',
     "notifications[0].type: unknown type 'teams' (expected one of 'slack', 'pagerduty', 'email', 'webhook') "
     '(line {line})',
     'type: teams'),
    ('slack-neither-webhook-nor-token', 'webhook_url: "${SLACK_WEBHOOK_URL}"', 'channel: "#ops"',
     'notifications[0]: set exactly one of webhook_url or token (line {line})',
     'channel: "#ops"'),
    ('slack-token-without-channel', 'webhook_url: "${SLACK_WEBHOOK_URL}"', 'token: "${SLACK_WEBHOOK_URL}"',
     "notifications[0]: a bot token needs `channel` (e.g. '#ops' or a channel id) (line {line})",
     'token: "${SLACK'),
    ('pagerduty-without-key', '{type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}', '{type: pagerduty}',
     'notifications[0].routing_key: required (line {line})',
     'type: pagerduty'),
    ('channel-for-an-unknown-target', 'webhook_url: "${SLACK_WEBHOOK_URL}"',
     'webhook_url: "${SLACK_WEBHOOK_URL}", targets: [hybrid-routng]',
     "notifications[0].targets: no target named 'hybrid-routng' (targets: hybrid-routing) (line {line})",
     'hybrid-routng'),
    ('unknown-event-filter', 'webhook_url: "${SLACK_WEBHOOK_URL}"',
     'webhook_url: "${SLACK_WEBHOOK_URL}", events: [incident_open]',
     "notifications[0].events[0]: must be one of: 'incident_opened', 'level_started', 'level_succeeded', "
     "'level_failed', 'verification_failed', 'mitigated', 'exhausted', 'blind', 'sight_restored', 'realarmed', 'would_run', "
     "'paused', 'resumed', 'resolved', 'recovered', 'outcome_unknown', 'recovery_failed', 'state_unwritable', "
     "'state_writable' or 'test' (line {line})",
     'incident_open'),
    ('threshold-and-change', 'threshold: "> 1500"', 'threshold: "> 1500"\n        change: {over: 1h, percent: "> 50"}',
     'targets[0].rules[0]: set threshold or change, not both (line {line})',
     '- name: latency'),
    ('neither-threshold-nor-change', '        threshold: "== false"\n', '',
     'targets[0].rules[1].threshold: required (or change: {{over: 24h, percent: "> 50"}}) (line {line})',
     '- name: gdpr'),
    ('promql-on-a-cloudwatch-rule', 'threshold: "> 1500"', 'threshold: "> 1500"\n        promql: up',
     "targets[0].rules[0].promql: not used by cloudwatch source 'cloudwatch'; use metric or expression (line {line})",
     'promql: up'),
    ('expression-without-metrics', '        metric: {namespace: HybridRouting, name: Latency, dimensions: {Service: router}, stat: p99, period: 60s}\n', '        expression: 100 * e / r\n',
     'targets[0].rules[0].metrics: required with expression: the named metrics it uses (line {line})',
     '- name: latency'),
    ('metric-and-expression', 'metric: {namespace: HybridRouting', 'expression: 100 * e / r\n        metrics: {e: {namespace: N, name: E}}\n        metric: {namespace: HybridRouting',
     'targets[0].rules[0]: set one of metric or expression, not both (line {line})',
     '- name: latency'),
    ('bad-math-metric-name', '        metric: {namespace: HybridRouting, name: Latency, dimensions: {Service: router}, stat: p99, period: 60s}\n', '        expression: 100 * Errors\n        metrics: {Errors: {namespace: N, name: E}}\n',
     "targets[0].rules[0].metrics: metric name 'Errors': start with a lowercase letter; letters, digits and _ only (line {line})",
     'metrics: {Errors'),
    ('samples-not-a-metric', '        metric: {namespace: HybridRouting, name: Latency, dimensions: {Service: router}, stat: p99, period: 60s}\n', '        expression: 100 * e / r\n        metrics: {e: {namespace: N, name: E}, r: {namespace: N, name: R}}\n        min_samples: 20\n        samples: requests\n',
     "targets[0].rules[0].samples: 'requests' is not one of this rule's metrics (line {line})",
     'samples: requests'),
    ('cost-explorer-too-often', '  - {name: compliance, type: http_json', '  - {name: ce, type: cost_explorer, interval: 15m}\n  - {name: compliance, type: http_json',
     'sources[1].interval: at least 1h: every Cost Explorer call is billed (got 15m) (line {line})',
     'name: ce'),
    ('max-age-on-a-sampled-source', '        field: gdpr.compliant\n', '        field: gdpr.compliant\n        max_age: 5m\n',
     'targets[0].rules[1].max_age: a http_json reading is stamped when read, so it is never old; max_age applies to '
     'cloudwatch and cost_explorer rules (a stuck source is caught by blind_after) (line {line})',
     'max_age: 5m'),
    ('breaching-with-max-age', '        missing_data: missing\n', '        missing_data: breaching\n        max_age: 5m\n',
     'targets[0].rules[0].missing_data: breaching cannot go with min_samples or max_age: they make periods missing '
     'on purpose (too little traffic, too old), and those must not count as breaches (line {line})',
     'missing_data: breaching'),
    ('duplicate-channel-names', '  - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}\n',
     '  - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}\n  - {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}\n',
     "notifications: channel name 'slack' is used 2 times (line {line})",
     'notifications:'),
]


@pytest.mark.parametrize("old, new, expected, at", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_problem_with_path_and_line(old: str, new: str, expected: str, at: str) -> None:
    text = mutate(old, new)
    assert problems_of(text) == [expected.format(line=line_of(text, at))]


def test_unset_variable_is_named() -> None:
    env = {k: v for k, v in ENV.items() if k != "APP_URL"}
    assert problems_of(BASE, env) == [
        f"targets[0].levels[0].checks[0].url: environment variable APP_URL is not set (line {line_of(BASE, 'APP_URL')})"
    ]


def test_unset_secret_variable_names_it_without_values() -> None:
    env = {k: v for k, v in ENV.items() if k != "ADMIN_TOKEN"}
    (problem,) = problems_of(BASE, env)
    assert problem == (
        "targets[0].levels[0].actions[0].headers.Authorization: environment variable ADMIN_TOKEN is not set "
        f"(line {line_of(BASE, 'ADMIN_TOKEN')})"
    )


def test_unset_variable_in_a_typed_field_is_the_only_problem() -> None:
    text = mutate("interval: 30s}", 'interval: "${POLL_EVERY}"}')
    assert problems_of(text) == [
        f"sources[0].interval: environment variable POLL_EVERY is not set (line {line_of(text, 'POLL_EVERY')})"
    ]


def test_every_unset_variable_is_reported() -> None:
    env = {k: v for k, v in ENV.items() if k != "ADMIN_API_URL"}
    assert problems_of(BASE, env) == [
        f"targets[0].levels[0].actions[0].url: environment variable ADMIN_API_URL is not set (line {line_of(BASE, 'feature-flags/')})",
        f"targets[0].levels[1].actions[0].url: environment variable ADMIN_API_URL is not set (line {line_of(BASE, 'admin/routing')})",
    ]


@pytest.mark.parametrize(
    "text, line",
    [
        (mutate("  dry_run: false\n", "  dry_run: [false\n"), 5),  # found at the next key
        (mutate("aws:\n  region", "aws:\n\tregion"), 7),
    ],
)
def test_yaml_syntax_error_is_one_line_with_its_line(text: str, line: int) -> None:
    (problem,) = problems_of(text)
    assert problem.startswith("config: YAML syntax error: ")
    assert f"(line {line}, column " in problem


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    (problem,) = problems_of(text)
    assert problem.startswith("config: expected a mapping at the top")


def test_problems_are_collected_not_first_only() -> None:
    text = mutate("evaluation_periods: 5", "evaluation_periods: 0").replace("verify_window: 2m", "verify_window: 2x")
    problems = problems_of(text)
    assert [p.split(":")[0] for p in problems] == [
        "targets[0].rules[0].evaluation_periods",
        "targets[0].escalation.verify_window",
    ]


def test_errors_do_not_echo_secret_values() -> None:
    text = mutate("category: security", "category: securty")
    joined = "\n".join(problems_of(text))
    for value in (API_TOKEN, ADMIN_TOKEN, SLACK):
        assert value not in joined


# --- WATCHDOG_* overrides the watchdog: section ------------------------------


def test_env_overrides_watchdog_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_DRY_RUN", "true")
    monkeypatch.setenv("WATCHDOG_LISTEN", "127.0.0.1:1234")
    monkeypatch.setenv("WATCHDOG_API_TOKEN", "from-env")
    monkeypatch.setenv("WATCHDOG_SHUTDOWN_GRACE", "5s")
    cfg = parse_config(BASE, ENV)
    assert cfg.watchdog.dry_run is True
    assert cfg.watchdog.listen == "127.0.0.1:1234" and cfg.watchdog.listen_port == 1234
    assert cfg.watchdog.api_token is not None and cfg.watchdog.api_token.get_secret_value() == "from-env"
    assert cfg.watchdog.shutdown_grace == timedelta(seconds=5)
    # untouched keys keep the YAML's values
    assert cfg.watchdog.state_path == Path("./state/watchdog.db")


def test_env_overrides_apply_without_a_watchdog_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_DRY_RUN", "1")
    text = BASE.split("aws:\n", 1)[1]
    cfg = parse_config("aws:\n" + text, ENV)
    assert cfg.watchdog.dry_run is True
    assert cfg.watchdog.listen == "127.0.0.1:9718" and cfg.watchdog.api_token is None


def test_without_env_the_yaml_wins() -> None:
    cfg = parse_config(mutate("dry_run: false", "dry_run: true"), ENV)
    assert cfg.watchdog.dry_run is True


def test_bad_env_override_is_a_problem_on_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_LISTEN", "garbage")
    (problem,) = problems_of(BASE)
    assert problem.startswith("watchdog.listen: expected host:port, like 127.0.0.1:9718, got 'garbage'")


def test_an_alert_rule_needs_a_matcher() -> None:
    text = BASE.replace("  - {name: compliance, type: http_json", "  - {name: am, type: alertmanager}\n  - {name: compliance, type: http_json")
    text = text.replace('        source: compliance\n        field: gdpr.compliant\n        threshold: "== false"\n',
                        "        source: am\n        alert: {}\n")
    assert problems_of(text) == [
        f"targets[0].rules[1].alert: at least one label matcher, e.g. {{alertname: HighErrorRate}} (line {line_of(text, 'alert: {}')})"]
    ok = text.replace("alert: {}", "alert: {alertname: HighErrorRate}")
    assert parse_config(ok, ENV).targets[0].rules[1].judged_by.breached_by(True)
