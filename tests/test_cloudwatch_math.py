"""Error rate as a ratio: CloudWatch metric math in the same GetMetricData batch, and min_samples.

moto answers Expression queries with no data, so the proxy in front of it
(aws_proxy.RecordingProxy, emulate_math) records the request as sent and
computes each expression from the metrics moto does return, as CloudWatch would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from aws_proxy import RecordingProxy, running_proxy
from test_cloudwatch import cw_cfg, minute, put
from watchdog.config.models import AwsSection, Rule
from watchdog.config.schema import rule_model
from watchdog.support.metrics import Metrics
from watchdog.sources.base import Query
from watchdog.sources.cloudwatch import CloudWatch, pack, rule_queries

UTC = timezone.utc
MIN = timedelta(minutes=1)


@pytest.fixture
async def proxy(moto_url: str, aws_env: dict[str, str]) -> AsyncIterator[RecordingProxy]:
    async with running_proxy(moto_url) as p:
        p.emulate_math = True
        yield p


def ratio_rule(ns: str, name: str = "error_rate", min_samples: int | None = None, n: int = 3) -> Rule:
    doc = {
        "name": name, "category": "performance", "source": "cw", "threshold": "> 10", "evaluation_periods": n,
        "expression": "100 * errors / requests",
        "metrics": {
            "errors": {"namespace": ns, "name": "Errors", "dimensions": {"Service": ns}, "stat": "Sum"},
            "requests": {"namespace": ns, "name": "Requests", "dimensions": {"Service": ns}, "stat": "Sum"},
        },
    }
    if min_samples:
        doc |= {"min_samples": min_samples, "samples": "requests"}
    return rule_model().model_validate(doc)


def form_queries(form: dict[str, list[str]]) -> list[dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, values in form.items():
        if key.startswith("MetricDataQueries.member."):
            n, _, rest = key.removeprefix("MetricDataQueries.member.").partition(".")
            out.setdefault(n, {})[rest] = values[0]
    return [out[n] for n in sorted(out, key=int)]


def test_an_expression_rule_is_its_metrics_and_the_rewritten_expression() -> None:
    q = Query("web/error_rate", ratio_rule("NS", min_samples=20))
    built = rule_queries("q7", q)
    assert [(b["Id"], b["ReturnData"]) for b in built] == [("q7_errors", False), ("q7_requests", True), ("q7", True)]
    assert built[2]["Expression"] == "100 * q7_errors / q7_requests" and built[2]["Period"] == 60
    assert built[0]["MetricStat"]["Metric"]["MetricName"] == "Errors" and built[0]["MetricStat"]["Stat"] == "Sum"
    # without min_samples no metric's own data is fetched back
    assert [b["ReturnData"] for b in rule_queries("q0", Query("k", ratio_rule("NS")))] == [False, False, True]


def test_packing_never_splits_an_expression_from_its_metrics() -> None:
    groups = [rule_queries(f"q{i}", Query(f"t/r{i}", ratio_rule("NS", f"r{i}"))) for i in range(250)]
    calls = pack(groups)
    assert [len(c) for c in calls] == [498, 252]  # 166 whole groups of 3 fit in 500
    for call in calls:
        ids = {q["Id"] for q in call}
        for q in call:
            if "Expression" in q:
                assert set(re.findall(r"q\d+_\w+", q["Expression"])) <= ids


async def test_the_ratio_is_fetched_in_one_call_and_few_requests_count_as_missing(proxy: RecordingProxy,
                                                                                  moto_url: str) -> None:
    ns = f"RATIO{datetime.now().timestamp():.0f}"
    now = datetime.now(UTC)
    b1, b2, b3 = (minute(now) - k * MIN for k in (3, 2, 1))
    put(moto_url, ns, [("Errors", b1 + timedelta(seconds=5), 15.0), ("Requests", b1 + timedelta(seconds=5), 100.0),
                       ("Errors", b2 + timedelta(seconds=5), 1.0), ("Requests", b2 + timedelta(seconds=5), 5.0),
                       ("Errors", b3 + timedelta(seconds=5), 2.0), ("Requests", b3 + timedelta(seconds=5), 200.0)])
    latency = rule_model().model_validate({
        "name": "latency", "category": "performance", "source": "cw", "threshold": "> 100",
        "metric": {"namespace": ns, "name": "Latency", "dimensions": {"Service": ns}, "stat": "Average"}})
    queries = [Query("web/error_rate", ratio_rule(ns, min_samples=20)), Query("web/latency", latency)]
    metrics = Metrics()
    src = CloudWatch(cw_cfg(), queries, AwsSection(region="us-east-1", endpoint_url=proxy.url), metrics)
    await src.start()
    try:
        data = await src.poll(now)
    finally:
        await src.close()
    assert proxy.sizes == [4]  # one call: errors, requests, the expression, and the latency metric
    [sent] = [form_queries(f) for f in proxy.calls]
    assert [(q["Id"], q.get("Expression"), q["ReturnData"]) for q in sent] == [
        ("q0_errors", None, "false"), ("q0_requests", None, "true"), ("q0", "100 * q0_errors / q0_requests", "true"),
        ("q1", None, "true")]
    values = [round(v, 6) for _, v in data["web/error_rate"]]
    assert values == [15.0, 1.0]  # the 20% over 5 requests is noise: dropped (5 < min_samples 20)
    assert metrics.registry.get_sample_value("watchdog_cloudwatch_metrics_requested_total") == 4.0
