"""Issue 22's acceptance: the projected-cost gauge matches what a simulated hour of polls really requests, within
one poll.

The runtime `run` builds, on an injected clock, polled by the test at each tick its scheduler would hand it
(tests/test_aligned_reads.py's helpers), against moto in server mode behind a recording proxy that counts what
each request asks for. The gauge says dollars per 30 days; an hour is 1/720 of that. Expectations by hand.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from alarm_endpoints import counting
from aws_proxy import RecordingProxy
from configs import hybrid_routing, parsed
from test_aligned_reads import MIN, SETTLE, config, five_minute_mark, proxy, requested, running  # noqa: F401
from test_cost import alarm_rules, target
from watchdog.sources.cost import project

HOURS_PER_MONTH = 720  # 30 days
GAUGE = "watchdog_cloudwatch_projected_monthly_cost_dollars"
PER_METRIC = 0.01 / 1000
PER_DESCRIBE = 0.01 / 1000


async def test_the_gauge_matches_an_hour_of_getmetricdata_within_one_poll(proxy: RecordingProxy, tmp_path: Path) -> None:
    """test_aligned_reads' config: 200 distinct queries (100 at 60 s, 100 at 300 s) asked by 250 rules. By hand:
    per 30 days 100 x 43 200 + 100 x 8 640 = 5 184 000 metrics, $51.84 on the gauge, $0.072 an hour. An hour of
    polls from B + 2m (a tick of both grids), one a minute: 60 x 100 + 12 x 100 = 7 200 metrics ($0.072), in 60
    calls (200 at most a poll: one call each). One poll is at most 200 metrics, $0.002."""
    ns = f"Cost{uuid.uuid4().hex[:8]}"
    start = five_minute_mark() + SETTLE
    cfg = config(tmp_path, proxy.url, ns)
    async with running(cfg, start) as (app, clock):
        monthly = app.runtime.metrics.registry.get_sample_value(GAUGE)
        assert monthly == pytest.approx(51.84)
        for k in range(60):
            clock.set(start + k * MIN)
            await app.runtime.poll("cw", start + k * MIN)
        assert app.runtime.board.sources["cw"].up, app.runtime.board.sources["cw"].last_error
    metrics, calls = sum(requested(proxy)), len(proxy.calls)
    assert (metrics, calls) == (7200, 60)
    one_poll = max(requested(proxy)) * PER_METRIC
    assert abs(monthly / HOURS_PER_MONTH - metrics * PER_METRIC) <= one_poll
    [usage] = project(cfg)  # the same projection, in requests: 43 200 calls a month, 60 an hour
    assert abs(usage.requests["GetMetricData"] / HOURS_PER_MONTH - calls) <= 1


async def test_the_gauge_matches_an_hour_of_describe_alarms_within_one_poll(moto_url: str, aws_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    """A calm polled cloudwatch_alarms source, `interval: 60s`: 101 rules each naming an alarm, one a family
    (`fam-`, 3 alarms). Per poll: the whole read (minute 0, 10, ...: 2 requests for 101 names, 1 for the family)
    or ALARM alone (1). Per 30 days: 4 320 x 3 + 38 880 = 51 840 requests, $0.5184 on the gauge; an hour of polls
    at minutes 0..59: 6 x 3 + 54 = 72 requests ($0.00072), as the proxy counts them. One poll is at most 3."""
    region = "eu-south-2"
    cw = boto3.client("cloudwatch", region_name=region, endpoint_url=moto_url)
    names = [f"svc-{k:03d}" for k in range(101)] + ["fam-a", "fam-b", "fam-c"]
    for name in names:
        cw.put_metric_alarm(AlarmName=name, Namespace="Shop", MetricName="Errors", Statistic="Average", Period=60,
                            EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold")
    async with counting(moto_url) as proxy:
        source = {"name": "alarms", "type": "cloudwatch_alarms", "interval": "60s", "timeout": "5s",
                  "retry": {"attempts": 1}}
        cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=proxy.url, aws={"region": region},
                                    sources=[source], targets=[target(alarm_rules(names[:101], ["fam-"]))]))
        start = five_minute_mark()
        async with running(cfg, start) as (app, clock):
            monthly = app.runtime.metrics.registry.get_sample_value(GAUGE)
            assert monthly == pytest.approx(0.5184)
            per_poll = []
            for k in range(60):
                before = len(proxy.requests)
                clock.set(start + k * MIN)
                await app.runtime.poll("alarms", start + k * MIN)
                per_poll.append(len(proxy.requests) - before)
            assert app.runtime.board.sources["alarms"].up, app.runtime.board.sources["alarms"].last_error
        assert proxy.count("DescribeAlarms") == len(proxy.requests) == 72
        assert per_poll == [3 if k % 10 == 0 else 1 for k in range(60)]
        assert abs(monthly / HOURS_PER_MONTH - 72 * PER_DESCRIBE) <= max(per_poll) * PER_DESCRIBE


async def test_pushed_alarms_reconcile_an_hour_as_the_gauge_projects(moto_url: str, aws_env: dict[str, str],
                                                                     tmp_path: Path) -> None:
    """Pushed (`queue_url`, `interval: 5m`), the same 101 alarms and family: each scheduled poll is the whole read,
    3 requests. Per 30 days 8 640 x 3 = 25 920 DescribeAlarms ($0.2592) and 129 600 ReceiveMessage, one per 20 s
    long poll ($0.05184): $0.31104 on the gauge. An hour of polls at minutes 0, 5, ..., 55: 12 x 3 = 36
    DescribeAlarms, the projection's 25 920 / 720. The long polls run on the real clock, not the injected one,
    and moto's SQS is no measure of AWS's waiting: they are not counted here."""
    region = "eu-central-2"
    cw = boto3.client("cloudwatch", region_name=region, endpoint_url=moto_url)
    sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_url)
    names = [f"svc-{k:03d}" for k in range(101)] + ["fam-a", "fam-b", "fam-c"]
    for name in names:
        cw.put_metric_alarm(AlarmName=name, Namespace="Shop", MetricName="Errors", Statistic="Average", Period=60,
                            EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold")
    queue = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    async with counting(moto_url) as proxy:
        source = {"name": "alarms", "type": "cloudwatch_alarms", "interval": "5m", "timeout": "5s",
                  "retry": {"attempts": 1}, "queue_url": queue}
        cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=proxy.url, aws={"region": region},
                                    sources=[source], targets=[target(alarm_rules(names[:101], ["fam-"]))]))
        start = five_minute_mark()
        async with running(cfg, start) as (app, clock):
            assert app.runtime.metrics.registry.get_sample_value(GAUGE) == pytest.approx(0.2592 + 0.05184)
            for k in range(12):
                clock.set(start + 5 * k * MIN)
                await app.runtime.poll("alarms", start + 5 * k * MIN)
            assert app.runtime.board.sources["alarms"].up, app.runtime.board.sources["alarms"].last_error
        [usage] = project(cfg)
        assert proxy.count("DescribeAlarms") == 36 == usage.requests["DescribeAlarms"] / HOURS_PER_MONTH
        # The source has stopped, but the proxy would wait out its last long poll (20 s): a message ends it.
        sqs.send_message(QueueUrl=queue, MessageBody="the end of the test")
