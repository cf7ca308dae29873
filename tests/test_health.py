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
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from aws_proxy import Reply, aws_error, running_proxy
from configs import CLOSED, cloudwatch, http, hybrid_routing, level, make_target, metric_rule, parsed
from story import Publisher, render
from tests.daemon import Daemon
from timing import until
from watchdog.config import Config
from watchdog.config.base import RetrySchedule
from watchdog.core.health import PollPace, attempt_deadline, judge

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def test_a_polls_deadline_is_one_try_and_one_backoff_between_tries() -> None:
    retry = RetrySchedule(attempts=3, initial_backoff=timedelta(milliseconds=500), max_backoff=2 * S)
    assert attempt_deadline(10 * S, retry) == 14 * S  # 10 s + 2 s of backoff + 2 s of slack
    assert attempt_deadline(5 * S, RetrySchedule(attempts=1)) == 17 * S  # the default max_backoff is 10 s


def test_health_judges_progress_not_what_the_source_answered() -> None:
    pace = PollPace("cw", interval=30 * S, deadline=34 * S, last_progress=T0)
    assert judge(T0 + 94 * S, True, [pace]) == (True, "polling and evaluating on schedule")  # limit 34 + 60
    ok, why = judge(T0 + 95 * S, True, [pace])
    assert not ok and why == ("source cw: no poll for 95s (every 30s, each try within 34s): "
                              "the scheduler, the evaluation or the event loop has stopped")
    assert judge(T0, False, [pace]) == (False, "scheduler not running")
    slow = PollPace("slow", interval=3600 * S, deadline=10 * S, last_progress=T0)
    assert judge(T0 + 3000 * S, True, [slow])[0]  # a slow source sets its own pace
    fast = PollPace("fast", interval=S, deadline=S, last_progress=T0 + 2990 * S)
    assert judge(T0 + 3000 * S, True, [slow, fast]) == (False, "source fast: no poll for 10s (every 1s, each try "
                                                              "within 1s): the scheduler, the evaluation or the "
                                                              "event loop has stopped")


def quiet(name: str, metric: str, url: str) -> dict[str, Any]:
    """A target whose one rule never alarms here: CloudWatch is a closed port. Its period is an hour, so the
    source is polled hourly (a CloudWatch source polls on its rules' periods, issue 22: not every interval)."""
    return make_target(name, [metric_rule(namespace="N", metric=metric, threshold="> 1", period="1h")],
                       [level(1, "one", http(url, method=None), deadline="5s")])


def config(tmp_path: Path, interval: str, attempts: int, *targets: dict[str, Any]) -> Config:
    retry = {"attempts": attempts, "initial_backoff": "50ms", "max_backoff": "100ms"}
    # The hourly grid's ticks half an hour from now (settle shifts them): no scheduled poll comes during a test.
    settle = f"{(datetime.now(timezone.utc).minute + 30) % 60}m"
    return parsed(hybrid_routing(state_path=tmp_path / "w.db", interval=interval, timeout="200ms", retry=retry,
                                 targets=list(targets), sources=[cloudwatch(interval=interval, timeout="200ms",
                                                                            retry=retry, settle=settle)]))


class Hanging:
    """A source whose poll never returns (a connection that drips, a bug): only the deadline ends it."""

    name, sampled = "cloudwatch", False

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
    from watchdog.lifecycle.app import App

    cfg = config(tmp_path, "1s", 2, quiet("web", "M", f"{CLOSED}/x"))
    app = await App.create(cfg, serve_http=False, schedule=False)
    await app.start()
    hanging = Hanging(cfg.sources[0].interval)
    await app.runtime.sources["cloudwatch"].close()
    app.runtime.sources["cloudwatch"] = hanging  # type: ignore[assignment]
    try:
        await asyncio.wait_for(app.runtime.poll("cloudwatch", app.runtime.clock.now()), timeout=10)  # ends: 200 ms + 100 ms + 2 s
        assert hanging.polls == 1
        source = app.runtime.board.sources["cloudwatch"]  # type: ignore[union-attr]
        assert not source.up and source.last_error == ("no try started or answered within 2300ms (one try's "
                                                       "timeout and backoff): cut off")
        assert app.runtime.board.slots["web/latency"].state.value == "insufficient_data"  # judged, not waiting  # type: ignore[union-attr]
        assert app.runtime.metrics.registry.get_sample_value("watchdog_source_errors_total", {"source": "cloudwatch"}) == 1
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


class Paging(Hanging):
    """A poll of many quick calls (pages), longer in all than one try's deadline: alive all along."""

    def __init__(self, interval: timedelta, pages: int, each: float):
        super().__init__(interval)
        self.pages, self.each = pages, each

    async def poll(self, now: datetime) -> dict:
        from watchdog.support.retrying import retrying

        self.polls += 1
        for _ in range(self.pages):
            async for attempt in retrying(RetrySchedule(attempts=1), lambda exc: False):
                with attempt:
                    await asyncio.sleep(self.each)
        return {"web/latency": []}


async def started(tmp_path, source, clock=None):
    from watchdog.lifecycle.app import App

    cfg = config(tmp_path, "1h", 1, quiet("web", "M", f"{CLOSED}/x"), quiet("other", "M2", f"{CLOSED}/y"))
    app = await App.create(cfg, serve_http=False, clock=clock)
    await app.start()  # the scheduler runs (health asks); the first poll, at once, fails fast; then hourly, half an hour off
    await until(lambda: app.runtime.board.sources["cloudwatch"].last_poll is not None and not app.runtime.polling)  # type: ignore[union-attr]
    await app.runtime.sources["cloudwatch"].close()
    app.runtime.sources["cloudwatch"] = source
    return app


async def test_a_long_poll_that_keeps_making_calls_is_not_cut_off(tmp_path) -> None:
    """Its deadline is per try: Security Hub or Cost Explorer paging through a large account takes longer
    than one try's deadline in all, and must not be counted a failure every time."""
    paging = Paging(timedelta(hours=1), pages=30, each=0.1)  # 3 s of calls; one try's deadline is 2.3 s
    app = await started(tmp_path, paging)
    try:
        await asyncio.wait_for(app.runtime.poll("cloudwatch", app.runtime.clock.now()), timeout=20)
        assert app.runtime.board.sources["cloudwatch"].up  # type: ignore[union-attr]
    finally:
        await app.stop()


async def test_a_running_poll_keeps_the_deadline_it_started_with(tmp_path) -> None:
    """A reload that shortens a hanging source's timeout must not make the watchdog look stalled (and get
    it killed by systemd mid-incident) while the poll it started before runs to its own deadline."""
    from timing import FakeClock

    clock = FakeClock(datetime.now(timezone.utc))
    hanging = Hanging(timedelta(hours=1))
    app = await started(tmp_path, hanging, clock)
    try:
        polling = asyncio.ensure_future(app.runtime.poll("cloudwatch", app.runtime.clock.now()))
        await until(lambda: hanging.polls == 1, what="the poll under way")
        app.runtime._deadlines["cloudwatch"] = timedelta(milliseconds=10)  # what a reload's pace_polls would set
        clock.advance(hours=2, seconds=1)  # past the new limit (10 ms + 2 h), within the old one (2.3 s + 2 h)
        assert app.runtime.health() == (True, "polling and evaluating on schedule")
        polling.cancel()
    finally:
        await app.stop()


async def test_an_evaluation_that_crashes_is_logged_the_other_targets_judged_and_health_fails(tmp_path) -> None:
    """docs/http.md, Health: /healthz fails when a source has made no progress (a try of its poll started, or its
    evaluation ended) for its deadline plus two intervals. Here the interval is 1h and the deadline is the
    timeout (200ms) + max_backoff (100ms) + 2s of slack = 2.3s: the limit is 2h 2.3s.

    Each target's evaluation takes 10 minutes of the fake clock, so a poll whose only try starts at S ends
    its evaluation at S + 20m. Checked at S + 2h 1m 2.3s, a poll that was judged made progress 1h 41m 2.3s
    ago (healthy) and one whose evaluation crashed last made progress at S, 2h 1m 2.3s = 7262.3s ago: past
    the limit. A crash must not count as an evaluation that ended, or a bug would hide from systemd."""
    from timing import FakeClock

    clock = FakeClock(datetime.now(timezone.utc))
    app = await started(tmp_path, Paging(timedelta(hours=1), pages=1, each=0), clock)
    real, judged, crashing = app.runtime.evaluate, [], set()

    async def evaluate(target: str, now: datetime) -> None:
        clock.advance(minutes=10)
        if target in crashing:
            raise RuntimeError("a bug")
        judged.append(target)
        await real(target, now)

    async def poll_then_look_at_s_plus_2h_1m_2_3s() -> tuple[bool, str]:
        poll_started = clock.now()
        await app.runtime.poll("cloudwatch", app.runtime.clock.now())
        clock.set(poll_started + timedelta(hours=2, minutes=1, seconds=2.3))
        return app.runtime.health()

    app.runtime.evaluate = evaluate  # type: ignore[method-assign]
    healthy = (True, "polling and evaluating on schedule")
    try:
        # Nothing crashes: the point checked is inside the limit for a poll that was judged.
        assert await poll_then_look_at_s_plus_2h_1m_2_3s() == healthy
        assert judged == ["other", "web"]

        judged.clear()
        crashing.add("web")
        with structlog.testing.capture_logs() as logs:
            health = await poll_then_look_at_s_plus_2h_1m_2_3s()
        assert judged == ["other"]  # the crash did not skip it
        assert health == (False, "source cloudwatch: no poll for 7262s (every 1h, each try within 2300ms): "
                                 "the scheduler, the evaluation or the event loop has stopped")
        [crashed] = [entry for entry in logs if entry["event"] == "evaluation_crashed"]
        assert {k: v for k, v in crashed.items() if k != "exc_info"} == {
            "event": "evaluation_crashed", "log_level": "error", "target": "web", "source": "cloudwatch",
            "error": "RuntimeError: a bug"}
        assert isinstance(crashed["exc_info"], RuntimeError)  # rendered as `exception`, with its traceback

        # The bug gone, the next poll is judged and health comes back.
        crashing.clear()
        assert await poll_then_look_at_s_plus_2h_1m_2_3s() == healthy
    finally:
        await app.stop()
