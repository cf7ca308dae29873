"""The signal board judges a rule again only when its range or what falls in it changed (issue 22): the proof
that this changes nothing. Hypothesis drives the board and a plain restatement of it through the same generated
histories (answers, equal answers, answers that differ only outside the range, kinds that flip, -0.0, failed
polls, time that stands still, moves inside a bucket or jumps) and compares, after every evaluation, every
rule's judgement field for field (its buckets and reason as read), its view's points, the board's ring (values
and transitions) and the last datapoint.

`Plain` is the board as it was before: every rule of the target judged afresh by `rules.evaluate` at every
evaluation, its ring a plain list kept by the ring's documented rule (watchdog/core/signals.py RuleRing: a
value per bucket, only the newest bucket kept takes a new one, VALUES_KEPT of them; a transition at each
change of state and at the first judgement, TRANSITIONS_KEPT of them). The decision itself (rules.decide) is
held to SPEC 4.1 by tests/test_rules.py's plain definitions, the 44-cell table and the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from watchdog.core.rules import Datapoint, Evaluation, RuleState, change_points, evaluate
from watchdog.core.ring import TRANSITIONS_KEPT, VALUES_KEPT
from watchdog.core.signals import SignalBoard
from watchdog.runtime.wiring import board_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
MIN = timedelta(minutes=1)


def compliance_source() -> dict[str, Any]:
    return {"name": "comp", "type": "http_json", "url": f"{CLOSED}/c", "interval": "60s"}


def flag(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "category": "security", "source": "comp", "field": name, **extra}


RULES = [
    metric_rule("m1", source="cw", evaluation_periods=3, datapoints_to_alarm=2),
    metric_rule("m2", source="cw", threshold="<= 0", evaluation_periods=1, missing_data="breaching"),
    metric_rule("m3", source="cw", threshold="!= 1", evaluation_periods=4, datapoints_to_alarm=3,
                missing_data="ignore"),
    metric_rule("m4", source="cw", evaluation_periods=2, missing_data="not_breaching", max_age="150s"),
    metric_rule("m5", source="cw", period="120s", evaluation_periods=3, datapoints_to_alarm=3),
    flag("f1", threshold="== false", evaluation_periods=3, datapoints_to_alarm=2),
    flag("f2", threshold="> 1500", evaluation_periods=2, missing_data="ignore"),
    flag("f3", change={"over": "2m", "percent": "> 50"}, evaluation_periods=2),
]
CFG = parsed(hybrid_routing(aws_endpoint=None, sources=[cloudwatch("cw", "30s"), compliance_source()], target="t",
                            rules=RULES, levels=[level(1, "l", http(f"{CLOSED}/x"))]))
SOURCES = {"cw": [f"t/{r['name']}" for r in RULES if r["source"] == "cw"],
           "comp": [f"t/{r['name']}" for r in RULES if r["source"] == "comp"]}


@dataclass
class PlainSlot:
    points: list[Datapoint] = field(default_factory=list)
    history: list[Datapoint] = field(default_factory=list)
    note: str = ""
    read_at: datetime | None = None
    last_datapoint: datetime | None = None
    state: RuleState = RuleState.INSUFFICIENT_DATA
    values: list[tuple[datetime, float]] = field(default_factory=list)
    transitions: list[tuple[datetime, RuleState, str, tuple[Any, ...]]] = field(default_factory=list)
    evaluation: Evaluation | None = None


class Plain:
    """The board before issue 22, written plainly (see the module's docstring)."""

    def __init__(self, board: SignalBoard):
        self.specs = {k: s.spec for k, s in board.slots.items()}  # the specs are config, not what is tested
        self.rules = {k: s.rule for k, s in board.slots.items()}
        self.slots = {k: PlainSlot(note=f"source {s.rule.source} has not answered yet") for k, s in board.slots.items()}
        self.last_success: dict[str, datetime | None] = {"cw": None, "comp": None}

    def source_ok(self, name: str, data: dict[str, list[Datapoint]], now: datetime) -> None:
        self.last_success[name] = now
        for key, points in data.items():
            slot, rule = self.slots[key], self.rules[key]
            if rule.change is not None:
                horizon = now - rule.change.over - self.specs[key].period * (rule.evaluation_periods + 4)
                merged = {ts: v for ts, v in slot.history if ts >= horizon}
                merged.update((ts, v) for ts, v in points if ts >= horizon)
                slot.history = sorted(merged.items())
                slot.points = slot.history
            else:
                slot.points = list(points)
            slot.note, slot.read_at = "", now
            if points:
                slot.last_datapoint = max(ts for ts, _ in points)

    def source_failed(self, name: str, error: str) -> None:
        for key in SOURCES[name]:
            self.slots[key].points, self.slots[key].note = [], f"source {name} down: {error}"

    def evaluate(self, now: datetime) -> None:
        for key, slot in self.slots.items():
            spec, rule = self.specs[key], self.rules[key]
            at = (slot.read_at or now) if spec.complete_buckets_only else (self.last_success[rule.source] or now)
            points = slot.points
            if rule.change is not None:
                points = change_points(points, rule.change.over, spec.period)
            if rule.max_age is not None:
                points = [p for p in points if p[0] >= now - rule.max_age]
            ev = evaluate(spec, points, at, slot.state)
            if slot.note:
                ev = Evaluation(RuleState.INSUFFICIENT_DATA, None, None, 0, 0, ev.needed, ev.buckets, slot.note)
            self._ring(slot, ev, now)
            slot.evaluation, slot.state = ev, ev.state

    @staticmethod
    def _ring(slot: PlainSlot, ev: Evaluation, now: datetime) -> None:
        for b in ev.buckets:
            if b.value is None:
                continue
            if not slot.values or b.start > slot.values[-1][0]:
                slot.values.append((b.start, float(b.value)))
            elif b.start == slot.values[-1][0]:
                slot.values[-1] = (b.start, float(b.value))
        del slot.values[:-VALUES_KEPT]
        if ev.state != slot.state or not slot.transitions:
            # The buckets an alarm was decided on; none kept for another state (ring.Transition).
            judged = tuple(b for b in ev.buckets if b.judged) if ev.state == RuleState.ALARM else ()
            slot.transitions.append((now, ev.state, ev.reason, judged))
        del slot.transitions[:-TRANSITIONS_KEPT]


# Values chosen so that equal-but-different ones meet: 1.0 and True, 0.0, -0.0 and False, a breach and not.
VALUES = st.sampled_from([0.0, -0.0, 1.0, 2.0, 60.0, 1500.0, 2000.0, True, False])
EQUAL_OTHER: dict[str, float | bool] = {"True": 1.0, "1.0": True, "False": 0.0, "0.0": -0.0, "-0.0": False}
STEPS = st.sampled_from([timedelta(0), timedelta(seconds=1), timedelta(seconds=10), timedelta(seconds=30), MIN,
                         timedelta(seconds=61), 3 * MIN])


@st.composite
def answer(draw: st.DrawFn, keys: list[str], now: datetime, last: dict[str, list[Datapoint]]) -> dict[str, list[Datapoint]]:
    """Per rule of the source: the last answer again (a new list), again with values swapped for equal ones of
    another kind or sign, the last with one value or one time changed, or new datapoints around the range
    (aligned on minutes, or not; some after `now`)."""
    out = {}
    for key in keys:
        before = last.get(key, [])
        how = draw(st.sampled_from(["again", "retype", "tweak", "new", "new"]) if before else st.just("new"))
        if how == "again":
            out[key] = list(before)
        elif how == "retype":
            out[key] = [(ts, EQUAL_OTHER.get(repr(v), v) if draw(st.booleans()) else v) for ts, v in before]
        elif how == "tweak":
            points = list(before)
            k = draw(st.integers(0, len(points) - 1))
            ts, v = points[k]
            points[k] = draw(st.sampled_from([(ts, draw(VALUES)), (ts - MIN, v), (ts + timedelta(seconds=1), v)]))
            out[key] = points
        else:
            base = now.replace(second=0, microsecond=0)
            offsets = draw(st.lists(st.integers(-9 * 60, 90), max_size=9))
            aligned = draw(st.booleans())
            out[key] = sorted(((base + timedelta(seconds=o - o % 60 if aligned else o), draw(VALUES)) for o in offsets),
                              key=lambda p: p[0]) if draw(st.booleans()) else \
                [(base + timedelta(seconds=o), draw(VALUES)) for o in offsets]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_the_incremental_board_judges_as_the_plain_one_at_every_evaluation(data: st.DataObject) -> None:
    board = board_for(CFG)
    plain = Plain(board)
    now = T0
    last: dict[str, list[Datapoint]] = {}
    for _ in range(data.draw(st.integers(1, 25))):
        now += data.draw(STEPS)
        what = data.draw(st.sampled_from(["ok", "ok", "ok", "fail", "eval", "eval"]))
        source = data.draw(st.sampled_from(["cw", "comp"]))
        if what == "ok":
            got = data.draw(answer(SOURCES[source], now, last))
            last.update(got)
            board.source_ok(source, {k: list(v) for k, v in got.items()}, now)
            plain.source_ok(source, got, now)
        elif what == "fail":
            board.source_failed(source, "HTTP 500", now)
            plain.source_failed(source, "HTTP 500")
        views = board.evaluate("t", now)
        plain.evaluate(now)
        for key, p in plain.slots.items():
            slot, name = board.slots[key], key.split("/")[1]
            ev = views[name].evaluation
            assert p.evaluation is not None
            assert (ev.state, ev.value, ev.value_at, ev.breaching, ev.present, ev.needed, ev.reason) == (
                p.evaluation.state, p.evaluation.value, p.evaluation.value_at, p.evaluation.breaching,
                p.evaluation.present, p.evaluation.needed, p.evaluation.reason), key
            assert [tuple(b) for b in ev.buckets] == [tuple(b) for b in p.evaluation.buckets], key
            # Same kinds and signs, not only ==: True == 1.0 and 0.0 == -0.0.
            assert repr(ev.value) == repr(p.evaluation.value), key
            assert [repr(b.value) for b in ev.buckets] == [repr(b.value) for b in p.evaluation.buckets], key
            assert slot.state is p.state and slot.last_datapoint == p.last_datapoint, key
            assert slot.ring.values() == p.values, key
            assert [(t.at, t.state, t.reason, t.judged) for t in slot.ring.transitions()] == p.transitions, key
            assert slot.ring.last == ev.buckets, key
            if slot.rule.change is None and slot.rule.max_age is None:
                assert [repr(x) for x in views[name].points] == [repr(x) for x in p.points], key


def test_an_answer_that_changes_nothing_in_the_range_is_not_judged_again() -> None:
    """The cheap paths, seen from outside: an equal answer (a new list) keeps the last answer's object and the
    same view; one that differs only in the still-filling bucket keeps the same judgement; a new bucket, or
    the time moving the range on, is judged again."""
    board = board_for(CFG)
    pts = [(T0 + k * MIN, 100.0 + k) for k in range(6)]  # 12:00..12:05; at 12:05:30 the range is 12:00..12:04
    at = T0 + 5 * MIN + timedelta(seconds=30)
    board.source_ok("cw", {"t/m1": pts}, at)
    first = board.evaluate("t", at)["m1"]
    board.source_ok("cw", {"t/m1": [(ts, v) for ts, v in pts]}, at + timedelta(seconds=10))
    again = board.evaluate("t", at + timedelta(seconds=10))["m1"]
    assert again is first and board.slots["t/m1"].points is pts  # the first answer's list, kept
    board.source_ok("cw", {"t/m1": pts[:-1] + [(pts[-1][0], 7777.0)]}, at + timedelta(seconds=20))  # 12:05 fills
    filling = board.evaluate("t", at + timedelta(seconds=20))["m1"]
    assert filling is not first and filling.evaluation is first.evaluation
    board.source_ok("cw", {"t/m1": pts[:-1] + [(pts[-1][0], 7777.0)]}, at + MIN)  # 12:05 is complete now
    later = board.evaluate("t", at + MIN)["m1"].evaluation
    assert later is not first.evaluation and later.value == 7777.0 and later.value_at == T0 + 5 * MIN


def test_a_state_set_from_outside_is_judged_from() -> None:
    """A reload carries a rule's state into the new board (runtime/reload.py): the next judgement starts from
    it, even on the answer judged before. m3 keeps its state on missing data (`ignore`), so with no datapoint
    it says what it was told."""
    board = board_for(CFG)
    board.source_ok("cw", {"t/m3": []}, T0)
    assert board.evaluate("t", T0)["m3"].evaluation.state is RuleState.INSUFFICIENT_DATA
    board.slots["t/m3"].state = RuleState.ALARM
    ev = board.evaluate("t", T0)["m3"].evaluation
    assert (ev.state, ev.reason) == (RuleState.ALARM, "no datapoints in the last 6 periods (state kept: ignore)")
