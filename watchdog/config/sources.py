"""Where signals come from: one model per source `type` (README "sources:").

Every source polls at its own `interval`. `blind_after`: after failing for that
long, the targets whose rules read it are reported blind and a human is paged
(default: three intervals, at least 5 minutes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Union

from pydantic import Field, SecretStr

from watchdog.config.base import Model, Name, RetrySchedule
from watchdog.config.types import (
    AlertTtl,
    BlindAfter,
    CostInterval,
    HttpUrl,
    Interval,
    Timeout,
)


class _Source(Model):
    name: Name
    interval: Interval = timedelta(seconds=60)
    blind_after: BlindAfter | None = None
    timeout: Timeout = timedelta(seconds=10)
    retry: RetrySchedule = RetrySchedule()

    @property
    def blind_limit(self) -> timedelta:
        return self.blind_after or max(3 * self.interval, timedelta(minutes=5))


class CloudWatchSource(_Source):
    type: Literal["cloudwatch"]
    region: str | None = None  # defaults to aws.region; AWS/Billing metrics live in us-east-1


class HttpJsonSource(_Source):
    type: Literal["http_json"]
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    timeout: Timeout = timedelta(seconds=5)
    retry: RetrySchedule = RetrySchedule(attempts=2)


class PrometheusSource(_Source):
    """PromQL instant queries against a Prometheus server's HTTP API (`/api/v1/query`)."""

    type: Literal["prometheus"]
    url: HttpUrl
    headers: dict[str, SecretStr] = {}
    interval: Interval = timedelta(seconds=30)
    timeout: Timeout = timedelta(seconds=5)
    retry: RetrySchedule = RetrySchedule(attempts=2)


class SecurityHubSource(_Source):
    """Active AWS Security Hub findings, counted per rule by severity."""

    type: Literal["securityhub"]
    region: str | None = None
    interval: Interval = timedelta(minutes=5)


class CostExplorerSource(_Source):
    """Daily cost from AWS Cost Explorer. Every call is billed, so the interval is at least 1h."""

    type: Literal["cost_explorer"]
    interval: CostInterval = timedelta(hours=6)  # at least 1h (config.checks), at most 7d
    days: int = Field(14, ge=2, le=90)  # how many days back each call asks for


class AlertmanagerSource(_Source):
    """Alerts pushed by Alertmanager to POST /api/v1/alertmanager; `interval` is how often they are judged."""

    type: Literal["alertmanager"]
    interval: Interval = timedelta(seconds=15)
    # A firing alert not re-sent for this long is no evidence (Alertmanager repeats firing alerts every
    # repeat_interval, 4h by default: keep this above yours).
    alert_ttl: AlertTtl = timedelta(hours=4, minutes=30)


Source = Annotated[
    Union[CloudWatchSource, HttpJsonSource, PrometheusSource, SecurityHubSource, CostExplorerSource,
          AlertmanagerSource],
    Field(discriminator="type"),
]
