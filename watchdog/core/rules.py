"""Rule evaluation (SPEC 4.1). Pure: datapoints and a time in, a state out.

Bucket alignment: buckets are `period` long and aligned to the Unix epoch, the
same grid CloudWatch uses when StartTime is aligned (the CloudWatch source
aligns it). A datapoint belongs to the bucket its timestamp falls in; if a
bucket holds several, the newest wins. A value of the wrong kind (a number for
`== false`, a boolean for `> 5`) is missing, never "not breaching".

The still-filling bucket: for aggregated statistics (CloudWatch) the bucket
that contains `now` is excluded, because a p99 or Sum over a partial period is
not comparable with a full one; the evaluation range ends before it. For
sampled sources (one reading per poll) each reading is already complete, so
the current bucket is included (`complete_buckets_only=False`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from itertools import repeat
from typing import Any, NamedTuple

from watchdog.config.types import Threshold
from watchdog.core.points import Datapoint as Datapoint, Points, Value as Value  # defined with Points, named here too

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class RuleState(StrEnum):
    OK = "ok"
    ALARM = "alarm"
    INSUFFICIENT_DATA = "insufficient_data"

    @property
    def number(self) -> int:
        return _STATE_NUMBERS[self]  # read per rule and poll (the metric): a dict made once, 0.31 -> 0.08 µs


_STATE_NUMBERS = {RuleState.OK: 0, RuleState.ALARM: 1, RuleState.INSUFFICIENT_DATA: 2}
NUMBER_KINDS = frozenset((float, int))  # a number's kinds (a bool is not one of them)


@dataclass(frozen=True)
class RuleSpec:
    threshold: Threshold
    period: timedelta
    evaluation_periods: int
    datapoints_to_alarm: int
    missing_data: str = "missing"
    complete_buckets_only: bool = True
    # The threshold as its text, made once: every decision names it (timeit: str() of it 0.09 µs, this 0.03).
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", str(self.threshold))


class Bucket(NamedTuple):
    # A tuple, not a dataclass: one is built per bucket per rule per poll (5 000 rules x N+2).
    start: datetime
    value: Value | None
    breaching: bool | None  # None: missing (and not filled)
    judged: bool = False  # one of the N the state was decided on (a real datapoint or a filled gap)


# One entry per bucket of the range, oldest first. Tuples of numbers, booleans and None, which the garbage
# collector stops tracking: a board keeps two per rule, and with lists (and the other objects a judgement kept)
# a 5 000-rule daemon's full collections took 1.45-1.72 s of its run against 1.28-1.46 s before (bench/README.md).
Column = tuple[Value | None, ...]
Hits = tuple[bool | None, ...]
# What the range's Buckets are made of, when they are read: edges, values, hits, the judged indexes, the
# filled gaps and what they were filled with.
Parts = tuple[Sequence[datetime], Column, Hits, Sequence[int], Sequence[int], bool]


class Evaluation:
    """A rule's judgement. `buckets` (the evaluation range, oldest first, the judged ones marked) and `reason`
    are made when first read: most judgements are never shown, and making them is 2.2 µs of a decision's 3.3
    (timeit, N = 3; bench/README.md, "Issue 22")."""

    __slots__ = ("state", "value", "value_at", "breaching", "present", "needed", "_buckets", "_reason", "_parts",
                 "_why")

    state: RuleState
    value: Value | None  # the newest present value in the evaluation range
    value_at: datetime | None  # start of that value's bucket
    breaching: int  # of the judged buckets, filled gaps included
    present: int  # real datapoints judged
    needed: int

    def __init__(self, state: RuleState, value: Value | None, value_at: datetime | None, breaching: int,
                 present: int, needed: int, buckets: tuple[Bucket, ...], reason: str):
        self.state, self.value, self.value_at = state, value, value_at
        self.breaching, self.present, self.needed = breaching, present, needed
        self._buckets: tuple[Bucket, ...] | None = buckets
        self._reason: str | None = reason
        self._parts: Parts | None = None
        self._why: tuple[str, tuple[object, ...]] | None = None

    @classmethod
    def made(cls, state: RuleState, value: Value | None, value_at: datetime | None, breaching: int, present: int,
             needed: int, parts: Parts, why: str, *args: object) -> Evaluation:
        """A judgement whose buckets are made from `parts` and whose reason is `why.format(*args)`, when read."""
        ev = cls.__new__(cls)
        ev.state, ev.value, ev.value_at = state, value, value_at
        ev.breaching, ev.present, ev.needed = breaching, present, needed
        ev._buckets, ev._reason, ev._parts, ev._why = None, None, parts, (why, args)
        return ev

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        if self._parts is not None:  # made on the first read
            self._buckets, self._parts = _buckets(*self._parts), None
        return self._buckets or ()

    @property
    def reason(self) -> str:
        if self._why is not None:  # made on the first read
            self._reason, self._why = self._why[0].format(*self._why[1]), None
        return self._reason or ""

    def series(self) -> tuple[Sequence[datetime], Sequence[Value | None]]:
        """The range as two columns, bucket starts and values (None: missing), without making its Buckets."""
        if self._parts is not None:
            return self._parts[0], self._parts[1]
        buckets = self.buckets
        return [b.start for b in buckets], [b.value for b in buckets]

    def _fields(self) -> tuple[object, ...]:
        return (self.state, self.value, self.value_at, self.breaching, self.present, self.needed, self.buckets,
                self.reason)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Evaluation) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = ("state", "value", "value_at", "breaching", "present", "needed", "buckets", "reason")
        return "Evaluation(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields())) + ")"


def align(ts: datetime, period: timedelta) -> datetime:
    # timedelta arithmetic is exact (integer microseconds) and stays in C.
    return ts - (ts - EPOCH) % period


def evaluation_range(n: int) -> int:
    """How many buckets a rule of N evaluation periods looks at. CloudWatch retrieves 5 for N = 3 and
    does not document other N; the watchdog takes N + 2 for every N: two buckets of slack for late or
    lost datapoints, and no more, so a value that stopped flowing ages out soon."""
    return n + 2


def window(spec: RuleSpec, points: Sequence[Datapoint], now: datetime, since: datetime | None = None) -> list[Bucket]:
    """The evaluation range's buckets, oldest first; buckets starting before `since` count as missing."""
    edges = grid(spec, now)
    vals, hits = columns(spec, points, edges, since)
    return list(_buckets(edges, vals, hits, (), (), False))


def grid(spec: RuleSpec, now: datetime) -> tuple[datetime, ...]:
    """The evaluation range's bucket edges (N + 3 of them), oldest first. Rules that share period, N and
    `now` share it (the board computes it once for them)."""
    period = spec.period
    r = evaluation_range(spec.evaluation_periods)
    end = now - (now - EPOCH) % period
    if not spec.complete_buckets_only:
        end += period
    first = end - period * r
    return tuple([first + period * k for k in range(r + 1)])


def columns(spec: RuleSpec, points: Sequence[Datapoint], edges: Sequence[datetime],
            since: datetime | None = None) -> tuple[Column, Hits]:
    """The range as two columns, one entry per bucket, oldest first: the value judged (the newest datapoint in
    the bucket; None when there is none, when it is of the wrong kind, or when the bucket starts before
    `since`) and whether it breaches (None where the value is None). Two flat tuples, not a Bucket per bucket:
    the board compares them with the last judgement's to know whether anything changed in the range."""
    n = len(edges) - 1
    threshold = spec.threshold
    compare, limit = threshold.compare, threshold.value
    # An aggregated source's answer is usually one datapoint at the start of each bucket of the range, oldest
    # first, and perhaps one in the still-filling bucket after it: then each bucket's value is its one point,
    # and numbers against a number are compared in C (timeit, CPU: N = 3 1.4 µs either way, N = 10 2.6 -> 2.1,
    # N = 60 13 -> 7). Anything else (a gap, two points in a bucket, an unordered answer, booleans, `since`)
    # is placed point by point below.
    if since is None and limit.__class__ is not bool:
        cols: Iterable[tuple[Any, ...]] | None = None  # the range's times and values, when one point each
        if points.__class__ is Points:  # the columns as the answer came (core/points.py): 1.31 -> 1.12 µs a call
            at, of = points.times, points.values
            if len(of) == n or len(of) == n + 1 and at[n] >= edges[n]:
                cols = tuple(at[:n]), tuple(of[:n])
        elif len(points) == n or len(points) == n + 1 and points[n][0] >= edges[n]:
            # Both columns in one C call, not a slice and a map each: 1.45 -> 1.27 µs a call at N = 3 (timeit).
            cols = zip(*points[:n]) if len(points) > n else zip(*points)
        if cols is not None:
            times, one_each = cols
            if times == edges[:n] and NUMBER_KINDS.issuperset(map(type, one_each)):
                return one_each, tuple(map(compare, one_each, repeat(limit)))
    newest_ts: list[datetime | None] = [None] * (n + 2)  # slots 0 and n+1: before and after the range
    newest_v: list[Value | None] = [None] * (n + 2)
    for ts, value in points:
        k = bisect_right(edges, ts)  # 1..n inside the range
        held = newest_ts[k]
        if held is None or held <= ts:
            newest_ts[k], newest_v[k] = ts, value
    vals = newest_v[1:n + 1]
    hits: list[bool | None] = [None] * n
    wants_bool = limit.__class__ is bool
    for k, v in enumerate(vals):
        if v is None:
            continue
        # A value of the wrong kind (bool vs number) is missing, never "not breaching".
        if (v.__class__ is bool) is not wants_bool or (since is not None and edges[k] < since):
            vals[k] = None
        else:
            hits[k] = compare(v, limit)
    return tuple(vals), tuple(hits)


def change_points(points: Sequence[Datapoint], over: timedelta, period: timedelta) -> list[Datapoint]:
    """Each value as its percent change against the value `over` earlier (same bucket grid).

    A value with no reading `over` earlier, or a zero one (no base to divide by),
    gives no datapoint: the change is unknown, never assumed.
    """
    newest: dict[datetime, Datapoint] = {}
    for ts, value in points:
        if isinstance(value, bool):
            continue
        b = align(ts, period)
        if b not in newest or newest[b][0] <= ts:
            newest[b] = (ts, value)
    out: list[Datapoint] = []
    for b in sorted(newest):
        ts, value = newest[b]
        base = newest.get(align(b - over, period))
        if base is None or base[1] == 0:
            continue
        out.append((ts, (float(value) - float(base[1])) / abs(float(base[1])) * 100.0))
    return out


def evaluate(
    spec: RuleSpec,
    points: Sequence[Datapoint],
    now: datetime,
    previous: RuleState = RuleState.INSUFFICIENT_DATA,
    edges: Sequence[datetime] | None = None,
) -> Evaluation:
    """The rule's state now, as CloudWatch documents it (SPEC 4.1). `edges`: `grid(spec, now)` when the
    caller already has it."""
    edges = edges or grid(spec, now)
    vals, hits = columns(spec, points, edges)
    return decide(spec, edges, vals, hits, previous)


def decide(spec: RuleSpec, edges: Sequence[datetime], vals: Column, hits: Hits,
           previous: RuleState = RuleState.INSUFFICIENT_DATA) -> Evaluation:
    """The state of a range given as `columns` (SPEC 4.1).

    With N or more datapoints in the range, the N most recent that exist are judged and `missing_data`
    plays no part. With fewer, every real one is judged and as few gaps as possible (the most recent) are
    filled: `breaching` / `not_breaching` count them as such; `missing` decides on what exists; `ignore`
    does too, and keeps `previous` where `missing` could not decide or alarms only by the rule below.
    CloudWatch's rule against premature alarms: with fewer than M datapoints, all of them breaching, the
    rule alarms once the oldest of them is at least M buckets old, and not before.
    """
    # The threshold as its text: the reason's arguments are then all strings and numbers.
    n, m, mode, r, threshold = spec.evaluation_periods, spec.datapoints_to_alarm, spec.missing_data, len(vals), \
        spec.text
    if None not in hits:  # every bucket holds a datapoint, the common case: the N newest are judged
        count = hits[r - n:].count(True)  # in C: 0.09 µs, a loop over the judged buckets 0.28
        return Evaluation.made(RuleState.ALARM if count >= m else RuleState.OK, vals[r - 1], edges[r - 1], count, n,
                               m, (edges, vals, hits, range(r - n, r), (), False), _OF_N, count, n, threshold, m)
    present = [k for k in range(r) if hits[k] is not None]
    newest = present[-1] if present else -1
    value, value_at = (vals[newest], edges[newest]) if present else (None, None)
    real_breaching = sum(1 for k in present if hits[k])
    if len(present) >= n:
        judged = present[-n:]
        count = sum(1 for k in judged if hits[k])
        return Evaluation.made(RuleState.ALARM if count >= m else RuleState.OK, value, value_at, count, n, m,
                               (edges, vals, hits, judged, (), False), _OF_N, count, n, threshold, m)
    if mode in ("breaching", "not_breaching"):
        fill = n - len(present)
        gaps = [k for k in range(r) if hits[k] is None][-fill:]
        count = real_breaching + (fill if mode == "breaching" else 0)
        # Which buckets were filled: the value shown beside this reason is the newest real datapoint, which
        # may well not breach when the missing ones made the alarm.
        filled = ", ".join(f"{edges[k]:%H:%M:%S}Z" for k in gaps)
        return Evaluation.made(RuleState.ALARM if count >= m else RuleState.OK, value, value_at, count, len(present), m,
                               (edges, vals, hits, present, gaps, mode == "breaching"),
                               "{} of {} datapoints breach {} (alarm at {}; {} missing counted as {}: {})", count, n,
                               threshold, m, fill, mode.replace("_", " "), filled)
    parts: Parts = (edges, vals, hits, present, (), False)
    kept = " (state kept: ignore)" if mode == "ignore" else ""
    undecided = previous if mode == "ignore" else RuleState.INSUFFICIENT_DATA
    if not present:
        return Evaluation.made(undecided, None, None, 0, 0, m, parts, "no datapoints in the last {} periods{}", r, kept)
    seen = len(present)
    if real_breaching >= m or real_breaching < seen:
        state = RuleState.ALARM if real_breaching >= m else RuleState.OK
        return Evaluation.made(state, value, value_at, real_breaching, seen, m, parts,
                               "{} of {} datapoints breach {} (alarm at {})", real_breaching, seen, threshold, m)
    age = r - present[0]  # in buckets; the newest bucket of the range is 1 old
    if age >= m:
        return Evaluation.made(RuleState.ALARM if mode == "missing" else previous, value, value_at, real_breaching,
                               seen, m, parts, "{} of {} datapoints breach {}, the oldest {} periods ago (alarm at {} "
                               "periods old){}", real_breaching, seen, threshold, age, m, kept)
    return Evaluation.made(undecided, value, value_at, real_breaching, seen, m, parts,
                           "{} of {} datapoints breach {}, too recent to decide (the oldest {} of {} periods ago){}",
                           real_breaching, seen, threshold, age, m, kept)


_OF_N = "{} of {} datapoints breach {} (alarm at {})"
_new_tuple = tuple.__new__


def _buckets(edges: Sequence[datetime], vals: Column, hits: Hits, judged: Sequence[int], gaps: Sequence[int],
             filled: bool) -> tuple[Bucket, ...]:
    """The range as Buckets, the judged ones (real datapoints and filled gaps) marked."""
    marks = [False] * len(vals)
    for k in judged:
        marks[k] = True
    shown: Sequence[bool | None] = hits
    if gaps:
        shown = list(hits)
        for k in gaps:
            shown[k], marks[k] = filled, True
    # tuple.__new__ as Bucket._make does it, not NamedTuple's Python-level __new__ per bucket (1.1 µs for five, 1.4).
    return tuple([_new_tuple(Bucket, b) for b in zip(edges, vals, shown, marks)])


def evaluate_fresh(
    spec: RuleSpec, points: Sequence[Datapoint], now: datetime, since: datetime, lenient_m: bool = True
) -> Evaluation:
    """Judge only buckets that start at or after `since` (an action's end): the N most recent of them
    that hold a datapoint.

    Used to verify a level and to watch a mitigated incident. Missing buckets are
    never evidence here, whatever `missing_data` says: with no fresh datapoint the
    answer is insufficient_data. With fewer fresh datapoints than
    `datapoints_to_alarm`, the rule alarms only if every one of them breaches
    (`lenient_m`, for the rules that must prove they recovered); otherwise the
    full M is needed, so one blip of a bystander rule does not escalate.
    """
    edges = grid(spec, now)
    vals, hits = columns(spec, points, edges, since)
    present = [k for k in range(len(vals)) if hits[k] is not None]
    if not present:
        return Evaluation.made(RuleState.INSUFFICIENT_DATA, None, None, 0, 0, spec.datapoints_to_alarm,
                               (edges, vals, hits, (), (), False), "no datapoint newer than the action yet")
    judged = present[-spec.evaluation_periods:]
    count = sum(1 for k in judged if hits[k])
    needed = min(spec.datapoints_to_alarm, len(judged)) if lenient_m else spec.datapoints_to_alarm
    return Evaluation.made(RuleState.ALARM if count >= needed else RuleState.OK, vals[present[-1]],
                           edges[present[-1]], count, len(judged), needed, (edges, vals, hits, judged, (), False),
                           "{} of {} datapoints since the action breach {} (alarm at {})", count, len(judged),
                           spec.text, needed)


def format_value(v: Value | None, missing: str = "-") -> str:
    """A rule's value as people read it: `true`, `1500`, `0.25`; `missing` when there is none."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
