"""The ring's shortcut for a range moved on by one bucket (watchdog/core/signals.py `RuleRing.judged`), held
to a restatement of what the ring keeps: per bucket start, the value of the first judgement that saw it,
except that the newest bucket kept takes every later judgement's value; a bucket older than the newest kept
is never added; the newest VALUES_KEPT only. Judgements come from rules.decide over generated ranges (60 s
buckets, N = 3, so a range of 5), moved on by one bucket (the shortcut), by none, by several or back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from watchdog.core.rules import RuleState, decide, grid
from watchdog.core.ring import VALUES_KEPT, RuleRing
from watchdog.runtime.wiring import board_for

T0 = datetime(2026, 11, 28, 12, 0, 10, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
SPEC = next(iter(board_for(parsed(hybrid_routing(
    aws_endpoint=None, sources=[cloudwatch("cw", "60s")], target="t",
    rules=[metric_rule(source="cw", namespace="N", evaluation_periods=3, datapoints_to_alarm=2)],
    levels=[level(1, "l", http(f"{CLOSED}/x"))]))).slots.values())).spec

value = st.one_of(st.none(), st.sampled_from([1.0, 2.0, 1600.0, 0.0]))
step = st.one_of(st.just(1), st.integers(-3, 4))  # mostly one bucket on, as a period-aligned read moves
judgements = st.lists(st.tuples(step, st.lists(value, min_size=5, max_size=5)), min_size=1, max_size=90)


@settings(max_examples=300, deadline=None)
@given(judgements)
def test_the_ring_keeps_what_the_rule_says_whatever_the_moves(seq) -> None:
    ring, kept, newest, state = RuleRing(), {}, None, RuleState.INSUFFICIENT_DATA
    at = T0 + 100 * MINUTE
    for move, vals in seq:
        at += move * MINUTE
        edges = grid(SPEC, at)
        hits = tuple(None if v is None else v > 1500 for v in vals)
        ev = decide(SPEC, edges, tuple(vals), hits, state)
        ring.judged(ev, at, state)
        state = ev.state
        for start, v in zip(edges, vals):  # the restatement: oldest first
            if v is None:
                continue
            if newest is None or start > newest:
                kept[start], newest = v, start
            elif start == newest:
                kept[start] = v
    want = [(s, kept[s]) for s in sorted(kept)][-VALUES_KEPT:]
    assert ring.values() == want
