"""AWS Cost Explorer: each rule's daily cost over the last `days` days.

One GetCostAndUsage call per rule and poll (AWS bills every call, which is why
config checks hold the interval at 1h or more). The answer covers `days` full
days plus today, which is still filling: the source is not `sampled`, so the
evaluation leaves the current day out. Cost Explorer has one endpoint, in
us-east-1, whatever `aws.region` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta, timezone
from typing import Any, Literal

from pydantic import Field, field_validator

from watchdog.config.base import Model
from watchdog.config.models import Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.config.types import CostInterval, format_duration
from watchdog.core.cost import Usage, per_month, said_delay
from watchdog.core.rules import Datapoint
from watchdog.core.schedule import Pace
from watchdog.sources.aws import AwsSource
from watchdog.sources.base import Query, SourceError
from watchdog.sources.kind import SourceDeps, SourceKind, Validating, Verdict

REGION = "us-east-1"  # Cost Explorer's only endpoint
MAX_PAGES = 5  # DAILY without GroupBy fits one page; a token is followed, never forever
MIN_INTERVAL = timedelta(hours=1)  # every call is billed


class CostExplorerSource(SourceConfig):
    """Daily cost from AWS Cost Explorer. Every call is billed, so the interval is at least 1h."""

    type: Literal["cost_explorer"]
    interval: CostInterval = timedelta(hours=6)  # at least 1h, at most 7d
    days: int = Field(14, ge=2, le=90)  # how many days back each call asks for

    @field_validator("interval")
    @classmethod
    def _billed(cls, v: timedelta) -> timedelta:
        if v < MIN_INTERVAL:
            raise ValueError(f"at least 1h: every Cost Explorer call is billed (got {format_duration(v)})")
        return v


class CostSpec(Model):
    """Daily cost from Cost Explorer."""

    metric: Literal["UnblendedCost", "AmortizedCost", "BlendedCost", "NetUnblendedCost"] = "UnblendedCost"
    service: str | None = None  # e.g. "Amazon Bedrock"; None: the whole account


class CostExplorerReads(Model):
    cost: CostSpec  # daily cost


def cost_request(q: Query, now: datetime, days: int) -> dict[str, Any]:
    spec = q.rule.reads(CostExplorerReads).cost
    today = now.astimezone(timezone.utc).date()
    req: dict[str, Any] = {
        "TimePeriod": {"Start": (today - timedelta(days=days)).isoformat(),
                       "End": (today + timedelta(days=1)).isoformat()},  # End is exclusive
        "Granularity": "DAILY",
        "Metrics": [spec.metric],
    }
    if spec.service:
        req["Filter"] = {"Dimensions": {"Key": "SERVICE", "Values": [spec.service]}}
    return req


def daily_points(q: Query, metric: str, results: Sequence[Mapping[str, Any]]) -> list[Datapoint]:
    out: list[Datapoint] = []
    for r in results:
        try:
            day = datetime.combine(datetime.strptime(r["TimePeriod"]["Start"], "%Y-%m-%d").date(), time(),
                                   tzinfo=timezone.utc)
            out.append((day, float(r["Total"][metric]["Amount"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"GetCostAndUsage: {q.key}: no {metric} amount in the answer ({exc!r})") from None
    out.sort(key=lambda p: p[0])
    return out


class CostExplorer(AwsSource):
    sampled = False
    service = "ce"
    _cfg: CostExplorerSource

    def _region(self) -> str:
        return REGION

    async def poll(self, now: datetime) -> Mapping[str, Sequence[Datapoint]]:
        return {q.key: await self.fetch(q, now) for q in self._queries}

    async def fetch(self, q: Query, now: datetime) -> list[Datapoint]:
        kwargs = cost_request(q, now, self._cfg.days)
        results: list[Mapping[str, Any]] = []
        for _page in range(MAX_PAGES):
            page = await self._call("GetCostAndUsage", "get_cost_and_usage", kwargs)
            results.extend(page.get("ResultsByTime", []))
            token = page.get("NextPageToken")
            if not token:
                return daily_points(q, kwargs["Metrics"][0], results)
            kwargs["NextPageToken"] = token
        raise SourceError(f"GetCostAndUsage: {q.key}: still paging after {MAX_PAGES} pages")


def _build(cfg: CostExplorerSource, queries: Sequence[Query], deps: SourceDeps) -> CostExplorer:
    return CostExplorer(cfg, queries, deps.aws)


def _daily(rule: Rule) -> timedelta:
    return timedelta(days=1)  # one reading per UTC day, whatever the poll interval


def _billed(cfg: CostExplorerSource, validating: Validating) -> Verdict | None:
    if validating.include_cost:
        return None
    return True, "skipped: every Cost Explorer call is billed (--include-cost to check)"


def cost_explorer_usage(cfg: CostExplorerSource, queries: Sequence[Query]) -> Usage:
    """One GetCostAndUsage per rule and poll, each billed."""
    return Usage(cfg.name, cfg.type, {"GetCostAndUsage": per_month(Pace(cfg.interval)) * len(queries)},
                 delay_said=f"a day's cost, read every {said_delay(cfg.interval)}")


KIND = SourceKind(type="cost_explorer", config=CostExplorerSource, reads=CostExplorerReads, requires=("cost",),
                  build=_build, sampled=False, bucket=_daily, validation=_billed,
                  cost=cost_explorer_usage)
