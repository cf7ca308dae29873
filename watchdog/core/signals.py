"""The latest readings per rule and the health of each source. No I/O.

A source that failed its last poll gives its rules no datapoints at all, so they
evaluate to insufficient_data whatever `missing_data` says: a failed poll is never
a breach.

Each rule also keeps a ring (`RuleRing`), bounded by count so that memory stays flat whatever runs for
how long: its recent judged values, its recent state transitions and the buckets its last judgement
used. The status page draws it; the replay collects the transitions from it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from watchdog.config.models import Config, Rule, Target
from watchdog.core.ring import RuleRing
from watchdog.core.points import Points, zero_signs, same_answer
from watchdog.core.escalation import RuleView
from watchdog.core.rules import (
    Column,
    Datapoint,
    Evaluation,
    Hits,
    NUMBER_KINDS,
    RuleSpec,
    RuleState,
    change_points,
    columns,
    decide,
    evaluation_range,
    grid,
)


@dataclass(frozen=True)
class Query:
    """What one rule asks of its source; the sources answer per key."""

    key: str  # "target/rule", unique across the config
    rule: Rule


@dataclass
class SourceHealth:
    name: str
    type: str
    interval_s: float
    up: bool = False
    answered: bool = False
    last_poll: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    failing_since: datetime | None = None


_new_tuple = tuple.__new__
_time = itemgetter(0)
_COMPARABLE = NUMBER_KINDS | {bool}  # with any threshold's value: a bool is an int


class Basis(NamedTuple):
    """What a rule's last judgement was made of (with its view's points). The same range, note and columns give
    the same judgement (rules.decide is a function of them and of the state it left), so the board need not
    make it again. Only datetimes, strings and tuples of scalars: the garbage collector does not track it."""

    first: datetime  # the range's first bucket (the rule's period and N fix the rest)
    note: str
    vals: Column
    hits: Hits


@dataclass
class RuleSlot:
    target: str
    rule: Rule
    spec: RuleSpec
    points: Sequence[Datapoint] = ()
    evaluation: Evaluation | None = None
    state: RuleState = RuleState.INSUFFICIENT_DATA
    last_datapoint: datetime | None = None
    read_at: datetime | None = None  # the tick of the poll that last read its query (docs/deciding.md)
    note: str = field(default="")
    history: list[Datapoint] = field(default_factory=list)
    ring: RuleRing = field(default_factory=RuleRing)
    basis: Basis | None = None  # of the last judgement, and its view
    view: RuleView | None = None

    def last_judged(self, first: datetime) -> tuple[Basis, RuleView] | None:
        """The last judgement's basis and view, if it judged the range that starts at `first` with the note
        and state the rule has now (a reload's new slot has none: it is judged afresh)."""
        basis, view = self.basis, self.view
        if basis is None or view is None or basis.first != first or basis.note != self.note \
                or view.evaluation.state is not self.state:
            return None
        return basis, view


def rule_key(target: str, rule: str) -> str:
    return f"{target}/{rule}"


def spec_for(rule: Rule, sampled: bool, interval_s: float, period: timedelta | None = None) -> RuleSpec:
    """`period`: what the rule's source buckets its readings by (SourceShape.bucket); None: the interval."""
    period = period or timedelta(seconds=interval_s)
    return RuleSpec(
        threshold=rule.judged_by,
        period=period,
        evaluation_periods=rule.evaluation_periods,
        datapoints_to_alarm=rule.m,
        missing_data=rule.missing_data,
        complete_buckets_only=not sampled,
    )


class SourceShape(Protocol):
    """What the board needs of a source's kind (its descriptor, watchdog/sources/kind.py, is one)."""

    @property
    def sampled(self) -> bool: ...  # each reading complete on arrival (no still-filling bucket)

    def bucket(self, rule: Rule, /) -> timedelta | None: ...  # a rule's bucket period; None: the interval


class SignalBoard:
    def __init__(self, cfg: Config, shapes: Mapping[str, SourceShape]):
        """`shapes`: the kind of each source, by source name."""
        self.sources = {
            s.name: SourceHealth(s.name, s.type, s.interval.total_seconds()) for s in cfg.sources
        }
        self._blind_after = {s.name: s.blind_limit for s in cfg.sources}
        self.slots: dict[str, RuleSlot] = {}
        for t in cfg.targets:
            for r in t.rules:
                src, shape = self.sources[r.source], shapes[r.source]
                slot = RuleSlot(t.name, r, spec_for(r, shape.sampled, src.interval_s, shape.bucket(r)))
                # Until its source answers, a rule knows nothing: never judge it on an empty window.
                slot.note = f"source {r.source} has not answered yet"
                self.slots[rule_key(t.name, r.name)] = slot
        self._targets = {t.name: t for t in cfg.targets}
        # Keys, not slots: reload swaps a kept rule's slot object in under the same key.
        self._keys_of_target = {t.name: [rule_key(t.name, r.name) for r in t.rules] for t in cfg.targets}
        self._keys_of_source: dict[str, list[str]] = {s.name: [] for s in cfg.sources}
        for key, slot in self.slots.items():
            self._keys_of_source[slot.rule.source].append(key)
        self._sources_of_target = {t.name: sorted({r.source for r in t.rules}) for t in cfg.targets}
        self._targets_of_source = {name: sorted({self.slots[k].target for k in keys})
                                   for name, keys in self._keys_of_source.items()}
        # Per source, the targets its last answer gave a breaching newest reading: judged first (urgent_first).
        self._stirred: dict[str, set[str]] = {}

    def judgements(self) -> Iterator[tuple[str, str, str, int, float | None]]:
        """Each rule's last judgement as its metric series show it (support/metrics.py RuleSeries reads them when
        scraped): target, rule, category, state (0 ok, 1 alarm, 2 insufficient_data), the newest value judged
        (None: none; a boolean as 0 or 1). The slots are never added nor removed once built (a reload builds a
        new board), so a scrape's thread may walk them while the loop judges."""
        for slot in self.slots.values():
            rule, ev = slot.rule, slot.evaluation  # state and value of one judgement, whatever the loop does meanwhile
            if ev is None:
                yield slot.target, rule.name, rule.category, slot.state.number, None
            else:
                yield slot.target, rule.name, rule.category, ev.state.number, \
                    None if ev.value is None else float(ev.value)

    def queries(self, source: str) -> list[Query]:
        return [Query(k, self.slots[k].rule) for k in self._keys_of_source.get(source, ())]

    def targets_of(self, source: str) -> list[str]:
        return self._targets_of_source.get(source, [])

    def urgent_first(self, source: str, hot: Collection[str]) -> list[str]:
        """The targets of `source` in the order a poll judges them: first those its last answer stirred (a
        rule's newest reading breaches) and the `hot` ones (an incident open), then the rest, each group by
        name. Only the order moves: every target is judged at the poll's one time, on its own rules, so
        no decision depends on it; a breach among 5 000 rules starts its level before the other targets
        are judged, not after (bench, reaction at 5 000 rules)."""
        targets, stirred = self.targets_of(source), self._stirred.get(source, set())
        first = [t for t in targets if t in stirred or t in hot]
        return first + [t for t in targets if t not in stirred and t not in hot]

    def source_ok(self, name: str, data: dict[str, Sequence[Datapoint]], now: datetime) -> None:
        h = self.sources[name]
        h.up, h.answered, h.last_poll, h.last_success, h.last_error, h.failing_since = True, True, now, now, None, None
        self._stirred[name] = stirred = set()
        for key, points in data.items():
            slot = self.slots[key]
            if slot.rule.change is not None:
                slot.points = self._keep(slot, points, now)
            elif not same_answer(points, slot.points):
                slot.points = points
            # else: the last answer's object is kept, so evaluate knows by its identity that nothing is new
            # (bench.evalbench, 5 000 rules: a poll that brings nothing new costs 1.7 µs a rule to judge, not 11)
            slot.note, slot.read_at = "", now
            if points.__class__ is Points:  # its columns (core/points.py), its length not asked in Python
                if not points.values:
                    continue
                slot.last_datapoint, newest = max(points.times), points.values[-1]
            elif points:
                slot.last_datapoint = max(map(_time, points))  # in C: 0.27 µs, a generator 0.43
                newest = points[-1][1]
            else:
                continue
            # The newest reading is usually last: a hint for the order, not a judgement. A reading of no
            # comparable kind (a text a recorded source kept) stirs nothing; the rule calls it missing.
            threshold = slot.spec.threshold
            if newest.__class__ in _COMPARABLE and threshold.compare(newest, threshold.value):
                stirred.add(slot.target)

    @staticmethod
    def _keep(slot: RuleSlot, points: Sequence[Datapoint], now: datetime) -> list[Datapoint]:
        """A change rule looks `over` back, further than a sampled source's own short history: the board
        keeps the readings it needs (merged by time, older ones dropped)."""
        change = slot.rule.change
        if change is None:
            return list(points)
        horizon = now - change.over - slot.spec.period * (evaluation_range(slot.spec.evaluation_periods) + 2)
        merged = {ts: v for ts, v in slot.history if ts >= horizon}
        merged.update((ts, v) for ts, v in points if ts >= horizon)
        slot.history = sorted(merged.items())  # kept through failed polls, unlike `points`
        return slot.history

    def blind_sources(self, target: str, now: datetime) -> dict[str, str]:
        """The sources this target reads that have failed for longer than their `blind_after`, with why."""
        out = {}
        for name in self._sources_of_target.get(target, ()):
            h = self.sources[name]
            if h.failing_since is not None and now - h.failing_since >= self._blind_after[name]:
                out[name] = f"source {name} down since {h.failing_since:%H:%M:%SZ}: {h.last_error}"
        return out

    def source_failed(self, name: str, error: str, now: datetime) -> None:
        h = self.sources[name]
        h.up, h.last_poll, h.last_error = False, now, error
        h.failing_since = h.failing_since or now
        self._stirred.pop(name, None)
        for key in self._keys_of_source.get(name, ()):
            slot = self.slots[key]
            slot.points = ()
            slot.note = f"source {name} down: {error}"

    def evaluate(self, target: str, now: datetime) -> dict[str, RuleView]:
        views = {}
        slots, sources, judge = self.slots, self.sources, self._judge
        grids: dict[tuple[timedelta, int, bool, datetime], tuple[datetime, ...]] = {}
        for key in self._keys_of_target.get(target, ()):  # a poll begun before a reload may name a gone target
            slot = slots[key]
            rule, spec = slot.rule, slot.spec
            # A sampled source's window ends at its own last reading, an aggregated rule's at its own last read
            # (a poll reads only the queries due): judged because another source polled, or between two reads
            # of a seldom-read query, it must not see a gap where the next reading is not due yet.
            if spec.complete_buckets_only:
                at = slot.read_at or now
            else:
                at = sources[rule.source].last_success or now
            points = slot.points
            if rule.change is not None:
                points = change_points(points, rule.change.over, spec.period)
            if rule.max_age is not None:  # an old value is no evidence of now (after the change: its base may be old)
                points = [p for p in points if p[0] >= now - rule.max_age]
            shape = (spec.period, spec.evaluation_periods, spec.complete_buckets_only, at)  # rules alike share edges
            edges = grids.get(shape)
            if edges is None:
                edges = grids[shape] = grid(spec, at)
            views[rule.name] = judge(slot, points, edges, now)
        return views

    @staticmethod
    def _judge(slot: RuleSlot, points: Sequence[Datapoint], edges: tuple[datetime, ...], now: datetime) -> RuleView:
        """The rule's view at `now`, judged again only if its range or what falls in it changed (its state
        is then the same: rules.decide gives the same answer to the same columns and the state it left)."""
        spec, last = slot.spec, slot.last_judged(edges[0])
        if last is not None and points is last[1].points:  # the same answer object: nothing new at all
            return last[1]
        vals, hits = columns(spec, points, edges)
        # Equal columns: what changed lies outside the range (the still-filling bucket, an older point): no decision
        # and no ring update (1.6 µs spared). The hits tell a bool from a number (True == 1.0, but only one kind
        # is judged); zeros are compared by sign.
        if last is not None and hits == last[0].hits and vals == last[0].vals \
                and (0.0 not in vals or zero_signs(vals) == zero_signs(last[0].vals)):
            ev = last[1].evaluation
        else:
            ev = decide(spec, edges, vals, hits, slot.state)
            if slot.note:
                ev = Evaluation(RuleState.INSUFFICIENT_DATA, None, None, 0, 0, ev.needed, ev.buckets, slot.note)
            slot.ring.judged(ev, now, slot.state)
            slot.evaluation, slot.state = ev, ev.state
        rule = slot.rule
        # tuple.__new__ as _make does it: NamedTuple's own __new__ is Python code (0.28 µs for the two, not 0.45).
        slot.basis = _new_tuple(Basis, (edges[0], slot.note, vals, hits))
        view = slot.view = _new_tuple(RuleView, (rule.name, rule.level, spec, points, ev))
        return view

    def target(self, name: str) -> Target:
        return self._targets[name]
