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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum

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


@dataclass(frozen=True)
class Bucket:
    start: datetime
    value: Value | None
    breaching: bool | None  # None: missing


@dataclass(frozen=True)
class Evaluation:
    state: RuleState
    value: Value | None  # the newest present value in the window
    value_at: datetime | None  # start of that value's bucket
    breaching: int
    present: int
    needed: int
    buckets: tuple[Bucket, ...]
    reason: str


def align(ts: datetime, period: timedelta) -> datetime:
    step = period.total_seconds()
    return EPOCH + timedelta(seconds=((ts - EPOCH).total_seconds() // step) * step)


def window(spec: RuleSpec, points: Sequence[Datapoint], now: datetime, since: datetime | None = None) -> list[Bucket]:
    """The N buckets to judge, oldest first; buckets starting before `since` count as missing."""
    end = align(now, spec.period)
    if not spec.complete_buckets_only:
        end += spec.period
    starts = [end - spec.period * k for k in range(spec.evaluation_periods, 0, -1)]
    newest: dict[datetime, Datapoint] = {}
    first = starts[0]
    for ts, value in points:
        if ts < first or ts >= end:
            continue
        b = align(ts, spec.period)
        if b not in newest or newest[b][0] <= ts:
            newest[b] = (ts, value)
    out = []
    for start in starts:
        if start in newest and (since is None or start >= since) and spec.threshold.accepts(newest[start][1]):
            value = newest[start][1]
            out.append(Bucket(start, value, spec.threshold.breached_by(value)))
        else:
            out.append(Bucket(start, None, None))
    return out


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
) -> Evaluation:
    """The rule's state now, with CloudWatch's meanings of `missing_data`."""
    buckets = window(spec, points, now)
    present = [b for b in buckets if b.breaching is not None]
    missing = len(buckets) - len(present)
    breaching = sum(1 for b in present if b.breaching)
    m = spec.datapoints_to_alarm
    mode = spec.missing_data
    if mode == "breaching":
        breaching += missing
    if not present and mode in ("missing", "ignore"):
        state = previous if mode == "ignore" else RuleState.INSUFFICIENT_DATA
        reason = f"no datapoints in the last {len(buckets)} periods" + (" (state kept: ignore)" if mode == "ignore" else "")
        return _result(state, buckets, breaching, len(present), m, reason)
    state = RuleState.ALARM if breaching >= m else RuleState.OK
    counted = len(buckets) if mode in ("breaching", "not_breaching") else len(present)
    reason = f"{breaching} of {counted} datapoints breach {spec.threshold} (alarm at {m})"
    return _result(state, buckets, breaching, len(present), m, reason)


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
    buckets = window(spec, points, now, since=since)
    present = [b for b in buckets if b.breaching is not None]
    breaching = sum(1 for b in present if b.breaching)
    if not present:
        return _result(RuleState.INSUFFICIENT_DATA, buckets, 0, 0, spec.datapoints_to_alarm, "no datapoint newer than the action yet")
    needed = min(spec.datapoints_to_alarm, len(present)) if lenient_m else spec.datapoints_to_alarm
    state = RuleState.ALARM if breaching >= needed else RuleState.OK
    reason = f"{breaching} of {len(present)} datapoints since the action breach {spec.threshold} (alarm at {needed})"
    return _result(state, buckets, breaching, len(present), needed, reason)


def _result(state: RuleState, buckets: list[Bucket], breaching: int, present: int, needed: int, reason: str) -> Evaluation:
    newest = next((b for b in reversed(buckets) if b.value is not None), None)
    return Evaluation(
        state=state,
        value=newest.value if newest else None,
        value_at=newest.start if newest else None,
        breaching=breaching,
        present=present,
        needed=needed,
        buckets=tuple(buckets),
        reason=reason,
    )
