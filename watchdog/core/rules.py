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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import NamedTuple

from watchdog.config.types import Threshold

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
Value = float | bool
Datapoint = tuple[datetime, Value]


class RuleState(StrEnum):
    OK = "ok"
    ALARM = "alarm"
    INSUFFICIENT_DATA = "insufficient_data"

    @property
    def number(self) -> int:
        return {"ok": 0, "alarm": 1, "insufficient_data": 2}[self.value]


@dataclass(frozen=True)
class RuleSpec:
    threshold: Threshold
    period: timedelta
    evaluation_periods: int
    datapoints_to_alarm: int
    missing_data: str = "missing"
    complete_buckets_only: bool = True


class Bucket(NamedTuple):
    # A tuple, not a dataclass: one is built per bucket per rule per poll (5 000 rules x N+2).
    start: datetime
    value: Value | None
    breaching: bool | None  # None: missing (and not filled)
    judged: bool = False  # one of the N the state was decided on (a real datapoint or a filled gap)


class Evaluation(NamedTuple):
    state: RuleState
    value: Value | None  # the newest present value in the evaluation range
    value_at: datetime | None  # start of that value's bucket
    breaching: int  # of the judged buckets, filled gaps included
    present: int  # real datapoints judged
    needed: int
    buckets: tuple[Bucket, ...]  # the evaluation range, oldest first
    reason: str


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
    return list(_scan(spec, points, grid(spec, now), since)[0])


def grid(spec: RuleSpec, now: datetime) -> list[datetime]:
    """The evaluation range's bucket edges (N + 3 of them), oldest first. Rules that share period, N and
    `now` share it (the board computes it once for them)."""
    period = spec.period
    r = evaluation_range(spec.evaluation_periods)
    end = now - (now - EPOCH) % period
    if not spec.complete_buckets_only:
        end += period
    first = end - period * r
    return [first + period * k for k in range(r + 1)]


def _scan(
    spec: RuleSpec, points: Sequence[Datapoint], edges: Sequence[datetime], since: datetime | None
) -> tuple[tuple[Bucket, ...], list[int], int]:
    """The range's buckets, the indexes of those that hold a datapoint (oldest first), and how many of
    those breach."""
    n = len(edges) - 1
    newest_ts: list[datetime | None] = [None] * (n + 2)  # slots 0 and n+1: before and after the range
    newest_v: list[Value | None] = [None] * (n + 2)
    for ts, value in points:
        k = bisect_right(edges, ts)  # 1..n inside the range
        held = newest_ts[k]
        if held is None or held <= ts:
            newest_ts[k], newest_v[k] = ts, value
    threshold = spec.threshold
    wants_bool = isinstance(threshold.value, bool)
    compare, limit = threshold.compare, threshold.value
    buckets = []
    present: list[int] = []
    breaching = 0
    for k in range(1, n + 1):
        start = edges[k - 1]
        value_k = newest_v[k]
        # A value of the wrong kind (bool vs number) is missing, never "not breaching".
        if value_k is not None and isinstance(value_k, bool) is wants_bool and (since is None or start >= since):
            hit = compare(value_k, limit)
            buckets.append(Bucket(start, value_k, hit))
            present.append(k - 1)
            breaching += hit
        else:
            buckets.append(Bucket(start, None, None))
    return tuple(buckets), present, breaching


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
    caller already has it.

    With N or more datapoints in the range, the N most recent that exist are judged and `missing_data`
    plays no part. With fewer, every real one is judged and as few gaps as possible (the most recent) are
    filled: `breaching` / `not_breaching` count them as such; `missing` decides on what exists; `ignore`
    does too, and keeps `previous` where `missing` could not decide or alarms only by the rule below.
    CloudWatch's rule against premature alarms: with fewer than M datapoints, all of them breaching, the
    rule alarms once the oldest of them is at least M buckets old, and not before.
    """
    buckets, present, real_breaching = _scan(spec, points, edges or grid(spec, now), None)
    n, m, mode, r = spec.evaluation_periods, spec.datapoints_to_alarm, spec.missing_data, len(buckets)
    newest = buckets[present[-1]] if present else None
    if len(present) >= n:
        judged = present[-n:]
        hits = sum(1 for k in judged if buckets[k].breaching)
        marked = _mark(buckets, judged, (), False)
        state = RuleState.ALARM if hits >= m else RuleState.OK
        return _result(state, marked, newest, hits, n, m, f"{hits} of {n} datapoints breach "
                       f"{spec.threshold} (alarm at {m})")
    if mode in ("breaching", "not_breaching"):
        fill = n - len(present)
        gaps = [k for k in range(r) if buckets[k].breaching is None][-fill:]
        hits = real_breaching + (fill if mode == "breaching" else 0)
        marked = _mark(buckets, present, gaps, mode == "breaching")
        state = RuleState.ALARM if hits >= m else RuleState.OK
        # Which buckets were filled: the value shown beside this reason is the newest real datapoint, which
        # may well not breach when the missing ones made the alarm.
        filled = ", ".join(f"{buckets[k].start:%H:%M:%S}Z" for k in gaps)
        return _result(state, marked, newest, hits, len(present), m, f"{hits} of {n} datapoints breach "
                       f"{spec.threshold} (alarm at {m}; {fill} missing counted as {mode.replace('_', ' ')}: "
                       f"{filled})")
    marked = _mark(buckets, present, (), False)
    kept = " (state kept: ignore)" if mode == "ignore" else ""
    undecided = previous if mode == "ignore" else RuleState.INSUFFICIENT_DATA
    if not present:
        return _result(undecided, marked, None, 0, 0, m, f"no datapoints in the last {r} periods{kept}")
    seen = f"{real_breaching} of {len(present)} datapoints breach {spec.threshold}"
    if real_breaching >= m:
        return _result(RuleState.ALARM, marked, newest, real_breaching, len(present), m, f"{seen} (alarm at {m})")
    if real_breaching < len(present):
        return _result(RuleState.OK, marked, newest, real_breaching, len(present), m, f"{seen} (alarm at {m})")
    age = r - present[0]  # in buckets; the newest bucket of the range is 1 old
    if age >= m:
        state = RuleState.ALARM if mode == "missing" else previous
        return _result(state, marked, newest, real_breaching, len(present), m,
                       f"{seen}, the oldest {age} periods ago (alarm at {m} periods old){kept}")
    return _result(undecided, marked, newest, real_breaching, len(present), m,
                   f"{seen}, too recent to decide (the oldest {age} of {m} periods ago){kept}")


def _mark(buckets: tuple[Bucket, ...], real: Sequence[int], gaps: Sequence[int], filled: bool) -> tuple[Bucket, ...]:
    # Bucket(...) rather than _replace: this runs per rule per poll, and _replace is four times slower.
    out = list(buckets)
    for k in real:
        start, value, hit, _ = out[k]
        out[k] = Bucket(start, value, hit, True)
    for k in gaps:
        out[k] = Bucket(out[k].start, None, filled, True)
    return tuple(out)


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
    buckets, present, _ = _scan(spec, points, grid(spec, now), since)
    if not present:
        return _result(RuleState.INSUFFICIENT_DATA, buckets, None, 0, 0, spec.datapoints_to_alarm,
                       "no datapoint newer than the action yet")
    judged = present[-spec.evaluation_periods:]
    hits = sum(1 for k in judged if buckets[k].breaching)
    needed = min(spec.datapoints_to_alarm, len(judged)) if lenient_m else spec.datapoints_to_alarm
    state = RuleState.ALARM if hits >= needed else RuleState.OK
    reason = f"{hits} of {len(judged)} datapoints since the action breach {spec.threshold} (alarm at {needed})"
    return _result(state, _mark(buckets, judged, (), False), buckets[present[-1]], hits, len(judged), needed, reason)


def _result(state: RuleState, buckets: tuple[Bucket, ...], newest: Bucket | None, breaching: int, present: int,
            needed: int, reason: str) -> Evaluation:
    if newest is None:
        return Evaluation(state, None, None, breaching, present, needed, buckets, reason)
    return Evaluation(state, newest.value, newest.start, breaching, present, needed, buckets, reason)


def format_value(v: Value | None, missing: str = "-") -> str:
    """A rule's value as people read it: `true`, `1500`, `0.25`; `missing` when there is none."""
    if v is None:
        return missing
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
