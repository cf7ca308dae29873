"""SignalBoard: what a rule may be judged on (no answer yet, sampled windows)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from watchdog.config import parse_config
from watchdog.rules import RuleState
from watchdog.signals import SignalBoard

CFG = """
sources:
  - {name: cw, type: cloudwatch, interval: 30s}
  - {name: compliance, type: http_json, url: "http://127.0.0.1:9/c", interval: 60s}
targets:
  - name: t
    rules:
      - {name: latency, category: performance, source: cw, missing_data: breaching, evaluation_periods: 3,
         metric: {namespace: N, name: Latency, period: 60s}, threshold: "> 1500"}
      - {name: gdpr, category: security, source: compliance, field: gdpr.compliant, threshold: "== false",
         evaluation_periods: 3, datapoints_to_alarm: 3, level: 1}
    levels:
      - {level: 1, name: flags, deadline: 1m, actions: [{type: http, url: "http://127.0.0.1:9/x"}]}
"""
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def board() -> SignalBoard:
    return SignalBoard(parse_config(CFG, {}), {"cw": False, "compliance": True})


def test_a_rule_whose_source_never_answered_is_insufficient_even_with_missing_data_breaching():
    b = board()
    # The compliance source answers first; the CloudWatch rule must not read "3 of 3 missing = breaching".
    b.source_ok("compliance", {"t/gdpr": [(T0, True)]}, T0)
    views = b.evaluate("t", T0 + timedelta(seconds=1))
    assert views["latency"].evaluation.state is RuleState.INSUFFICIENT_DATA
    assert "has not answered yet" in views["latency"].evaluation.reason
    # Once it answers with nothing, missing_data: breaching applies as configured.
    b.source_ok("cw", {"t/latency": []}, T0 + timedelta(seconds=2))
    assert b.evaluate("t", T0 + timedelta(seconds=2))["latency"].evaluation.state is RuleState.ALARM


def test_a_sampled_window_ends_at_its_own_last_reading():
    b = board()
    b.source_ok("cw", {"t/latency": [(T0 - timedelta(minutes=k), 100.0) for k in (1, 2, 3)]}, T0)
    readings = [(T0 + timedelta(minutes=k, seconds=1), False) for k in range(3)]  # non-compliant, every minute
    b.source_ok("compliance", {"t/gdpr": readings}, T0 + timedelta(minutes=2, seconds=1))
    # The CloudWatch poll evaluates at 12:03:10, before this minute's compliance reading is due:
    # the window still holds the three readings, so the real alarm is not masked by a gap.
    views = b.evaluate("t", T0 + timedelta(minutes=3, seconds=10))
    assert views["gdpr"].evaluation.state is RuleState.ALARM
    assert views["gdpr"].evaluation.present == 3
