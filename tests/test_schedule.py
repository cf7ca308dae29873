"""One schedule (watchdog/core/schedule.py) for the daemon and the replay: the ticks of a source, and the daemon
polling at the very ticks the replay computes (docs/deciding.md "When it polls": once at the start, then every
`interval` for a source without a period, and on the grid of its rules' periods, `settle` after each boundary,
for a CloudWatch source).

The live side runs the real App with its APScheduler scheduler and an injected clock that stands still at
T0 (tests/timing.py): APScheduler fires on the system clock, the polls must still be at T0, T0 + 200 ms, ...
on the injected one, which is what the recording (`watchdog.record`) says they were."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from configs import CLOSED, cloudwatch, hybrid_routing, metric_rule, parsed
from timing import FakeClock, until
from watchdog.lifecycle.app import App, DueTrigger
from watchdog.replay.engine import count_polls, schedule
from watchdog.core.schedule import Pace, catch_up, count, detection_delay, due, first_due, latest, next_due, ticks

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)


def Every(interval: timedelta) -> Pace:  # noqa: N802 (a source without a period)
    return Pace(interval)


def test_every_interval_from_the_start() -> None:
    s = Every(timedelta(seconds=30))
    assert first_due(s, T0) == T0
    assert next_due(s, T0) == T0 + timedelta(seconds=30)
    # 12:00:00 to 12:01:30, both ends included: 12:00:00, :30, 12:01:00, :30.
    assert list(ticks(s, T0, T0 + timedelta(seconds=90))) == [T0 + k * timedelta(seconds=30) for k in range(4)]
    assert count(s, T0, T0 + timedelta(seconds=90)) == 4
    assert count(s, T0, T0 + timedelta(seconds=89)) == 3
    assert count(s, T0, T0) == 1 and list(ticks(s, T0, T0)) == [T0]
    assert count(s, T0, T0 - MS) == 0 and list(ticks(s, T0, T0 - MS)) == []


def test_a_scheduler_run_stands_for_the_next_tick_or_the_newest_one_missed() -> None:
    s = Every(timedelta(seconds=10))
    assert catch_up(s, None, T0, T0) == T0  # the first run: the first tick
    assert catch_up(s, T0, T0, T0 + 3 * MS) == T0 + timedelta(seconds=10)  # on time (or early): the next
    # Runs at 12:00:10, :20 and :30 missed (a stalled loop), coalesced into one run at 12:00:45: it polls at
    # the newest tick that has come, 12:00:40, not at 12:00:10 and never at 12:00:45.
    assert catch_up(s, T0, T0, T0 + timedelta(seconds=45)) == T0 + timedelta(seconds=40)
    # Never a tick already polled, whatever the clock says.
    assert catch_up(s, T0 + timedelta(seconds=40), T0, T0) == T0 + timedelta(seconds=50)


# --- aligned reads (issue 22) -----------------------------------------------------------------

def test_a_source_with_periods_ticks_on_their_grid_settle_after_each_boundary() -> None:
    """60 s and 300 s rules: the grid's step is 60 s (their greatest common divisor), the interval plays no part.
    Started at 12:00:30: a first poll at once, then 2 s after each whole minute."""
    p = Pace.aligned(timedelta(seconds=30), [MIN, 5 * MIN], 2 * S)
    assert p.step == MIN and p.settle == 2 * S and p.gap == MIN
    start = T0 + 30 * S
    assert first_due(p, start) == start
    assert next_due(p, start) == T0 + MIN + 2 * S  # 12:01:02
    assert next_due(p, T0 + MIN + 2 * S) == T0 + 2 * MIN + 2 * S  # on the grid: a step on
    assert list(ticks(p, start, T0 + 3 * MIN + 2 * S)) == [start] + [T0 + k * MIN + 2 * S for k in (1, 2, 3)]
    assert count(p, start, T0 + 3 * MIN + 2 * S) == 4
    assert count(p, start, T0 + 3 * MIN + S) == 3  # 12:03:01: the 12:03:02 tick has not come
    assert count(p, start, start) == 1 and count(p, start, start - MS) == 0
    # A settle of whole periods (CloudWatch's 2m on 1-minute rules) falls on the boundaries themselves.
    two = Pace.aligned(timedelta(seconds=30), [MIN], 2 * MIN)
    assert list(ticks(two, start, T0 + 2 * MIN)) == [start, T0 + MIN, T0 + 2 * MIN]
    # 300 s rules alone with a 2m settle: 12:02, 12:07, 12:12 after a start at 12:00.
    five = Pace.aligned(MIN, [5 * MIN], 2 * MIN)
    assert list(ticks(five, T0, T0 + 12 * MIN)) == [T0, T0 + 2 * MIN, T0 + 7 * MIN, T0 + 12 * MIN]
    assert count(five, T0, T0 + 12 * MIN) == 4
    # 10 s and 60 s: every 10 s. No rule yet: every interval, as a source without a period.
    assert Pace.aligned(MIN, [10 * S, MIN], 2 * MIN).step == 10 * S
    assert Pace.aligned(timedelta(seconds=30), [], 2 * MIN) == Pace(timedelta(seconds=30))


def test_a_missed_run_polls_at_the_newest_grid_tick() -> None:
    p = Pace.aligned(timedelta(seconds=30), [MIN], 2 * S)
    start = T0 + 30 * S
    assert catch_up(p, None, start, start) == start
    assert catch_up(p, T0 + MIN + 2 * S, start, T0 + MIN + 30 * S) == T0 + 2 * MIN + 2 * S  # the next
    # 12:02:02 .. 12:05:02 missed, the run comes at 12:05:40: it stands for 12:05:02.
    assert catch_up(p, T0 + MIN + 2 * S, start, T0 + 5 * MIN + 40 * S) == T0 + 5 * MIN + 2 * S
    assert catch_up(p, T0 + 5 * MIN + 2 * S, start, T0) == T0 + 6 * MIN + 2 * S  # never one already polled


def test_a_query_is_due_once_per_bucket_or_per_read_every() -> None:
    settle = 2 * S
    assert latest(MIN, settle, T0 + MIN + 50 * S) == T0 + MIN + 2 * S
    assert due(MIN, settle, None, T0 + 30 * S)  # never read: polling started, or the last read failed
    assert not due(MIN, settle, T0 + MIN + 2 * S, T0 + MIN + 50 * S)  # read at 12:01:02; 12:02:02 not come
    assert due(MIN, settle, T0 + MIN + 2 * S, T0 + 2 * MIN + 2 * S)
    # read_every 5m: read at 12:00:02, then not at 12:01:02 .. 12:04:02, and at 12:05:02.
    assert not any(due(5 * MIN, settle, T0 + settle, T0 + k * MIN + settle) for k in (1, 2, 3, 4))
    assert due(5 * MIN, settle, T0 + settle, T0 + 5 * MIN + settle)
    # Read at the start, 12:00:30, mid-grid: the next read is the grid's next tick, 12:05:02.
    assert not due(5 * MIN, settle, T0 + 30 * S, T0 + 5 * MIN + S) and due(5 * MIN, settle, T0 + 30 * S, T0 + 5 * MIN + settle)
    # Ticks a stalled scheduler skipped (12:02:02, 12:03:02) are made up at the next poll, 12:03:30.
    assert due(MIN, settle, T0 + MIN + settle, T0 + 3 * MIN + 30 * S)


def test_the_worst_case_detection_delay() -> None:
    """By hand: 3 of 3 one-minute buckets with a 2m settle. The first breaching datapoint is at the start of its
    bucket (12:03), the third bucket closes at 12:06 and is read at 12:08: 3 x 1m + 2m = 5m. Read every 5m
    (reads at 12:02, 12:07, 12:12), the third bucket closing at 12:06 is readable at 12:08 and read at 12:12:
    9m, 4m (5m less one period) more."""
    assert detection_delay(MIN, 3, 2 * MIN) == 5 * MIN
    assert detection_delay(MIN, 3, 2 * MIN, 5 * MIN) == 9 * MIN
    assert detection_delay(5 * MIN, 2, 2 * MIN) == 12 * MIN
    assert detection_delay(MIN, 3, 2 * MIN, MIN) == 5 * MIN  # read_every of one period: as without it
    # The same by brute force over every minute a breach can start in (plain arithmetic, not the schedule):
    # reads at k x 5m + 2m; the M-th bucket of a breach starting at minute s closes at s + 3 and is read at
    # the first read at or after s + 3 + 2.
    worst = 0
    for s in range(0, 10):
        readable = s + 3 + 2
        read = next(t for t in range(0, 60) if t % 5 == 2 and t >= readable)
        worst = max(worst, read - s)
    assert timedelta(minutes=worst) == detection_delay(MIN, 3, 2 * MIN, 5 * MIN)


def test_the_scheduler_trigger_fires_at_the_grid_ticks() -> None:
    """APScheduler's trigger: the first run when polling starts, then the grid's ticks (wall-clock times)."""
    started = T0 + 30 * S + 123 * MS
    trigger = DueTrigger(Pace.aligned(timedelta(seconds=30), [MIN, 5 * MIN], 2 * S), started)
    first = trigger.get_next_fire_time(None, started)
    assert first == started
    second = trigger.get_next_fire_time(first, first)
    assert second == T0 + MIN + 2 * S
    assert trigger.get_next_fire_time(second, second) == T0 + 2 * MIN + 2 * S


def test_the_replay_polls_at_the_ticks_and_counts_them_without_making_them(tmp_path: Path) -> None:
    cfg = parsed(hybrid_routing(sources=[source("a", "200ms"), source("b", "300ms")], rules=[rule("a")]))
    end = T0 + timedelta(seconds=1)
    polls = list(schedule(cfg, T0, end, {}))
    # a: 0, 200, ..., 1000 ms (6); b: 0, 300, 600, 900 ms (4); in time order, a before b at the same time.
    a = [(T0 + k * 200 * MS, 0, "a") for k in range(6)]
    b = [(T0 + k * 300 * MS, 1, "b") for k in range(4)]
    assert polls == sorted(a + b)
    assert count_polls(cfg, T0, end, {}) == {"a": 6, "b": 4}
    # A recording's times win over the ticks.
    recorded = [T0 + 50 * MS, T0 + 700 * MS]
    assert [t for t, _, n in schedule(cfg, T0, end, {"b": recorded}) if n == "b"] == recorded


async def test_the_daemon_polls_at_the_ticks_the_replay_computes(tmp_path: Path) -> None:
    record = tmp_path / "polls.jsonl"
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", aws_endpoint=None, sources=[source("a", "200ms")],
                                rules=[rule("a")], watchdog={"record": str(record)}))
    clock = FakeClock(T0)  # stands still: only the schedule moves the ticks on
    app = await App.create(cfg, clock=clock, serve_http=False)
    await app.start()
    try:
        await until(lambda: len(recorded(record)) >= 5, timeout=20, what="five polls recorded")
        live = recorded(record)
        replayed = [t for t, _, _ in schedule(cfg, T0, live[-1], {})]
        assert live == replayed  # T0, T0 + 200 ms, ...: the replay's ticks, one for one

        # The scheduler falls behind (here: the clock jumps 10 s): its next run polls at the newest tick that
        # has come, which is one of the replay's ticks too, and then goes on from there.
        jumped = T0 + timedelta(seconds=10)
        clock.set(jumped + 50 * MS)
        await until(lambda: len([t for t in recorded(record) if t >= jumped]) >= 2, timeout=20,
                    what="two polls after the jump")
        after = [t for t in recorded(record) if t >= jumped][:2]
        assert after == [jumped, jumped + 200 * MS]
        assert set(recorded(record)) <= set(t for t, _, _ in schedule(cfg, T0, after[-1], {}))
    finally:
        await app.stop()


async def test_the_daemon_polls_a_cloudwatch_source_at_the_grid_ticks_the_replay_computes(tmp_path: Path) -> None:
    """1 s rules, a 300 ms settle and an hourly interval (which no longer paces a source with periods): the
    daemon's scheduler fires at 300 ms past each wall-clock second, and each run polls at the replay's tick."""
    record = tmp_path / "polls.jsonl"
    cw = cloudwatch("cw", interval="1h", timeout="1s", retry={"attempts": 1}, settle="300ms")
    cfg = parsed(hybrid_routing(state_path=tmp_path / "w.db", sources=[cw], watchdog={"record": str(record)},
                                rules=[metric_rule(source="cw", period="1s")]))
    app = await App.create(cfg, clock=FakeClock(T0), serve_http=False)
    await app.start()
    try:
        await until(lambda: len(recorded(record)) >= 4, timeout=20, what="four polls recorded")
        live = recorded(record)
        # By hand: at the start (12:00:00), then 12:00:00.300, 12:00:01.300, 12:00:02.300.
        assert live[:4] == [T0, T0 + 300 * MS, T0 + 1300 * MS, T0 + 2300 * MS]
        assert live == [t for t, _, _ in schedule(cfg, T0, live[-1], {})]
    finally:
        await app.stop()


def recorded(path: Path) -> list[datetime]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [datetime.fromisoformat(x["at"]) for x in lines]


def source(name: str, interval: str) -> dict[str, object]:
    # Nothing listens there: each poll fails at once, and is recorded with its tick all the same.
    return {"name": name, "type": "http_json", "url": f"{CLOSED}/{name}", "interval": interval, "timeout": "1s",
            "retry": {"attempts": 1}}


def rule(src: str) -> dict[str, object]:
    return {"name": "gdpr", "category": "security", "source": src, "field": "gdpr.compliant",
            "threshold": "== false"}


async def test_a_push_polls_the_alert_sources_with_its_own_time_as_the_tick(tmp_path: Path) -> None:
    """Alertmanager's webhook goes through the same entry as a scheduled poll (Runtime.poll(name, due)): the
    tick is the time of the push, read once from the runtime's clock."""
    import aiohttp

    record = tmp_path / "polls.jsonl"
    pushed_at = T0 + timedelta(minutes=7, milliseconds=321)
    cfg = parsed(hybrid_routing(
        state_path=tmp_path / "w.db", aws_endpoint=None, api_token="t0ken", watchdog={"record": str(record)},
        sources=[{"name": "am", "type": "alertmanager", "interval": "1h"}],
        rules=[{"name": "errors", "category": "performance", "source": "am", "alert": {"alertname": "High"}}]))
    app = await App.create(cfg, clock=FakeClock(pushed_at), schedule=False)  # only the push polls
    await app.start()
    try:
        payload = {"version": "4", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "High"}, "startsAt": pushed_at.isoformat(),
             "endsAt": "0001-01-01T00:00:00Z"}]}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{app.bound_port}/api/v1/alertmanager", json=payload,
                                 headers={"Authorization": "Bearer t0ken"}) as r:
                assert r.status == 200, await r.text()
        await until(lambda: recorded(record), timeout=10, what="the pushed poll recorded")
        assert recorded(record) == [pushed_at]
    finally:
        await app.stop()
