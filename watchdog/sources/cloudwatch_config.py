"""What a CloudWatch source and a rule on it configure (docs/configuration.md "cloudwatch"), the checks their
types cannot say, and how often each rule's query is read (watchdog/sources/periodic.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from watchdog.config.base import Model
from watchdog.config.checks import BREACHING_MISSING, Problem
from watchdog.config.models import Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import Duration, ReadEvery, Settle, said
from watchdog.core.signals import Query
from watchdog.sources.periodic import Cadence

# CloudWatch's typical ingestion delay: a 1-minute AWS metric's bucket is readable about 2 minutes after it
# closes (docs/deciding.md "When it polls").
SETTLE = timedelta(minutes=2)


class CloudWatchSource(SourceConfig):
    type: Literal["cloudwatch"]
    region: str | None = None  # defaults to aws.region; AWS/Billing metrics live in us-east-1
    settle: Settle = SETTLE  # how long after a bucket closes it is read
    read_every: ReadEvery | None = None  # its rules' default (a rule's own wins)


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
    read_every: ReadEvery | None = None  # read this seldom (whole periods), the missed buckets in one request

    @property
    def period(self) -> timedelta:
        if self.metric is not None:
            return self.metric.period
        return next(iter((self.metrics or {}).values())).period  # config.checks: metric or metrics


def reads(q: Query) -> CloudWatchReads:
    return q.rule.reads(CloudWatchReads)


def bucket(rule: Rule) -> timedelta:
    return rule.reads(CloudWatchReads).period


def cadence(source: CloudWatchSource, q: Query) -> Cadence:
    """The rule's period, and how often it is read: its own `read_every`, else its source's (a source's
    shorter than the rule's period reads it every period)."""
    r = reads(q)
    every = r.read_every or source.read_every or r.period
    return Cadence(r.period, max(every, r.period))


def check(at: tuple[str | int, ...], rule: Rule, source: CloudWatchSource) -> list[Problem]:
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
    if r.metric is not None or r.metrics:
        out += _read_every(at, r, source)
    return out


def _read_every(at: tuple[str | int, ...], r: CloudWatchReads, source: CloudWatchSource) -> list[Problem]:
    """A read fetches whole buckets: `read_every` is a whole number of the rule's periods."""
    period = r.period
    if r.read_every is not None:
        if r.read_every < period or r.read_every % period:
            return [(at + ("read_every",), f"{said(r.read_every)} is not a whole number of this rule's "
                                            f"{said(period)} periods")]
    elif source.read_every is not None and source.read_every > period and source.read_every % period:
        return [(at + ("metric" if r.metric is not None else "metrics",),
                 f"its {said(period)} period does not divide source {source.name}'s read_every "
                 f"{said(source.read_every)}: give the rule a read_every of its own")]
    return []
