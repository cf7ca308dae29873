"""What a `cloudwatch_alarms` source knows of the alarms its rules name: each alarm's state and when it entered
it, the datapoints CloudWatch judged for that change (its StateReasonData), and how the alarm judges a value.
Pure: DescribeAlarms answers and EventBridge events in, a rule's reading or evidence out.

A rule names one alarm (`alarm`) or a family (`alarm_prefix`: in alarm while any member is). The state is
CloudWatch's; only the order of what is heard is decided here: a change replaces what is known of its alarm
only when it is newer (a repeated or late event changes nothing), and a full read (the reconcile) also when
it is as new.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from watchdog.core.rules import Datapoint

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT)
EVENT_TYPE = "CloudWatch Alarm State Change"
MAX_NAME = 255  # CloudWatch's limit on an alarm's name

# A static threshold's comparison; the anomaly-band ones judge against a band this source cannot compute.
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


class NotAnAlarmEvent(ValueError):
    """A queue message that is not a "CloudWatch Alarm State Change" event as EventBridge sends it."""


@dataclass(frozen=True)
class AlarmRecord:
    name: str
    state: str
    at: datetime  # when the alarm entered `state`
    reason_data: str  # StateReasonData as CloudWatch sent it (JSON)


@dataclass(frozen=True)
class AlarmShape:
    """How an alarm judges a value, and the GetMetricData queries that read what it judges (from DescribeAlarms)."""

    compare: Callable[[float, float], bool] | None  # None: an anomaly band, not judged here
    threshold: float | None
    period: int  # seconds
    queries: tuple[dict[str, Any], ...]  # empty: nothing this source can read again
    returned: str  # the Id of the query whose values the alarm judges
    n: int = 1  # EvaluationPeriods
    m: int = 1  # DatapointsToAlarm (default: EvaluationPeriods)

    def breaching(self, value: float) -> bool | None:
        if self.compare is None or self.threshold is None:
            return None
        return self.compare(value, self.threshold)

    def verdict(self, points: Sequence[tuple[datetime, float]]) -> bool | None:
        """The alarm's own M of N over `points` (values of its metric, any order): in alarm when M of the newest
        N breach; with fewer than N, when M of them do or, fewer than M, all of them (as a watched rule's
        verification in the decision core: a rule that must prove it recovered). None: nothing to judge."""
        hits = [h for _, h in judged(self, sorted(points))][-self.n:]
        if not hits:
            return None
        return sum(hits) >= min(self.m, len(hits))


@dataclass(frozen=True)
class Want:
    """What one rule reads: one alarm by name, or the family of alarms whose names start with a prefix."""

    alarm: str | None
    prefix: str | None

    def matches(self, name: str) -> bool:
        return name == self.alarm if self.prefix is None else name.startswith(self.prefix)

    def __str__(self) -> str:
        return f"alarm {self.alarm!r}" if self.prefix is None else f"the alarms named {self.prefix}*"


def utc_time(value: Any, where: str) -> datetime:
    """A time as CloudWatch writes it (`2024-01-01T00:00:00.000+0000`) or as botocore parsed it, in UTC."""
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: not a time: {value!r}") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{where}: expected a time with its zone, got {str(value)[:40]!r}")
    return value.astimezone(timezone.utc)


def evaluated(reason_data: str) -> list[tuple[datetime, float]]:
    """The datapoints CloudWatch judged for a state change (StateReasonData's evaluatedDatapoints), those with a
    value; anything unreadable in it is no datapoint (it is CloudWatch's note, not a contract)."""
    try:
        doc = json.loads(reason_data) if reason_data else {}
    except ValueError:
        return []
    points = doc.get("evaluatedDatapoints") if isinstance(doc, dict) else None
    out = []
    for p in points if isinstance(points, list) else []:
        value = p.get("value") if isinstance(p, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            try:
                out.append((utc_time(p.get("timestamp"), "timestamp"), float(value)))
            except ValueError:
                continue
    return out


def from_describe(alarm: Mapping[str, Any]) -> tuple[AlarmRecord, AlarmShape]:
    """One MetricAlarms entry of a DescribeAlarms answer (botocore's parse), or ValueError naming what is wrong."""
    name, state = alarm.get("AlarmName"), alarm.get("StateValue")
    if not isinstance(name, str) or not name:
        raise ValueError("an alarm without AlarmName")
    if state not in STATES:
        raise ValueError(f"alarm {name!r}: StateValue {str(state)[:40]!r} is none of {', '.join(STATES)}")
    # StateUpdatedTimestamp also moves when only the EvaluationState does; the transition's own time is
    # what an event's state.timestamp says, where CloudWatch gives it.
    at = utc_time(alarm.get("StateTransitionedTimestamp") or alarm.get("StateUpdatedTimestamp"), f"alarm {name!r}")
    reason = alarm.get("StateReasonData")
    return AlarmRecord(name, str(state), at, reason if isinstance(reason, str) else ""), _shape(alarm)


def _shape(alarm: Mapping[str, Any]) -> AlarmShape:
    shape = _reading(alarm)
    n = alarm.get("EvaluationPeriods")
    n = n if isinstance(n, int) and n >= 1 else 1
    m = alarm.get("DatapointsToAlarm")
    return replace(shape, n=n, m=m if isinstance(m, int) and 1 <= m <= n else n)


def _reading(alarm: Mapping[str, Any]) -> AlarmShape:
    compare = _COMPARE.get(str(alarm.get("ComparisonOperator")))
    threshold = alarm.get("Threshold")
    threshold = float(threshold) if isinstance(threshold, (int, float)) and compare is not None else None
    metrics = alarm.get("Metrics") or []
    if metrics:  # metric math: its own queries, sent as they are (their ids are unique within the alarm)
        queries = tuple(dict(m) for m in metrics if isinstance(m, dict))
        returned = next((q for q in queries if q.get("ReturnData", True)), None)
        if returned is None or compare is None:
            return AlarmShape(compare, threshold, 60, (), "")
        # An expression's period is its metrics' (they share one).
        periods = [q.get("Period") or (q.get("MetricStat") or {}).get("Period") for q in (returned, *queries)]
        period = next((p for p in periods if isinstance(p, int) and p > 0), 60)
        return AlarmShape(compare, threshold, period, queries, str(returned.get("Id")))
    stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
    if not alarm.get("MetricName") or not stat or compare is None:
        return AlarmShape(compare, threshold, int(alarm.get("Period") or 60), (), "")
    metric_stat: dict[str, Any] = {
        "Metric": {"Namespace": alarm.get("Namespace"), "MetricName": alarm["MetricName"],
                   "Dimensions": list(alarm.get("Dimensions") or [])},
        "Period": int(alarm.get("Period") or 60), "Stat": stat}
    if alarm.get("Unit"):
        metric_stat["Unit"] = alarm["Unit"]
    return AlarmShape(compare, threshold, metric_stat["Period"], ({"Id": "m", "MetricStat": metric_stat,
                                                                  "ReturnData": True},), "m")


def from_event(body: Any) -> AlarmRecord:
    """A queue message's body as EventBridge writes a "CloudWatch Alarm State Change" event; NotAnAlarmEvent
    (one line, naming the field) for anything else."""
    try:
        doc = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise NotAnAlarmEvent("not a JSON object")
    if doc.get("source") != "aws.cloudwatch" or doc.get("detail-type") != EVENT_TYPE:
        raise NotAnAlarmEvent(f"not a {EVENT_TYPE} event (detail-type {str(doc.get('detail-type'))[:60]!r})")
    detail = doc.get("detail")
    state = detail.get("state") if isinstance(detail, dict) else None
    if not isinstance(detail, dict) or not isinstance(state, dict):
        raise NotAnAlarmEvent("detail.state: expected an object")
    name = detail.get("alarmName")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise NotAnAlarmEvent("detail.alarmName: expected an alarm's name")
    if state.get("value") not in STATES:
        raise NotAnAlarmEvent(f"detail.state.value: expected one of {', '.join(STATES)}")
    try:
        at = utc_time(state.get("timestamp"), "detail.state.timestamp")
    except ValueError as exc:
        raise NotAnAlarmEvent(str(exc)) from None
    reason = state.get("reasonData")
    return AlarmRecord(name, state["value"], at, reason if isinstance(reason, str) else "")


class AlarmBook:
    """The newest known record of every alarm the rules name, and how each judges a value."""

    def __init__(self, wants: Iterable[Want]):
        wants = list(wants)
        self._names = {w.alarm for w in wants if w.prefix is None and w.alarm is not None}
        # A prefix inside another asks for nothing more: "api-" covers "api-5xx-".
        prefixes = sorted({w.prefix for w in wants if w.prefix is not None})
        self.prefixes = [p for i, p in enumerate(prefixes) if not any(p.startswith(q) for q in prefixes[:i])]
        self.records: dict[str, AlarmRecord] = {}
        self.shapes: dict[str, AlarmShape] = {}
        self.read_whole = False  # a full read has been made: an alarm it did not find is gone

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    def wanted(self, name: str) -> bool:
        return name in self._names or any(name.startswith(p) for p in self.prefixes)

    def offer(self, rec: AlarmRecord, *, as_new_wins: bool = False) -> bool:
        """Take `rec` when it is newer than what is known of its alarm (or as new, with `as_new_wins`: a fresh
        answer of CloudWatch's own); True when the alarm's state changed."""
        old = self.records.get(rec.name)
        if old is not None and (rec.at < old.at or (rec.at == old.at and not as_new_wins)):
            return False
        self.records[rec.name] = rec
        return old is None or old.state != rec.state

    def take(self, answer: Mapping[str, tuple[AlarmRecord, AlarmShape]]) -> None:
        """Alarms CloudWatch answered for (a full read, a read by state or by name)."""
        for name, (rec, shape) in answer.items():
            self.offer(rec, as_new_wins=True)
            self.shapes[name] = shape

    def whole(self, answer: Mapping[str, tuple[AlarmRecord, AlarmShape]],
              before: Collection[tuple[str, AlarmRecord]]) -> list[str]:
        """A full read of every named alarm and family: an alarm known when it began (`before`) that it did not
        find is gone, unless a change was heard of it meanwhile. Returns the names dropped."""
        dropped = [n for n, r in before if n not in answer and self.records.get(n) == r]
        self.forget(dropped)
        self.take(answer)
        self.read_whole = True
        return dropped

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self.records.pop(name, None)
            self.shapes.pop(name, None)

    def members(self, want: Want) -> list[AlarmRecord]:
        if want.prefix is None:
            rec = self.records.get(want.alarm or "")
            return [rec] if rec is not None else []
        return [r for n, r in self.records.items() if n.startswith(want.prefix)]

    def gone(self, want: Want) -> bool:
        """Nothing of it exists, as far as a full read knows (before one, nothing is known to be gone)."""
        return self.read_whole and not self.members(want)

    def reading(self, want: Want) -> bool | None:
        """True while CloudWatch says ALARM (for a family: any member), False while OK; None: no evidence
        (INSUFFICIENT_DATA, a family member in it and none in ALARM, or nothing known)."""
        states = {r.state for r in self.members(want)}
        if ALARM in states:
            return True
        if not states or INSUFFICIENT in states:
            return None
        return False

    def fresh(self, want: Want, since: datetime) -> list[tuple[str, AlarmShape, list[tuple[datetime, float]]]]:
        """Per member that can be judged (in OK or ALARM, its shape known): the values CloudWatch judged for its last
        change that are at `since` or later (StateReasonData's evaluatedDatapoints); empty when there are none."""
        out = []
        for rec in self.members(want):
            shape = self.shapes.get(rec.name)
            if rec.state == INSUFFICIENT or shape is None:
                continue  # no evidence; and without its shape nothing it judged can be judged again
            out.append((rec.name, shape, [(ts, v) for ts, v in evaluated(rec.reason_data) if ts >= since]))
        return out


def judged(shape: AlarmShape, values: Sequence[tuple[datetime, float]]) -> list[Datapoint]:
    """Values of an alarm's metric as breaching (True) or not, by the alarm's comparison."""
    out: list[Datapoint] = []
    for ts, value in values:
        hit = shape.breaching(value)
        if hit is not None:
            out.append((ts, hit))
    return out
