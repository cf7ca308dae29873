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
from typing import Any

from watchdog.config.sources import CostExplorerSource
from watchdog.rules import Datapoint
from watchdog.sources.aws import AwsSource
from watchdog.sources.base import Query, SourceError

REGION = "us-east-1"  # Cost Explorer's only endpoint
MAX_PAGES = 5  # DAILY without GroupBy fits one page; a token is followed, never forever


def cost_request(q: Query, now: datetime, days: int) -> dict[str, Any]:
    spec = q.rule.cost
    if spec is None:  # config.checks refuses this; kept so a bad query never reaches AWS
        raise SourceError(f"{q.key}: a cost_explorer rule needs cost")
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
