"""Existing CloudWatch alarms (SPEC 3.2): a rule names one (`alarm`) or a family (`alarm_prefix`, in alarm while
any member is), and is in alarm while CloudWatch says ALARM. INSUFFICIENT_DATA is no evidence: the rule is
insufficient_data and nothing is done on it. What is known of each alarm: watchdog/sources/alarm_book.py.

Polled (no `queue_url`): each poll asks DescribeAlarms for the alarms in ALARM only (`StateValue`, 100 a
page), so a calm account costs one request per poll however many alarms it holds. One that was in that answer
and has left it is read once by name, which tells OK (with the datapoints of that change) from
INSUFFICIENT_DATA from deleted. A hot target's alarms (an open incident, or a level verified or watched) are
read by name at every poll, so its verification and decisions never stand on a state older than the poll. A
full read of every named alarm and family, by name and by prefix, is made at the first poll and every
RECONCILE_EVERY: a calm alarm's OK <-> INSUFFICIENT_DATA (no evidence either way, never an action) and an
alarm deleted while OK are found then.

Pushed (`queue_url`): the queue an EventBridge rule fills is long-polled (watchdog/sources/alarm_queue.py); a
change heard there polls the source at once. Each scheduled poll (`interval`) is the full read, so a lost,
repeated or late event leaves no rule wrong for longer than that: a change counts only when it is newer
than what is known of its alarm, by CloudWatch's time of the change. Without a durable state (`run --once`,
`validate`) nothing is taken from the queue; the poll is the full read alone.

A rule whose alarm (or every member of its family) no longer exists has no evidence: the poll fails, naming
it, so the source's rules are insufficient_data and, after `blind_after`, a human is paged; it answers again
once the alarm exists or the rule is changed.

Verification (a level's actions have ended: hooks.verifying says since when): a rule's reading is then what
the values newer than the actions say, never the alarm's state, which may still stand on values from before
them: those CloudWatch judged for the alarm's last change (its StateReasonData), or, when that change is
older than the actions, one GetMetricData of the alarm's metric, made when the verification is due (and at
every poll while a mitigated incident's alarm stays in ALARM). Each alarm judges them by its own comparison
and M of N; the reading is stamped when read, as every reading of this sampled source is: it stands on
nothing older than the actions, and without such values there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field

from watchdog.config.base import Model
from watchdog.config.checks import Problem
from watchdog.config.models import AwsSection, Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import HttpUrl, Interval
from watchdog.core.cost import Usage, per_month, said_delay
from watchdog.core.rules import Datapoint, align, evaluation_range
from watchdog.core.schedule import Pace
from watchdog.sources.alarm_book import (ALARM, MAX_NAME, AlarmBook, AlarmRecord, AlarmShape, Want,
                                         from_describe, utc_time)
from watchdog.sources.alarm_queue import WAIT, AlarmQueue
from watchdog.sources.aws import AwsSource, aws_call, aws_client
from watchdog.sources.base import Query, SourceError
from watchdog.sources.hooks import SourceHooks
from watchdog.sources.kind import SourceDeps, SourceKind
from watchdog.support.metrics import Metrics
from watchdog.support.retrying import Sleep

__all__ = ["KIND", "CloudWatchAlarms", "CloudWatchAlarmsReads", "CloudWatchAlarmsSource"]

RECONCILE_EVERY = timedelta(minutes=10)  # polled: how often every named alarm is read whole
MAX_PAGES = 100  # 10 000 alarms in one state; more is an error, not a silent undercount
NAMES_PER_CALL = 100  # DescribeAlarms takes at most 100 AlarmNames


class CloudWatchAlarmsSource(SourceConfig):
    """Existing CloudWatch alarms: DescribeAlarms every `interval`, or their state changes pushed through SQS."""

    type: Literal["cloudwatch_alarms"]
    region: str | None = None  # the alarms' (and the queue's) region; default aws.region
    # An SQS queue an EventBridge rule fills with "CloudWatch Alarm State Change" events; `interval` is then
    # how often every named alarm is read whole (the reconcile).
    queue_url: HttpUrl | None = None
    interval: Interval = timedelta(seconds=60)


AlarmName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class CloudWatchAlarmsReads(Model):
    alarm: AlarmName | None = None  # in alarm while this alarm is in ALARM
    alarm_prefix: AlarmName | None = None  # in alarm while any alarm whose name starts so is in ALARM


def _want(q: Query) -> Want:
    r = q.rule.reads(CloudWatchAlarmsReads)
    return Want(r.alarm, r.alarm_prefix)


class CloudWatchAlarms(AwsSource):
    sampled = True
    service = "cloudwatch"
    _cfg: CloudWatchAlarmsSource

    def __init__(self, cfg: CloudWatchAlarmsSource, queries: Sequence[Query], aws: AwsSection, metrics: Metrics,
                 hooks: SourceHooks = SourceHooks(), sleep: Sleep | None = None, client: Any = None,
                 sqs: Any = None):
        super().__init__(cfg, queries, aws, sleep, client)
        self._metrics, self._hooks, self._sqs = metrics, hooks, sqs
        self._wants = {q.key: _want(q) for q in self._queries}
        self.book = AlarmBook(self._wants.values())
        # Each rule's readings of CloudWatch's state, one per `interval` bucket (a pushed poll in the same
        # bucket replaces it): as many as its evaluation range looks at.
        self._history: dict[str, deque[Datapoint]] = {
            q.key: deque(maxlen=evaluation_range(q.rule.evaluation_periods) + 2) for q in self._queries}
        longest = max((evaluation_range(q.rule.evaluation_periods) for q in self._queries), default=1)
        self._lookback = cfg.interval * (longest + 1)  # how far back a verification's metric read goes
        self._whole_at: datetime | None = None
        self._lock = asyncio.Lock()  # a pushed poll and a scheduled one never read at once
        self.queue: AlarmQueue | None = None
        self._listening: asyncio.Task[None] | None = None
        self._queue_seen = False

    def _region(self) -> str:
        return self._cfg.region or self._aws.region

    # --- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        await super().start()
        url = self._cfg.queue_url
        if url is None:
            return
        if self._sqs is None:  # its read timeout outlasts a long poll
            self._sqs = await aws_client(self._stack, "sqs", self._region(), self._aws, self._cfg.timeout + WAIT)
        ledger = self._hooks.ledger
        if ledger is None or not ledger.durable:
            return  # nothing may be deleted from the queue that a restart would not find again
        unnamed = []
        for alarm, state, at, data in ledger.alarm_records(self.name):
            if self.book.wanted(alarm):
                self.book.offer(AlarmRecord(alarm, state, at, data))
            else:
                unnamed.append(alarm)
        if unnamed:
            ledger.forget_alarms(self.name, unnamed)  # no rule names them any more
        self.queue = AlarmQueue(self.name, url, self._sqs, ledger, self.book.wanted, self._heard, self._hooks.wake,
                                self._hooks.reach, lambda op: self._count(op, {}))

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
            self._listening = None
        await super().close()
        self._sqs = None

    def _heard(self, events: Sequence[AlarmRecord]) -> bool:
        return any([self.book.offer(e) for e in events])  # a list: every event offered, not up to the first

    # --- polling ----------------------------------------------------------------------------

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        return await self.poll_due(now, ())

    async def poll_due(self, now: datetime, hot: Collection[str]) -> Mapping[str, Sequence[Datapoint]]:
        """A poll told which targets are hot (the runtime's open incidents, sources/periodic.py); a target whose
        level is verified or watched (hooks.verifying) is hot too, whoever polls."""
        async with self._lock:
            await self._read(now, self._hot_names(hot))
        gone = [f"{want} (rule {key})" for key, want in self._wants.items() if self.book.gone(want)]
        if gone:
            raise SourceError(f"{'; '.join(gone[:3])}{' and more' if len(gone) > 3 else ''}: not in CloudWatch "
                              "(deleted or misnamed): no evidence for these rules")
        return await self._readings(now)

    def _hot_names(self, hot: Collection[str]) -> set[str]:
        """The alarms hot targets' rules name: each named one, and a family's known members (a new member is
        found by the ALARM answer once in ALARM, by the reconcile otherwise)."""
        names: set[str] = set()
        for key, want in self._wants.items():
            target = key.split("/", 1)[0]
            if target in hot or self._hooks.verifying(target) is not None:
                names.update(r.name for r in self.book.members(want))
                if want.prefix is None and want.alarm is not None:
                    names.add(want.alarm)  # known or not: the read by name says which
        return names

    async def _read(self, now: datetime, hot: set[str]) -> None:
        pushed = self._cfg.queue_url is not None
        if pushed and not self._queue_seen:
            await self._call("GetQueueAttributes", "get_queue_attributes", {
                "QueueUrl": self._cfg.queue_url, "AttributeNames": ["QueueArn"]}, self._sqs)
            self._queue_seen = True
        if self.queue is not None and self.queue.failure is not None:
            raise SourceError(self.queue.failure)
        every = self.interval if pushed else RECONCILE_EVERY
        if self._whole_at is None or now - self._whole_at >= every:
            await self._whole()
            self._whole_at = now
        elif not pushed:
            await self._by_state(hot)
        if self.queue is not None and self._listening is None:  # once the alarms' shapes are known
            # In a context of its own: this poll's (its deadline's hook on each try, retrying.on_attempt) must
            # not reach the polls and levels the queue's events start long after this poll has ended.
            self._listening = asyncio.create_task(self.queue.run(), name=f"queue:{self.name}",
                                                  context=contextvars.Context())

    async def _whole(self) -> None:
        """Every named alarm (100 names a call) and every family (by prefix), whatever their state."""
        before = set(self.book.records.items())  # an event heard during the read is newer than it
        answer: dict[str, tuple[AlarmRecord, AlarmShape]] = {}
        names = self.book.names
        for i in range(0, len(names), NAMES_PER_CALL):
            answer |= await self._describe({"AlarmNames": names[i:i + NAMES_PER_CALL]})
        for prefix in self.book.prefixes:
            answer |= await self._describe({"AlarmNamePrefix": prefix})
        dropped = self.book.whole(answer, before)
        if dropped and self.queue is not None:
            self.queue.ledger.forget_alarms(self.name, dropped)

    async def _by_state(self, hot: set[str]) -> None:
        """ALARM only: one request when calm. INSUFFICIENT_DATA is asked by name where it matters (below)."""
        answer = await self._describe({"StateValue": ALARM})
        left = {n for n, r in self.book.records.items() if r.state == ALARM and n not in answer}
        left |= {n for n in hot if n not in answer}
        self.book.take(answer)
        names = sorted(left)
        for i in range(0, len(names), NAMES_PER_CALL):  # OK, INSUFFICIENT_DATA or deleted: a read by name tells
            chunk = names[i:i + NAMES_PER_CALL]
            found = await self._describe({"AlarmNames": chunk})
            self.book.take(found)
            self.book.forget(n for n in chunk if n not in found)

    async def _describe(self, kwargs: dict[str, Any]) -> dict[str, tuple[AlarmRecord, AlarmShape]]:
        """The named alarms among those the request selects, over every page."""
        out: dict[str, tuple[AlarmRecord, AlarmShape]] = {}
        kwargs = {**kwargs, "MaxRecords": 100}
        for _page in range(MAX_PAGES):
            page = await self._call("DescribeAlarms", "describe_alarms", kwargs)
            for alarm in page.get("MetricAlarms") or []:
                name = alarm.get("AlarmName") if isinstance(alarm, dict) else None
                if isinstance(name, str) and self.book.wanted(name):
                    try:
                        out[name] = from_describe(alarm)
                    except ValueError as exc:
                        raise SourceError(f"DescribeAlarms: {exc}") from None
            token = page.get("NextToken")
            if not token:
                return out
            kwargs = {**kwargs, "NextToken": token}
        raise SourceError(f"DescribeAlarms: still paging after {MAX_PAGES} pages of 100")

    # --- readings ----------------------------------------------------------------------------

    async def _readings(self, now: datetime) -> dict[str, list[Datapoint]]:
        read: dict[str, list[tuple[datetime, float]]] = {}  # alarm -> its metric, read once this poll
        for key, want in self._wants.items():
            verifying = self._hooks.verifying(key.split("/", 1)[0])
            if verifying is None:
                self._remember(key, now, self.book.reading(want))
                continue
            if self.book.reading(want) is None:  # INSUFFICIENT_DATA now: no reading of before it may decide
                self._remember(key, now, None)
                continue
            verdict = await self._verdict(want, *verifying, now, read)
            if verdict is not None:  # evidence older than the actions is left out by the verification itself
                self._remember(key, now, verdict)
        return {key: list(history) for key, history in self._history.items()}

    async def _verdict(self, want: Want, since: datetime, due: datetime | None, now: datetime,
                       read: dict[str, list[tuple[datetime, float]]]) -> bool | None:
        """What the values newer than the actions say, each alarm judged by its own M of N; a family is in alarm
        when any member is. Stamped now (a reading of this sampled source): the verification counts it, since it
        stands only on what came after the actions."""
        verdicts = []
        for name, shape, values in self.book.fresh(want, since):
            if not values and self._metric_decides(name, due, now):
                if name not in read:
                    read[name] = await self._read_metric(name, now)
                values = [(ts, v) for ts, v in read[name] if ts >= since]
            verdicts.append(shape.verdict(values))
        if True in verdicts:
            return True
        return False if False in verdicts else None

    def _remember(self, key: str, now: datetime, value: bool | None) -> None:
        history = self._history[key]
        if value is None:  # no evidence: nothing older may stand for now
            history.clear()
        elif history and align(history[-1][0], self.interval) == align(now, self.interval):
            history[-1] = (now, value)
        else:
            history.append((now, value))

    def _metric_decides(self, name: str, due: datetime | None, now: datetime) -> bool:
        """A verification judges at `due` (this poll may be the last before it); a mitigated incident's alarm
        that stays in ALARM is read at every poll, since only a new change of state would say more."""
        if due is not None:
            return now >= due - self.interval
        return self.book.records[name].state == ALARM

    async def _read_metric(self, name: str, now: datetime) -> list[tuple[datetime, float]]:
        shape = self.book.shapes[name]
        if not shape.queries:
            return []  # an anomaly band or a shape this source cannot read again: no evidence
        period = timedelta(seconds=shape.period)
        start = align(now - max(self._lookback, 3 * period), period)  # CloudWatch's buckets start on the grid
        page = await self._call("GetMetricData", "get_metric_data", {
            "MetricDataQueries": list(shape.queries), "StartTime": start, "EndTime": now,
            "ScanBy": "TimestampAscending"})
        for result in page.get("MetricDataResults") or []:
            if result.get("Id") == shape.returned:
                values = zip(result.get("Timestamps") or [], result.get("Values") or [])
                return [(utc_time(ts, "Timestamps"), float(v)) for ts, v in values
                        if isinstance(v, (int, float)) and math.isfinite(v)]
        return []

    # --- requests -----------------------------------------------------------------------------

    async def _call(self, op: str, method: str, kwargs: dict[str, Any], client: Any = None) -> dict[str, Any]:
        """One request under the retry schedule, each try counted by its API; CloudWatch's client unless told."""
        target = client if client is not None else self._client

        async def once() -> dict[str, Any]:
            self._count(op, kwargs)
            answer: dict[str, Any] = await getattr(target, method)(**kwargs)
            return answer

        return await aws_call(op, once, self._cfg.retry, self._sleep)

    def _count(self, op: str, kwargs: Mapping[str, Any]) -> None:
        self.calls += 1
        self._metrics.alarm_source_requests.labels(self.name, op).inc()
        if op == "GetMetricData":  # billed per metric, as the cloudwatch source's reads are
            self._metrics.cloudwatch_requests.inc()
            self._metrics.cloudwatch_metrics_requested.inc(len(kwargs["MetricDataQueries"]))


def _build(cfg: CloudWatchAlarmsSource, queries: Sequence[Query], deps: SourceDeps) -> CloudWatchAlarms:
    return CloudWatchAlarms(cfg, queries, deps.aws, deps.metrics, deps.hooks)


def _own_missing_data(at: tuple[str | int, ...], rule: Rule, source: CloudWatchAlarmsSource) -> list[Problem]:
    if rule.missing_data != "missing":
        return [(at + ("missing_data",), "a cloudwatch_alarms rule takes the alarm's own treatment of missing "
                 "data (TreatMissingData); INSUFFICIENT_DATA is no evidence")]
    return []


def alarms_usage(cfg: CloudWatchAlarmsSource, queries: Sequence[Query]) -> Usage:
    """Polled: one DescribeAlarms per poll for the alarms in ALARM, and every RECONCILE_EVERY the whole read
    instead (the named alarms 100 a request, one request per family). Pushed: the whole read at every poll
    (`interval`), and ReceiveMessage long-polls back to back, WAIT each while the queue is quiet."""
    book = AlarmBook(Want(r.alarm, r.alarm_prefix) for r in (q.rule.reads(CloudWatchAlarmsReads) for q in queries))
    whole = math.ceil(len(book.names) / NAMES_PER_CALL) + len(book.prefixes)
    polls = per_month(Pace(cfg.interval))
    if cfg.queue_url is None:
        apart = math.ceil(RECONCILE_EVERY / cfg.interval)  # polls from one whole read to the next
        wholes = math.ceil(polls / apart)
        return Usage(cfg.name, cfg.type, {"DescribeAlarms": wholes * whole + (polls - wholes)},
                     delay_said=f"the alarm's own + up to {said_delay(cfg.interval)}")
    return Usage(cfg.name, cfg.type, {"DescribeAlarms": polls * whole, "ReceiveMessage": per_month(Pace(WAIT))},
                 delay_said="the alarm's own + seconds (pushed)",
                 unprojected=("one DeleteMessage per event received",))


KIND = SourceKind(type="cloudwatch_alarms", config=CloudWatchAlarmsSource, reads=CloudWatchAlarmsReads,
                  requires=("alarm", "alarm_prefix"), build=_build, sampled=True, alarms=True,
                  check=_own_missing_data, cost=alarms_usage)
