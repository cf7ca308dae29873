"""Quiet polls skipped in bulk (issue 22, scope 5: "in replay, polls that change nothing skipped cheaply").

A replay knows its whole history before it starts. A poll of a source whose every rule is judged ok on full,
non-breaching data, while its targets have nothing going on, changes nothing the replay shows; the engine
skips such polls (`QuietPolls.skips`) and does only the bookkeeping the outcome reads.

Why a skipped poll is exact. Take a poll of source S at tick t that `skips` lets through. Then:

1. Every target S's polls judge has only rules of S (`eligible`), so only S's polls judge them, and no rule
   has `change` or `max_age` (whose judgement moves with the time alone), a boolean threshold or an M below 1;
   S answers from the cache (not sampled, no outage, no recorded read time, no late datapoint) and no
   recording is written.
2. The poll of S before t ran in full (or was skipped under these same conditions) and left every rule of S
   `ok`, every target of S with no incident but a mitigated one, no blind source and no level running, and no
   pause was stored (`polled`). Since then nothing judged those rules or moved those machines but the engine
   resolving a mitigated incident (1.), and at t still no pause is stored and none of the targets has an
   incident but a mitigated one, a blind source or a running level.
3. t lies in the source's quiet spans (`spans_of`): for every rule of S, each of the N newest complete buckets
   of its range at t holds exactly one datapoint, at the bucket's start, a number that does not breach.
   A rule read at t (its query due) is then judged on them: N or more datapoints in the range, the N newest
   judged (rules.decide), none breaching, M >= 1: ok, whatever `missing_data` says. A rule not read at t is
   judged on the range and answer of its last read, which judged it ok (2.): ok again (the judgement is a
   function of the range, the answer and the state it left).

4. A mitigated incident's machine judges its target's rules on the buckets since its actions ended, in the
   range at t (escalation's `_fresh`): the N newest present of those, all among the quiet N newest buckets,
   none breaching, so no rule alarms (with none present it is insufficient_data). A rule not read at t would
   be judged on its last answer in a range that moved on, so with a mitigated incident a poll is skipped
   only when it reads every query of S (a hot target's queries are read every period anyway).

So every rule of S stays ok (no transition, nothing for the report's bands), each machine observes no alarm
and returns no command (with no incident its only change would be to forget a "would run" announced under
a pause: the full poll of 2., with no pause stored, did that already, or its incident has been resolved
since, and a held key of a closed incident's id never matches again), its incident's snapshot is unchanged,
no source turns blind or sees again, no pause expires. What the skipped poll
still changes is done here: the source's own count of polls, its read plan (which queries the next polls
read), the polls that gave each query a datapoint (every query read at t had N of them), and the board's
record of the answers (`catch_up`: before S's next full poll, the board is given the answers of the skipped
reads, oldest first, as the runtime would have: each rule's datapoints, read time and its source's health).
What is left undone is drawn by no replay output: each rule's ring of recent values (the status page's), its
cached last judgement (the board makes it again when the range moves), the gauges.

tests/test_replay_quiet.py holds the replay with the skip to the replay without it over generated histories.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from itertools import repeat

from watchdog.config.models import Config
from watchdog.core.escalation import Phase
from watchdog.core.rules import EPOCH, NUMBER_KINDS, RuleSpec, RuleState
from watchdog.replay.sources import HistorySource, Series, Skimmed
from watchdog.runtime.recording import NoRecorder
from watchdog.runtime.runtime import Runtime

Span = tuple[datetime, datetime]  # [start, end)
_ZERO = timedelta(0)
_EVER = datetime.min.replace(tzinfo=timezone.utc)  # Pauses.all(_EVER): every pause stored, expired or not


def segments(times: Sequence[datetime], period: timedelta) -> list[tuple[int, int]]:
    """Index ranges [a, b] of `times` where each time starts a bucket of `period`, alone in it, the next one
    period after it: the buckets that hold one datapoint at their start, back to back."""
    out: list[tuple[int, int]] = []
    a = -1
    last = len(times) - 1
    for i, ts in enumerate(times):
        alone = (ts - EPOCH) % period == _ZERO and (i == 0 or times[i - 1] < ts) \
            and (i == last or times[i + 1] >= ts + period)
        if not alone:
            if a >= 0:
                out.append((a, i - 1))
            a = -1
        elif a < 0 or times[i - 1] != ts - period:
            if a >= 0:
                out.append((a, i - 1))
            a = i
    if a >= 0:
        out.append((a, last))
    return out


def rule_spans(spec: RuleSpec, series: Series, segs: Sequence[tuple[int, int]]) -> list[Span]:
    """The ticks at which the rule's N newest complete buckets each hold a number that does not breach: for a
    run of such buckets starting at b0 and ending at bL, the ticks t whose bucket starts in [b0 + N P, bL + P],
    so t in [b0 + N P, bL + 2 P)."""
    limit, compare = spec.threshold.value, spec.threshold.compare
    if limit.__class__ is bool or spec.datapoints_to_alarm < 1 or not spec.complete_buckets_only:
        return []
    times, values, period, n = series.times, series.values, spec.period, spec.evaluation_periods
    # One C pass over the values: whether each breaches (a NaN is a number that breaches only under `!=`, as the
    # board compares it); a value of another kind (a bool) is missing, so it ends a run.
    if NUMBER_KINDS.issuperset(map(type, values)):
        breaches = list(map(compare, values, repeat(limit)))
    else:
        breaches = [v.__class__ not in NUMBER_KINDS or compare(v, limit) for v in values]
    bad = [i for i, b in enumerate(breaches) if b] if True in breaches else []
    out: list[Span] = []
    k = 0
    for a, b in segs:
        while k < len(bad) and bad[k] < a:
            k += 1
        first = a
        while first <= b:
            stop = bad[k] - 1 if k < len(bad) and bad[k] <= b else b
            if stop - first + 1 >= n:
                out.append((times[first] + period * n, times[stop] + period * 2))
            first = stop + 2
            if k < len(bad) and bad[k] <= b:
                k += 1
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class Spans:
    """Sorted, disjoint [start, end) spans of time."""

    def __init__(self, spans: Iterable[Span]):
        pairs = list(spans)
        self.starts = [s for s, _ in pairs]
        self.ends = [e for _, e in pairs]

    def holds(self, t: datetime) -> bool:
        k = bisect_right(self.starts, t) - 1
        return k >= 0 and t < self.ends[k]


def spans_of(src: HistorySource, specs: Mapping[str, RuleSpec]) -> Spans:
    """The ticks at which every rule of the source (`specs`, by query key) is judged ok on full data."""
    segs: dict[tuple[int, timedelta], list[tuple[int, int]]] = {}  # queries of the same times share them
    common: list[Span] | None = None
    for key, spec in specs.items():
        series = src.series[key]
        shape = (id(series.times), spec.period)
        if shape not in segs:
            segs[shape] = segments(series.times, spec.period)
        mine = rule_spans(spec, series, segs[shape])
        common = mine if common is None else intersect(common, mine)
        if not common:
            break
    return Spans(common or [])


class QuietPolls:
    """Which polls of a replay are skipped (see the module's docstring), and their bookkeeping."""

    def __init__(self, cfg: Config, rt: Runtime, sources: Mapping[str, HistorySource]):
        self._rt = rt
        board = rt.board
        self._spans: dict[str, Spans] = {}
        self._keys: dict[str, list[str]] = {}
        self._targets: dict[str, list[str]] = {}
        self._primed: dict[str, bool] = {}
        self._pending: dict[str, dict[object, Skimmed]] = {}
        self._sources = sources
        if not isinstance(rt.recorder, NoRecorder):  # a skipped poll would be missing from the recording
            return
        for name, src in sources.items():
            targets = board.targets_of(name)
            keys = [q.key for q in board.queries(name)]
            if not keys or not self._eligible(cfg, name, src, targets):
                continue
            self._spans[name] = spans_of(src, {k: board.slots[k].spec for k in keys})
            self._keys[name], self._targets[name] = keys, targets
            self._primed[name] = False
            self._pending[name] = {}

    @staticmethod
    def _eligible(cfg: Config, name: str, src: HistorySource, targets: Sequence[str]) -> bool:
        if src.sampled or src.took or src.has_outages or any(s.late for s in src.series.values()):
            return False
        for t in cfg.targets:
            if t.name in targets and any(r.source != name or r.change is not None or r.max_age is not None
                                         for r in t.rules):
                return False
        return True

    def _calm(self, name: str, mitigated: bool = True) -> bool:
        """No pause stored, and no target of the source with a blind source, a running level or an incident
        other than a mitigated one (with `mitigated`)."""
        rt = self._rt
        if rt.pausing.pauses.all(_EVER):
            return False
        for t in self._targets[name]:
            ex = rt.executors[t]
            inc = ex.machine.incident
            if (inc is not None and (not mitigated or inc.phase is not Phase.MITIGATED)) or ex.blind_sources \
                    or ex.busy:
                return False
        return True

    def skips(self, name: str, at: datetime) -> bool:
        """Whether the poll of `name` at `at` is skipped; if it is, its bookkeeping is done."""
        if not self._primed.get(name) or not self._spans[name].holds(at):
            return False
        src = self._sources[name]
        due = None
        if src.plan is not None:
            due = src.plan.due(at, self._rt.hot_targets())
        # A mitigated incident's rules are judged on the buckets since its actions ended, on the range at the
        # poll's time (escalation's `_fresh`): only a rule read at this poll is sure to be judged on quiet data.
        reads_all = due is None or sum(len(s.queries) for s in due.shared) == len(self._keys[name])
        if not self._calm(name, mitigated=reads_all):
            return False
        skimmed = src.skim(at, due)
        pending = self._pending[name]
        pending.pop(skimmed.key, None)  # kept oldest first: the newest read of a query is given last
        pending[skimmed.key] = skimmed
        return True

    def catch_up(self, name: str) -> None:
        """Before a full poll of `name`: the board as the skipped polls would have left it."""
        pending = self._pending.get(name)
        if not pending:
            return
        src, board = self._sources[name], self._rt.board
        # The newest skipped poll is last: the source's health is as it left it.
        for skimmed in pending.values():
            board.source_ok(name, dict(src.answer(skimmed)), skimmed.at)
        pending.clear()

    def polled(self, name: str) -> None:
        """After a full poll of `name`: whether it left the source quiet (every rule ok, its targets calm)."""
        if name not in self._primed:
            return
        slots = self._rt.board.slots
        self._primed[name] = self._calm(name) and all(slots[k].state is RuleState.OK for k in self._keys[name])

    def finish(self) -> None:
        for name in self._pending:
            self.catch_up(name)
