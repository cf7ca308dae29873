"""Config files that are wrong in ways a user or an attacker finds (issue 12: 2, 6, 9, 10, 11, 15).

Every unusable file is a ConfigError of one-line problems, never another exception: the daemon reloads
through the same loader on SIGHUP (tests/test_reload_hostile.py drives that on the real process).
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config import Config, ConfigError, load_config, parse_config

SMALL = """\
watchdog:
  listen: 127.0.0.1:0
sources:
  - {name: cw, type: cloudwatch, interval: 30s}
targets:
  - name: web
    rules:
      - name: latency
        category: performance
        source: cw
        metric: {namespace: N, name: Latency, stat: Average, period: 60s}
        threshold: "> 1500"
    escalation: {verify_window: 2m}
    levels:
      - level: 1
        name: flags
        deadline: 2m
        actions:
          - {type: http, method: PUT, url: "http://127.0.0.1:9/flags", json: {enabled: false}}
        checks:
          - {type: http, url: "http://127.0.0.1:9/health"}
"""


ACTION = '{type: http, method: PUT, url: "http://127.0.0.1:9/flags", json: {enabled: false}}'


@pytest.fixture(autouse=True)
def _no_watchdog_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WATCHDOG_"):
            monkeypatch.delenv(name)


def edit(old: str, new: str, text: str = SMALL) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env or {})
    return info.value.problems


def file_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    for line in info.value.problems:
        assert "\n" not in line and line.isprintable(), line
    return info.value.problems


def test_the_small_config_is_valid() -> None:
    assert isinstance(parse_config(SMALL, {}), Config)


# --- files that are not UTF-8 text (defects 2 and 6) ---------------------------------------------


def test_a_latin1_byte_in_a_comment_is_named_by_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(SMALL.replace("watchdog:\n", "watchdog:\n  # caf\xe9\n").encode("latin-1"))
    assert file_problems(path) == [f"{path}: not UTF-8: byte 0xe9 on line 2, column 8 (save the file as UTF-8)"]


def test_a_utf16_file_is_refused_with_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(SMALL.encode("utf-16"))
    assert file_problems(path) == [
        f"{path}: is UTF-16 or UTF-32 text (it starts with a byte-order mark): save it as UTF-8"]


def test_binary_content_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(bytes(range(256)) * 8)
    (line,) = file_problems(path)
    assert line.startswith(f"{path}: not UTF-8: byte 0x80 on line ")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.encode())
    assert load_config(path, {}).targets[0].name == "web"


def test_a_nul_byte_is_a_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(SMALL.encode() + b"\x00\n")
    (line,) = file_problems(path)
    assert line.startswith(f"{path}: YAML syntax error: unacceptable character #x0000")


# --- values that overflowed or recursed ---------------------------------------------------------


def test_a_huge_duration_is_too_long_not_an_overflow() -> None:
    assert problems(edit("verify_window: 2m", "verify_window: 99999999999999d")) == [
        "targets[0].escalation.verify_window: duration '99999999999999d' is too long: at most 3650d (line 13)"]


def test_an_integer_of_thousands_of_digits_is_refused() -> None:
    (line,) = problems(edit('threshold: "> 1500"',
                            'threshold: "> 1500"\n        evaluation_periods: ' + "9" * 5000))
    assert line == "config: YAML syntax error: a number of more than 100 digits (line 13, column 29)"


def test_a_recursive_anchor_is_refused_naming_its_line() -> None:
    text = edit("json: {enabled: false}", "json: &a [*a]")
    assert problems(text) == [
        "config: YAML anchors and aliases are not supported (&a on line 19): write the value out"]


def test_nesting_deeper_than_the_loader_can_walk_is_one_line() -> None:
    depth = 600  # under libyaml's own limit (1000), over what a recursive walk of the tree survives
    text = edit("json: {enabled: false}", "json: " + "[" * depth + "]" * depth)
    assert problems(text) == ["config: nested too deeply to read (a config needs a few levels, not hundreds)"]


def test_nesting_past_libyaml_limit_names_the_line() -> None:
    text = edit("json: {enabled: false}", "json: " + "[" * 5000 + "]" * 5000)
    (line,) = problems(text)
    assert line.startswith("config: YAML syntax error: exceeded maximum nesting depth (line 19, column")


# --- anchors and aliases: refused before anything is expanded (defect 6) ------------------------

def bomb(levels: int) -> str:
    """The "billion laughs": each level nine aliases of the one before, in a valid action body."""
    rows = ['              lol0: &l0 "lol"']
    rows += [f"              lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return edit(f"          - {ACTION}\n", '          - type: http\n            url: "http://127.0.0.1:9/flags"\n'
                "            json:\n" + "\n".join(rows) + "\n")


def test_a_small_bomb_is_refused_at_its_first_anchor() -> None:
    text = bomb(4)
    assert problems(text) == [
        "config: YAML anchors and aliases are not supported (&l0 on line 22): write the value out"]


def test_an_alias_without_anchor_is_a_yaml_error_with_its_line() -> None:
    (line,) = problems(edit("json: {enabled: false}", "json: *nowhere"))
    assert line.startswith("config: YAML syntax error: found undefined alias (line 19, column")


def test_an_ampersand_inside_a_value_is_not_an_anchor() -> None:
    text = edit('{type: http, method: PUT, url: "http://127.0.0.1:9/flags", json: {enabled: false}}',
                '{type: command, argv: [sh, -c, "a && b & c"]}')
    text = edit('url: "http://127.0.0.1:9/health"', 'url: "http://127.0.0.1:9/health?a=1&b=2"', text)
    cfg = parse_config(text, {})
    assert cfg.targets[0].levels[0].actions[0].argv == ["sh", "-c", "a && b & c"]


def test_a_nine_level_bomb_is_refused_within_a_small_address_space(tmp_path: Path) -> None:
    """9^9 copies of "lol" once expanded: gigabytes. Under a 512 MiB address-space limit check-config
    must still answer with the one line (before, the expansion ran out of memory)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (512 * 1024 * 1024, 512 * 1024 * 1024))

    r = subprocess.run([sys.executable, "-m", "watchdog", "check-config", "-c", str(path)], capture_output=True,
                       text=True, timeout=300, preexec_fn=limit)
    assert (r.returncode, r.stderr) == (
        2, "config: YAML anchors and aliases are not supported (&l0 on line 22): write the value out\n"
           .replace("config", str(path), 1))


# --- duplicate keys (defect 10) -----------------------------------------------------------------


def test_a_second_threshold_is_an_error_naming_both_lines() -> None:
    text = edit('threshold: "> 1500"\n', 'threshold: "> 1500"\n        threshold: "< 1"\n')
    assert problems(text) == [
        "targets[0].rules[0].threshold: duplicate key (lines 12 and 13): YAML would silently keep only the last one"]


def test_a_duplicate_key_in_a_flow_mapping_names_its_columns() -> None:
    text = edit("interval: 30s}", "interval: 30s, interval: 1s}")
    assert problems(text) == [
        "sources[0].interval: duplicate key (line 4, columns 34 and 49): YAML would silently keep only the last one"]


def test_a_repeated_top_level_section_is_an_error() -> None:
    text = SMALL + "sources: []\n"
    assert problems(text) == ["sources: duplicate key (lines 3 and 22): YAML would silently keep only the last one"]


# --- lower bounds on every duration (defect 9) ----------------------------------------------------

MINIMUMS = [
    ("interval: 30s}", "interval: 0s}", "sources[0].interval: at least 100ms (got 0s) (line 4)"),
    ("interval: 30s}", "interval: 30s, timeout: 0ms}", "sources[0].timeout: at least 100ms (got 0s) (line 4)"),
    ("interval: 30s}", "interval: 30s, blind_after: 0s}", "sources[0].blind_after: at least 1s (got 0s) (line 4)"),
    ("interval: 30s}", "interval: 30s, retry: {initial_backoff: 0ms}}",
     "sources[0].retry.initial_backoff: at least 10ms (got 0s) (line 4)"),
    ("interval: 30s}", "interval: 30s, retry: {initial_backoff: 1s, max_backoff: 100ms}}",
     "sources[0].retry: max_backoff (100ms) is shorter than initial_backoff (1s) (line 4)"),
    ("deadline: 2m", "deadline: 0s", "targets[0].levels[0].deadline: at least 100ms (got 0s) (line 17)"),
    ('json: {enabled: false}}', 'json: {enabled: false}, timeout: 0ms}',
     "targets[0].levels[0].actions[0].timeout: at least 100ms (got 0s) (line 19)"),
    ('json: {enabled: false}}', 'json: {enabled: false}, retry: {max_backoff: 0ms}}',
     "targets[0].levels[0].actions[0].retry.max_backoff: at least 10ms (got 0s) (line 19)"),
    ('health"}', 'health", timeout: 50ms}', "targets[0].levels[0].checks[0].timeout: at least 100ms (got 50ms) (line 21)"),
    ("verify_window: 2m", "verify_window: 0s", "targets[0].escalation.verify_window: at least 1s (got 0s) (line 13)"),
    ('threshold: "> 1500"', 'threshold: "> 1500"\n        max_age: 0s',
     "targets[0].rules[0].max_age: at least 1s (got 0s) (line 13)"),
    ('threshold: "> 1500"', 'change: {over: 0.5s, percent: "> 50"}',
     "targets[0].rules[0].change.over: at least 1s (got 500ms) (line 12)"),
    ("listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  shutdown_grace: 0s", "watchdog.shutdown_grace: at least 1s (got 0s) (line 3)"),
]


@pytest.mark.parametrize("old, new, expected", MINIMUMS, ids=[m[2].split(":")[0] for m in MINIMUMS])
def test_each_duration_has_a_minimum_named_in_the_error(old: str, new: str, expected: str) -> None:
    assert problems(edit(old, new)) == [expected]


def test_the_minimum_itself_is_accepted() -> None:
    text = edit("interval: 30s}", "interval: 100ms, timeout: 100ms, retry: {attempts: 1, initial_backoff: 10ms, "
                "max_backoff: 10ms}}")
    text = edit("deadline: 2m", "deadline: 100ms", edit("verify_window: 2m", "verify_window: 1s", text))
    cfg = parse_config(text, {})
    assert cfg.sources[0].interval.total_seconds() == 0.1


def test_channel_durations_have_minimums() -> None:
    text = SMALL + ('notifications:\n  - {type: webhook, url: "http://127.0.0.1:9/h", timeout: 0s,'
                    ' retry: {initial_backoff: 5ms}}\n  - {type: slack, webhook_url: "http://127.0.0.1:9/s",'
                    ' retry: {initial_backoff: 1m, max_backoff: 1s}}\n')
    assert problems(text) == [
        "notifications[0].timeout: at least 100ms (got 0s) (line 23)",
        "notifications[0].retry.initial_backoff: at least 10ms (got 5ms) (line 23)",
        "notifications[1].retry: max_backoff (1s) is shorter than initial_backoff (1m) (line 24)",
    ]


def test_alertmanager_alert_ttl_has_a_minimum() -> None:
    text = edit("  - {name: cw, type: cloudwatch, interval: 30s}\n",
                "  - {name: cw, type: cloudwatch, interval: 30s}\n  - {name: am, type: alertmanager, alert_ttl: 0s}\n")
    assert problems(text) == ["sources[1].alert_ttl: at least 1m (got 0s) (line 5)"]


def test_a_zero_shutdown_grace_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_SHUTDOWN_GRACE", "0s")
    assert problems(SMALL) == ["watchdog.shutdown_grace: at least 1s (got 0s) (line 1)"]


# --- upper bounds on intervals (defect 10) --------------------------------------------------------


@pytest.mark.parametrize("source, interval, expected", [
    ("{name: cw, type: cloudwatch, interval: 999999999d}", None,
     "sources[0].interval: duration '999999999d' is too long: at most 3650d (line 4)"),
    ("{name: cw, type: cloudwatch, interval: 2d}", None, "sources[0].interval: at most 1d (got 2d) (line 4)"),
    ("{name: cw, type: cloudwatch, interval: 1d}", "1d", None),
    ("{name: ce, type: cost_explorer, interval: 8d}", None, "sources[1].interval: at most 7d (got 8d) (line 5)"),
    ("{name: ce, type: cost_explorer, interval: 7d}", "7d", None),
])
def test_intervals_have_a_maximum(source: str, interval: str | None, expected: str | None) -> None:
    text = SMALL.replace("  - {name: cw, type: cloudwatch, interval: 30s}\n",
                         "  - {name: cw, type: cloudwatch, interval: 30s}\n  - " + source + "\n"
                         if "cost_explorer" in source else "  - " + source + "\n")
    if expected is None:
        from watchdog.config.types import format_duration

        assert format_duration(parse_config(text, {}).sources[-1].interval) == interval
    else:
        assert problems(text) == [expected]


# --- URLs, programs and the state path (defect 10) ------------------------------------------------

@pytest.mark.parametrize("old, new, expected", [
    ('url: "http://127.0.0.1:9/flags"', 'url: "javascript:alert(1)"',
     "targets[0].levels[0].actions[0].url: must be an http:// or https:// URL (line 19)"),
    ('url: "http://127.0.0.1:9/flags"', 'url: "ftp://example.com/x"',
     "targets[0].levels[0].actions[0].url: must be an http:// or https:// URL (line 19)"),
    ('url: "http://127.0.0.1:9/flags"', 'url: "http:///no-host"',
     "targets[0].levels[0].actions[0].url: must be an http:// or https:// URL (line 19)"),
    ('url: "http://127.0.0.1:9/flags"', 'url: "http://127.0.0.1:9/flags", probe: "not a url"',
     "targets[0].levels[0].actions[0].probe: must be an http:// or https:// URL (line 19)"),
    ('url: "http://127.0.0.1:9/health"', 'url: "javascript:alert(1)"',
     "targets[0].levels[0].checks[0].url: must be an http:// or https:// URL (line 21)"),
    (ACTION, "{type: command, argv: ['']}",
     "targets[0].levels[0].actions[0].argv: argv[0] is empty: it must name the program to run (line 19)"),
    (ACTION, "{type: command, argv: ['  ', x]}",
     "targets[0].levels[0].actions[0].argv: argv[0] is empty: it must name the program to run (line 19)"),
    (ACTION, '{type: command, argv: [/bin/echo, "a\\0b"]}',
     "targets[0].levels[0].actions[0].argv: an argument contains a NUL byte, which no program can receive (line 19)"),
    ("{name: cw, type: cloudwatch, interval: 30s}", '{name: cw, type: http_json, url: "not a url"}',
     "sources[0].url: must be an http:// or https:// URL (line 4)"),
    ("listen: 127.0.0.1:0", 'listen: 127.0.0.1:0\n  state_path: ""',
     "watchdog.state_path: must name a file, like ./state/watchdog.db (line 3)"),
])
def test_wrong_values_that_only_failed_at_run_time(old: str, new: str, expected: str) -> None:
    text = edit(old, new)
    if "http_json" in new:
        text = text.replace("        metric: {namespace: N, name: Latency, stat: Average, period: 60s}\n",
                            "        field: latency\n")
    assert problems(text) == [expected]


def test_a_state_path_that_is_a_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = edit("listen: 127.0.0.1:0", f'listen: 127.0.0.1:0\n  state_path: "{tmp_path}"')
    expected = "watchdog.state_path: is a directory: name the state file inside it, like <dir>/watchdog.db"
    assert problems(text) == [expected + " (line 3)"]
    monkeypatch.setenv("WATCHDOG_STATE_PATH", str(tmp_path))
    assert problems(SMALL) == [expected + " (line 1)"]
    monkeypatch.setenv("WATCHDOG_STATE_PATH", str(tmp_path / "w.db"))
    assert parse_config(SMALL, {}).watchdog.state_path == tmp_path / "w.db"


def test_urls_are_judged_after_expansion() -> None:
    text = edit('url: "http://127.0.0.1:9/flags"', 'url: "${ADMIN_URL}/flags"')
    assert problems(text, {"ADMIN_URL": "javascript:alert(1)//"}) == [
        "targets[0].levels[0].actions[0].url: must be an http:// or https:// URL (line 19)"]
    cfg = parse_config(text, {"ADMIN_URL": "https://admin.example.com"})
    assert cfg.targets[0].levels[0].actions[0].url == "https://admin.example.com/flags"


# --- secrets are never echoed (defect 15) ---------------------------------------------------------

TOKEN = "hjkey-8f2d1c9a7b"


def test_a_secret_named_variable_in_a_duration_field_is_masked() -> None:
    text = edit("interval: 30s}", 'interval: "${WEBHOOK_TOKEN}"}')
    assert problems(text, {"WEBHOOK_TOKEN": TOKEN}) == [
        "sources[0].interval: bad duration '***': write it like 500ms, 30s, 5m or 1h (line 4)"]


def test_a_secret_named_variable_is_masked_wherever_it_is_quoted() -> None:
    text = edit("stat: Average", 'stat: "${API_KEY}"')
    text = edit('threshold: "> 1500"', 'threshold: "> ${API_KEY}"', text)
    lines = problems(text, {"API_KEY": TOKEN})
    assert len(lines) == 2 and all(TOKEN not in p and "***" in p for p in lines)


def test_a_secret_typed_value_written_in_the_file_is_masked_too() -> None:
    secret = "Bearer zz-literal-secret-zz"
    text = edit('json: {enabled: false}}', f'json: {{enabled: false}}, headers: {{Authorization: "{secret}"}}}}')
    text = edit("stat: Average", 'stat: "zz-literal-secret-zz"', text)
    (line,) = problems(text)
    assert "zz-literal-secret-zz" not in line and line.startswith("targets[0].rules[0].metric.stat: unknown statistic '***'")


# --- warnings: legal, likely wrong, nothing stopped (defect 11) --------------------------------


def test_a_retry_budget_longer_than_the_interval_is_a_warning() -> None:
    cfg = parse_config(edit("interval: 30s}", "interval: 5s, timeout: 10s, retry: {attempts: 3}}"), {})
    assert cfg.warnings == (
        "warning: sources[0].timeout: timeout x attempts (10s x 3 = 30s) is longer than the interval (5s): "
        "a slow answer can hold a poll past the next one",)


def test_a_budget_that_fits_the_interval_is_no_warning() -> None:
    assert parse_config(edit("interval: 30s}", "interval: 30s, timeout: 10s, retry: {attempts: 3}}"), {}).warnings == ()
    pushed = edit("  - {name: cw, type: cloudwatch, interval: 30s}\n",
                  "  - {name: cw, type: cloudwatch, interval: 30s}\n  - {name: am, type: alertmanager, interval: 1s}\n")
    assert parse_config(pushed, {}).warnings == ()  # Alertmanager pushes: no call, no budget


def test_check_config_prints_the_warning_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from watchdog.cli.main import main

    path = tmp_path / "c.yaml"
    path.write_text(edit("interval: 30s}", "interval: 5s, timeout: 10s}"))
    assert main(["check-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (1 sources, 1 targets, 1 rules)\n"
    assert err == ("warning: sources[0].timeout: timeout x attempts (10s x 3 = 30s) is longer than the interval (5s): "
                   "a slow answer can hold a poll past the next one\n")


# --- one line per problem, whatever the key ---------------------------------------------------


def test_a_key_with_a_newline_stays_on_one_line() -> None:
    (line,) = problems(edit("listen: 127.0.0.1:0", 'listen: 127.0.0.1:0\n  "evil\\nkey": 1'))
    assert line == "watchdog.evil\\nkey: unknown key (a typo?) (line 3)"


def test_a_non_string_key_in_the_watchdog_section_is_an_unknown_key() -> None:
    assert problems(edit("listen: 127.0.0.1:0", "listen: 127.0.0.1:0\n  7: x")) == ["watchdog[7]: unknown key (a typo?) (line 1)"]


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "dir.yaml"
    path.mkdir()
    yield path


def test_a_directory_given_as_config_is_one_line(unreadable: Path) -> None:
    assert file_problems(unreadable) == [f"{unreadable}: cannot read: Is a directory"]


# --- generated: random bytes and mutated valid configs through check-config ----------------------

REPO_CONFIG = (Path(__file__).resolve().parent.parent / "config.yaml").read_text()
AWS_CONFIG = (Path(__file__).resolve().parent.parent / "examples" / "aws.yaml").read_text()  # the AWS actions
REPO_ENV = {
    "WATCHDOG_API_TOKEN": "t0ken-api-1234", "COMPLIANCE_URL": "http://127.0.0.1:9/compliance",
    "ADMIN_API_URL": "http://127.0.0.1:9", "ADMIN_TOKEN": "adm1n-tok-5678", "APP_URL": "http://127.0.0.1:9",
    "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/slack", "PAGERDUTY_ROUTING_KEY": "r0ute-key-9abc", "SMTP_PASSWORD": "pw-smtp-def0",
    "AUDIT_WEBHOOK_URL": "http://127.0.0.1:9/audit", "AUDIT_WEBHOOK_SECRET": "s3cret-hook-1357",
    "PROMETHEUS_URL": "http://127.0.0.1:9090", "WEBHOOK_TOKEN": TOKEN,
}
# Values that keep the YAML well-formed, so the mutation reaches validation; then a few that break it.
HOSTILE = [
    "0s", "0ms", "0.0001ms", "99999999999999d", "3000d", "9" * 400, "-1", "1e999", ".nan", "-.inf", "null", "~", "[]", "{}",
    "true", "0x10", "1:2:3", "2001-12-14", "!!binary aGk=", "!!set {a, b}", "!!python/object:os.system x", "!!str",
    "&a [*a]", "*a", "&a x", "&a [&b [*a, *b]]", "[" * 80 + "]" * 80, "{a: {b: {c: [[[[1]]]]}}}", "{a: 1, a: 2}",
    '"javascript:alert(1)"', '""', '" "', '"${UNSET_VAR_X}"', '"${WEBHOOK_TOKEN}"', '"${WEBHOOK_TOKEN}s"', '"not a url"',
    '"\\0"', '"\\u2028"', '"a\\nb"', "[1, 2, 3]", "[[]]", '"\U0001F600"', "{type: command}", "[{}]", '"> 1e400"',
    '"== maybe"', '"http://[::1"', '"/"', '"."', "1d", "100ms", "7d",
]
BROKEN = ["'", '"', "{", "[", ": :", "- - -", "%YAML 1.1", "---", "...", "\t", "&", "*", "<<: {a: 1}"]
KEYS = ["threshold", "interval", "timeout", "7", '"a\\nb"', "type", "<<", "name", "level", "? [x]", '"${X}"', "url"]
OPS = ("value",) * 6 + ("key", "key", "duplicate", "delete", "indent", "byte", "broken")


def mutate(text: str, ops: list[tuple[str, int, str]]) -> bytes:
    lines = text.splitlines()
    raw_inserts: list[tuple[int, bytes]] = []
    for op, where, value in ops:
        i = where % len(lines)
        if op == "value":
            # the value of one `key: value`, block or flow style
            lines[i] = _replace_value(lines[i], where, value)
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "delete":
            del lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "key":
            lines[i] = re.sub(r"[A-Za-z_]+:", KEYS[where % len(KEYS)] + ":", lines[i], count=1)
        elif op == "broken":
            lines[i] = _replace_value(lines[i], where, BROKEN[where % len(BROKEN)])
        else:
            raw_inserts.append((where, bytes([(0x80, 0xE9, 0xFF, 0xFE, 0x00, 0xC3)[where % 6]])))
        if not lines:
            lines = [""]
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    for where, b in raw_inserts:
        at = where % (len(raw) + 1)
        raw = raw[:at] + b + raw[at:]
    return raw


def _replace_value(line: str, pick: int, value: str) -> str:
    spans = [m.span(1) for m in re.finditer(r":\s+([^,{}\[\]]+|\{[^{}]*\}|\[[^\[\]]*\])", line)]
    if not spans:
        return line + " " + value
    start, end = spans[pick % len(spans)]
    return line[:start] + value + line[end:]


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("WATCHDOG_"):
                mp.delenv(name)
        for k, v in REPO_ENV.items():
            mp.setenv(k, v)
        yield tmp_path_factory.mktemp("fuzz") / "config.yaml"


def check_config_of(path: Path, raw: bytes) -> None:
    """check-config in-process: exit 0 or 2, never an exception; every stderr line one problem or warning."""
    import contextlib
    import io

    from watchdog.cli.main import main

    path.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", "-c", str(path)])
    stdout, stderr = out.getvalue(), err.getvalue()
    assert code in (0, 2), (code, stdout, stderr)
    assert "Traceback" not in stderr
    for secret in (v for k, v in REPO_ENV.items() if "TOKEN" in k or "KEY" in k or "SECRET" in k or "PASSWORD" in k):
        assert secret not in stdout + stderr
    lines = stderr.splitlines()
    assert stderr == "".join(ln + "\n" for ln in lines)  # newline-terminated lines, nothing else
    for line in lines:
        assert line.strip() and line.isprintable() and ": " in line, repr(line)
        assert len(line) <= 500
    if code == 0:
        assert stdout == f"{path}: ok" + stdout.split(": ok", 1)[1] and all(ln.startswith("warning: ") for ln in lines)
    else:
        assert stdout == "" and lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([REPO_CONFIG, SMALL, AWS_CONFIG]),
       ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 100_000), st.sampled_from(HOSTILE)),
                    min_size=1, max_size=4))
def test_generated_mutations_of_valid_configs(fuzz_env: Path, base: str, ops: list[tuple[str, int, str]]) -> None:
    check_config_of(fuzz_env, mutate(base, ops))


@settings(max_examples=100, deadline=None)
@given(raw=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_generated_random_bytes(fuzz_env: Path, raw: bytes) -> None:
    check_config_of(fuzz_env, raw)


def test_the_unmutated_bases_pass(fuzz_env: Path) -> None:
    check_config_of(fuzz_env, REPO_CONFIG.encode())
    check_config_of(fuzz_env, SMALL.encode())
    check_config_of(fuzz_env, AWS_CONFIG.encode())
