"""Rule evaluation (SPEC 4.1). Pure: datapoints and a time in, a state out.

Bucket alignment: buckets are `period` long and aligned to the Unix epoch, the
same grid CloudWatch uses when StartTime is aligned (the CloudWatch source
aligns it). A datapoint belongs to the bucket its timestamp falls in; if a
bucket holds several, the newest wins. A value of the wrong kind (a number for
`== false`, a boolean for `> 5`) is missing, never "not breaching".

The still-filling bucket: for aggregated statistics (CloudWatch) the bucket
that contains `now` is excluded, because a p99 or Sum over a partial period is
not comparable with a full one; the window is the N buckets before it. For
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
    # A tuple, not a dataclass: one is built per bucket per rule per poll (5 000 rules x N).
    start: datetime
    value: Value | None
    breaching: bool | None  # None: missing


class Evaluation(NamedTuple):
    state: RuleState
    value: Value | None  # the newest present value in the window
    value_at: datetime | None  # start of that value's bucket
    breaching: int
    present: int
    needed: int
    buckets: tuple[Bucket, ...]
    reason: str


def align(ts: datetime, period: timedelta) -> datetime:
    # timedelta arithmetic is exact (integer microseconds) and stays in C.
    return ts - (ts - EPOCH) % period


def window(spec: RuleSpec, points: Sequence[Datapoint], now: datetime, since: datetime | None = None) -> list[Bucket]:
    """The N buckets to judge, oldest first; buckets starting before `since` count as missing."""
    return list(_scan(spec, points, grid(spec, now), since)[0])


def grid(spec: RuleSpec, now: datetime) -> list[datetime]:
    """The window's N+1 bucket edges, oldest first. Rules that share period, N and `now` share it
    (the board computes it once for them)."""
    period = spec.period
    n = spec.evaluation_periods
    end = now - (now - EPOCH) % period
    if not spec.complete_buckets_only:
        end += period
    first = end - period * n
    return [first + period * k for k in range(n + 1)]


def _scan(
    spec: RuleSpec, points: Sequence[Datapoint], edges: Sequence[datetime], since: datetime | None
) -> tuple[tuple[Bucket, ...], int, int, Bucket | None]:
    """The window's buckets, how many are present and breaching, and the newest present one."""
    n = len(edges) - 1
    newest_ts: list[datetime | None] = [None] * (n + 2)  # slots 0 and n+1: before and after the window
    newest_v: list[Value | None] = [None] * (n + 2)
    for ts, value in points:
        k = bisect_right(edges, ts)  # 1..n inside the window
        held = newest_ts[k]
        if held is None or held <= ts:
            newest_ts[k], newest_v[k] = ts, value
    threshold = spec.threshold
    wants_bool = isinstance(threshold.value, bool)
    compare, limit = threshold.compare, threshold.value
    buckets = []
    present = breaching = 0
    newest = None
    for k in range(1, n + 1):
        start = edges[k - 1]
        value_k = newest_v[k]
        # A value of the wrong kind (bool vs number) is missing, never "not breaching".
        if value_k is not None and isinstance(value_k, bool) is wants_bool and (since is None or start >= since):
            hit = compare(value_k, limit)
            newest = Bucket(start, value_k, hit)
            buckets.append(newest)
            present += 1
            breaching += hit
        else:
            buckets.append(Bucket(start, None, None))
    return tuple(buckets), present, breaching, newest


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
    """The rule's state now, with CloudWatch's meanings of `missing_data`. `edges`: `grid(spec, now)`
    when the caller already has it."""
    buckets, present, breaching, newest = _scan(spec, points, edges or grid(spec, now), None)
    n = len(buckets)
    m = spec.datapoints_to_alarm
    mode = spec.missing_data
    if mode == "breaching":
        breaching += n - present
    if not present and mode in ("missing", "ignore"):
        state = previous if mode == "ignore" else RuleState.INSUFFICIENT_DATA
        reason = f"no datapoints in the last {n} periods" + (" (state kept: ignore)" if mode == "ignore" else "")
        return _result(state, buckets, newest, breaching, present, m, reason)
    state = RuleState.ALARM if breaching >= m else RuleState.OK
    counted = n if mode in ("breaching", "not_breaching") else present
    reason = f"{breaching} of {counted} datapoints breach {spec.threshold} (alarm at {m})"
    return _result(state, buckets, newest, breaching, present, m, reason)


def evaluate_fresh(
    spec: RuleSpec, points: Sequence[Datapoint], now: datetime, since: datetime, lenient_m: bool = True
) -> Evaluation:
    """Judge only buckets that start at or after `since` (an action's end).

    Used to verify a level and to watch a mitigated incident. Missing buckets are
    never evidence here, whatever `missing_data` says: with no fresh datapoint the
    answer is insufficient_data. With fewer fresh datapoints than
    `datapoints_to_alarm`, the rule alarms only if every one of them breaches
    (`lenient_m`, for the rules that must prove they recovered); otherwise the
    full M is needed, so one blip of a bystander rule does not escalate.
    """
    buckets, present, breaching, newest = _scan(spec, points, grid(spec, now), since)
    if not present:
        return _result(RuleState.INSUFFICIENT_DATA, buckets, newest, 0, 0, spec.datapoints_to_alarm,
                       "no datapoint newer than the action yet")
    needed = min(spec.datapoints_to_alarm, present) if lenient_m else spec.datapoints_to_alarm
    state = RuleState.ALARM if breaching >= needed else RuleState.OK
    reason = f"{breaching} of {present} datapoints since the action breach {spec.threshold} (alarm at {needed})"
    return _result(state, buckets, newest, breaching, present, needed, reason)


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
