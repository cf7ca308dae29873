"""CloudWatch source (SPEC 3.2, issue: batching, NextToken, retries, a failed poll is
never a breach) against a real moto server, mostly through the recording proxy in
aws_proxy.py, which counts the queries of every GetMetricData call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from watchdog.lifecycle.app import App
from watchdog.config import Config
from watchdog.config.models import AwsSection, Rule
from watchdog.config.schema import rule_model
from watchdog.support.metrics import Metrics
from watchdog.core.rules import RuleSpec, RuleState, window
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch import CloudWatch, CloudWatchSource, fetch_window, is_retryable, pack, reads, rule_queries
from watchdog.runtime.wiring import board_for

from moto_process import moto_process
from aws_proxy import FORWARD, RecordingProxy, Reply, aws_error, running_proxy  # tests/ is on sys.path
from configs import cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from loopback import free_port
from polls import started
from sleeps import Sleeps
from timing import until

UTC = timezone.utc
MIN = timedelta(minutes=1)


@pytest.fixture
async def proxy(moto_url: str, aws_env: dict[str, str]) -> AsyncIterator[RecordingProxy]:
    async with running_proxy(moto_url) as p:
        yield p


def cw_cfg(attempts: int = 3, timeout: str = "5s", max_backoff: str = "50ms") -> CloudWatchSource:
    return CloudWatchSource.model_validate({
        "name": "cw", "type": "cloudwatch", "interval": "30s", "timeout": timeout,
        "retry": {"attempts": attempts, "initial_backoff": "10ms", "max_backoff": max_backoff},
    })


def rule(name: str, namespace: str, metric: str = "Latency", stat: str = "Average", n: int = 5, period: str = "60s",
         service: str | None = None) -> Rule:
    return rule_model().model_validate({
        "name": name, "category": "performance", "source": "cw", "threshold": "> 100", "evaluation_periods": n,
        "metric": {"namespace": namespace, "name": metric, "dimensions": {"Service": service or namespace}, "stat": stat,
                   "period": period},
    })


# moto (5.2) drops the namespace filter when a query has dimensions, so every test
# uses its own namespace AND its own dimension value (the namespace again).
def put(url: str, namespace: str, points: list[tuple[str, datetime, float]], service: str | None = None) -> None:
    cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1")
    for metric, ts, value in points:
        cw.put_metric_data(Namespace=namespace, MetricData=[{
            "MetricName": metric, "Dimensions": [{"Name": "Service", "Value": service or namespace}], "Value": value, "Timestamp": ts,
        }])


def put_each(url: str, namespace: str, points: list[tuple[str, str, datetime, float]]) -> None:
    """(metric, service, time, value): many series in few calls (a query per series, as rules that differ send)."""
    cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1")
    data = [{"MetricName": metric, "Dimensions": [{"Name": "Service", "Value": service}], "Value": value, "Timestamp": ts}
            for metric, service, ts, value in points]
    for k in range(0, len(data), 1000):
        cw.put_metric_data(Namespace=namespace, MetricData=data[k:k + 1000])


def counter(m: Metrics, name: str) -> float:
    return m.registry.get_sample_value(name) or 0.0


def source(url: str, queries: list[Query], metrics: Metrics | None = None, sleep: Sleeps | None = None, **cfg: str | int) -> CloudWatch:
    return CloudWatch(cw_cfg(**cfg), queries, AwsSection(region="us-east-1", endpoint_url=url), metrics or Metrics(), sleep=sleep)  # type: ignore[arg-type]


def minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


# --- pure helpers ----------------------------------------------------------------


def test_batches_and_window_alignment() -> None:
    assert [len(b) for b in pack([[i] for i in range(1200)])] == [500, 500, 200]
    assert [len(b) for b in pack([[i] for i in range(500)])] == [500]
    now = datetime(2024, 1, 1, 12, 7, 42, 500000, tzinfo=UTC)
    qs = [Query("t/a", rule("a", "X", n=5, period="60s")), Query("t/b", rule("b", "X", n=2, period="300s"))]
    start, end = fetch_window(qs, now)
    assert start.timestamp() % 300 == 0 and start.timestamp() % 60 == 0  # aligned to every period
    # b's evaluation range, 2 + 2 complete 5-minute buckets before the filling one (12:05), starts at 11:45;
    # nothing older is fetched
    assert start == datetime(2024, 1, 1, 11, 45, tzinfo=UTC)
    assert end == now.replace(microsecond=0)
    for q in qs:  # every rule's window lies inside
        spec = RuleSpec(q.rule.judged_by, reads(q).period, q.rule.evaluation_periods, q.rule.m)
        assert [b.start for b in window(spec, [], now)][0] >= start
    change = rule_model().model_validate({"name": "c", "category": "cost", "source": "cw", "evaluation_periods": 5,
                                  "change": {"over": "1h", "percent": "> 50"},
                                  "metric": {"namespace": "X", "name": "Cost", "stat": "Sum", "period": "60s"}})
    start, _ = fetch_window([Query("t/c", change)], now)
    assert start == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)  # 12:07 - the range (5 + 2 min) - 1 h
    # `over` of 90 s on 60 s buckets: the base of the range's first bucket (12:00) is align(11:58:30) = 11:58
    odd = rule_model().model_validate({**change.model_dump(mode="json", exclude_none=True), "change": {"over": "90s", "percent": "> 50"}})
    start, _ = fetch_window([Query("t/odd", odd)], now)
    assert start == datetime(2024, 1, 1, 11, 58, tzinfo=UTC)
    ratio = rule_model().model_validate({"name": "r", "category": "performance", "source": "cw", "evaluation_periods": 5,
                                 "threshold": "> 5", "expression": "100 * RATE(errors)",
                                 "metrics": {"errors": {"namespace": "X", "name": "Errors", "stat": "Sum", "period": "60s"}}})
    start, _ = fetch_window([Query("t/r", ratio)], now)
    assert start == datetime(2024, 1, 1, 11, 59, tzinfo=UTC)  # one period before the range (RATE, DIFF)


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetMetricData")


@pytest.mark.parametrize(("exc", "retry"), [
    (_client_error("Throttling", 400), True),
    (_client_error("InternalServiceError", 500), True),
    (_client_error("503", 503), True),
    (_client_error("TooManyRequests", 429), True),
    (_client_error("ValidationError", 400), False),
    (_client_error("AccessDenied", 403), False),
    (_client_error("InvalidClientTokenId", 403), False),
    (EndpointConnectionError(endpoint_url="http://x"), True),
    (ReadTimeoutError(endpoint_url="http://x"), True),
    (ResponseParserError("bad xml"), True),
    (ValueError("bug"), False),
])
def test_is_retryable(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc) is retry


# --- real round trip ---------------------------------------------------------------


async def test_round_trip_against_moto(moto_url: str, aws_env: dict[str, str]) -> None:
    ns = f"RoundTrip{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    b3, b2 = minute(now) - 3 * MIN, minute(now) - 2 * MIN
    put(moto_url, ns, [("Latency", b3 + timedelta(seconds=s), v) for s, v in ((5, 100.0), (40, 300.0))]
        + [("Latency", b2 + timedelta(seconds=s), v) for s, v in ((1, 10.0), (20, 20.0), (59, 60.0))])
    put(moto_url, ns, [("Latency", b2 + timedelta(seconds=5), 9999.0)], service=f"{ns}-other")  # another dimension
    qs = [Query(f"t/{st}", rule(st, ns, stat=st)) for st in ("Average", "Maximum", "Sum")]
    qs.append(Query("t/nodata", rule("nodata", ns, metric="Absent")))
    metrics = Metrics()
    src = source(moto_url, qs, metrics)
    async with started(src):
        got = await src.poll(now)
    norm = {k: [(ts.astimezone(UTC), v) for ts, v in pts] for k, pts in got.items()}
    assert norm == {
        "t/Average": [(b3, 200.0), (b2, 30.0)],
        "t/Maximum": [(b3, 300.0), (b2, 60.0)],
        "t/Sum": [(b3, 400.0), (b2, 90.0)],
        "t/nodata": [],
    }
    assert counter(metrics, "watchdog_cloudwatch_requests_total") == 1
    assert counter(metrics, "watchdog_cloudwatch_metrics_requested_total") == 4


# --- batching --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "sizes"), [(1, [1]), (500, [500]), (501, [500, 1]), (1200, [500, 500, 200])])
async def test_batching_is_ceil_n_over_500_calls(proxy: RecordingProxy, moto_url: str, n: int, sizes: list[int]) -> None:
    # Each rule its own series (identical queries are read once, issue 22): n queries for n rules.
    ns = f"Batch{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    at = minute(now) - MIN + timedelta(seconds=5)
    put_each(moto_url, ns, [("AB"[i % 2], f"{ns}-{i}", at, 1.0 if i % 2 == 0 else 2.0) for i in range(n)])
    qs = [Query(f"t/r{i}", rule(f"r{i}", ns, metric="AB"[i % 2], n=1, service=f"{ns}-{i}")) for i in range(n)]
    metrics = Metrics()
    src = source(proxy.url, qs, metrics)
    async with started(src):
        got = await src.poll(now)
        assert proxy.sizes == sizes
        assert max(proxy.sizes) <= 500
        ids = [form[k][0] for form in proxy.calls for k in form if k.endswith(".Id")]
        assert sorted(ids) == sorted(f"q{i}" for i in range(n))  # every query sent once
        # every key got its own metric's value back, across batches
        assert {k: [v for _, v in pts] for k, pts in got.items()} == {f"t/r{i}": [1.0 if i % 2 == 0 else 2.0] for i in range(n)}
        assert counter(metrics, "watchdog_cloudwatch_requests_total") == len(sizes)
        assert counter(metrics, "watchdog_cloudwatch_metrics_requested_total") == n
        if n == 501:  # the same cost on every poll (once is enough: moto is slow on big calls)
            await src.poll(now)
            assert proxy.sizes == sizes * 2
            assert counter(metrics, "watchdog_cloudwatch_requests_total") == 2 * len(sizes)
            assert counter(metrics, "watchdog_cloudwatch_metrics_requested_total") == 2 * n


# --- NextToken -------------------------------------------------------------------------


async def test_next_token_pages_are_followed_and_merged(proxy: RecordingProxy, moto_url: str) -> None:
    ns = f"Pages{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    buckets = [minute(now) - k * MIN for k in (4, 3, 2, 1)]
    put(moto_url, ns, [("Latency", b + timedelta(seconds=7), float(10 * (i + 1))) for i, b in enumerate(buckets)])
    qs = [Query("t/avg", rule("avg", ns)), Query("t/sum", rule("sum", ns, stat="Sum"))]
    metrics = Metrics()
    src = source(proxy.url, qs, metrics)
    async with started(src):
        whole = await src.poll(now)
        assert len(proxy.calls) == 1
        proxy.paginate = True
        paged = await src.poll(now)
    expected = [(b, float(10 * (i + 1))) for i, b in enumerate(buckets)]
    assert [(ts.astimezone(UTC), v) for ts, v in whole["t/avg"]] == expected
    assert paged == whole  # both pages merged, sorted by time
    first, second = proxy.calls[1], proxy.calls[2]
    assert "NextToken" not in first
    assert second["NextToken"] == ["page2-of-call2"]  # the token was sent back as given
    assert proxy.sizes == [2, 2, 2]
    assert counter(metrics, "watchdog_cloudwatch_requests_total") == 3


async def test_pages_within_several_batches(proxy: RecordingProxy, moto_url: str) -> None:
    ns = f"PagesBatch{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    put_each(moto_url, ns, [("Latency", f"{ns}-{i}", minute(now) - k * MIN + timedelta(seconds=3), float(k))
                            for i in range(501) for k in (1, 2)])
    proxy.paginate = True
    # moto answers 500 queries in a second or two, many more on a loaded CI machine: not what this test is about
    src = source(proxy.url, [Query(f"t/r{i}", rule(f"r{i}", ns, service=f"{ns}-{i}")) for i in range(501)],
                 timeout="60s")
    async with started(src):
        got = await src.poll(now)
    assert proxy.sizes == [500, 500, 1, 1]  # each batch: a first page, then its NextToken page
    assert all(len(pts) == 2 for pts in got.values()) and len(got) == 501


# --- retries and failures ------------------------------------------------------------------


# A source's first call goes through its client; the later ones are sent by DirectCalls (cloudwatch_request.py),
# which must fail, retry and raise exactly as the client does: each failure is tried on both ways.
WAYS = pytest.mark.parametrize("way", ["client", "direct"])


async def _poll_once(proxy: RecordingProxy, moto_url: str, sleeps: Sleeps, way: str = "client", **cfg: str | int) -> dict:
    ns = f"Retry{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    put(moto_url, ns, [("Latency", minute(now) - 2 * MIN + timedelta(seconds=1), 42.0)])
    src = source(proxy.url, [Query("t/lat", rule("lat", ns))], sleep=sleeps, **cfg)
    async with started(src):
        if way == "direct":  # a first poll answered in full, then the scripted one
            script, proxy.script = proxy.script, []
            await src.poll(now)
            assert src._direct is not None and src._direct.learned
            proxy.script = script
            proxy.calls.clear()
        got = await src.poll(now)
    return {k: [v for _, v in pts] for k, pts in got.items()}


HTML_500 = Reply(500, "<html><body><h1>500 Internal Server Error</h1></body></html>", "text/html")
NGINX_502 = Reply(502, "<!DOCTYPE html>\n<html><head><title>502</title></head><body><center>nginx</center><hr><br></body></html>", "text/html")


@pytest.mark.parametrize("bad", [aws_error("Throttling"), aws_error("ServiceUnavailable", 503), Reply(503), HTML_500, NGINX_502],
                         ids=["throttling", "503-xml", "503-empty", "html-500", "html-502-unparsable"])
@WAYS
async def test_transient_errors_are_retried_then_succeed(proxy: RecordingProxy, moto_url: str, bad: Reply, way: str) -> None:
    proxy.script = [bad, bad, FORWARD]
    sleeps = Sleeps()
    assert await _poll_once(proxy, moto_url, sleeps, way, attempts=3) == {"t/lat": [42.0]}
    assert len(proxy.calls) == 3
    assert len(sleeps.delays) == 2 and all(0 <= d <= 0.05 for d in sleeps.delays)


@pytest.mark.parametrize("bad", [aws_error("Throttling"), Reply(503), HTML_500, NGINX_502],
                         ids=["throttling", "503-empty", "html-500", "html-502-unparsable"])
@WAYS
async def test_transient_errors_exhaust_exactly_attempts(proxy: RecordingProxy, moto_url: str, bad: Reply, way: str) -> None:
    proxy.script = [bad]
    sleeps = Sleeps()
    with pytest.raises(SourceError, match="GetMetricData"):
        await _poll_once(proxy, moto_url, sleeps, way, attempts=4)
    # botocore's own retries are off: exactly `attempts` requests, not attempts x botocore's
    assert len(proxy.calls) == 4
    assert len(sleeps.delays) == 3 and all(0 <= d <= 0.05 for d in sleeps.delays)


@WAYS
async def test_backoff_stays_bounded_by_max_backoff(proxy: RecordingProxy, moto_url: str, way: str) -> None:
    proxy.script = [aws_error("Throttling")]
    sleeps = Sleeps()
    with pytest.raises(SourceError, match="Throttling"):
        await _poll_once(proxy, moto_url, sleeps, way, attempts=12, max_backoff="30ms")
    assert len(proxy.calls) == 12 and len(sleeps.delays) == 11
    # The one backoff of every retry (retrying.backoff): doubling from 10 ms to the 30 ms cap, equal jitter.
    for failures, d in enumerate(sleeps.delays, start=1):
        base = min(0.03, 0.01 * 2 ** (failures - 1))
        assert base / 2 <= d <= base, (failures, d)


@pytest.mark.parametrize(("code", "status"), [("ValidationError", 400), ("AccessDenied", 403), ("InvalidClientTokenId", 403)])
@WAYS
async def test_non_retryable_errors_fail_after_one_call(proxy: RecordingProxy, moto_url: str, code: str, status: int, way: str) -> None:
    proxy.script = [aws_error(code, status)]
    sleeps = Sleeps()
    with pytest.raises(SourceError, match=code):
        await _poll_once(proxy, moto_url, sleeps, way, attempts=5)
    assert len(proxy.calls) == 1 and sleeps.delays == []


@WAYS
async def test_read_timeout_is_retried(proxy: RecordingProxy, moto_url: str, way: str) -> None:
    proxy.script = [Reply(delay=0.5), FORWARD]
    sleeps = Sleeps()
    assert await _poll_once(proxy, moto_url, sleeps, way, attempts=2, timeout="200ms") == {"t/lat": [42.0]}
    assert len(proxy.calls) == 2 and len(sleeps.delays) == 1


async def test_unreachable_endpoint_is_a_source_error(aws_env: dict[str, str]) -> None:
    sleeps = Sleeps()
    metrics = Metrics()
    src = source(f"http://127.0.0.1:{free_port()}", [Query("t/lat", rule("lat", "X"))], metrics, sleeps, attempts=3)
    async with started(src):
        with pytest.raises(SourceError, match="GetMetricData"):
            await src.poll(datetime.now(UTC))
    assert len(sleeps.delays) == 2  # connection errors are retried too
    assert counter(metrics, "watchdog_cloudwatch_requests_total") == 3


@pytest.mark.parametrize("status", ["Forbidden", "InternalError"])
async def test_a_query_aws_could_not_answer_fails_the_poll(proxy: RecordingProxy, moto_url: str, status: str) -> None:
    # An unanswered query is not "no data": with missing_data: breaching that would be a breach.
    proxy.rewrite = lambda body: body.replace(b"<StatusCode>Complete</StatusCode>", f"<StatusCode>{status}</StatusCode>".encode())
    with pytest.raises(SourceError, match=f"t/lat: {status}"):
        await _poll_once(proxy, moto_url, Sleeps())


def _partial(body: bytes) -> bytes:
    return body.replace(b"<StatusCode>Complete</StatusCode>", b"<StatusCode>PartialData</StatusCode>")


async def test_partial_data_without_a_next_token_fails_the_poll(proxy: RecordingProxy, moto_url: str) -> None:
    # PartialData says "the rest comes with the NextToken"; with no token the rest never comes.
    proxy.rewrite = _partial
    with pytest.raises(SourceError, match="t/lat: PartialData without a NextToken"):
        await _poll_once(proxy, moto_url, Sleeps())
    assert len(proxy.calls) == 1


async def test_partial_data_followed_by_its_next_token_page_is_complete(proxy: RecordingProxy, moto_url: str) -> None:
    ns = f"Partial{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    put(moto_url, ns, [("Latency", minute(now) - k * MIN + timedelta(seconds=3), float(k)) for k in (1, 2)])
    proxy.paginate = True
    # As CloudWatch answers: PartialData on the page that carries a NextToken, Complete on the last.
    proxy.rewrite = lambda body: _partial(body) if b"NextToken" in body else body
    src = source(proxy.url, [Query("t/lat", rule("lat", ns))])
    async with started(src):
        got = await src.poll(now)
    assert len(proxy.calls) == 2 and "NextToken" in proxy.calls[1]
    assert sorted(v for _, v in got["t/lat"]) == [1.0, 2.0]


def breaching_app(state: Any, aws: str, ns: str, admin: str) -> dict[str, Any]:
    latency = metric_rule(source="cw", namespace=ns, dimensions={"Service": ns}, evaluation_periods=3,
                          missing_data="breaching")
    return hybrid_routing(state_path=state, aws_endpoint=aws, sources=[cloudwatch("cw", "30s", retry={"attempts": 1})],
                          target="hybrid", rules=[latency], levels=[level(1, "flags", http(f"{admin}/flags"))])


async def test_a_breaching_rule_does_not_alarm_on_partial_data(proxy: RecordingProxy, admin_api, tmp_path) -> None:
    """The issue's case on the real App: an answer with no values marked PartialData rolled back in 8 s.
    Now the poll fails, the source is down, the rule is insufficient_data and nothing runs; the same empty
    answer marked Complete does alarm (missing_data: breaching), so the rule could have."""
    ns = f"Partial{uuid.uuid4().hex[:8]}"  # nothing published: the answer has no values
    cfg = parsed(breaching_app(tmp_path / "w.db", proxy.url, ns, admin_api.url))
    app = await App.create(cfg, serve_http=False, schedule=False)
    await app.start()
    try:
        proxy.rewrite = _partial
        await app.runtime.poll("cw", app.runtime.clock.now())
        doc = app.runtime.status()
        assert app.runtime.board is not None and app.runtime.board.sources["cw"].up is False
        assert "PartialData" in (app.runtime.board.sources["cw"].last_error or "")
        assert app.runtime.metrics.registry.get_sample_value("watchdog_source_up", {"source": "cw"}) == 0.0
        assert [r["state"] for r in doc["rules"]] == ["insufficient_data"]
        assert app.runtime.executors["hybrid"].machine.incident is None and admin_api.calls == []

        proxy.rewrite = None
        await app.runtime.poll("cw", app.runtime.clock.now())
        assert app.runtime.executors["hybrid"].machine.incident is not None
        await until(lambda: admin_api.count("/flags"), 4, "level 1's request")
        assert admin_api.count("/flags") == 1
    finally:
        await app.stop()


# --- a failed poll is never a breach ----------------------------------------------------------

def board_config(ns: str) -> Config:
    """Both rules breach on missing data: a failed poll must still not make them alarm."""
    latency = metric_rule(source="cw", namespace=ns, dimensions={"Service": ns}, evaluation_periods=3,
                          missing_data="breaching")
    gdpr = {"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
            "threshold": "== false", "missing_data": "breaching", "level": 2}
    compliance = {"name": "compliance", "type": "http_json", "url": "http://127.0.0.1:1/status", "interval": "60s"}
    retry = {"attempts": 2, "initial_backoff": "10ms", "max_backoff": "20ms"}
    levels = [level(1, "flags", http("http://127.0.0.1:1/flags", json={"enabled": False}), deadline="2m"),
              level(2, "routing", http("http://127.0.0.1:1/routing"), deadline="5m")]
    return parsed(hybrid_routing(aws_endpoint=None, sources=[cloudwatch("cw", "30s", retry=retry), compliance],
                                 target="hybrid", rules=[latency, gdpr], levels=levels))


@pytest.mark.parametrize("failure", ["throttled", "unreachable"])
async def test_failed_poll_makes_rules_insufficient_never_alarm(proxy: RecordingProxy, failure: str) -> None:
    cfg = board_config(f"Board{uuid.uuid4().hex[:8]}")
    board = board_for(cfg)
    url = proxy.url if failure == "throttled" else f"http://127.0.0.1:{free_port()}"
    src = CloudWatch(cfg.sources[0], board.queries("cw"), AwsSection(endpoint_url=url), Metrics(), sleep=Sleeps())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    async with started(src):
        if failure == "throttled":
            # first a good poll with no data: missing_data=breaching does alarm on that
            board.source_ok("cw", dict(await src.poll(now)), now)
            assert board.evaluate("hybrid", now)["latency"].evaluation.state == RuleState.ALARM
            proxy.script = [aws_error("Throttling")]
        with pytest.raises(SourceError) as err:
            await src.poll(now)
    board.source_failed("cw", str(err.value), now)
    board.source_ok("compliance", {"hybrid/gdpr": [(now, True)]}, now)
    views = board.evaluate("hybrid", now)
    assert views["latency"].evaluation.state == RuleState.INSUFFICIENT_DATA
    assert "source cw down" in views["latency"].evaluation.reason
    assert views["gdpr"].evaluation.state == RuleState.OK  # the other source is unaffected
    health = board.sources["cw"]
    assert health.up is False and health.last_error and health.failing_since == now
    # the compliance source failing too: its breaching rule is insufficient, not alarm
    board.source_failed("compliance", "HTTP 503", now)
    assert board.evaluate("hybrid", now)["gdpr"].evaluation.state == RuleState.INSUFFICIENT_DATA
    # recovery: a good poll clears the note and evaluation resumes
    later = now + MIN
    board.source_ok("cw", {"hybrid/latency": [(minute(later) - MIN, 10.0)]}, later)
    assert board.evaluate("hybrid", later)["latency"].evaluation.state == RuleState.OK  # 2 missing breach, 3 needed
    assert board.sources["cw"].up is True and board.sources["cw"].last_error is None


class _EndlessPages:
    """A stand-in client (moto never paginates) whose every answer carries a NextToken."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_metric_data(self, **kwargs: object) -> dict:
        self.calls += 1
        return {"MetricDataResults": [], "NextToken": f"t{self.calls}"}


async def test_endless_paging_is_cut_off_and_fails_the_poll() -> None:
    from watchdog.sources.cloudwatch import MAX_PAGES_PER_BATCH

    client = _EndlessPages()
    src = CloudWatch(cw_cfg(), [Query("t/r", rule("r", "NS"))], AwsSection(), Metrics(), client=client)
    with pytest.raises(SourceError, match="still paging"):
        await src.poll(datetime.now(UTC))
    assert client.calls == MAX_PAGES_PER_BATCH


def test_the_fast_timestamp_parser_agrees_with_botocore() -> None:
    from botocore.utils import parse_timestamp

    from watchdog.sources.cloudwatch import fast_timestamp

    for text in ("2026-11-29T00:46:00Z", "2026-11-29T00:46:00.123Z", "2026-11-29T02:46:00+02:00", "1700000000"):
        assert fast_timestamp(text) == parse_timestamp(text), text
    assert fast_timestamp("2026-11-29T00:46:00Z").tzinfo is not None


async def test_requests_are_signed_right_with_the_queries_encoded_once(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """moto checking signatures (INITIAL_NO_AUTH_ACTION_COUNT: the first 3 calls set up a user) accepts the
    daemon's two 500+ query calls signed with that user's keys, sent by the client and then directly
    (DirectCalls), and refuses them under a wrong secret either way."""
    async with moto_process(INITIAL_NO_AUTH_ACTION_COUNT="3") as url:
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
        iam.create_user(UserName="watchdog")
        # moto checks the action under the endpoint's prefix (monitoring:), AWS under cloudwatch:.
        iam.put_user_policy(UserName="watchdog", PolicyName="read", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",'
            ' "Action": ["cloudwatch:GetMetricData", "monitoring:GetMetricData"]}]}'))
        key = iam.create_access_key(UserName="watchdog")["AccessKey"]
        qs = [Query(f"t/r{i}", rule(f"r{i}", "Signed é", metric=f"M {i}&x")) for i in range(600)]

        async def poll(secret: str) -> list[object]:
            """Two polls: the first's calls through the client, the second's sent by DirectCalls."""
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
            src = source(url, qs, attempts=1)
            await src.start()
            out: list[object] = []
            try:
                for _ in range(2):
                    try:
                        out.append(await src.poll(datetime.now(UTC)))
                    except SourceError as exc:
                        out.append(exc)
                assert src._direct is not None and src._direct.learned
                return out
            finally:
                await src.close()

        for got in await poll(key["SecretAccessKey"]):
            assert isinstance(got, dict) and len(got) == 600, got
        for refused in await poll(key["SecretAccessKey"] + "x"):
            assert isinstance(refused, SourceError) and "SignatureDoesNotMatch" in str(refused), refused
