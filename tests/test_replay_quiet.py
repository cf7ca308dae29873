"""Quiet polls skipped in bulk (watchdog/replay/quiet.py; issue 22, scope 5) decide and show exactly what
the long way does: over generated histories (breaches, gaps, points off the grid, two in a bucket, every
`missing_data`, several targets and sources, rules read every 5 minutes beside rules read every minute, a level that fails by a label, a
pause), the replay with the skip and without it (`skip_quiet`, a switch for this test only) give the same
outcome (`--json`'s document), the same score, the same transitions and the same report page. The spans
themselves are held to a restatement of CloudWatch's rule written here, bucket by bucket."""

from __future__ import annotations

import operator
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config import parse_config
from watchdog.config.models import Config
from watchdog.config.models import Source as SourceConfig
from watchdog.config.types import parse_threshold
from watchdog.core.rules import RuleSpec
from watchdog.core.signals import Query
from watchdog.replay.engine import PauseWindow, Replayed, replay
from watchdog.replay.labels import Label, failures, score
from watchdog.replay.outcome import outcome_of
from watchdog.replay.quiet import rule_spans, segments
from watchdog.replay.report import render
from watchdog.replay.sources import HistorySource, Series
from watchdog.sources import source_kind

UTC = timezone.utc
MIN = timedelta(minutes=1)
T0 = datetime(2026, 11, 2, tzinfo=UTC)
MINUTES = 150
def levels() -> list[dict]:
    return [{"level": k, "name": f"l{k}", "deadline": "2m",
           "actions": [{"type": "http", "url": f"http://127.0.0.1:9/l{k}"}]} for k in (1, 2)]  # one copy a target


def at(minute: float) -> datetime:
    return T0 + minute * MIN


rules_st = st.fixed_dictionaries({
    "threshold": st.sampled_from(["> 1500", "< 50"]),
    "n": st.integers(1, 4),
    "m": st.integers(1, 4),
    "missing_data": st.sampled_from(["missing", "breaching", "not_breaching", "ignore"]),
    "level": st.integers(1, 2),
})

# What happens to a rule's metric from a minute on, for some minutes: nothing (quiet values), a breach, a gap,
# a point off its bucket's start, a second point in a bucket.
events_st = st.lists(st.tuples(st.integers(0, MINUTES - 1), st.integers(1, 12),
                               st.sampled_from(["breach", "breach", "gap", "off", "twice"])), max_size=4)


def history(rule: dict, events: list) -> list[tuple[datetime, float]]:
    quiet = 100.0 if rule["threshold"] == "> 1500" else 500.0
    loud = 2000.0 if rule["threshold"] == "> 1500" else 10.0
    what = {}
    for start, length, kind in events:
        for k in range(start, min(MINUTES, start + length)):
            what.setdefault(k, kind)
    points = []
    for k in range(-10, MINUTES + 2):
        kind = what.get(k)
        if kind == "gap":
            continue
        points.append((at(k) + (timedelta(seconds=17) if kind == "off" else timedelta(0)),
                       loud if kind == "breach" else quiet + k % 7))
        if kind == "twice":
            points.append((at(k) + timedelta(seconds=30), loud))
    return points


@st.composite
def setups(draw):
    """A config of two CloudWatch sources and three targets (the third perhaps reading both sources), every
    rule's history, a label whose span fails level 1, perhaps a pause."""
    n_rules = {"a": draw(st.integers(1, 3)), "b": draw(st.integers(1, 2)), "c": draw(st.integers(1, 2))}
    mixed = draw(st.sampled_from([False, False, True]))  # target c reads cw1 too: then neither source's polls are skipped
    targets, data = [], {}
    for t, count in n_rules.items():
        rules = []
        for i in range(count):
            r = draw(rules_st)
            source = "cw2" if t == "c" and not (mixed and i == 0) else "cw1"
            rules.append({"name": f"r{i}", "category": "performance", "source": source,
                          "threshold": r["threshold"], "evaluation_periods": r["n"],
                          "datapoints_to_alarm": min(r["m"], r["n"]), "missing_data": r["missing_data"],
                          "level": r["level"],
                          "metric": {"namespace": "Q", "name": f"{t}{i}", "stat": "Maximum", "period": "60s"}})
            if source == "cw1" and draw(st.booleans()):  # two grids in one source: one read every 5 minutes
                rules[-1]["read_every"] = "5m"
            data[f"{t}/r{i}"] = history(r, draw(events_st))
        targets.append({"name": t, "rules": rules, "levels": levels(),
                        "escalation": {"verify_window": "3m", "max_rollbacks_per_hour": 6}})
    cw1 = {"name": "cw1", "type": "cloudwatch", "interval": "60s", "settle": draw(st.sampled_from(["0s", "2m"]))}
    cfg = parse_config(yaml.safe_dump({"sources": [cw1, {"name": "cw2", "type": "cloudwatch", "interval": "60s"}],
                                       "targets": targets}), {})
    lo = draw(st.integers(0, MINUTES - 10))
    labels = [Label(target="a", start=at(lo), end=at(lo + draw(st.integers(1, 40))), rollback=True, level=2,
                    failed_levels=(1,))]
    pauses = []
    if draw(st.booleans()):
        p = draw(st.integers(10, MINUTES - 5))
        pauses.append(PauseWindow(draw(st.sampled_from([None, "b"])), at(p), at(p + draw(st.integers(1, 30)))))
    return cfg, data, labels, pauses


def builder(data: dict[str, list[tuple[datetime, float]]]):
    def build(c: SourceConfig, queries: list[Query]) -> HistorySource:
        series = Series.of_many({q.key: data[q.key] for q in queries if q.key in data})
        return HistorySource(c.name, c.interval, source_kind(c).sampled, queries, series)
    return build


async def replayed(cfg: Config, data: dict, labels: list[Label], pauses: list[PauseWindow], skip_quiet: bool):
    r = await replay(cfg, at(0), at(MINUTES), builder(data), pauses=pauses, resolve_after=timedelta(minutes=20),
                     failures=failures(labels), skip_quiet=skip_quiet)
    o = outcome_of(r, [])
    graded = score(o.incidents, labels)
    return r, o.to_json(), graded.to_json(), render(cfg, r, o, labels, graded)


def transitions(r: Replayed) -> dict[str, list[tuple[object, ...]]]:
    return {k: [(t.at, t.state, t.reason, t.judged) for t in ts] for k, ts in r.states.items()}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setups())
async def test_the_skip_decides_and_shows_what_the_long_way_does(setup) -> None:
    cfg, data, labels, pauses = setup
    fast, slow = await replayed(cfg, data, labels, pauses, True), await replayed(cfg, data, labels, pauses, False)
    assert slow[0].skipped == 0
    assert fast[1] == slow[1]  # the outcome, as --json prints it
    assert fast[2] == slow[2]  # the score
    assert transitions(fast[0]) == transitions(slow[0])
    assert fast[3] == slow[3]  # the report page
    assert {n: (s.polls, s.seen, s.failed) for n, s in fast[0].sources.items()} == \
        {n: (s.polls, s.seen, s.failed) for n, s in slow[0].sources.items()}
    assert board(fast[0]) == board(slow[0])  # what each rule last read, and when; each source's health


def board(r: Replayed) -> tuple[object, ...]:
    assert r.board is not None
    return ({k: (tuple(s.points), s.read_at, s.last_datapoint, s.note, s.state) for k, s in r.board.slots.items()},
            {n: vars(h) for n, h in r.board.sources.items()})


async def test_a_quiet_week_of_a_breaching_rule_is_mostly_skipped() -> None:
    """Not a test that cannot fail: the skip does skip. One target, one rule quiet but for one breach that opens
    an incident; the polls around it (the breach, the incident until it is resolved) run in full."""
    cfg = parse_config(yaml.safe_dump({
        "sources": [{"name": "cw1", "type": "cloudwatch", "interval": "60s"}],
        "targets": [{"name": "a", "levels": levels(), "escalation": {"verify_window": "3m"},
                     "rules": [{"name": "r0", "category": "performance", "source": "cw1", "threshold": "> 1500",
                                "evaluation_periods": 3, "datapoints_to_alarm": 3,
                                "metric": {"namespace": "Q", "name": "a0", "stat": "Maximum", "period": "60s"}}]}],
    }), {})
    data = {"a/r0": [(at(k), 2000.0 if 60 <= k < 64 else 100.0) for k in range(-10, MINUTES + 2)]}
    fast, slow = await replayed(cfg, data, [], [], True), await replayed(cfg, data, [], [], False)
    assert fast[1] == slow[1] and fast[3] == slow[3]
    assert len(fast[1]["incidents"]) == 1
    # Full: the first poll (nothing is known before it), the breach's polls until it is judged, and the incident
    # until it is mitigated (level 1, 3 minutes of verification); a mitigated incident's polls are skipped too.
    assert MINUTES - 20 < fast[0].skipped < MINUTES - 5


OPS = {">": operator.gt, "<": operator.lt}


def quiet_at(spec: RuleSpec, points: list[tuple[datetime, float]], t: datetime) -> bool:
    """CloudWatch's rule, restated bucket by bucket: each of the N newest complete buckets before t's holds
    exactly one datapoint, at its start, a number not breaching the threshold."""
    end = T0 + ((t - T0) // spec.period) * spec.period
    op, limit = spec.threshold.op, spec.threshold.value
    for k in range(1, spec.evaluation_periods + 1):
        start = end - k * spec.period
        inside = [(ts, v) for ts, v in points if start <= ts < start + spec.period]
        if len(inside) != 1 or inside[0][0] != start or OPS[op](inside[0][1], limit):
            return False
    return True


@settings(max_examples=200, deadline=None)
@given(rules_st, events_st, st.integers(0, 59))
def test_the_quiet_spans_are_the_ticks_cloudwatch_judges_ok_on_full_data(rule, events, second) -> None:
    spec = RuleSpec(parse_threshold(rule["threshold"]), MIN, rule["n"], min(rule["m"], rule["n"]),
                    rule["missing_data"])
    points = history(rule, events)
    series = Series.of(points)
    spans = rule_spans(spec, series, segments(series.times, spec.period))
    for k in range(0, MINUTES):
        t = at(k) + timedelta(seconds=second)
        inside = any(a <= t < b for a, b in spans)
        assert inside == quiet_at(spec, points, t), (k, spans)


@pytest.mark.parametrize("threshold", ["== true", "!= false"])
def test_a_boolean_threshold_is_never_quiet(threshold: str) -> None:
    spec = RuleSpec(parse_threshold(threshold), MIN, 1, 1)
    series = Series.of([(at(k), False) for k in range(10)])
    assert rule_spans(spec, series, segments(series.times, MIN)) == []
