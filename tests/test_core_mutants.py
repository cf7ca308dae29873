"""The decision core's rules and signal board, where the mutation run (`make mutants`, bench/mutants.md) found
behaviour no test pinned down: boundaries, reasons as written, names nobody asked for. Each expectation
is derived by hand from the rule it cites (docs/deciding.md, docs/configuration.md, the modules'
docstrings), never from the product.

1-minute buckets throughout; NOW = 12:00:30, so the complete buckets judged are 11:55 to 11:59 (N + 2 = 5).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from watchdog.config.types import parse_threshold
from watchdog.core.rules import RuleSpec, RuleState, align, change_points, evaluate, evaluate_fresh, format_value, window
from watchdog.core.signals import SignalBoard
from watchdog.runtime.wiring import board_for

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=30)
MIN = timedelta(minutes=1)
BAD, GOOD = 900.0, 50.0  # against "> 100"


def spec(m: int = 2, n: int = 3, missing: str = "missing") -> RuleSpec:
    return RuleSpec(parse_threshold("> 100"), MIN, evaluation_periods=n, datapoints_to_alarm=m, missing_data=missing)


def minute(k: int, value: float, second: int = 5) -> tuple[datetime, float]:
    """A datapoint in the bucket that starts k minutes before 12:00 (k = 1: the 11:59 bucket)."""
    return T0 - k * MIN + timedelta(seconds=second), value


# --- rules.py ---------------------------------------------------------------------------------------------


def test_align_is_the_start_of_the_bucket_on_the_epoch_grid() -> None:
    assert align(T0 + timedelta(seconds=30), MIN) == T0
    assert align(T0 + timedelta(minutes=7, seconds=45), 5 * MIN) == T0 + 5 * MIN
    assert align(T0, MIN) == T0


def test_fewer_than_n_datapoints_are_judged_and_the_reason_says_how() -> None:
    # missing: 2 of 2 real ones breach, M = 2: alarm.
    ev = evaluate(spec(), [minute(2, BAD), minute(1, BAD)], NOW)
    assert (ev.state, ev.reason) == (RuleState.ALARM, "2 of 2 datapoints breach > 100 (alarm at 2)")
    # missing: 1 of 2 breach: ok.
    ev = evaluate(spec(), [minute(2, GOOD), minute(1, BAD)], NOW)
    assert (ev.state, ev.reason) == (RuleState.OK, "1 of 2 datapoints breach > 100 (alarm at 2)")
    # not_breaching: 1 real breach and the 2 newest gaps filled as not breaching: 1 of 3, ok.
    ev = evaluate(spec(missing="not_breaching"), [minute(1, BAD)], NOW)
    assert (ev.state, ev.reason) == (
        RuleState.OK, "1 of 3 datapoints breach > 100 (alarm at 2; 2 missing counted as not breaching: 11:57:00Z, "
                      "11:58:00Z)")


def test_fresh_evaluation_says_what_it_judged() -> None:
    since = T0 - 2 * MIN  # the 11:58 and 11:59 buckets are fresh
    ev = evaluate_fresh(spec(), [minute(3, BAD)], NOW, since)
    assert (ev.state, ev.reason, ev.present, ev.needed) == (
        RuleState.INSUFFICIENT_DATA, "no datapoint newer than the action yet", 0, 2)
    ev = evaluate_fresh(spec(), [minute(3, BAD), minute(1, BAD)], NOW, since)
    assert (ev.state, ev.reason) == (RuleState.ALARM, "1 of 1 datapoints since the action breach > 100 (alarm at 1)")
    ev = evaluate_fresh(spec(), [minute(2, GOOD), minute(1, BAD)], NOW, since)
    assert (ev.state, ev.reason) == (RuleState.OK, "1 of 2 datapoints since the action breach > 100 (alarm at 2)")


def test_format_value_writes_values_as_people_read_them() -> None:
    assert [format_value(v) for v in (None, True, False, 1500, 0.25, 900.0)] == ["-", "true", "false", "1500", "0.25",
                                                                                 "900"]
    assert format_value(None, "None") == "None"


def test_a_change_skips_booleans_and_takes_the_newest_reading_of_a_bucket() -> None:
    t = T0
    # A boolean first is skipped, not the end of the series: 100 -> 150 is +50%.
    assert change_points([(t, True), (t + MIN, 100.0), (t + 2 * MIN, 150.0)], MIN, MIN) == [(t + 2 * MIN, 50.0)]
    # Two readings in the 12:00 bucket: the newer (200, at 12:00:40) is the base of 12:01's 300: +50%.
    pts = [(t + timedelta(seconds=10), 100.0), (t + timedelta(seconds=40), 200.0), (t + MIN + timedelta(seconds=10), 300.0)]
    assert change_points(pts, MIN, MIN)[-1] == (t + MIN + timedelta(seconds=10), 50.0)
    # Two readings with one time: the one given last wins, as in a rule's window.
    same = [(t + timedelta(seconds=10), 100.0), (t + timedelta(seconds=10), 200.0), (t + MIN + timedelta(seconds=10), 300.0)]
    assert change_points(same, MIN, MIN)[-1] == (t + MIN + timedelta(seconds=10), 50.0)
    assert [b.value for b in window(spec(), same[:2], T0 + 2 * MIN)][-2] == 200.0


# --- signals.py -------------------------------------------------------------------------------------------


def board_config(missing_data: str = "missing", **latency: Any) -> Any:
    """Target t: latency on CloudWatch (N = 3, M = 2) and gdpr on a sampled compliance endpoint (N = M = 3)."""
    gdpr = {"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
            "threshold": "== false", "evaluation_periods": 3, "datapoints_to_alarm": 3}
    compliance = {"name": "compliance", "type": "http_json", "url": f"{CLOSED}/c", "interval": "60s"}
    rules = [metric_rule(source="cw", threshold="> 100", evaluation_periods=3, datapoints_to_alarm=2,
                         missing_data=missing_data, **latency), gdpr]
    return parsed(hybrid_routing(aws_endpoint=None, sources=[cloudwatch("cw", "30s"), compliance], target="t",
                                 rules=rules, levels=[level(1, "flags", http(f"{CLOSED}/x", method=None), deadline="1m")]))


def board(missing_data: str = "missing", **latency: Any) -> SignalBoard:
    return board_for(board_config(missing_data, **latency))


def test_the_board_names_its_sources_and_targets_and_knows_nothing_of_others() -> None:
    b = board()
    assert (b.sources["cw"].name, b.sources["compliance"].name) == ("cw", "compliance")
    assert b.target("t").name == "t"
    # A poll or evaluation begun before a reload may name a source or target that is gone: nothing, no error.
    assert b.queries("gone") == [] and b.targets_of("gone") == []
    assert b.evaluate("gone", NOW) == {} and b.blind_sources("gone", NOW) == {}


def test_an_answer_and_a_failure_are_recorded_on_the_source() -> None:
    b = board()
    b.source_ok("cw", {"t/latency": [minute(3, BAD), minute(1, BAD), minute(2, BAD)]}, NOW)
    h = b.sources["cw"]
    assert (h.up, h.answered, h.last_poll, h.last_success, h.last_error) == (True, True, NOW, NOW, None)
    assert b.slots["t/latency"].last_datapoint == minute(1, BAD)[0]  # the newest, whatever the order
    b.source_failed("cw", "HTTP 500", NOW + MIN)
    assert (h.up, h.answered, h.last_poll, h.last_success, h.last_error) == (False, True, NOW + MIN, NOW, "HTTP 500")


def test_a_failed_source_gives_its_rules_nothing_whatever_missing_data_says() -> None:
    """signals.py: a failed poll is never a breach, even for missing_data: breaching."""
    b = board(missing_data="breaching")
    b.source_ok("cw", {"t/latency": [minute(1, GOOD)]}, NOW)
    b.source_failed("cw", "HTTP 500", NOW + MIN)
    ev = b.evaluate("t", NOW + MIN)["latency"].evaluation
    assert (ev.state, ev.value, ev.value_at, ev.breaching, ev.present, ev.needed, ev.reason) == (
        RuleState.INSUFFICIENT_DATA, None, None, 0, 0, 2, "source cw down: HTTP 500")


def test_a_cloudwatch_window_ends_at_its_last_read_and_a_sampled_one_at_its_last_reading() -> None:
    """Issue 22: a poll reads only the queries due, so an aggregated rule is judged as of the tick that last read
    its query (docs/deciding.md "When it polls"), as a sampled one is as of its source's last reading."""
    b = board()
    b.source_ok("cw", {"t/latency": [minute(3, BAD), minute(2, BAD), minute(1, BAD)]}, T0)
    # Non-compliant readings at 12:01:01 and 12:02:01, the last poll at 12:02:01.
    b.source_ok("compliance", {"t/gdpr": [(T0 + timedelta(minutes=k, seconds=1), False) for k in (1, 2)]},
                T0 + timedelta(minutes=2, seconds=1))
    views = b.evaluate("t", T0 + timedelta(minutes=10))
    # CloudWatch, judged at 12:10 on its read of 12:00: its buckets are 11:55 to 11:59, the last three breach.
    assert views["latency"].evaluation.reason == "3 of 3 datapoints breach > 100 (alarm at 2)"
    # Read again at 12:10 with the same points: its buckets are 12:05 to 12:09, and the 11:5x ones are out.
    b.source_ok("cw", {"t/latency": [minute(3, BAD), minute(2, BAD), minute(1, BAD)]}, T0 + timedelta(minutes=10))
    views = b.evaluate("t", T0 + timedelta(minutes=10, seconds=1))
    assert views["latency"].evaluation.reason == "no datapoints in the last 5 periods"
    # Compliance: its window ends with the 12:02 bucket (11:58 to 12:02): the oldest reading is 2 of M = 3
    # periods old, too recent to alarm on 2 readings, and not older because nothing was polled since.
    gdpr = views["gdpr"].evaluation
    assert (gdpr.state, gdpr.reason) == (RuleState.INSUFFICIENT_DATA, "2 of 2 datapoints breach == false, too recent "
                                                                      "to decide (the oldest 2 of 3 periods ago)")


def test_a_value_exactly_max_age_old_is_still_judged() -> None:
    """docs/configuration.md, Rules: with max_age, a value *older* than it is missing; one exactly that old is not."""
    b = board(max_age="2m")
    b.source_ok("cw", {"t/latency": [(NOW - 2 * MIN, BAD)]}, NOW)
    ev = b.evaluate("t", NOW)["latency"].evaluation
    assert (ev.present, ev.breaching, ev.value_at) == (1, 1, T0 - 2 * MIN)  # 11:58:30, in the 11:58 bucket
    b.source_ok("cw", {"t/latency": [(NOW - 2 * MIN - timedelta(microseconds=1), BAD)]}, NOW)
    assert b.evaluate("t", NOW)["latency"].evaluation.present == 0  # a microsecond older: missing
