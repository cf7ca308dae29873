"""CloudWatch history for a replay: what it will cost, what the cache already holds, and the fetch.

The range is cut into windows laid from its start (aligned to every rule's period), each small enough that
one GetMetricData call of a full batch (500 queries) stays inside the API's 100 800 datapoints; every window
of a batch is one call (more only if CloudWatch pages), so a range one window can hold is one call per batch
and no metric is requested twice for it. A window's datapoints
go into the cache per query and bucket, and the window is marked fetched for that query, so the next
replay (other thresholds, other levels) asks only for what the cache lacks. A query's cache key is what
is sent for it (metric, statistic, period, expression), never its threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.config.models import AwsSection
from watchdog.support.metrics import Metrics
from watchdog.replay.cache import HistoryCache
from watchdog.core.cost import DOLLARS_PER_1000_METRICS, dollars  # the prices and their formatting: one copy
from watchdog.core.rules import EPOCH, Datapoint
from watchdog.core.signals import Query
from watchdog.sources.cloudwatch import MAX_QUERIES_PER_CALL, CloudWatch, CloudWatchSource, pack, reads, rule_queries

MAX_DATAPOINTS_PER_CALL = 100_800
# How far back CloudWatch keeps each resolution (User Guide, "Metrics retention").
RETENTION = [
    (timedelta(seconds=60), timedelta(hours=3)),  # high resolution: periods under a minute
    (timedelta(minutes=5), timedelta(days=15)),  # 1-minute data
    (timedelta(hours=1), timedelta(days=63)),  # 5-minute data
    (timedelta.max, timedelta(days=455)),  # 1-hour data
]


class HistoryError(Exception):
    """The history cannot be had as asked (past retention, say); one line."""


def retention(period: timedelta) -> timedelta:
    for below, kept in RETENTION:
        if period < below:
            return kept
    return RETENTION[-1][1]


def query_key(q: Query) -> str:
    """What is asked of CloudWatch for this rule, hashed: the cache's key."""
    sent = rule_queries("q", q)
    r = reads(q)
    what = {"queries": sent, "min_samples": r.min_samples, "samples": r.samples}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _period(q: Query) -> timedelta:
    return reads(q).period


@dataclass(frozen=True)
class Plan:
    """What a fetch will do: windows, calls, metrics requested, dollars; and what the cache spares."""

    source: str
    start: datetime  # the range, with the lead the first poll's window needs
    end: datetime
    span: timedelta
    todo: dict[datetime, list[Query]]  # window start -> the queries it must fetch
    cached: int  # query-windows the cache already holds
    total: int

    @property
    def calls(self) -> int:
        return sum(len(pack([rule_queries("q", q) for q in qs], MAX_QUERIES_PER_CALL)) for qs in self.todo.values())

    @property
    def metrics_requested(self) -> int:
        return sum(sum(len(rule_queries("q", q)) for q in qs) for qs in self.todo.values())

    @property
    def dollars(self) -> float:
        return self.metrics_requested / 1000 * DOLLARS_PER_1000_METRICS

    def describe(self) -> str:
        return (f"source {self.source}: {self.calls} GetMetricData calls, {self.metrics_requested} metrics requested, "
                f"{dollars(self.dollars)} at $0.01 per 1 000 ({self.cached} of {self.total} "
                f"query-windows already cached)")


def window_span(queries: Sequence[Query]) -> timedelta:
    """How much of the range one call fetches: CloudWatch returns at most 100 800 datapoints a call, so a
    batch of B queries gets 100 800 / B buckets of the shortest period, rounded down to whole multiples of
    every period (at least one of them). Fewer rules, longer windows, fewer calls."""
    periods = [int(_period(q).total_seconds()) for q in queries]
    grid = int(_grid(queries).total_seconds())
    batch = min(MAX_QUERIES_PER_CALL, sum(len(rule_queries("q", q)) for q in queries))
    span = max(grid, MAX_DATAPOINTS_PER_CALL // batch * min(periods) // grid * grid)
    return timedelta(seconds=span)


def _grid(queries: Sequence[Query]) -> timedelta:
    """Every rule's buckets start on it: the least common multiple of their periods."""
    return timedelta(seconds=math.lcm(*(int(_period(q).total_seconds()) for q in queries)))


def check_retention(queries: Sequence[Query], start: datetime, now: datetime) -> None:
    """HistoryError when the range reaches back past what CloudWatch keeps for a rule's period. Said before
    anything is computed from `start` (a window's lead before the year 1 is an OverflowError)."""
    for q in queries:
        kept = retention(_period(q))
        if start < now - kept:
            amount = f"{kept.days} days" if kept.days else f"{kept.seconds // 3600} hours"
            raise HistoryError(f"{q.key}: CloudWatch keeps data of a {_period(q).total_seconds():g}s period for "
                               f"{amount}: --from must be after {(now - kept):%Y-%m-%dT%H:%M}Z")


def plan(source: str, queries: Sequence[Query], start: datetime, end: datetime, now: datetime,
         cache: HistoryCache) -> Plan:
    check_retention(queries, start, now)
    span = window_span(queries)
    todo: dict[datetime, list[Query]] = {}
    cached = total = 0
    keys = {q.key: query_key(q) for q in queries}
    for w in windows(start, end, span, _grid(queries)):
        a, b = _clip(w, span, start, end)
        for q in queries:
            total += 1
            if cache.covered(keys[q.key], a, b):
                cached += 1
            else:
                todo.setdefault(w, []).append(q)
    return Plan(source, start, end, span, todo, cached, total)


def windows(start: datetime, end: datetime, span: timedelta, grid: timedelta) -> list[datetime]:
    """The windows that cover [start, end): laid from `start` (down to the rules' bucket grid), `span` apart.
    A range no longer than `span` is one window, wherever it lies; on a grid fixed to the epoch a short range
    across one of its lines was two, each metric requested twice. The cache still spares what a replay before
    fetched: a window it covers whole is not asked for again (`plan`)."""
    w = EPOCH + grid * ((start - EPOCH) // grid)
    out = []
    while w < end:
        out.append(w)
        w += span
    return out


def _clip(w: datetime, span: timedelta, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    return max(w, start), min(w + span, end)


async def fetch(cfg: CloudWatchSource, queries: Sequence[Query], p: Plan, aws: AwsSection, metrics: Metrics,
                cache: HistoryCache, now: datetime) -> None:
    """Every window the plan lacks (only the part inside the range is asked for), into the cache. A window
    is marked fetched only up to what CloudWatch may still change: its last 15 minutes before `now` are
    fetched again next time."""
    keys = {q.key: query_key(q) for q in queries}
    settled = now - timedelta(minutes=15)
    by_set: dict[tuple[str, ...], list[datetime]] = {}
    for w, qs in p.todo.items():
        by_set.setdefault(tuple(q.key for q in qs), []).append(w)
    wanted = {q.key: q for q in queries}
    # A window of history is a large answer (up to 100 800 datapoints): more time than a poll's.
    patient = cfg.model_copy(update={"timeout": max(cfg.timeout, timedelta(seconds=60))})
    for group, group_windows in by_set.items():
        src = CloudWatch(patient, [wanted[k] for k in group], aws, metrics)
        await src.start()
        try:
            for w in group_windows:
                a, b = _clip(w, p.span, p.start, p.end)
                got = await src.fetch(a, b)
                for key in group:
                    cache.put(keys[key], got.get(key, []), a, min(b, settled), src.not_numbers.get(key, ()))
        finally:
            await src.close()


def series(queries: Sequence[Query], start: datetime, end: datetime, cache: HistoryCache) -> dict[str, list[Datapoint]]:
    return {q.key: cache.points(query_key(q), start, end) for q in queries}


def unreadable(queries: Sequence[Query], start: datetime, end: datetime, cache: HistoryCache) -> dict[str, dict[str, int]]:
    """Per rule that has any, how many of its buckets CloudWatch answered with no number, per reason."""
    out = {q.key: cache.unreadable(query_key(q), start, end) for q in queries}
    return {key: counts for key, counts in out.items() if counts}
