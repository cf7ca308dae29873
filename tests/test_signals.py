"""SignalBoard: what a rule may be judged on (no answer yet, sampled windows)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from watchdog.config import Config
from watchdog.core.rules import RuleState
from watchdog.core.signals import SignalBoard
from watchdog.runtime.wiring import board_for

FLAGS = [level(1, "flags", http(f"{CLOSED}/x", method=None), deadline="1m")]


def compliance(**extra: Any) -> dict[str, Any]:
    return {"name": "compliance", "type": "http_json", "url": f"{CLOSED}/c", "interval": "60s", **extra}


def gdpr(**extra: Any) -> dict[str, Any]:
    return {"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
            "threshold": "== false", **extra}


def config(missing_data: str = "breaching", **latency: Any) -> Config:
    """Target t, judged on CloudWatch (latency: 3 periods, missing data breaching) and on compliance."""
    rules = [metric_rule(source="cw", namespace="N", evaluation_periods=3, missing_data=missing_data, **latency),
             gdpr(evaluation_periods=3, datapoints_to_alarm=3, level=1)]
    return parsed(hybrid_routing(aws_endpoint=None, sources=[cloudwatch("cw", "30s"), compliance()], target="t",
                                 rules=rules, levels=FLAGS))


T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def board() -> SignalBoard:
    return board_for(config())


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


# --- change rules, max_age, blind sources ------------------------------------------------------

def more_config() -> Config:
    """Target t, judged on a day-over-day cost change, compliance (blind after 5m) and a score."""
    sources = [{"name": "cost", "type": "cost_explorer", "interval": "6h"}, compliance(blind_after="5m"),
               {"name": "score", "type": "http_json", "url": f"{CLOSED}/s", "interval": "60s"}]
    rules = [{"name": "spike", "category": "cost", "source": "cost", "cost": {"metric": "UnblendedCost"},
              "change": {"over": "24h", "percent": "> 50"}},
             gdpr(level=1),
             {"name": "sc", "category": "security", "source": "score", "field": "score", "threshold": "< 50",
              "change": None}]
    return parsed(hybrid_routing(aws_endpoint=None, sources=sources, target="t", rules=rules, levels=FLAGS))


def more() -> SignalBoard:
    return board_for(more_config())


def days(*values: float, until: datetime = T0) -> list[tuple[datetime, float]]:
    start = until.replace(hour=0) - timedelta(days=len(values))
    return [(start + timedelta(days=i), v) for i, v in enumerate(values)]


def test_a_cost_spike_is_the_last_complete_day_against_the_day_before():
    b = more()
    assert b.slots["t/spike"].spec.period == timedelta(days=1)  # Cost Explorer: one reading per day
    b.source_ok("cost", {"t/spike": days(100, 100, 100, 120)}, T0)
    ev = b.evaluate("t", T0)["spike"].evaluation
    assert (ev.state, ev.value) == (RuleState.OK, 20.0)  # +20% is no spike
    b.source_ok("cost", {"t/spike": days(100, 100, 100, 200)}, T0)
    ev = b.evaluate("t", T0)["spike"].evaluation
    assert (ev.state, ev.value) == (RuleState.ALARM, 100.0)
    assert "> 50" in ev.reason


def test_a_change_rule_keeps_its_history_through_a_failed_poll():
    b = more()
    b.source_ok("cost", {"t/spike": days(100, 100)}, T0)
    b.source_failed("cost", "throttled", T0 + timedelta(hours=6))
    assert b.evaluate("t", T0 + timedelta(hours=6))["spike"].evaluation.state is RuleState.INSUFFICIENT_DATA
    # The next answer holds only the newest day; the day before comes from what the board kept.
    b.source_ok("cost", {"t/spike": [(T0.replace(hour=0), 180.0)]}, T0 + timedelta(days=1))
    ev = b.evaluate("t", T0 + timedelta(days=1))["spike"].evaluation
    assert (ev.state, ev.value) == (RuleState.ALARM, 80.0)


def test_a_value_older_than_max_age_is_missing():
    b = board_for(config(missing_data="missing", max_age="2m"))
    # The metric stopped being published: its last three minutes are all there is, the newest 3 minutes old.
    b.source_ok("cw", {"t/latency": [(T0 - timedelta(minutes=k), 2000.0) for k in (3, 4, 5)]}, T0)
    ev = b.evaluate("t", T0 + timedelta(seconds=10))["latency"].evaluation
    assert ev.state is RuleState.INSUFFICIENT_DATA  # without max_age: 3 of 3 breach, alarm
    b.source_ok("cw", {"t/latency": [(T0 - timedelta(minutes=k), 2000.0) for k in (1, 3, 4)]}, T0)
    ev = b.evaluate("t", T0 + timedelta(seconds=10))["latency"].evaluation
    assert (ev.present, ev.breaching) == (1, 1)  # only the reading within 2 minutes is judged


def test_a_source_down_longer_than_blind_after_blinds_its_targets():
    b = more()
    b.source_ok("compliance", {"t/gdpr": [(T0, True)]}, T0)
    b.source_failed("compliance", "HTTP 500", T0 + timedelta(minutes=1))
    b.source_failed("compliance", "timeout", T0 + timedelta(minutes=3))
    assert b.blind_sources("t", T0 + timedelta(minutes=5, seconds=59)) == {}
    blind = b.blind_sources("t", T0 + timedelta(minutes=6))
    assert blind == {"compliance": "source compliance down since 12:01:00Z: timeout"}
    # The default limit: three intervals, at least 5 minutes.
    b.source_failed("score", "refused", T0)
    assert "score" not in b.blind_sources("t", T0 + timedelta(minutes=4, seconds=59))
    assert "score" in b.blind_sources("t", T0 + timedelta(minutes=5))
    b.source_ok("compliance", {"t/gdpr": [(T0 + timedelta(minutes=7), True)]}, T0 + timedelta(minutes=7))
    assert list(b.blind_sources("t", T0 + timedelta(minutes=7))) == ["score"]
