"""prometheus source: PromQL instant queries.

First against a local aiohttp server posing as Prometheus' HTTP API (every answer
shape and failure), then against a REAL Prometheus scraping a local exporter, and
finally the real daemon rolling back on a breach Prometheus reports.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import story
from binaries import binary_or_skip
from configs import hybrid_routing, write
from loopback import free_port, serving_get
from sleeps import Sleeps
from tests.daemon import Daemon, polled, status
from timing import until
from watchdog.config.models import Rule
from watchdog.config.schema import rule_model
from watchdog.sources.base import Query, SourceError
from watchdog.sources.prometheus import Prometheus, PrometheusSource

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
TOKEN = "Bearer prom-secret-9f8e7d"


# --- a fake Prometheus API --------------------------------------------------------------------


@dataclass
class Reply:
    body: Any  # a dict is sent as JSON, a str as is
    status: int = 200
    delay: float = 0.0
    hold: asyncio.Event | None = None  # set: the answer waits for it (order proved without timing)


def vector(*values: str | float) -> Reply:
    result = [{"metric": {"__name__": "m", "pod": f"p{i}"}, "value": [T0.timestamp(), str(v)]}
              for i, v in enumerate(values)]
    return Reply({"status": "success", "data": {"resultType": "vector", "result": result}})


def scalar(value: str | float) -> Reply:
    return Reply({"status": "success", "data": {"resultType": "scalar", "result": [T0.timestamp(), str(value)]}})


def error(status: int, kind: str, text: str) -> Reply:
    return Reply({"status": "error", "errorType": kind, "error": text}, status)


@dataclass
class Call:
    path: str
    query: str
    time: str
    headers: dict[str, str]


@dataclass
class FakeProm:
    url: str = ""
    # promql -> replies in order (the last one repeats)
    script: dict[str, list[Reply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # the queries answered, in order

    def count(self, promql: str) -> int:
        return sum(1 for c in self.calls if c.query == promql)

    async def handle(self, request: web.Request) -> web.Response:
        q = request.query.get("query", "")
        self.calls.append(Call(request.path, q, request.query.get("time", ""), dict(request.headers)))
        replies = self.script.get(q) or [error(400, "bad_data", f"unknown test query {q!r}")]
        reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.hold is not None:
            await reply.hold.wait()
        self.answered.append(q)
        text = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        return web.Response(status=reply.status, text=text, content_type="application/json")


@pytest.fixture
async def prom() -> AsyncIterator[FakeProm]:
    p = FakeProm()
    async with serving_get("/{tail:.*}", p.handle) as p.url:
        yield p


def rule(name: str, promql: str, reduce: str = "single", n: int = 1) -> Rule:
    return rule_model().model_validate({
        "name": name, "category": "performance", "source": "prom", "promql": promql, "reduce": reduce,
        "threshold": "> 0.1", "evaluation_periods": n,
    })


def make(url: str, session: aiohttp.ClientSession, rules: list[Rule], sleeps: Sleeps | None = None,
         attempts: int = 3, timeout: str = "2s", headers: dict[str, str] | None = None) -> Prometheus:
    cfg = PrometheusSource.model_validate({
        "name": "prom", "type": "prometheus", "url": url, "interval": "1s", "timeout": timeout,
        "headers": headers or {}, "retry": {"attempts": attempts, "initial_backoff": "10ms", "max_backoff": "40ms"},
    })
    return Prometheus(cfg, [Query(f"t/{r.name}", r) for r in rules], session, sleep=sleeps or Sleeps())


# --- answers --------------------------------------------------------------------------------


async def test_one_series_is_a_reading_stamped_with_the_poll_time(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    promql = 'sum(rate(errors_total{job="router"}[5m])) / sum(rate(requests_total{job="router"}[5m]))'
    prom.script[promql] = [vector(0.02)]
    src = make(prom.url, session, [rule("errors", promql, n=2)], headers={"Authorization": TOKEN})
    await src.start()
    assert src.sampled is True and src.name == "prom" and src.interval == timedelta(seconds=1)
    assert await src.poll(T0) == {"t/errors": [(T0, 0.02)]}
    call = prom.calls[0]
    assert call.path == "/api/v1/query"
    assert call.query == promql  # sent intact, URL-encoded on the way
    assert float(call.time) == T0.timestamp()  # an instant query at the poll's time
    assert call.headers["Authorization"] == TOKEN
    prom.script[promql] = [vector(0.25)]
    times = [T0 + timedelta(seconds=k) for k in range(1, 9)]
    for t in times:
        got = await src.poll(t)
    assert got == {"t/errors": [(t, 0.25) for t in times[-6:]]}  # bounded: the evaluation range (N + 2) + 2
    assert [float(c.time) for c in prom.calls[1:]] == [t.timestamp() for t in times]
    await src.close()
    assert not session.closed  # the session is the app's


async def test_url_with_a_path_prefix(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["up"] = [vector(1)]
    src = make(prom.url + "/prometheus/", session, [rule("up", "up")])
    assert await src.poll(T0) == {"t/up": [(T0, 1.0)]}
    assert prom.calls[0].path == "/prometheus/api/v1/query"


@pytest.mark.parametrize(("reduce", "value"), [("max", 0.7), ("min", 0.1)])
async def test_several_series_reduced(prom: FakeProm, session: aiohttp.ClientSession, reduce: str, value: float) -> None:
    prom.script["errors_ratio"] = [vector(0.3, 0.7, 0.1, 0.5)]
    src = make(prom.url, session, [rule("errors", "errors_ratio", reduce)])
    assert await src.poll(T0) == {"t/errors": [(T0, value)]}


async def test_several_series_with_reduce_single_is_a_source_error(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["errors_ratio"] = [vector(0.3, 0.7, 0.1)]
    src = make(prom.url, session, [rule("errors", "errors_ratio")])
    with pytest.raises(SourceError, match=r"errors: 3 series; use reduce: max\|min or narrow the query"):
        await src.poll(T0)
    assert prom.count("errors_ratio") == 1  # not retried: asking again gives the same answer


@pytest.mark.parametrize("reduce", ["single", "max", "min"])
async def test_one_series_whatever_the_reduce(prom: FakeProm, session: aiohttp.ClientSession, reduce: str) -> None:
    prom.script["q"] = [vector(-3)]
    src = make(prom.url, session, [rule("r", "q", reduce)])
    assert await src.poll(T0) == {"t/r": [(T0, -3.0)]}


async def test_scalar(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["scalar(errors_ratio)"] = [scalar(0.125)]
    src = make(prom.url, session, [rule("errors", "scalar(errors_ratio)")])
    assert await src.poll(T0) == {"t/errors": [(T0, 0.125)]}


@pytest.mark.parametrize("reduce", ["single", "max", "min"])
async def test_empty_vector_is_no_reading(prom: FakeProm, session: aiohttp.ClientSession, reduce: str) -> None:
    prom.script["errors_ratio"] = [vector(0.02), vector(), vector(0.04)]
    src = make(prom.url, session, [rule("errors", "errors_ratio", reduce, n=3)])
    t1, t2, t3 = T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    assert await src.poll(t1) == {"t/errors": [(t1, 0.02)]}
    assert await src.poll(t2) == {"t/errors": [(t1, 0.02)]}  # nothing appended: a gap, not an error
    assert await src.poll(t3) == {"t/errors": [(t1, 0.02), (t3, 0.04)]}


async def test_empty_vector_on_the_first_poll(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["absent_metric"] = [vector()]
    src = make(prom.url, session, [rule("r", "absent_metric")])
    assert await src.poll(T0) == {"t/r": []}


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf"])
async def test_nan_and_inf_are_no_reading(prom: FakeProm, session: aiohttp.ClientSession, bad: str) -> None:
    prom.script["ratio"] = [vector(bad)]
    prom.script["scalar(ratio)"] = [scalar(bad)]
    prom.script["by_pod"] = [vector(0.2, bad, 0.05)]
    src = make(prom.url, session, [rule("single", "ratio"), rule("scalar", "scalar(ratio)"),
                                   rule("max", "by_pod", "max"), rule("min", "by_pod", "min")])
    assert await src.poll(T0) == {"t/single": [], "t/scalar": [], "t/max": [(T0, 0.2)], "t/min": [(T0, 0.05)]}


async def test_unsupported_result_types(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["m[5m]"] = [Reply({"status": "success", "data": {"resultType": "matrix", "result": []}})]
    src = make(prom.url, session, [rule("r", "m[5m]")])
    with pytest.raises(SourceError, match="resultType 'matrix' is not supported"):
        await src.poll(T0)


@pytest.mark.parametrize("body", [
    "<html>not json</html>",
    "[1, 2]",
    {"status": "success"},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
    {"status": "success", "data": {"resultType": "scalar", "result": None}},
])
async def test_malformed_answers_are_source_errors(prom: FakeProm, session: aiohttp.ClientSession, body: Any) -> None:
    prom.script["q"] = [Reply(body)]
    src = make(prom.url, session, [rule("r", "q")])
    with pytest.raises(SourceError):
        await src.poll(T0)


# --- errors -----------------------------------------------------------------------------------


async def test_bad_promql_is_a_source_error_with_prometheus_text(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    text = 'invalid parameter "query": 1:14: parse error: unexpected right parenthesis \')\''
    prom.script["sum(rate(x[5m])))"] = [error(400, "bad_data", text)]
    src = make(prom.url, session, [rule("errors", "sum(rate(x[5m])))")])
    with pytest.raises(SourceError) as exc:
        await src.poll(T0)
    assert "HTTP 400" in str(exc.value) and "bad_data" in str(exc.value) and "unexpected right parenthesis" in str(exc.value)
    assert str(exc.value).startswith("rule errors:")
    assert prom.count("sum(rate(x[5m])))") == 1  # a 4xx is final


async def test_long_error_text_is_shortened(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["q"] = [error(422, "execution", "query processing would load too many samples " + "x" * 5000)]
    src = make(prom.url, session, [rule("r", "q")])
    with pytest.raises(SourceError, match="execution: query processing would load too many samples") as exc:
        await src.poll(T0)
    assert len(str(exc.value)) < 300


async def test_status_error_with_200_is_a_source_error(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["q"] = [error(200, "internal", "something odd")]
    src = make(prom.url, session, [rule("r", "q")])
    with pytest.raises(SourceError, match="internal: something odd"):
        await src.poll(T0)


async def test_5xx_then_success_is_retried(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["q"] = [error(503, "unavailable", "TSDB not ready"), Reply("bad gateway", 502), vector(0.5)]
    sleeps = Sleeps()
    src = make(prom.url, session, [rule("r", "q")], sleeps, attempts=3)
    assert await src.poll(T0) == {"t/r": [(T0, 0.5)]}
    assert prom.count("q") == 3 and len(sleeps.delays) == 2 and all(0 <= d <= 0.04 for d in sleeps.delays)


@pytest.mark.parametrize(("status", "calls"), [(400, 1), (401, 1), (403, 1), (404, 1), (422, 1),
                                               (429, 4), (500, 4), (503, 4)])
async def test_non_2xx_is_a_source_error(prom: FakeProm, session: aiohttp.ClientSession, status: int, calls: int) -> None:
    prom.script["q"] = [Reply({"status": "success", "data": {"resultType": "scalar", "result": [1, "9"]}}, status)]
    src = make(prom.url, session, [rule("r", "q")], attempts=4, headers={"Authorization": TOKEN})
    with pytest.raises(SourceError, match=f"HTTP {status}") as exc:
        await src.poll(T0)
    assert prom.count("q") == calls  # 5xx and 429 retried per schedule, other 4xx not
    assert "prom-secret" not in str(exc.value)


async def test_timeout_is_retried_then_a_source_error(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    """Each try is cut at its 100 ms: both tries arrived and neither was answered when the poll failed."""
    never = asyncio.Event()
    prom.script["q"] = [Reply(vector(1).body, hold=never)]
    src = make(prom.url, session, [rule("r", "q")], attempts=2, timeout="100ms")
    try:
        with pytest.raises(SourceError, match=r"no answer within 0.1s"):
            async with asyncio.timeout(30):  # a bound for the test only
                await src.poll(T0)
        assert prom.count("q") == 2 and prom.answered == []
    finally:
        never.set()


async def test_unreachable_server_is_a_source_error(session: aiohttp.ClientSession) -> None:
    port = free_port()
    src = make(f"http://127.0.0.1:{port}", session, [rule("r", "q")], attempts=2,
               headers={"Authorization": TOKEN})
    with pytest.raises(SourceError) as exc:
        await src.poll(T0)
    assert "prom-secret" not in str(exc.value) and "Authorization" not in str(exc.value)


# --- several rules: concurrent, all or nothing ----------------------------------------------------


async def test_rules_are_queried_concurrently(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    """No query is answered until all three have arrived: a poll that asked one at a time would never send
    the second (its first try would wait out the 30 s timeout)."""
    all_arrived = asyncio.Event()
    for q in ("a", "b", "c"):
        prom.script[q] = [Reply(vector(1).body, hold=all_arrived)]
    src = make(prom.url, session, [rule(q, q) for q in ("a", "b", "c")], timeout="30s")
    poll = asyncio.ensure_future(src.poll(T0))
    try:
        await until(lambda: sorted(c.query for c in prom.calls) == ["a", "b", "c"], timeout=20,
                    what="the three queries in flight at once")
        assert prom.answered == []
    finally:
        all_arrived.set()
    got = await asyncio.wait_for(poll, 20)
    assert got == {"t/a": [(T0, 1.0)], "t/b": [(T0, 1.0)], "t/c": [(T0, 1.0)]}


async def test_one_failing_rule_fails_the_whole_poll(prom: FakeProm, session: aiohttp.ClientSession) -> None:
    prom.script["good"] = [vector(0.5)]
    held = asyncio.Event()
    prom.script["slow"] = [Reply(vector(0.6).body, hold=held)]
    prom.script["bad"] = [error(400, "bad_data", "parse error"), vector(0.7)]
    src = make(prom.url, session, [rule("good", "good"), rule("slow", "slow"), rule("bad", "bad")], timeout="30s")
    try:
        with pytest.raises(SourceError, match="rule bad: HTTP 400 bad_data: parse error"):
            async with asyncio.timeout(20):  # a bound for the test only, short of the 30 s timeout
                await src.poll(T0)
        assert "slow" not in prom.answered and prom.count("slow") == 1  # asked, and not waited for
    finally:
        held.set()
    t1 = T0 + timedelta(seconds=1)
    prom.script["slow"] = [vector(0.6)]
    # Nothing from the failed poll was kept, although "good" had answered.
    assert await src.poll(t1) == {"t/good": [(t1, 0.5)], "t/slow": [(t1, 0.6)], "t/bad": [(t1, 0.7)]}


# --- a real Prometheus ---------------------------------------------------------------------------


@dataclass
class Exporter:
    """A /metrics endpoint Prometheus scrapes; `value` is what it reports."""

    url: str = ""
    value: float = 0.02
    scrapes: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        text = ("# HELP hybrid_errors_ratio Share of failed hybrid requests.\n"
                "# TYPE hybrid_errors_ratio gauge\n"
                f"hybrid_errors_ratio {self.value}\n")
        return web.Response(body=text.encode(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    e = Exporter()
    async with serving_get("/metrics", e.handle) as url:
        e.url = url.removeprefix("http://")  # host:port, as a scrape target
        yield e


PROMETHEUS_YML = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: hybrid
    static_configs:
      - targets: ["{target}"]
"""


@pytest.fixture
async def prometheus(tmp_path: Path, exporter: Exporter) -> AsyncIterator[str]:
    """A real Prometheus on loopback scraping `exporter` every second; yields its URL."""
    binary = binary_or_skip("prometheus")
    conf = tmp_path / "prometheus.yml"
    conf.write_text(PROMETHEUS_YML.format(target=exporter.url))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as s:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"prometheus exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"prometheus not ready within 30s:\n{log_path.read_text()[-3000:]}")
                try:
                    async with s.get(f"{url}/-/ready", timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def poll_until(src: Prometheus, key: str, want: Any, timeout: float = 30.0) -> list[Any]:
    """Polls every 200ms until the newest reading of `key` is `want`; the readings seen."""
    deadline = time.monotonic() + timeout
    seen: list[Any] = []
    while time.monotonic() < deadline:
        points = (await src.poll(datetime.now(UTC)))[key]
        if points:
            seen.append(points[-1][1])
            if points[-1][1] == want:
                return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"{key}: no reading {want!r} within {timeout}s; saw {seen[-10:]}")


async def test_real_prometheus_reading_follows_the_exporter(prometheus: str, exporter: Exporter,
                                                            session: aiohttp.ClientSession) -> None:
    src = make(prometheus, session, [rule("errors", "hybrid_errors_ratio", n=3)],
               headers={"Authorization": TOKEN})
    await poll_until(src, "t/errors", 0.02)
    assert exporter.scrapes >= 1
    exporter.value = 0.25
    seen = await poll_until(src, "t/errors", 0.25)
    assert set(seen) <= {0.02, 0.25}


async def test_real_prometheus_answer_shapes(prometheus: str, exporter: Exporter,
                                             session: aiohttp.ClientSession) -> None:
    exporter.value = 0.5
    src = make(prometheus, session, [rule("single", "hybrid_errors_ratio")])
    await poll_until(src, "t/single", 0.5)
    now = datetime.now(UTC)
    # Two series (the exporter's ratio and its `up`): single refuses, max/min pick.
    both = '{job="hybrid", __name__=~"hybrid_errors_ratio|up"}'
    assert (await make(prometheus, session, [rule("max", both, "max")]).poll(now)) == {"t/max": [(now, 1.0)]}
    assert (await make(prometheus, session, [rule("min", both, "min")]).poll(now)) == {"t/min": [(now, 0.5)]}
    with pytest.raises(SourceError, match="2 series; use reduce: max|min"):
        await make(prometheus, session, [rule("single", both)]).poll(now)
    # A scalar, an empty vector, a NaN.
    src = make(prometheus, session, [rule("scalar", "scalar(hybrid_errors_ratio) * 2"), rule("none", "no_such_metric"),
                                     rule("nan", "hybrid_errors_ratio / 0 * 0")])
    assert await src.poll(now) == {"t/scalar": [(now, 1.0)], "t/none": [], "t/nan": []}
    # Bad PromQL: Prometheus' own words, not retried.
    with pytest.raises(SourceError, match=r"rule bad: HTTP 400 bad_data: .*parse error") as exc:
        await make(prometheus, session, [rule("bad", "sum(hybrid_errors_ratio))")]).poll(now)
    assert len(str(exc.value)) < 300


# --- the real daemon --------------------------------------------------------------------------


def daemon_config(tmp_path: Path, prometheus: str, admin: str) -> dict[str, Any]:
    prom = {"name": "prom", "type": "prometheus", "url": prometheus, "interval": "1s", "timeout": "2s",
            "retry": story.QUICK_RETRY}
    errors = {"name": "errors", "category": "performance", "source": "prom", "promql": "hybrid_errors_ratio",
              "threshold": "> 0.1", "evaluation_periods": 2, "datapoints_to_alarm": 2, "level": 1}
    return hybrid_routing(state_path=tmp_path / "watchdog.db", shutdown_grace="5s", aws_endpoint=None,
                          sources=[prom], rules=[errors], verify_window="3s", max_rollbacks_per_hour=10,
                          levels=story.levels(admin, redeploy=False))


async def rule_status(port: int) -> dict[str, Any]:
    return next(r for r in (await status(port))["rules"] if r["rule"] == "errors")


@pytest.mark.slow
async def test_daemon_rolls_back_on_a_breach_prometheus_reports(tmp_path: Path, prometheus: str, exporter: Exporter,
                                                                admin_api: Any) -> None:
    flag = story.FLAGS
    config = write(tmp_path, daemon_config(tmp_path, prometheus, admin_api.url))
    exporter.value = 0.02

    async def heal() -> None:  # turning the feature flag off cures the error ratio
        while admin_api.count(flag) == 0:
            await asyncio.sleep(0.05)
        exporter.value = 0.02

    healer: asyncio.Task[None] | None = None
    d = await Daemon(config).start()
    try:
        port = await d.port()
        # Healthy: the daemon reads 0.02 through Prometheus and, three polls on, has done nothing.
        async def ok_at_0_02() -> bool:
            st = await rule_status(port)
            return st["state"] == "ok" and st["value"] == 0.02

        await until(ok_at_0_02, 20, "the rule ok at 0.02")
        await polled(port, 3)
        assert await ok_at_0_02()
        assert admin_api.calls == [] and not d.events("incident_opened")

        healer = asyncio.create_task(heal())
        exporter.value = 0.25
        opened = await d.wait_for("incident_opened", timeout=30)
        assert opened["target"] == "hybrid-routing"
        await d.wait_for("level_succeeded", timeout=15, level=1)
        assert admin_api.count(flag, "PUT") == 1
        assert [c[2] for c in admin_api.calls if c[1] == flag] == [{"enabled": False}]
        await d.wait_for("mitigated", timeout=30)
        assert admin_api.count(flag) == 1 and admin_api.count("/admin/routing") == 0

        d.signal(signal.SIGTERM)
        assert await d.wait(20) == 0
        assert d.events("stopped")
    finally:
        if healer:
            healer.cancel()
        await d.stop()
