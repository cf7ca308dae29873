"""CloudWatch: every rule of one source in as few GetMetricData calls as possible.

At most 500 queries go into one call (the API's limit), so a poll costs
ceil(queries / 500) calls, plus one per NextToken page. tenacity owns the
retries (throttling, 5xx, connection errors); botocore's own are off so the two
do not multiply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

from botocore.utils import parse_timestamp
from pydantic import AfterValidator, Field, field_validator

from watchdog.support.aws import aws_client, is_retryable
from watchdog.config.base import Model
from watchdog.config.checks import BREACHING_MISSING, Problem
from watchdog.config.models import AwsSection, Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import Duration
from watchdog.support.metrics import Metrics
from watchdog.support.retrying import Sleep
from watchdog.core.rules import EPOCH, Datapoint, evaluation_range
from watchdog.sources.aws import AwsSource
from watchdog.sources.base import Query, SourceError
from watchdog.sources.kind import SourceDeps, SourceKind

__all__ = ["KIND", "CloudWatch", "CloudWatchReads", "CloudWatchSource", "MetricSpec", "Window", "fetch_window",
           "is_retryable", "pack", "rule_queries"]


# --- config: the source, and what a rule on it reads -------------------------------------------------

class CloudWatchSource(SourceConfig):
    type: Literal["cloudwatch"]
    region: str | None = None  # defaults to aws.region; AWS/Billing metrics live in us-east-1


_STAT = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|IQM|p\d{1,2}(\.\d+)?|(tm|wm|tc|ts)\d{1,2}(\.\d+)?|p100)$")


class MetricSpec(Model):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    dimensions: dict[str, str] = {}
    stat: str = "Average"
    period: Duration = timedelta(seconds=60)
    unit: str | None = None

    @field_validator("stat")
    @classmethod
    def _stat(cls, v: str) -> str:
        if not _STAT.match(v):
            raise ValueError(f"unknown statistic {v!r}: use Average, Sum, Minimum, Maximum, SampleCount or pNN")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: timedelta) -> timedelta:
        secs = v.total_seconds()
        if secs != int(secs) or not (int(secs) in (1, 5, 10, 30) or (secs >= 60 and secs % 60 == 0)):
            raise ValueError("CloudWatch periods are 1s, 5s, 10s, 30s or a multiple of 60s")
        return v


_METRIC_ID = re.compile(r"^[a-z][A-Za-z0-9_]{0,63}$")


def _metric_ids(v: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
    for name in v:
        if not _METRIC_ID.match(name):
            raise ValueError(f"metric name {name!r}: start with a lowercase letter; letters, digits and _ only")
    return v


class CloudWatchReads(Model):
    metric: MetricSpec | None = None  # one metric
    expression: str | None = None  # metric math over the named `metrics`, e.g. 100 * errors / requests
    metrics: Annotated[dict[str, MetricSpec], AfterValidator(_metric_ids)] | None = None
    min_samples: int | None = Field(None, ge=1)  # with `expression`: fewer `samples` in a period = missing
    samples: str | None = None  # the name in `metrics` that counts requests

    @property
    def period(self) -> timedelta:
        if self.metric is not None:
            return self.metric.period
        return next(iter((self.metrics or {}).values())).period  # config.checks: metric or metrics


def reads(q: Query) -> CloudWatchReads:
    return q.rule.reads(CloudWatchReads)


def _bucket(rule: Rule) -> timedelta:
    return rule.reads(CloudWatchReads).period


def _math(at: tuple[str | int, ...], rule: Rule, source: CloudWatchSource) -> list[Problem]:
    r = rule.reads(CloudWatchReads)
    out: list[Problem] = []
    if r.expression is not None and not r.metrics:
        out.append((at + ("metrics",), "required with expression: the named metrics it uses"))
    if r.metrics and r.expression is None:
        out.append((at + ("expression",), "required with metrics"))
    if r.metrics:
        periods = {m.period for m in r.metrics.values()}
        if len(periods) > 1:
            out.append((at + ("metrics",), "every metric of an expression needs the same period"))
        unused = [n for n in r.metrics if r.expression and not re.search(rf"\b{n}\b", r.expression)]
        if unused:
            out.append((at + ("expression",), f"does not use {', '.join(unused)} from metrics"))
    if (r.min_samples is None) != (r.samples is None):
        out.append((at + ("min_samples" if r.min_samples is None else "samples",),
                    "min_samples and samples go together (samples: the metric that counts requests)"))
    elif r.samples is not None and r.samples not in (r.metrics or {}):
        out.append((at + ("samples",), f"{r.samples!r} is not one of this rule's metrics"))
    if rule.missing_data == "breaching" and r.min_samples is not None and rule.max_age is None:
        out.append((at + ("missing_data",), BREACHING_MISSING))  # (with max_age, config.checks says it)
    return out


MAX_QUERIES_PER_CALL = 500
MAX_PAGES_PER_BATCH = 50


def fast_timestamp(value: str) -> datetime:
    """CloudWatch answers ISO 8601 times; botocore parses each through dateutil, which was half the daemon's
    CPU per poll at 1 000 rules (bench/README.md). Anything else goes to botocore's own parser."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return parse_timestamp(value)


class FormEncoder:
    """botocore keeps a query-protocol body as a dict and urlencodes it each time the body is read: once to
    sign it, once to send it. 500 queries make ~6 000 form fields, nearly all the same on every poll. This
    encodes the body once, before signing, exactly as botocore would (AWSRequestPreparer._prepare_body:
    urlencode with quote_plus), remembering the quoted text of the query fields, which only change with the
    config (each source has its own encoder, so the memory is bounded by its queries)."""

    def __init__(self) -> None:
        self._quoted: dict[str, str] = {}

    def __call__(self, request: Any, **_: Any) -> None:
        if not isinstance(request.data, dict):
            return
        known = self._quoted
        parts = []
        for key, value in request.data.items():
            text = value if isinstance(value, str) else str(value)
            if key.startswith("MetricDataQueries."):
                qk = known.get(key)
                if qk is None:
                    qk = known[key] = quote_plus(key)
                qv = known.get(text)
                if qv is None:
                    qv = known[text] = quote_plus(text)
            else:  # times and paging tokens change on every call
                qk, qv = quote_plus(key), quote_plus(text)
            parts.append(f"{qk}={qv}")
        request.data = "&".join(parts)


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
    def of(cls, queries: Sequence[Query]) -> Window:
        """Back to the first bucket of each rule's evaluation range, and no further for a plain metric rule (an
        older bucket is never judged, and each is another datapoint per query to fetch, parse and scan). A
        change rule also needs the bucket `over` before each judged one (whole periods, rounded up); an
        expression one period more, since CloudWatch computes RATE, DIFF and the like only inside the range
        asked for."""
        shapes = [(reads(q), q.rule) for q in queries]
        periods = [int(r.period.total_seconds()) for r, _ in shapes]
        lookback = max(_lookback(rule, r, p) for (r, rule), p in zip(shapes, periods))
        return cls(lookback, math.lcm(*periods))

    def at(self, now: datetime) -> tuple[datetime, datetime]:
        start_s = ((now - EPOCH).total_seconds() - self.lookback) // self.grid * self.grid
        end = now.replace(microsecond=0)
        if end <= EPOCH + timedelta(seconds=start_s):
            end = EPOCH + timedelta(seconds=start_s + 1)
        return EPOCH + timedelta(seconds=start_s), end


def fetch_window(queries: Sequence[Query], now: datetime) -> tuple[datetime, datetime]:
    """One window for all queries at `now` (Window)."""
    return Window.of(queries).at(now)


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
        # The queries only change with the config (reload builds a new source): build them once.
        qids = [f"q{i}" for i in range(len(self._queries))]
        read = [reads(q) for q in self._queries]
        self._window = Window.of(self._queries) if self._queries else None
        self._ids = {qid: q.key for qid, q in zip(qids, self._queries)}
        self._counts = {f"{qid}_{r.samples}": q.key for qid, q, r in zip(qids, self._queries, read) if r.samples}
        self._min_samples = {q.key: r.min_samples for q, r in zip(self._queries, read) if r.min_samples is not None}
        self._ids.update(self._counts)
        self._batches = pack([rule_queries(qid, q) for qid, q in zip(qids, self._queries)])
        # The last fetch's buckets answered with NaN (or an infinity) per query, and which: left out of its
        # answer as missing datapoints, and kept here for the replay to say how many.
        self.not_numbers: dict[str, list[tuple[datetime, str]]] = {}

    def _region(self) -> str:
        return self._region_override or self._aws.region

    async def _open(self) -> Any:
        # The queries come from a validated config and are built once; botocore re-checking 500 of them
        # against the API model on every call was a fifth of the daemon's CPU per poll.
        client = await aws_client(self._stack, self.service, self._region(), self._aws, self._cfg.timeout,
                                  validate=False, timestamps=fast_timestamp)
        # Runs before the signer (botocore calls the more specific event's handlers first).
        client.meta.events.register("request-created.cloudwatch.GetMetricData", FormEncoder())
        return client

    def _trying(self, kwargs: Mapping[str, Any]) -> None:
        super()._trying(kwargs)
        self._metrics.cloudwatch_requests.inc()
        self._metrics.cloudwatch_metrics_requested.inc(len(kwargs["MetricDataQueries"]))

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        if self._window is None:
            return {}
        return await self.fetch(*self._window.at(now))

    async def fetch(self, start: datetime, end: datetime) -> dict[str, list[Datapoint]]:
        """Every query's datapoints in [start, end): a poll's window, or a window of history (replay)."""
        ids, counts = self._ids, self._counts
        out: dict[str, list[Datapoint]] = {key: [] for key in ids.values()}
        samples: dict[str, list[Datapoint]] = {key: [] for key in counts.values()}
        self.not_numbers = {}
        for batch in self._batches:
            token: str | None = None
            for _page in range(MAX_PAGES_PER_BATCH):
                page = await self._page(batch, start, end, token)
                token = page.get("NextToken")
                for result in page.get("MetricDataResults", []):
                    key = ids.get(result.get("Id"))
                    if key is None:
                        continue
                    _check_complete(key, result.get("StatusCode"), bool(token))
                    into = samples if result["Id"] in counts else out
                    pairs = zip(result.get("Timestamps", []), values := result.get("Values", []))
                    if all(map(math.isfinite, values)):  # the hot path at a thousand rules: no Python loop
                        into[key].extend(pairs)
                        continue
                    for ts, value in pairs:
                        if math.isfinite(value):
                            into[key].append((ts, value))
                        elif into is out:  # NaN is no value: a missing datapoint, as Prometheus' NaN is
                            self.not_numbers.setdefault(key, []).append((ts, "NaN" if value != value else "infinite"))
                if not token:
                    break
            else:
                # Every page is billed; an endpoint that never stops paging must not bill forever.
                raise SourceError(f"GetMetricData: still paging after {MAX_PAGES_PER_BATCH} pages")
        for points in out.values():
            points.sort(key=itemgetter(0))  # by time, stable; already in order unless pages interleave
        for key, minimum in self._min_samples.items():
            out[key] = enough_samples(out[key], samples[key], minimum)
        return out

    async def _page(self, batch: Sequence[dict[str, Any]], start: datetime, end: datetime,
                    token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": list(batch),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            kwargs["NextToken"] = token
        return await self._call("GetMetricData", "get_metric_data", kwargs)


def _build(cfg: CloudWatchSource, queries: Sequence[Query], deps: SourceDeps) -> CloudWatch:
    return CloudWatch(cfg, queries, deps.aws, deps.metrics)


KIND = SourceKind(type="cloudwatch", config=CloudWatchSource, reads=CloudWatchReads, requires=("metric", "expression"),
                  build=_build, sampled=False, bucket=_bucket, history=True, check=_math)
