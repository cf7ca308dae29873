"""/healthz means "the loop is alive and deciding", the same whatever a source does (issue 12, defect 11).

Before: it was 200 for minutes while CloudWatch answered 500 (the target blind), but 503 for 7 of 18
samples during a 30 s stall, so systemd would restart the watchdog for a slow CloudWatch and not for a dead
one. Now every poll ends by its deadline (a hanging one is cut off and counted failed) and health only asks
whether polls keep coming round; blindness is reported by /status, the metrics and a page.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from aws_proxy import Reply, aws_error, running_proxy
from tests.daemon import Daemon
from test_daemon import Publisher, render
from watchdog.config.base import RetrySchedule
from watchdog.health import PollPace, judge, poll_deadline

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def test_a_polls_deadline_is_every_try_and_backoff_of_every_call() -> None:
    retry = RetrySchedule(attempts=3, initial_backoff=timedelta(milliseconds=500), max_backoff=2 * S)
    assert poll_deadline(10 * S, retry, calls=1) == 34 * S  # 3 x 10 s + 2 x 2 s
    assert poll_deadline(10 * S, retry, calls=4) == 136 * S  # CloudWatch: one call per 500 queries
    assert poll_deadline(5 * S, RetrySchedule(attempts=1), calls=0) == 5 * S


def test_health_judges_progress_not_what_the_source_answered() -> None:
    pace = PollPace("cw", interval=30 * S, deadline=34 * S, last_progress=T0)
    assert judge(T0 + 94 * S, True, [pace]) == (True, "polling and evaluating on schedule")  # limit 34 + 60
    ok, why = judge(T0 + 95 * S, True, [pace])
    assert not ok and why == ("source cw: no poll for 95s (every 30s, each within 34s): "
                              "the scheduler or the event loop has stopped")
    assert judge(T0, False, [pace]) == (False, "scheduler not running")
    slow = PollPace("slow", interval=3600 * S, deadline=10 * S, last_progress=T0)
    assert judge(T0 + 3000 * S, True, [slow])[0]  # a slow source sets its own pace
    fast = PollPace("fast", interval=S, deadline=S, last_progress=T0 + 2990 * S)
    assert judge(T0 + 3000 * S, True, [slow, fast]) == (False, "source fast: no poll for 10s (every 1s, each within "
                                                              "1s): the scheduler or the event loop has stopped")


class Hanging:
    """A source whose poll never returns (a connection that drips, a bug): only the deadline ends it."""

    name, sampled, calls_per_poll = "cloudwatch", False, 1

    def __init__(self, interval: timedelta):
        self.interval = interval
        self.polls = 0

    async def start(self) -> None:
        pass

    async def poll(self, now: datetime) -> dict:
        self.polls += 1
        await asyncio.sleep(3600)
        return {}

    async def close(self) -> None:
        pass


async def test_a_hanging_poll_is_cut_at_its_deadline_and_the_target_is_still_judged(tmp_path) -> None:
    from watchdog.app import App
    from watchdog.config import parse_config

    cfg = parse_config(f"""
watchdog: {{listen: "127.0.0.1:0", state_path: "{tmp_path}/w.db"}}
aws: {{region: us-east-1, endpoint_url: "http://127.0.0.1:9"}}
sources: [{{name: cloudwatch, type: cloudwatch, interval: 1s, timeout: 200ms, retry: {{attempts: 2, initial_backoff: 50ms, max_backoff: 100ms}}}}]
targets:
  - name: web
    rules: [{{name: latency, category: performance, source: cloudwatch,
              metric: {{namespace: N, name: M, period: 60s}}, threshold: "> 1"}}]
    levels: [{{level: 1, name: one, deadline: 5s, actions: [{{type: http, url: "http://127.0.0.1:9/x"}}]}}]
""", {})
    app = App(cfg, serve_http=False)
    await app.start(schedule=False)
    hanging = Hanging(cfg.sources[0].interval)
    await app.sources["cloudwatch"].close()
    app.sources["cloudwatch"] = hanging  # type: ignore[assignment]
    try:
        await asyncio.wait_for(app.poll("cloudwatch"), timeout=10)  # ends: 2 x 200 ms + 100 ms
        assert hanging.polls == 1
        source = app.board.sources["cloudwatch"]  # type: ignore[union-attr]
        assert not source.up and source.last_error == "no answer within the poll's deadline of 500ms"
        assert app.board.slots["web/latency"].state.value == "insufficient_data"  # judged, not waiting  # type: ignore[union-attr]
        assert app.metrics.registry.get_sample_value("watchdog_source_errors_total", {"source": "cloudwatch"}) == 1
    finally:
        await app.stop()


@pytest.mark.slow
async def test_health_is_the_same_when_cloudwatch_is_dead_and_when_it_hangs(tmp_path, moto_url, aws_env, admin_api):
    ns = f"HEALTH{time.monotonic_ns()}"
    async with running_proxy(moto_url) as proxy:
        path = render(tmp_path, proxy.url, admin_api, ns)  # interval 500ms, timeout 2s, 2 attempts
        pub = Publisher(moto_url, ns)
        pub.healthy = True
        pub.start()
        d = await Daemon(path).start()
        try:
            base = f"http://127.0.0.1:{await d.port()}"
            async with aiohttp.ClientSession() as http:
                async def sample(seconds: float) -> list[int]:
                    codes, end = [], time.monotonic() + seconds
                    while time.monotonic() < end:
                        async with http.get(f"{base}/healthz") as r:
                            codes.append(r.status)
                        await asyncio.sleep(0.25)
                    return codes

                async def source_up() -> bool:
                    async with http.get(f"{base}/status") as r:
                        return (await r.json())["sources"][0]["up"]

                assert set(await sample(2)) == {200}
                for fault in (aws_error("InternalError", 500), Reply(delay=30.0)):  # dead, then hanging
                    proxy.script = [fault]
                    codes = await sample(8)  # a hanging call takes 2 s per try, a poll up to 4.2 s
                    assert set(codes) == {200}, (fault, codes)
                    assert not await source_up()  # what is wrong is said where it belongs
                    proxy.script = []
                    await d.wait_for("source_poll_failed", timeout=10)
                    deadline = time.monotonic() + 20
                    while not await source_up():
                        assert time.monotonic() < deadline, "the source never came back"
                        await asyncio.sleep(0.2)
        finally:
            await pub.stop()
            await d.stop()
