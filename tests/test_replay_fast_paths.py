"""The shortcuts a replay's hot loop takes (issue 22, "polls that change nothing skipped cheaply") decide and
show exactly what the long way does. Each is held to a plain restatement of its rule, written here from the
documented behaviour (rules.py's docstring, prometheus' exposition), never to the product's own functions:

- `rules.columns` places an answer of one datapoint per bucket start without a search per point;
- `Series.of_many` shares one list of times between queries, and a poll finds its window once for them;
- `RuleSeries` shows each rule's judgement as the board holds it, read only when scraped;
- the executor does not hand the machine an empty set of blind sources when it had none (the machine's
  `sources_blind` would say nothing and change nothing: held here over generated machine histories).
"""

from __future__ import annotations

import copy
import math
import operator
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.config.types import parse_threshold
from watchdog.core.escalation import RuleView, TargetMachine
from watchdog.core.rules import RuleSpec, columns, evaluate, grid
from watchdog.replay.sources import Series
from watchdog.support.metrics import Metrics

UTC = timezone.utc
MIN = timedelta(minutes=1)
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
       "!=": operator.ne}


def placed(points, edges, op, limit):
    """The rule as rules.py states it: a point belongs to the bucket its time falls in, the newest in a bucket
    wins, a value of the wrong kind is missing, and a present value breaches when `value op limit`."""
    vals, hits = [], []
    for a, b in zip(edges, edges[1:]):
        # The newest; of two at the same time, the later in the answer (a later line of it).
        inside = [(ts, k, v) for k, (ts, v) in enumerate(points) if a <= ts < b]
        v = max(inside, key=lambda p: (p[0], p[1]))[2] if inside else None
        if v is not None and isinstance(v, bool) != isinstance(limit, bool):
            v = None
        vals.append(v)
        hits.append(None if v is None else OPS[op](v, limit))
    return vals, hits


values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans())


@st.composite
def answers(draw):
    """Mostly what an aggregated source answers (one point at each bucket start of the range, perhaps one in
    the still-filling bucket), often spoiled: a gap, a point off the grid, two in a bucket, out of order,
    one before the range, a boolean."""
    n = draw(st.integers(1, 6))
    now = T0 + timedelta(seconds=draw(st.integers(0, 59)))
    spec = RuleSpec(parse_threshold(draw(st.sampled_from(["> 1500", "<= 3", "== 0", "!= 2.5", "== true"]))), MIN,
                    n, 1)
    edges = grid(spec, now)
    points = [(e, draw(st.floats(0, 3000) | st.integers(0, 3000))) for e in edges[:-1]]
    if draw(st.booleans()):
        points.append((edges[-1], draw(values)))  # the still-filling bucket
    for _ in range(draw(st.integers(0, 2))):
        what = draw(st.sampled_from(["gap", "off", "twice", "swap", "early", "value"]))
        k = draw(st.integers(0, len(points) - 1)) if points else 0
        if not points:
            break
        if what == "gap":
            del points[k]
        elif what == "off":
            points[k] = (points[k][0] + timedelta(seconds=draw(st.integers(1, 59))), points[k][1])
        elif what == "twice":
            points.insert(k + 1, (points[k][0] + timedelta(seconds=draw(st.integers(0, 59))), draw(values)))
        elif what == "swap" and len(points) > 1:
            points[0], points[-1] = points[-1], points[0]
        elif what == "early":
            points.insert(0, (edges[0] - timedelta(seconds=draw(st.integers(1, 120))), draw(values)))
        else:
            points[k] = (points[k][0], draw(values))
    return spec, edges, points


def same(a, b) -> bool:
    """Equal, NaN included, and of the same kind (True is not 1.0 here)."""
    return len(a) == len(b) and all(
        type(x) is type(y) and (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)))
        for x, y in zip(a, b))


@settings(max_examples=600, deadline=None)
@given(answers())
def test_columns_place_every_answer_as_the_rule_says(case) -> None:
    spec, edges, points = case
    vals, hits = columns(spec, points, edges)
    want_vals, want_hits = placed(points, edges, spec.threshold.op, spec.threshold.value)
    assert same(vals, want_vals), (points, vals, want_vals)
    assert list(hits) == want_hits


def test_columns_answer_of_one_point_per_bucket() -> None:
    """The shape the shortcut takes, by hand: N + 2 buckets of 1 minute, a point at each start and one in the
    filling bucket, against > 1500."""
    spec = RuleSpec(parse_threshold("> 1500"), MIN, 3, 2)
    edges = grid(spec, T0 + timedelta(seconds=30))  # 09:55 .. 10:00
    points = [(edges[k], v) for k, v in enumerate([100.0, 2000, 1500.0, 1501.0, 7.5, 9999.0])]
    assert columns(spec, points, edges) == ((100.0, 2000, 1500.0, 1501.0, 7.5), (False, True, False, True, False))
    assert evaluate(spec, points, T0 + timedelta(seconds=30)).breaching == 1  # 1500, 1501, 7.5 judged


@st.composite
def histories(draw):
    stamps = sorted(draw(st.sets(st.integers(0, 40), max_size=25)))
    late = draw(st.lists(st.one_of(st.none(), st.integers(0, 50)), min_size=len(stamps), max_size=len(stamps)))
    return [(T0 + k * MIN, float(k), None if d is None else T0 + d * MIN) for k, d in zip(stamps, late)]


@settings(max_examples=200, deadline=None)
@given(st.lists(histories(), min_size=1, max_size=4), st.integers(-2, 45), st.integers(0, 8), st.integers(0, 50))
def test_shared_times_answer_what_each_series_holds(hists, start, span, seen) -> None:
    """Queries with the same times share one list; each answers the points of [start, end) readable at `now`,
    late points (with the time they became readable) included only once readable."""
    # Two queries with each history: the second shares the first's times.
    answers = {f"q{i}{c}": [(ts, v) for ts, v, _ in h] for i, h in enumerate(hists) for c in "ab"}
    series = Series.of_many(answers)
    for i, h in enumerate(hists):
        for c in "ab":
            for ts, v, vis in h:
                if vis is not None:  # a late point: the corpus's way of adding one
                    series[f"q{i}{c}"].visible[series[f"q{i}{c}"].times.index(ts)] = vis
                    series[f"q{i}{c}"].late += 1
    a, b, now = T0 + start * MIN, T0 + (start + span) * MIN, T0 + seen * MIN
    for i, h in enumerate(hists):
        for c in "ab":
            want = [(ts, v) for ts, v, vis in h if a <= ts < b and (vis is None or vis <= now)]
            assert series[f"q{i}{c}"].between(a, b, now, before_end=True) == want


def test_adding_to_a_shared_series_leaves_the_others_alone() -> None:
    series = Series.of_many({"a": [(T0, 1.0), (T0 + MIN, 2.0)], "b": [(T0, 5.0), (T0 + MIN, 6.0)]})
    assert series["a"].times is series["b"].times
    series["a"].add(T0 + 2 * MIN, 3.0)
    assert series["b"].times == [T0, T0 + MIN]
    assert series["b"].between(T0, T0 + 5 * MIN, T0 + 5 * MIN) == [(T0, 5.0), (T0 + MIN, 6.0)]
    assert series["a"].between(T0, T0 + 5 * MIN, T0 + 5 * MIN) == [(T0, 1.0), (T0 + MIN, 2.0), (T0 + 2 * MIN, 3.0)]


records = st.tuples(st.sampled_from(["perf", "errors"]), st.integers(0, 2),
                    st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.0, 2.5]), st.floats(allow_nan=True)))


@settings(max_examples=300, deadline=None)
@given(st.lists(records, max_size=30))
def test_rule_series_expose_the_last_judgement_of_each_rule(seq) -> None:
    """The exposition holds each rule's state as the board says it now (under its category only) and its value,
    the sign of a zero and a NaN included; no value series while its judgement has none."""
    m = Metrics()
    last = {f"r{k}": judged for k, judged in enumerate(seq)}
    m.rule_series.read_from(lambda: [("t", rule, *judged) for rule, judged in last.items()])
    for rule, (category, state, value) in last.items():
        for other in ("perf", "errors"):
            got = m.registry.get_sample_value("watchdog_rule_state", {"target": "t", "rule": rule, "category": other})
            assert got == (state if other == category else None)
        got = m.registry.get_sample_value("watchdog_rule_value", {"target": "t", "rule": rule})
        if value is None:
            assert got is None
        elif math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value and math.copysign(1, got) == math.copysign(1, value)


SPEC = RuleSpec(parse_threshold("> 100"), MIN, 3, 2)


def view(name: str, bad: bool, now: datetime, level: int = 1) -> RuleView:
    points = [(now - k * MIN - MIN, 900.0 if bad else 50.0) for k in range(3)]
    return RuleView(name, level, SPEC, tuple(points), evaluate(SPEC, points, now))


steps = st.lists(st.tuples(st.sampled_from(["observe", "blind", "finish", "resolve"]), st.booleans(),
                           st.booleans(), st.integers(1, 4)), max_size=25)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_no_blind_source_before_or_now_changes_nothing_in_the_machine(history) -> None:
    """The executor's skip (TargetExecutor.set_blind_sources), proved on the machine: after any history of
    observations, blind spells, levels ending and resolutions, telling a machine with no blind source that
    none is blind returns nothing and leaves every field of it as it was."""
    machine = TargetMachine("t", 3, 2 * MIN, 10, lambda t, now: f"inc-{now:%H%M}")
    now = T0
    for what, a, b, minutes in history:
        now += minutes * MIN
        if what == "observe":
            machine.observe(now, {"x": view("x", a, now), "y": view("y", b, now, 2)}, "paused" if a and b else None)
        elif what == "blind":
            machine.sources_blind(now, {"cw": "down"} if a else {})
        elif what == "finish" and machine.incident is not None:
            machine.level_finished(now, machine.incident.id, machine.incident.level, b, "done", None)
        elif what == "resolve" and machine.incident is not None:
            machine.resolve(now, "by hand")
        if not machine.blind_sources:
            before = copy.deepcopy(vars(machine))
            assert machine.sources_blind(now + MIN, {}) == []
            assert vars(machine) == before
