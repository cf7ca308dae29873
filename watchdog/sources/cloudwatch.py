"""CloudWatch: the rules of one source in as few GetMetricData calls as possible, each query once per bucket.

A poll reads the queries due at its tick (watchdog/sources/periodic.py: each query once its bucket has
closed and settled, rules asking the same sharing one query). At most 500 queries go into one call (the
API's limit), so a read costs ceil(queries due / 500) calls, plus one per NextToken page. tenacity owns the
retries (throttling, 5xx, connection errors); botocore's own are off so the two do not multiply.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any


from watchdog.config.models import AwsSection, Rule
from watchdog.core.cost import Usage
from watchdog.core.rules import EPOCH, Datapoint, evaluation_range
from watchdog.sources.aws import AwsSource
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch_request import Batch, DirectCalls, encode_queries_once
from watchdog.sources.cloudwatch_config import (
    CloudWatchReads,
    CloudWatchSource,
    MetricSpec,
    bucket,
    cadence,
    check,
    reads,
)
from watchdog.sources.cost import plan_usage
from watchdog.sources.kind import SourceDeps, SourceKind
from watchdog.sources.periodic import Due, ReadPlan, Shared
from watchdog.support.aws import aws_client, is_retryable
from watchdog.support.metrics import Metrics
from watchdog.support.retrying import Sleep

__all__ = ["KIND", "CloudWatch", "CloudWatchReads", "CloudWatchSource", "MetricSpec", "Window", "fetch_window",
           "identity", "is_retryable", "pack", "read_plan", "reads", "rule_queries", "window_of"]


MAX_QUERIES_PER_CALL = 500
MAX_PAGES_PER_BATCH = 50


def fast_timestamp(value: str) -> datetime:
    """CloudWatch answers ISO 8601 times; botocore parses each through dateutil, which was half the daemon's
    CPU per poll at 1 000 rules (bench/README.md). Anything else goes to botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp  # loaded by then: a client is what calls this

        return parse_timestamp(value)


def pack(groups: Sequence[Sequence[Any]], size: int = MAX_QUERIES_PER_CALL) -> list[list[Any]]:
    """Groups into calls of at most `size` queries, a group never split: an expression and the
    metrics it uses must be in the same call. Next-fit: with single-query rules this is exactly
    ceil(n/500); with 3-query ratio rules a call may end a query or two short of 500."""
    calls: list[list[Any]] = []
    for group in groups:
        if not calls or len(calls[-1]) + len(group) > size:
            calls.append([])
        calls[-1].extend(group)
    return calls


@dataclass(frozen=True)
class Window:
    """Where the fetch window of a set of queries starts: `lookback` seconds back, on a grid of `grid` seconds
    that every period divides, so buckets line up. Computed once per source (its queries change only with the
    config), then placed at each poll's time."""

    lookback: int
    grid: int

    @classmethod
    def of(cls, queries: Sequence[Query], reach: timedelta = timedelta(0)) -> Window:
        """Back to the first bucket of each rule's evaluation range, and no further for a plain metric rule (an
        older bucket is never judged, and each is another datapoint per query to fetch, parse and scan). A
        change rule also needs the bucket `over` before each judged one (whole periods, rounded up); an
        expression one period more, since CloudWatch computes RATE, DIFF and the like only inside the range
        asked for. `reach`: at least that far (a rule read every 5m fetches the 5 minutes it missed)."""
        shapes = [(reads(q), q.rule) for q in queries]
        periods = [int(r.period.total_seconds()) for r, _ in shapes]
        lookback = max(_lookback(rule, r, p) for (r, rule), p in zip(shapes, periods))
        return cls(max(lookback, int(reach.total_seconds())), math.lcm(*periods))

    def at(self, now: datetime) -> tuple[datetime, datetime]:
        start_s = ((now - EPOCH).total_seconds() - self.lookback) // self.grid * self.grid
        end = now.replace(microsecond=0)
        if end <= EPOCH + timedelta(seconds=start_s):
            end = EPOCH + timedelta(seconds=start_s + 1)
        return EPOCH + timedelta(seconds=start_s), end


def fetch_window(queries: Sequence[Query], now: datetime) -> tuple[datetime, datetime]:
    """One window for all queries at `now` (Window)."""
    return Window.of(queries).at(now)


def window_of(shared: Sequence[Shared]) -> Window:
    """The window of a read of these queries: every rule asking them, and the buckets a seldom read missed."""
    return Window.of([q for s in shared for q in s.queries], max(s.every for s in shared))


def identity(q: Query) -> str:
    """What is asked of CloudWatch for this rule (metric, dimensions, statistic, period, unit; an expression
    and its metrics; min_samples): rules with the same identity share one query."""
    r = reads(q)
    return json.dumps({"queries": rule_queries("q", q), "min_samples": r.min_samples, "samples": r.samples},
                      sort_keys=True, default=str)


def read_plan(cfg: CloudWatchSource, queries: Sequence[Query]) -> ReadPlan:
    return ReadPlan(queries, cfg.settle, cfg.interval, identity, lambda q: cadence(cfg, q))


def _lookback(rule: Rule, r: CloudWatchReads, period_s: int) -> int:
    periods = evaluation_range(rule.evaluation_periods)
    if rule.change is not None:
        periods += math.ceil(rule.change.over.total_seconds() / period_s)
    if r.expression is not None:
        periods += 1
    return periods * period_s


def metric_query(qid: str, q: Query) -> dict[str, Any]:
    m = reads(q).metric
    if m is None:  # config.checks refuses this; kept so a bad query never reaches AWS
        raise SourceError(f"{q.key}: a cloudwatch rule needs a metric")
    return stat_query(qid, m, True)


def rule_queries(qid: str, q: Query) -> list[dict[str, Any]]:
    """One query for a metric rule; for an expression, its metrics (ids `<qid>_<name>`, data returned
    only for the `samples` one) and the expression, rewritten to those ids, as `<qid>`."""
    rule = reads(q)
    if rule.expression is None:
        return [metric_query(qid, q)]
    metrics = rule.metrics or {}
    out = [stat_query(f"{qid}_{name}", m, name == rule.samples) for name, m in metrics.items()]
    expr = rule.expression
    for name in metrics:
        expr = re.sub(rf"\b{re.escape(name)}\b", f"{qid}_{name}", expr)
    period = int(next(iter(metrics.values())).period.total_seconds()) if metrics else 60
    out.append({"Id": qid, "Expression": expr, "Period": period, "ReturnData": True})
    return out


def stat_query(qid: str, m: Any, returned: bool) -> dict[str, Any]:
    stat: dict[str, Any] = {
        "Metric": {
            "Namespace": m.namespace,
            "MetricName": m.name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(m.dimensions.items())],
        },
        "Period": int(m.period.total_seconds()),
        "Stat": m.stat,
    }
    if m.unit:
        stat["Unit"] = m.unit
    return {"Id": qid, "MetricStat": stat, "ReturnData": returned}


def enough_samples(points: Sequence[Datapoint], counts: Sequence[Datapoint], minimum: int) -> list[Datapoint]:
    """A ratio over too few requests is noise: keep the values whose period counted `minimum` or more."""
    have = {ts: n for ts, n in counts}
    return [(ts, v) for ts, v in points if have.get(ts, 0) >= minimum]


def _check_complete(key: str, status: str | None, more_pages: bool) -> None:
    """A query AWS could not answer in full is missing evidence, not "no data" (which missing_data:
    breaching counts as a breach): the poll fails. PartialData means the rest comes with the NextToken;
    without one, the rest never comes."""
    if status in ("InternalError", "Forbidden"):
        raise SourceError(f"GetMetricData: {key}: {status}")
    if status == "PartialData" and not more_pages:
        raise SourceError(f"GetMetricData: {key}: PartialData without a NextToken (the rest of its data was not sent)")


class CloudWatch(AwsSource):
    sampled = False
    service = "cloudwatch"

    def __init__(self, cfg: CloudWatchSource, queries: Sequence[Query], aws: AwsSection, metrics: Metrics,
                 sleep: Sleep | None = None, client: Any = None):
        super().__init__(cfg, queries, aws, sleep, client)
        self._region_override = cfg.region  # AWS/Billing metrics live in us-east-1
        self._metrics = metrics
        # The queries only change with the config (reload builds a new source): build them once, one per
        # distinct query (`q<index>`), whatever number of rules share it.
        self.plan = read_plan(cfg, self._queries)
        shared = self.plan.shared
        self._sent = [rule_queries(f"q{s.index}", s.first) for s in shared]
        self._ids = {f"q{s.index}": s.index for s in shared}
        self._counts: dict[str, int] = {}  # the id of a ratio's request count -> its query
        self._min_samples: dict[int, int] = {}
        for s in shared:
            r = reads(s.first)
            if r.samples and r.min_samples is not None:
                self._counts[f"q{s.index}_{r.samples}"] = s.index
                self._min_samples[s.index] = r.min_samples
        self._ids.update(self._counts)
        self._reads: dict[Any, tuple[Window, list[list[dict[str, Any]]]]] = {}  # per Due.key
        self._direct: DirectCalls | None = None  # with the client this source opens (_open)
        # The last fetch's buckets answered with NaN (or an infinity) per rule, and which: left out of its
        # answer as missing datapoints, and kept here for the replay to say how many.
        self.not_numbers: dict[str, list[tuple[datetime, str]]] = {}

    def _region(self) -> str:
        return self._region_override or self._aws.region

    async def _open(self) -> Any:
        # The queries come from a validated config and are built once; botocore re-checking 500 of them
        # against the API model on every call was a fifth of the daemon's CPU per poll. GetMetricData's answers
        # are read by cloudwatch_parse (a 5 000-rule poll's ten answers: 138 -> 33 ms of CPU).
        from watchdog.sources.cloudwatch_parse import ParserFactory  # botocore's parsers: with the client only

        client = await aws_client(self._stack, self.service, self._region(), self._aws, self._cfg.timeout,
                                  validate=False, timestamps=fast_timestamp, parsers=ParserFactory(points=True))
        # Each batch's queries encoded once, botocore serializing only the times and the token: a 1 000-rule
        # poll's request bodies 18.5 -> 0.3 ms of CPU (bench.requestbench; cloudwatch_request.py).
        encode_queries_once(client)
        # And sent without the client's per-call machinery once its first call has shown how: the daemon's CPU in a
        # 1 000-rule poll's two calls, beyond the answers' scan, about 9 -> 6 ms (bench/README.md, BENCH_PHASES).
        self._direct = DirectCalls(client)
        return client

    async def close(self) -> None:
        await super().close()
        self._direct = None

    def _caller(self) -> Any:
        return self._direct or self._client

    def _trying(self, kwargs: Mapping[str, Any]) -> None:
        super()._trying(kwargs)
        self._metrics.cloudwatch_requests.inc()
        self._metrics.cloudwatch_metrics_requested.inc(len(kwargs["MetricDataQueries"]))

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        """Every query at once, whatever is due (`validate`'s one real read)."""
        return await self._read(self.plan.everything, now)

    async def poll_due(self, now: datetime, hot: Collection[str]) -> Mapping[str, Sequence[Datapoint]]:
        """The queries due at the tick `now` (`hot`: the targets read every period, periodic.py). Nothing due:
        no request at all."""
        due = self.plan.due(now, hot)
        if not due.shared:
            return {}
        try:
            out = await self._read(due, now)
        except BaseException:  # cut off by the deadline too: the board wipes every rule of a failed poll
            self.plan.forget()
            raise
        self.plan.read(due, now)
        return out

    async def _read(self, due: Due, now: datetime) -> dict[str, Sequence[Datapoint]]:
        if not due.shared:
            return {}
        known = self._reads.get(due.key)
        if known is None:
            if len(self._reads) >= 64:  # a few patterns recur (the 1-minute queries; all of them); hot ones vary
                self._reads.clear()
            known = self._reads[due.key] = (window_of(due.shared),
                                            [Batch(b) for b in pack([self._sent[s.index] for s in due.shared])])
        window, batches = known
        return await self._fetch(batches, due.shared, *window.at(now))

    async def fetch(self, start: datetime, end: datetime) -> dict[str, Sequence[Datapoint]]:
        """Every query's datapoints in [start, end): a window of history (replay)."""
        shared = self.plan.shared
        return await self._fetch([Batch(b) for b in pack(self._sent)], shared, start, end)

    async def _fetch(self, batches: Sequence[Sequence[dict[str, Any]]], due: Sequence[Shared], start: datetime,
                     end: datetime) -> dict[str, Sequence[Datapoint]]:
        """The datapoints of the queries in `batches` (those of `due`), answered to every rule asking them."""
        from watchdog.sources.cloudwatch_parse import results_of  # loaded with the client (see _open)

        ids, counts, shared = self._ids, self._counts, self.plan.shared
        got: dict[int, Sequence[Datapoint]] = {s.index: () for s in due}
        samples: dict[int, Sequence[Datapoint]] = {k: () for k in self._min_samples if k in got}
        odd: dict[int, list[tuple[datetime, str]]] = {}
        paged = False
        for batch in batches:
            token: str | None = None
            for page_no in range(MAX_PAGES_PER_BATCH):
                page = await self._page(batch, start, end, token)
                token = page.get("NextToken")
                paged = paged or page_no > 0
                for qid, status, pairs, finite in results_of(page):
                    k = ids.get(qid or "")
                    if k is None or k not in got:
                        continue
                    if status != "Complete":
                        _check_complete(shared[k].first.key, status, bool(token))
                    into = samples if qid in counts else got
                    if finite:  # the hot path at a thousand rules: the parser's points themselves (Points)
                        into[k] = [*into[k], *pairs] if into[k] else pairs  # a later page's joined (rare)
                        continue
                    kept = into[k] = list(into[k])
                    for ts, value in pairs:
                        if math.isfinite(value):
                            kept.append((ts, value))
                        elif into is got:  # NaN is no value: a missing datapoint, as Prometheus' NaN is
                            odd.setdefault(k, []).append((ts, "NaN" if value != value else "infinite"))
                if not token:
                    break
            else:
                # Every page is billed; an endpoint that never stops paging must not bill forever.
                raise SourceError(f"GetMetricData: still paging after {MAX_PAGES_PER_BATCH} pages")
        for k, points in got.items():
            if paged:  # ScanBy=TimestampAscending: one page's points are in order; pages may interleave
                points = got[k] = sorted(points, key=itemgetter(0))
            if k in samples:
                got[k] = enough_samples(points, samples[k], self._min_samples[k])
        # One list per query, shared by the rules asking it: nothing downstream changes a poll's points.
        out = {q.key: got[s.index] for s in due for q in s.queries}
        self.not_numbers = {q.key: odd[s.index] for s in due if s.index in odd for q in s.queries}
        return out

    async def _page(self, batch: Sequence[dict[str, Any]], start: datetime, end: datetime,
                    token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": batch,  # first: a Batch's fields are encoded once (cloudwatch_request.py)
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            kwargs["NextToken"] = token
        return await self._call("GetMetricData", "get_metric_data", kwargs)


def usage(cfg: CloudWatchSource, queries: Sequence[Query]) -> Usage:
    """Per 30 days: the source's own read plan over the schedule's ticks, each due set packed as `_read` packs
    it (ceil(n / 500), an expression's metrics kept together), each metric it sends counted."""
    plan = read_plan(cfg, queries)
    return plan_usage(cfg, plan, [len(rule_queries(f"q{s.index}", s.first)) for s in plan.shared], pack)


def _build(cfg: CloudWatchSource, queries: Sequence[Query], deps: SourceDeps) -> CloudWatch:
    return CloudWatch(cfg, queries, deps.aws, deps.metrics)


KIND = SourceKind(type="cloudwatch", config=CloudWatchSource, reads=CloudWatchReads, requires=("metric", "expression"),
                  build=_build, sampled=False, bucket=bucket, history=True, check=check, plan=read_plan,
                  cost=usage)
