"""What the watchdog's requests to AWS cost: the prices, a source's projected usage per 30 days, and the
worst-case detection delay shown beside it (docs/cost.md). Pure: counts in, dollars out.

The figures are list prices. AWS gives every account the first 1 000 000 CloudWatch API requests and the first
1 000 000 SQS requests of a month free, shared with whatever else the account does: the watchdog cannot know
how much of that allowance is left, so its gauge and its lines say the list price, and docs/cost.md says what
the free tier takes off. GetMetricData has no free tier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from watchdog.core.schedule import EPOCH, Pace, count, detection_delay

__all__ = ["ALARM_HIGH_RESOLUTION", "ALARM_STANDARD", "DOLLARS_PER_1000_METRICS", "FREE_REQUESTS", "MONTH", "PRICES", "Usage",
           "alarm_delay", "dollars", "fixed_delay", "per_month", "said_delay", "total"]

MONTH = timedelta(days=30)  # what "a month" is here, as SPEC 3.4 says ("per 30 days")

# List prices, US East (N. Virginia), as AWS publishes them (https://aws.amazon.com/cloudwatch/pricing/,
# "API": GetMetricData per 1 000 metrics requested, other APIs per 1 000 requests; "Alarms": per alarm metric
# a month; https://aws.amazon.com/sqs/pricing/, standard queue, per million requests;
# https://aws.amazon.com/aws-cost-management/aws-cost-explorer/pricing/, per API request).
DOLLARS_PER_1000_METRICS = 0.01  # GetMetricData, per 1 000 metrics requested, however many datapoints return
PRICES: Mapping[str, float] = {  # dollars per request, by API
    "DescribeAlarms": 0.01 / 1000,  # CloudWatch "API requests"; the first 1 000 000 a month free
    "ReceiveMessage": 0.40 / 1_000_000,  # SQS; the first 1 000 000 requests a month free
    "DeleteMessage": 0.40 / 1_000_000,
    "GetQueueAttributes": 0.40 / 1_000_000,
    "GetCostAndUsage": 0.01,  # Cost Explorer: every call billed
    "GetMetricData": 0.0,  # billed per metric requested (above), not per call
}
# The free tier: a month's first requests of each pool cost nothing, for the whole account (shared with whatever
# else it does; the watchdog cannot know how much is left, so only docs/cost.md counts it).
FREE_REQUESTS = {"CloudWatch API": 1_000_000, "SQS": 1_000_000}
POOL = {"DescribeAlarms": "CloudWatch API", "ReceiveMessage": "SQS", "DeleteMessage": "SQS", "GetQueueAttributes": "SQS"}
ALARM_STANDARD = 0.10  # a standard-resolution alarm, per metric a month
ALARM_HIGH_RESOLUTION = 0.30  # a high-resolution alarm (10 s or 30 s period), per metric a month


@dataclass(frozen=True)
class Usage:
    """One source's projected requests per 30 days, as its schedule makes them, and its worst-case detection
    delay. `requests`: by API; `metrics`: GetMetricData metrics requested (the billed unit); `delay`: None when
    it depends on something the config does not say (an alarm's own evaluation), with `delay_said` saying it;
    `unprojected`: requests made on events, not on a schedule (named, never counted)."""

    source: str
    kind: str
    requests: Mapping[str, float]
    metrics: float = 0.0
    delay: timedelta | None = None
    delay_said: str = ""
    unprojected: tuple[str, ...] = field(default=())

    @property
    def dollars(self) -> float:
        return (self.metrics / 1000 * DOLLARS_PER_1000_METRICS
                + sum(n * PRICES.get(api, 0.0) for api, n in self.requests.items()))

    @property
    def after_free_tier(self) -> float:
        """The dollars when nothing else in the account uses the free requests (one price per pool)."""
        used: dict[str, float] = {}
        for api, n in self.requests.items():
            if api in POOL:
                used[POOL[api]] = used.get(POOL[api], 0.0) + n
        price = {POOL[api]: PRICES[api] for api in POOL}
        return self.dollars - sum(min(n, FREE_REQUESTS[pool]) * price[pool] for pool, n in used.items())

    def describe(self) -> str:
        """One line: requests and metrics per 30 days, dollars, worst-case detection delay."""
        apis = ", ".join(f"{_count(n)} {api}" for api, n in self.requests.items() if n)
        metrics = f", {_count(self.metrics)} metrics requested" if self.metrics else ""
        extra = "".join(f"; {what}" for what in self.unprojected)
        return (f"cost of source {self.source} ({self.kind}): {apis or 'no request'} per 30 days{metrics}: "
                f"{dollars(self.dollars)} a month at list price{extra}; worst-case detection delay "
                f"{self.delay_said or said_delay(self.delay)}")


def total(usages: Iterable[Usage]) -> str:
    """The closing line: every source's dollars together."""
    us = list(usages)
    return (f"projected cost: {dollars(sum(u.dollars for u in us))} per 30 days at list price, "
            f"{len(us)} billed source{'s' if len(us) != 1 else ''} (docs/cost.md: prices and free tier)")


def per_month(pace: Pace) -> int:
    """How many polls `pace` makes in 30 days (the first included): the schedule's own count of its ticks."""
    start = EPOCH + pace.settle  # a tick of every grid: the first poll falls on the grid, as a period's does
    return count(pace, start, start + MONTH - timedelta(microseconds=1))


def fixed_delay(period: timedelta, m: int, ingestion: timedelta, interval: timedelta) -> timedelta:
    """Polling every `interval` whatever the period (before issue 22): the M-th breaching bucket closes M
    periods after the first began, is readable `ingestion` later, and is read at the next poll, up to
    `interval` after that."""
    return detection_delay(period, m, ingestion) + interval


def alarm_delay(alarm_own: timedelta, interval: timedelta | None) -> timedelta:
    """Reading an alarm's state: what CloudWatch takes to decide it (`alarm_own`), then up to `interval` until
    the next DescribeAlarms (polled), or the event's way through EventBridge and the queue's long poll
    (pushed, `interval` None: a waiting ReceiveMessage returns as the message lands, seconds, counted 0)."""
    return alarm_own + (interval if interval is not None else timedelta(0))


def said_delay(delay: timedelta | None) -> str:
    """5m, 1m30s, 6h2m: whole units from the largest down, none that is zero."""
    if delay is None:
        return "-"
    secs = int(delay.total_seconds())
    parts = [(secs // 3600, "h"), (secs % 3600 // 60, "m"), (secs % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def dollars(amount: float) -> str:
    """$1.25, $0.01; below a cent as many digits as it takes ($0.00003): never a misleading $0.00."""
    if amount == 0:
        return "$0"
    return f"${amount:.2f}" if amount >= 0.01 else f"${amount:.8f}".rstrip("0")


def _count(n: float) -> str:
    """A count per 30 days, whole, with thin separators: 43 200."""
    return f"{round(n):,}".replace(",", " ")
