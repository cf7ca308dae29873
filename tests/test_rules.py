"""Rule evaluation (SPEC 4.1) and the YAML value types it relies on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.config.types import Threshold, format_duration, parse_duration, parse_threshold
from watchdog.core.rules import RuleSpec, RuleState, align, evaluate, evaluate_fresh, window

UTC = timezone.utc
MIN = timedelta(minutes=1)
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)  # the start of the still-filling bucket
NOW = T0 + timedelta(seconds=30)
B, o = 500.0, 5.0  # breaching / not breaching against "> 100"
OK, ALARM, INSUF = RuleState.OK, RuleState.ALARM, RuleState.INSUFFICIENT_DATA


def spec(m: int = 3, n: int = 5, mode: str = "missing", threshold: str = "> 100", complete: bool = True) -> RuleSpec:
    return RuleSpec(parse_threshold(threshold), MIN, n, m, mode, complete)


def series(*values: float | None, offset: timedelta = timedelta(seconds=10)) -> list[tuple[datetime, float]]:
    """One point per complete bucket, oldest first, the last one just before T0; None leaves a gap."""
    n = len(values)
    return [(T0 - MIN * (n - i) + offset, v) for i, v in enumerate(values) if v is not None]


_ = None
EVALUATE_CASES = [
    # id, m, n, missing_data, values over the evaluation range (N + 2, oldest..newest), previous,
    # state, breaching, present (real datapoints judged)
    ("3of5-alarm", 3, 5, "missing", [o, o, B, B, B, o, o], INSUF, ALARM, 3, 5),
    ("3of5-older-breaches-fall-out", 3, 5, "missing", [B, B, B, o, o, o, B], INSUF, OK, 2, 5),
    ("3of5-not-consecutive", 3, 5, "missing", [o, o, B, o, B, o, B], INSUF, ALARM, 3, 5),
    ("5of5-one-short", 5, 5, "missing", [o, o, B, B, B, B, o], INSUF, OK, 4, 5),
    ("5of5-all", 5, 5, "missing", [_, _, B, B, B, B, B], INSUF, ALARM, 5, 5),
    ("1of1-breach", 1, 1, "missing", [_, _, B], INSUF, ALARM, 1, 1),
    ("1of1-ok", 1, 1, "missing", [_, _, o], ALARM, OK, 0, 1),
    ("1of1-reaches-back-over-gaps", 1, 1, "breaching", [o, _, _], ALARM, OK, 0, 1),
    # N or more datapoints in the range: the N most recent that exist, whatever missing_data says
    ("newest-existing-skip-a-gap", 3, 3, "not_breaching", [o, B, B, _, B], INSUF, ALARM, 3, 3),
    ("newest-existing-breaching-mode", 3, 3, "breaching", [o, _, B, _, B], INSUF, OK, 2, 3),
    # missing: decide on the datapoints that exist; none in the range -> insufficient_data
    ("missing-fewer-than-n-enough-breach", 2, 3, "missing", [_, B, _, B, _], INSUF, ALARM, 2, 2),
    ("missing-one-ok-decides", 3, 3, "missing", [_, _, o, B, _], ALARM, OK, 1, 2),
    ("missing-too-recent-to-decide", 3, 3, "missing", [_, _, _, B, B], OK, INSUF, 2, 2),
    ("missing-old-enough-alarms", 3, 3, "missing", [_, _, B, B, _], INSUF, ALARM, 2, 2),
    ("missing-all-missing", 3, 3, "missing", [_, _, _, _, _], ALARM, INSUF, 0, 0),
    # ignore: as missing, but where missing could not decide (or alarms on age alone) the state is kept
    ("ignore-keeps-alarm", 3, 3, "ignore", [_, _, _, _, _], ALARM, ALARM, 0, 0),
    ("ignore-keeps-ok", 3, 3, "ignore", [_, _, _, _, _], OK, OK, 0, 0),
    ("ignore-keeps-insufficient", 3, 3, "ignore", [_, _, _, _, _], INSUF, INSUF, 0, 0),
    ("ignore-keeps-on-an-old-lone-breach", 3, 3, "ignore", [_, _, B, _, _], OK, OK, 1, 1),
    ("ignore-present-decides", 2, 3, "ignore", [_, B, _, B, _], OK, ALARM, 2, 2),
    ("ignore-present-ok", 2, 3, "ignore", [_, B, _, o, _], ALARM, OK, 1, 2),
    # breaching / not_breaching: as few gaps as needed to make N, the most recent ones, count as such
    ("breaching-fills-two", 3, 3, "breaching", [_, _, o, _, _], INSUF, OK, 2, 1),
    ("breaching-fill-and-breach", 3, 3, "breaching", [_, _, B, _, _], INSUF, ALARM, 3, 1),
    ("breaching-all-missing", 3, 3, "breaching", [_, _, _, _, _], INSUF, ALARM, 3, 0),
    ("not-breaching-gaps", 3, 3, "not_breaching", [_, _, B, B, _], INSUF, OK, 2, 2),
    ("not-breaching-all-missing", 3, 3, "not_breaching", [_, _, _, _, _], ALARM, OK, 0, 0),
    ("not-breaching-enough", 2, 3, "not_breaching", [_, B, _, B, _], INSUF, ALARM, 2, 2),
]


@pytest.mark.parametrize(
    "m, n, mode, values, previous, state, breaching, present",
    [c[1:] for c in EVALUATE_CASES],
    ids=[c[0] for c in EVALUATE_CASES],
)
def test_evaluate_table(m, n, mode, values, previous, state, breaching, present) -> None:
    ev = evaluate(spec(m, n, mode), series(*values), NOW, previous)
    assert (ev.state, ev.breaching, ev.present, ev.needed) == (state, breaching, present, m), ev.reason
    assert len(ev.buckets) == n + 2
    assert [b.value for b in ev.buckets] == values
    real = [b for b in ev.buckets if b.value is not None]
    assert [b.breaching for b in real] == [v > 100 for v in values if v is not None]
    judged = [b for b in ev.buckets if b.judged]
    filled = [b for b in judged if b.value is None]
    assert len(judged) == (n if mode in ("breaching", "not_breaching") else min(n, len(real)))
    assert all(b.breaching is (mode == "breaching") for b in filled)
    assert sum(1 for b in judged if b.breaching) == breaching


def test_the_range_is_n_plus_two_complete_buckets_before_the_filling_one() -> None:
    buckets = window(spec(n=3), [], NOW)
    assert [b.start for b in buckets] == [T0 - k * MIN for k in range(5, 0, -1)]
    buckets = window(spec(n=3, complete=False), [], NOW)
    assert [b.start for b in buckets] == [T0 - k * MIN for k in range(4, -1, -1)]


def test_points_outside_the_window_are_ignored() -> None:
    old = [(T0 - 6 * MIN, B), (T0 - 5 * MIN - timedelta(seconds=1), B)]  # just before the oldest bucket
    ev = evaluate(spec(1, 5), old + series(o, o, o, o, o), NOW)
    assert (ev.state, ev.breaching) == (OK, 0)
    future = [(NOW + 2 * MIN, B)]
    assert evaluate(spec(1, 1, complete=False), future + [(T0, o)], NOW).state is OK


@pytest.mark.parametrize(
    "complete, state, value",
    [(True, INSUF, None), (False, ALARM, B)],
    ids=["complete-buckets-only-ignores-it", "sampled-counts-it"],
)
def test_still_filling_bucket(complete: bool, state: RuleState, value) -> None:
    points = [(T0 + timedelta(seconds=5), B)]  # in the bucket that contains NOW
    ev = evaluate(spec(1, 1, complete=complete), points, NOW)
    assert (ev.state, ev.value) == (state, value)


def test_still_filling_bucket_does_not_shift_a_complete_window() -> None:
    points = series(o, o, o) + [(T0 + timedelta(seconds=5), B)]
    assert evaluate(spec(1, 3), points, NOW).state is OK
    assert evaluate(spec(1, 3, complete=False), points, NOW).state is ALARM
    # with complete=False the window moves forward: the oldest of the three falls out
    assert evaluate(spec(1, 3, complete=False), points, NOW).present == 3


def test_bucket_edges() -> None:
    # A point exactly on a bucket boundary belongs to the bucket that starts there.
    points = [(T0 - MIN, B)]
    ev = evaluate(spec(1, 1), points, NOW)
    assert (ev.state, ev.value_at) == (ALARM, T0 - MIN)
    # At exactly T0 the bucket [T0-1m, T0) is complete and in the window.
    assert evaluate(spec(1, 1), points, T0).state is ALARM
    # One microsecond before T0 it is still filling.
    assert evaluate(spec(1, 1), points, T0 - timedelta(microseconds=1)).state is INSUF


@pytest.mark.parametrize("order", ["oldest-first", "newest-first"])
@pytest.mark.parametrize("newest, state", [(o, OK), (B, ALARM)])
def test_several_points_in_one_bucket_newest_wins(order: str, newest: float, state: RuleState) -> None:
    other = B if newest == o else o
    points = [(T0 - MIN + timedelta(seconds=5), other), (T0 - MIN + timedelta(seconds=50), newest)]
    if order == "newest-first":
        points.reverse()
    ev = evaluate(spec(1, 1), points, NOW)
    assert (ev.state, ev.value, ev.present) == (state, newest, 1)


def test_value_and_reason() -> None:
    ev = evaluate(spec(3, 3), series(B, 7.0, 9.0, _, _), NOW)
    assert (ev.value, ev.value_at) == (9.0, T0 - 3 * MIN)
    assert ev.reason == "1 of 3 datapoints breach > 100 (alarm at 3)"
    ev = evaluate(spec(3, 3, "breaching"), series(_, _, 9.0, _, _), NOW)
    # The range is 11:55-11:59; 9.0 sits in 11:57, so the two newest gaps are the ones filled.
    assert ev.reason == ("2 of 3 datapoints breach > 100 (alarm at 3; 2 missing counted as breaching: 11:58:00Z, "
                         "11:59:00Z)")
    ev = evaluate(spec(3, 3), series(_, _, _, B, B), NOW)
    assert ev.reason == "2 of 2 datapoints breach > 100, too recent to decide (the oldest 2 of 3 periods ago)"
    ev = evaluate(spec(3, 3), series(_, _, B, _, _), NOW)
    assert ev.reason == "1 of 1 datapoints breach > 100, the oldest 3 periods ago (alarm at 3 periods old)"
    ev = evaluate(spec(3, 3, "ignore"), [], NOW, ALARM)
    assert (ev.value, ev.value_at) == (None, None)
    assert ev.reason == "no datapoints in the last 5 periods (state kept: ignore)"


OPERATOR_CASES = [
    ("> 10", 11, True), ("> 10", 10, False),
    (">= 10", 10, True), (">= 10", 9.99, False),
    ("< 10", 9, True), ("< 10", 10, False),
    ("<= 10", 10, True), ("<= 10", 10.01, False),
    ("== 0", 0, True), ("== 0", 1, False),
    ("!= 0", 1, True), ("!= 0", 0, False),
    ("> -5", -4, True), ("> -5", -5, False),
    ("== false", False, True), ("== false", True, False),
    ("== true", True, True), ("!= true", False, True), ("!= false", False, False),
]

# A value of the wrong kind never breaches, and in a window it counts as missing, not ok.
MISMATCH_CASES = [("== false", 0), ("== false", 0.0), ("!= true", 0), ("> 0", True), ("== 1", True)]


@pytest.mark.parametrize("threshold, value, breached", OPERATOR_CASES)
def test_operators(threshold: str, value, breached: bool) -> None:
    assert parse_threshold(threshold).breached_by(value) is breached
    ev = evaluate(spec(1, 1, threshold=threshold), [(T0 - MIN, value)], NOW)
    assert ev.state is (ALARM if breached else OK)


@pytest.mark.parametrize("threshold, value", MISMATCH_CASES)
def test_a_value_of_the_wrong_kind_is_missing(threshold: str, value) -> None:
    assert parse_threshold(threshold).breached_by(value) is False
    ev = evaluate(spec(1, 1, threshold=threshold), [(T0 - MIN, value)], NOW)
    assert ev.state is INSUF and ev.present == 0


# --- evaluate_fresh: only datapoints newer than the action -------------------

FRESH_CASES = [
    # id, m, n, mode, values (oldest..newest), since, state, breaching, present, needed
    ("old-breaches-ignored", 3, 5, "missing", [B, B, B, o, o], T0 - 2 * MIN, OK, 0, 2, 2),
    ("bucket-starting-at-since-counts", 1, 5, "missing", [B, B, B, B, B], T0 - MIN, ALARM, 1, 1, 1),
    ("bucket-straddling-since-ignored", 1, 5, "missing", [B, B, B, B, o], T0 - 2 * MIN + timedelta(seconds=1), OK, 0, 1, 1),
    ("no-fresh-point", 3, 5, "missing", [B, B, B, B, B], T0, INSUF, 0, 0, 3),
    ("no-fresh-point-breaching-mode", 3, 5, "breaching", [B, B, B, _, _], T0 - 2 * MIN, INSUF, 0, 0, 3),
    ("no-fresh-point-not-breaching-mode", 3, 5, "not_breaching", [o, o, o, _, _], T0 - 2 * MIN, INSUF, 0, 0, 3),
    ("gaps-are-not-evidence", 3, 5, "breaching", [_, _, _, o, _], T0 - 3 * MIN, OK, 0, 1, 1),
    ("fewer-than-m-all-breach", 3, 5, "missing", [o, o, o, B, B], T0 - 2 * MIN, ALARM, 2, 2, 2),
    ("fewer-than-m-one-ok", 3, 5, "missing", [B, B, B, B, o], T0 - 2 * MIN, OK, 1, 2, 2),
    ("one-fresh-breach", 3, 5, "missing", [o, o, o, o, B], T0 - MIN, ALARM, 1, 1, 1),
    ("enough-fresh-m-applies", 3, 5, "missing", [o, B, B, o, o], T0 - 4 * MIN, OK, 2, 4, 3),
    ("enough-fresh-alarm", 3, 5, "missing", [o, B, B, o, B], T0 - 4 * MIN, ALARM, 3, 4, 3),
    ("since-before-window", 3, 5, "missing", [B, B, o, o, o], T0 - 60 * MIN, OK, 2, 5, 3),
]


@pytest.mark.parametrize(
    "m, n, mode, values, since, state, breaching, present, needed",
    [c[1:] for c in FRESH_CASES],
    ids=[c[0] for c in FRESH_CASES],
)
def test_evaluate_fresh_table(m, n, mode, values, since, state, breaching, present, needed) -> None:
    ev = evaluate_fresh(spec(m, n, mode), series(*values), NOW, since)
    assert (ev.state, ev.breaching, ev.present, ev.needed) == (state, breaching, present, needed)
    for b in ev.buckets:
        if b.start < since:
            assert b.value is None and b.breaching is None


def test_evaluate_fresh_versus_evaluate_on_the_same_points() -> None:
    points = series(B, B, B, B, o)
    assert evaluate(spec(3, 5), points, NOW).state is ALARM
    assert evaluate_fresh(spec(3, 5), points, NOW, since=T0 - MIN).state is OK


def test_evaluate_fresh_includes_the_current_bucket_for_sampled_rules() -> None:
    points = series(B, B) + [(T0 + timedelta(seconds=5), o)]
    assert evaluate_fresh(spec(2, 2, complete=False), points, NOW, since=T0).state is OK
    assert evaluate_fresh(spec(2, 2, complete=True), points, NOW, since=T0).state is INSUF


# --- properties ------------------------------------------------------------------

values_st = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.booleans())
points_st = st.lists(
    st.tuples(st.integers(-15 * 60, 120).map(lambda s: T0 + timedelta(seconds=s)), values_st), max_size=30
)


@st.composite
def specs(draw, modes=("missing", "ignore", "breaching", "not_breaching")):
    n = draw(st.integers(1, 10))
    m = draw(st.integers(1, n))
    op = draw(st.sampled_from([">", ">=", "<", "<=", "==", "!="]))
    return RuleSpec(
        Threshold(op, draw(st.floats(-100, 100, allow_nan=False))),
        draw(st.sampled_from([MIN, timedelta(seconds=30), timedelta(minutes=5)])),
        n,
        m,
        draw(st.sampled_from(modes)),
        draw(st.booleans()),
    )


@settings(max_examples=300)
@given(specs(("not_breaching",)), points_st, st.sampled_from(list(RuleState)))
def test_not_breaching_is_never_insufficient(s: RuleSpec, points, previous: RuleState) -> None:
    assert evaluate(s, points, NOW, previous).state is not INSUF


@settings(max_examples=300)
@given(specs(), points_st, st.sampled_from(list(RuleState)))
def test_evaluation_invariants(s: RuleSpec, points, previous: RuleState) -> None:
    ev = evaluate(s, points, NOW, previous)
    assert 0 <= ev.breaching <= s.evaluation_periods
    assert 0 <= ev.present <= s.evaluation_periods
    starts = [b.start for b in ev.buckets]
    assert len(starts) == s.evaluation_periods + 2  # the evaluation range
    assert all(later - earlier == s.period for earlier, later in zip(starts, starts[1:]))
    assert all(align(x, s.period) == x for x in starts)
    last_end = starts[-1] + s.period
    assert last_end <= NOW if s.complete_buckets_only else starts[-1] <= NOW < last_end
    assert sum(b.judged for b in ev.buckets) <= s.evaluation_periods
    if ev.state is ALARM and s.missing_data != "ignore":
        # M breaches, or fewer datapoints than M that all breach and are old enough (the guide's rule)
        assert ev.breaching >= s.datapoints_to_alarm or (s.missing_data == "missing" and ev.breaching == ev.present > 0)


@settings(max_examples=200)
@given(specs(), points_st, st.integers(-15 * 60, 120))
def test_adding_a_newest_breaching_point_never_lowers_the_count(s: RuleSpec, points, offset: int) -> None:
    ts = T0 + timedelta(seconds=offset)
    bad = 1e9 if s.threshold.op in (">", ">=", "!=") else (-1e9 if s.threshold.op in ("<", "<=") else s.threshold.value)
    before = evaluate(s, points, NOW).breaching
    after = evaluate(s, points + [(ts, bad)], NOW).breaching
    assert after >= before


@settings(max_examples=200)
@given(specs(("missing",)), points_st, st.integers(-15 * 60, 120))
def test_fresh_never_uses_points_before_since(s: RuleSpec, points, since_offset: int) -> None:
    since = T0 + timedelta(seconds=since_offset)
    ev = evaluate_fresh(s, points, NOW, since)
    kept = [(ts, v) for ts, v in points if align(ts, s.period) >= since]
    assert ev == evaluate_fresh(s, kept, NOW, since)
    if ev.present == 0:
        assert ev.state is INSUF


# --- durations and thresholds ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1.5s", timedelta(milliseconds=1500)),
        (" 5 m ", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        (timedelta(seconds=7), timedelta(seconds=7)),
    ],
)
def test_parse_duration(text, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad, message",
    [
        ("5", "bad duration '5'"),
        ("5x", "bad duration '5x'"),
        ("m", "bad duration 'm'"),
        ("-5s", "bad duration '-5s'"),
        ("5 min", "bad duration '5 min'"),
        ("5M", "bad duration '5M'"),
        ("", "bad duration ''"),
        ("1h30m", "bad duration '1h30m'"),
        (5, "expected a duration like 500ms, 30s, 5m or 1h, got 5"),
        (2.5, "got 2.5"),
        (None, "got None"),
        (True, "got True"),
        # Past timedelta's range (OverflowError) or float's (inf): refused as too long, never a crash.
        ("99999999999999d", "duration '99999999999999d' is too long: at most 3650d"),
        ("1" * 400 + "s", "is too long: at most 3650d"),
        ("3000000d", "is too long"),
        ("3651d", "is too long"),
    ],
)
def test_parse_duration_rejects(bad, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(bad)
    assert message in str(info.value)
    assert len(str(info.value)) < 120  # the value quoted is cut short


def test_the_longest_duration_is_accepted() -> None:
    assert parse_duration("3650d") == timedelta(days=3650)


@pytest.mark.parametrize(
    "td, text",
    [(timedelta(milliseconds=500), "500ms"), (timedelta(seconds=30), "30s"), (timedelta(minutes=2), "2m"),
     (timedelta(seconds=90), "90s"), (timedelta(hours=1), "1h"), (timedelta(days=1), "1d"),
     (timedelta(milliseconds=1500), "1500ms")],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@given(st.integers(0, 10**9).map(lambda ms: timedelta(milliseconds=ms)))
def test_format_then_parse_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    "text, op, value, shown",
    [
        ("> 1500", ">", 1500.0, "> 1500"),
        (">=1.5", ">=", 1.5, ">= 1.5"),
        ("  <  0  ", "<", 0.0, "< 0"),
        ("<= -3", "<=", -3.0, "<= -3"),
        ("== false", "==", False, "== false"),
        ("!= TRUE", "!=", True, "!= true"),
        ("== 1e3", "==", 1000.0, "== 1000"),
    ],
)
def test_parse_threshold(text: str, op: str, value, shown: str) -> None:
    t = parse_threshold(text)
    assert (t.op, t.value, type(t.value)) == (op, value, type(value))
    assert str(t) == shown
    assert parse_threshold(t) is t


@pytest.mark.parametrize(
    "bad, message",
    [
        ("1500", "write an operator"),
        (">", "write an operator"),
        (">> 5", "write an operator"),
        (">>5", "'>5' is not a number or true/false"),
        ("=> 5", "write an operator"),
        ("= 5", "write an operator"),
        ("> 1 2", "write an operator"),
        ("> abc", "'abc' is not a number or true/false"),
        ("> true", "a boolean only compares with == or !="),
        ("<= false", "a boolean only compares with == or !="),
        (1500, 'expected a condition like "> 1500"'),
        (None, 'expected a condition like "> 1500"'),
    ],
)
def test_parse_threshold_rejects(bad, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_threshold(bad)
    assert message in str(info.value)


def test_change_points_compare_each_value_with_the_one_over_earlier():
    from watchdog.core.rules import change_points

    day = timedelta(days=1)
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    pts = [(t0 + k * day, v) for k, v in enumerate([100.0, 150.0, 0.0, 50.0, 75.0])]
    out = change_points(pts, day, day)
    assert [round(v, 6) for _, v in out] == [50.0, -100.0, 50.0]  # no base for the first; none after a zero
    assert [ts for ts, _ in out] == [t0 + day, t0 + 2 * day, t0 + 4 * day]
    assert change_points([(t0, True), (t0 + day, False)], day, day) == []  # booleans have no percent
    # a gap: no reading `over` earlier means no change, never an assumed one
    assert change_points([(t0, 1.0), (t0 + 3 * day, 9.0)], day, day) == []


# --- the fast scan against the plain definition -------------------------------------


def reference_window(s: RuleSpec, points, now: datetime, since: datetime | None = None):
    """SPEC 4.1 written plainly (float-free): the bucket grid from the epoch, newest point per bucket wins,
    a value of the wrong kind is missing. `rules._scan` must give the same answer, bucket for bucket."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    p_us = s.period // timedelta(microseconds=1)

    def start_of(ts: datetime) -> datetime:
        us = (ts - epoch) // timedelta(microseconds=1)
        return epoch + timedelta(microseconds=us - us % p_us)

    end = start_of(now) + (s.period if not s.complete_buckets_only else timedelta(0))
    starts = [end - s.period * k for k in range(s.evaluation_periods + 2, 0, -1)]
    out = []
    for start in starts:
        inside = [(ts, v) for ts, v in points if start_of(ts) == start]
        kept = max(inside, key=lambda p: p[0]) if inside else None
        # several points with the same timestamp: the later one in the list wins, as in the daemon
        if kept is not None:
            kept = [p for p in inside if p[0] == kept[0]][-1]
        if kept is None or (since is not None and start < since) or not s.threshold.accepts(kept[1]):
            out.append((start, None, None))
        else:
            out.append((start, kept[1], s.threshold.breached_by(kept[1])))
    return out


def reference_state(s: RuleSpec, buckets, previous: RuleState) -> RuleState:
    """SPEC 4.1 in the guide's words, on the range's marks (X breaching, 0 not, - missing)."""
    marks = ["-" if b[1] is None else ("X" if b[2] else "0") for b in buckets]
    real = [c for c in marks if c != "-"]
    n, m, mode = s.evaluation_periods, s.datapoints_to_alarm, s.missing_data
    if len(real) >= n:  # the N most recent datapoints that exist; missing_data plays no part
        return ALARM if real[-n:].count("X") >= m else OK
    if mode == "breaching":  # fill the N - len(real) gaps as breaching
        return ALARM if real.count("X") + n - len(real) >= m else OK
    if mode == "not_breaching":
        return ALARM if real.count("X") >= m else OK
    undecided = previous if mode == "ignore" else INSUF
    if not real:
        return undecided
    if real.count("X") >= m:
        return ALARM
    if "0" in real:
        return OK
    if len(marks) - marks.index("X") >= m:  # the oldest breach is at least M periods old
        return ALARM if mode == "missing" else previous
    return undecided


ON_A_BOUNDARY = st.integers(-28_800, 200).map(lambda k: k * 500_000)  # bucket edges of every period below


@settings(max_examples=400)
@given(
    specs(),
    st.sampled_from([timedelta(milliseconds=500), timedelta(seconds=7), MIN, timedelta(hours=1)]),
    st.lists(st.tuples(st.one_of(st.integers(-4 * 3600 * 10**6, 10**8), ON_A_BOUNDARY), values_st), max_size=30),
    st.one_of(st.integers(0, 3600 * 10**6), ON_A_BOUNDARY.filter(lambda us: us >= 0)),
    st.one_of(st.none(), st.integers(-4 * 3600 * 10**6, 10**8)),
)
def test_scan_matches_the_plain_definition(s: RuleSpec, period, raw, now_us: int, since_us) -> None:
    s = RuleSpec(s.threshold, period, s.evaluation_periods, s.datapoints_to_alarm, s.missing_data,
                 s.complete_buckets_only)
    now = T0 + timedelta(microseconds=now_us)
    points = [(T0 + timedelta(microseconds=us), v) for us, v in raw]
    since = None if since_us is None else T0 + timedelta(microseconds=since_us)
    assert [tuple(b)[:3] for b in window(s, points, now, since)] == reference_window(s, points, now, since)
    ev = evaluate(s, points, now)
    newest = [b for b in reference_window(s, points, now) if b[1] is not None]
    assert (ev.value, ev.value_at) == ((newest[-1][1], newest[-1][0]) if newest else (None, None))


@settings(max_examples=500)
@given(specs(), points_st, st.sampled_from(list(RuleState)), st.integers(0, 120))
def test_the_state_matches_the_plain_definition(s: RuleSpec, points, previous: RuleState, now_s: int) -> None:
    now = T0 + timedelta(seconds=now_s)
    assert evaluate(s, points, now, previous).state is reference_state(s, reference_window(s, points, now), previous)
