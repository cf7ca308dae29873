"""Issue 22, period-aligned reads: what a CloudWatch source asks for, poll by poll, on the real runtime.

moto in server mode is AWS; the recording proxy (tests/aws_proxy.py) in front of it counts the metrics each
GetMetricData call requests (every query is billed). The clock is injected: each poll is handed its tick, as
the daemon's scheduler hands it (the ticks themselves are tests/test_schedule.py's). Every expected count is
derived by hand in the test's docstring, from docs/deciding.md "When it polls" and docs/configuration.md.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aws_proxy import RecordingProxy, running_proxy
from binaries import cli
from configs import CLOSED, cloudwatch, http, hybrid_routing, level, make_target, metric_rule, parsed, to_yaml
from timing import FakeClock
from watchdog.config import Config, ConfigError, parse_config
from watchdog.core.escalation import Phase
from watchdog.core.rules import Datapoint, RuleState
from watchdog.core.schedule import ticks
from watchdog.core.signals import Query
from watchdog.lifecycle.app import App
from watchdog.replay.engine import replay
from watchdog.replay.outcome import outcome_of
from watchdog.replay.sources import HistorySource, Series
from watchdog.sources.kind import pace_of

UTC = timezone.utc
MIN = timedelta(minutes=1)
SETTLE = 2 * MIN  # the default


@pytest.fixture
async def proxy(moto_url: str, aws_env: dict[str, str]) -> AsyncIterator[RecordingProxy]:
    async with running_proxy(moto_url) as p:
        yield p


def five_minute_mark() -> datetime:
    """A boundary of the 5-minute grid an hour back (moto keeps what is put, whatever its time)."""
    now = datetime.now(UTC) - timedelta(hours=1)
    return now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)


def requested(proxy: RecordingProxy, metric: str | None = None) -> list[int]:
    """Per GetMetricData call, the metrics it requested (only those of `metric`, when given)."""
    if metric is None:
        return proxy.sizes
    return [sum(1 for k, v in form.items() if k.endswith(".MetricStat.Metric.MetricName") and v == [metric])
            for form in proxy.calls]


def daemon_config(tmp_path: Path, url: str, targets: list[dict[str, Any]], **source: Any) -> Config:
    """The daemon's config: its state in tmp_path, AWS at `url`, one CloudWatch source `cw` (one try a call)."""
    return parsed({
        "watchdog": {"listen": "127.0.0.1:0", "state_path": str(tmp_path / "w.db")},
        "aws": {"region": "us-east-1", "endpoint_url": url},
        "sources": [cloudwatch("cw", retry={"attempts": 1}, **source)],
        "targets": targets,
    })


def on(ns: str, name: str, metric: str, **extra: Any) -> dict[str, Any]:
    """A rule on `cw`: the Maximum of `metric` (its dimension the namespace, moto's quirk: tests/story.py)."""
    return metric_rule(name, source="cw", namespace=ns, metric=metric, dimensions={"Service": ns}, stat="Maximum",
                       **({"threshold": "> 100"} | extra))


def flags(name: str, rules: list[dict[str, Any]], url: str = CLOSED, **escalation: Any) -> dict[str, Any]:
    """A target whose one level PUTs `url`/flags (by default a closed port)."""
    return make_target(name, rules, [level(1, "flags", http(f"{url}/flags"))], **escalation)


@asynccontextmanager
async def running(cfg: Config, start: datetime) -> AsyncIterator[tuple[App, FakeClock]]:
    """The App `run` builds, started, on a clock at `start`; polled by the test at the ticks it hands it."""
    clock = FakeClock(start)
    app = await App.create(cfg, clock=clock, serve_http=False, schedule=False)
    await app.start()
    try:
        yield app, clock
    finally:
        await app.stop()


def config(tmp_path: Path, url: str, ns: str, source: dict[str, Any] | None = None) -> Config:
    """Two targets on one source. web: 100 rules at 60 s on metrics L0..L99 and 100 at 300 s on the same
    metrics (another period: another query). api: 30 rules asking exactly what web's first 30 60 s rules ask
    (other thresholds, other N: the same query) and 20 asking what web's first 20 300 s rules ask. 250 rules,
    200 distinct queries: 100 at 60 s and 100 at 300 s."""
    web = [on(ns, f"m{k}-1m", f"L{k}", period="60s") for k in range(100)]
    web += [on(ns, f"m{k}-5m", f"L{k}", period="300s") for k in range(100)]
    api = [on(ns, f"dup{k}-1m", f"L{k}", period="60s", threshold="> 9", evaluation_periods=3) for k in range(30)]
    api += [on(ns, f"dup{k}-5m", f"L{k}", period="300s", threshold="< 0", evaluation_periods=2) for k in range(20)]
    return daemon_config(tmp_path, url, [flags("web", web), flags("api", api)], interval="30s", **(source or {}))


async def test_each_query_is_read_once_per_period_and_identical_ones_once(proxy: RecordingProxy, tmp_path: Path) -> None:
    """By hand. Polling starts at B + 2m (B on the 5-minute grid), so the first poll, which reads every query,
    is also a tick of every grid. The source's grid: each whole minute + 2m settle = each whole minute (an
    interval of 30s plays no part): over 30 minutes, B+2m .. B+31m, 30 polls. The 60 s queries are due at
    each (30 x 100); the 300 s ones at B+2m, +7m, +12m, +17m, +22m, +27m (6 x 100). The 50 rules of api add
    nothing: their queries are web's. 200 queries at most in a poll: one call each (ceil(200/500)).
    Then polls inside the next minute (before B+32m) find nothing due: no call at all."""
    ns = f"Aligned{uuid.uuid4().hex[:8]}"
    b = five_minute_mark()
    start = b + SETTLE
    cfg = config(tmp_path, proxy.url, ns)
    minutes = [start + k * MIN for k in range(30)]
    assert list(ticks(pace_of(cfg, cfg.sources[0]), start, start + 29 * MIN)) == minutes
    # A datapoint of L0 (60 s) in the minute before the first poll: each of the rules asking L0 gets it.
    put(proxy.upstream, ns, [("L0", start - MIN + timedelta(seconds=10), 7.0)])
    async with running(cfg, start) as (app, clock):
        for tick in minutes:
            clock.set(tick)
            await app.runtime.poll("cw", tick)
            if tick == start:
                slots = app.runtime.board.slots
                assert [v for _, v in slots["web/m0-1m"].points] == [7.0] == [v for _, v in slots["api/dup0-1m"].points]
        assert app.runtime.board.sources["cw"].up, app.runtime.board.sources["cw"].last_error
        every_fifth = {0, 5, 10, 15, 20, 25}
        assert requested(proxy) == [200 if k in every_fifth else 100 for k in range(30)]
        assert sum(requested(proxy)) == 30 * 100 + 6 * 100
        metrics = app.runtime.metrics.registry
        assert metrics.get_sample_value("watchdog_cloudwatch_metrics_requested_total") == 3600
        assert metrics.get_sample_value("watchdog_cloudwatch_requests_total") == 30

        for second in (15, 30, 45, 59):  # an idle minute: pushed or early polls read nothing
            tick = start + 29 * MIN + timedelta(seconds=second)
            clock.set(tick)
            await app.runtime.poll("cw", tick)
        assert len(proxy.calls) == 30


async def test_read_every_reads_a_fifth_as_often(proxy: RecordingProxy, tmp_path: Path) -> None:
    """`read_every: 5m` on the source: the 60 s queries join the 300 s ones on the 5-minute grid (+2m):
    B+2m, +7m, ..., +27m, 6 reads of 100 + 100; the 24 polls between them send nothing."""
    ns = f"Seldom{uuid.uuid4().hex[:8]}"
    start = five_minute_mark() + SETTLE
    async with running(config(tmp_path, proxy.url, ns, {"read_every": "5m"}), start) as (app, clock):
        for k in range(30):
            clock.set(start + k * MIN)
            await app.runtime.poll("cw", start + k * MIN)
        assert requested(proxy) == [200] * 6
        assert sum(requested(proxy)) == 6 * 100 + 6 * 100
        assert app.runtime.board.sources["cw"].up


async def test_the_queries_due_together_go_500_to_a_call(proxy: RecordingProxy, tmp_path: Path) -> None:
    """501 distinct 60 s queries and one 300 s query. At B+2m (a tick of both grids) 502 are due: two calls,
    500 and 2; at B+3m the 501 60 s ones: 500 and 1."""
    ns = f"Calls{uuid.uuid4().hex[:8]}"
    start = five_minute_mark() + SETTLE
    rules = [on(ns, f"r{k}", f"L{k}") for k in range(501)] + [on(ns, "slow", "L0", period="300s")]
    async with running(daemon_config(tmp_path, proxy.url, [flags("web", rules)]), start) as (app, clock):
        for tick in (start, start + MIN):
            clock.set(tick)
            await app.runtime.poll("cw", tick)
        assert app.runtime.board.sources["cw"].up
    assert requested(proxy) == [500, 2, 500, 1]


def put(url: str, namespace: str, points: list[tuple[str, datetime, float]]) -> None:
    cw = boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1")
    cw.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": m, "Dimensions": [{"Name": "Service", "Value": namespace}], "Value": v, "Timestamp": ts}
        for m, ts, v in points])


async def test_a_target_with_an_open_incident_is_read_every_period(proxy: RecordingProxy, admin_api: Any,
                                                                   tmp_path: Path) -> None:
    """read_every 5m on the source. api's errors (1 of 1 above 100) breach in the buckets B+3m .. B+6m and are
    fine after. Reads of the 5-minute grid: B+2m (the start: the newest bucket, B+1m, is fine), B+7m (the
    newest, B+6m, breaches): the incident opens and level 1 runs, then the level is verified: from B+8m on,
    errors is read every minute (8, 9, ..., 16) while web's latency keeps to its grid (12). Resolved at B+16m,
    errors goes back to the grid: read at B+17m, not at 18 or 19."""
    ns = f"Hot{uuid.uuid4().hex[:8]}"
    b = five_minute_mark()
    start = b + SETTLE
    put(proxy.upstream, ns, [("ApiErrors", b + k * MIN + timedelta(seconds=5), 500.0 if 3 <= k <= 6 else 1.0)
                             for k in range(0, 20)] + [("WebLatency", b + timedelta(seconds=5), 1.0)])
    cfg = daemon_config(tmp_path, proxy.url, [flags("api", [on(ns, "errors", "ApiErrors")], admin_api.url,
                                                    verify_window="3m"),
                                              flags("web", [on(ns, "latency", "WebLatency")], f"{admin_api.url}/web")],
                        read_every="5m")
    reads: dict[str, list[int]] = {"ApiErrors": [], "WebLatency": []}
    phases: dict[int, Phase] = {}
    async with running(cfg, start) as (app, clock):
        rt = app.runtime
        for k in range(2, 20):
            tick, sent = b + k * MIN, len(proxy.calls)
            clock.set(tick)
            await rt.poll("cw", tick)
            await rt.tasks.settle(("level:", "checks:"))
            for metric, times in reads.items():
                if sum(requested(proxy, metric)[sent:]):
                    times.append(k)
            phases[k] = rt.executors["api"].machine.phase
            if k == 16:
                inc = rt.executors["api"].machine.incident
                assert inc is not None
                await rt.resolve(inc.id, "test: resolved")
    assert reads == {"ApiErrors": [2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], "WebLatency": [2, 7, 12, 17]}
    assert len(proxy.calls) == 12  # the minutes when something was due, one call each
    assert admin_api.count("/flags") == 1 and admin_api.count("/web/flags") == 0
    assert phases[8] is Phase.VERIFYING  # read every period during the verify window


async def test_a_late_datapoint_changes_the_state_at_the_next_read(proxy: RecordingProxy, tmp_path: Path) -> None:
    """3 of 3 above 100, one-minute buckets, read at each whole minute (+2m settle). At the poll of minute T
    the range holds T-3m: 500, T-2m: 500, T-1m: 50: two of three breach, ok. Then a datapoint of 500 arrives
    late for T-1m (Maximum: the bucket is now 500). At T+1m no bucket is newer (T holds nothing), so the
    three judged are again T-3m, T-2m, T-1m, now all breaching: alarm. Its twin, the same data without the
    late datapoint, stays ok: the alarm is the late datapoint's doing."""
    ns = f"Late{uuid.uuid4().hex[:8]}"
    t = five_minute_mark() + SETTLE
    series = [(t - 3 * MIN, 500.0), (t - 2 * MIN, 500.0), (t - MIN, 50.0)]
    put(proxy.upstream, ns, [(m, at + timedelta(seconds=5), v) for m in ("Late", "Twin") for at, v in series])
    rules = [on(ns, name, name.title(), evaluation_periods=3, datapoints_to_alarm=3) for name in ("late", "twin")]
    async with running(daemon_config(tmp_path, proxy.url, [flags("web", rules)]), t) as (app, clock):
        slots = app.runtime.board.slots
        await app.runtime.poll("cw", t)
        assert (slots["web/late"].state, slots["web/twin"].state) == (RuleState.OK, RuleState.OK)
        put(proxy.upstream, ns, [("Late", t - MIN + timedelta(seconds=50), 500.0)])
        clock.set(t + MIN)
        await app.runtime.poll("cw", t + MIN)
        assert slots["web/late"].state is RuleState.ALARM, slots["web/late"].evaluation
        assert slots["web/twin"].state is RuleState.OK


async def test_between_two_reads_a_rule_is_judged_as_of_its_last_read(proxy: RecordingProxy, tmp_path: Path) -> None:
    """A rule read every 5m that counts a missing bucket as breaching (1 of 1), on a metric fine in every
    minute. The source also polls in between (its other rule is read every minute), and each poll judges
    both rules. Judged at B+5m, the seldom-read rule's range (its 3 newest complete buckets, B+2m .. B+4m)
    would hold no bucket anybody has read: all missing, so breaching. It is judged as of its last read
    (B+2m: buckets B-1m .. B+1m, fine): ok at every poll, and no incident."""
    ns = f"Between{uuid.uuid4().hex[:8]}"
    b = five_minute_mark()
    start = b + SETTLE
    put(proxy.upstream, ns, [(m, b + k * MIN + timedelta(seconds=5), 1.0) for m in ("Seldom", "Often")
                             for k in range(-5, 15)])
    rules = [on(ns, "seldom", "Seldom", missing_data="breaching", read_every="5m"), on(ns, "often", "Often")]
    async with running(daemon_config(tmp_path, proxy.url, [flags("web", rules)]), start) as (app, clock):
        states = []
        for k in range(2, 13):
            clock.set(b + k * MIN)
            await app.runtime.poll("cw", b + k * MIN)
            states.append(app.runtime.board.slots["web/seldom"].state)
        assert states == [RuleState.OK] * 11
        assert requested(proxy, "Seldom") == [1 if k in (2, 7, 12) else 0 for k in range(2, 13)]
        assert app.runtime.executors["web"].machine.incident is None


# --- the replay reads as the daemon does ---------------------------------------------------------------

class Reading(HistorySource):
    """A history source that notes, per poll, the rules it answered (what the live source would have read)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.answered_at: list[tuple[datetime, tuple[str, ...]]] = []

    async def poll_due(self, now: datetime, hot: Collection[str]) -> Mapping[str, Sequence[Datapoint]]:
        got = await super().poll_due(now, hot)
        self.answered_at.append((now, tuple(sorted(got))))
        return got

    def skim(self, now: datetime, due: Any) -> Any:
        """A poll the replay skips (nothing could change: replay/quiet.py) reads its plan's queries all the same."""
        skimmed = super().skim(now, due)
        self.answered_at.append((now, tuple(sorted(self.answer(skimmed)))))
        return skimmed


async def test_the_replay_reads_seldom_then_every_period_once_the_incident_opens() -> None:
    """The replay's history source follows the live source's plan (tests/test_schedule.py: the same ticks).
    read_every 5m, settle 2m, 3 of 3 above 1500; the errors breach in minutes 61 .. 66 and are fine from 67.
    From minute 10: read at 10 (the start), then 12, 17, ..., 62 (newest bucket 61: 1 of 3), 67 (64, 65, 66
    breach): the incident opens at 67 and level 1 runs (a replayed action ends a millisecond later). Hot from
    then: read every minute, 68 .. 80. The verify window (3m) ends at 70 and a millisecond: the level is
    judged at 71 on the buckets after the action, 68 .. 70, fine: mitigated at 71 (read every 5m, it would be
    72, the next read)."""
    start = datetime(2026, 11, 2, tzinfo=UTC)

    def at(minute: int) -> datetime:
        return start + minute * MIN

    errors = on("N", "errors", "Errors", threshold="> 1500", evaluation_periods=3, datapoints_to_alarm=3)
    cfg = parsed({"sources": [cloudwatch("cw", read_every="5m")],
                  "targets": [flags("api", [errors], verify_window="3m")]})
    series = {"api/errors": Series.of([(at(k), 2000.0 if 61 <= k <= 66 else 120.0) for k in range(0, 90)])}
    built: list[Reading] = []

    def build(c: Any, queries: Sequence[Query]) -> HistorySource:
        built.append(Reading(c.name, c.interval, False, queries, series))
        return built[-1]

    r = await replay(cfg, at(10), at(80), build)
    [inc] = outcome_of(r, []).incidents
    assert (inc.opened_at, [(run.level, run.started, run.outcome) for run in inc.runs], inc.mitigated_at) == \
        (at(67), [(1, at(67), "succeeded")], at(71))
    read = [t for t, keys in built[0].answered_at if keys]
    assert read == [at(10)] + [at(m) for m in range(12, 68, 5)] + [at(m) for m in range(68, 81)]


# --- the keys: settle and read_every ------------------------------------------------------------------

def problems(**overrides: Any) -> list[str]:
    try:
        parse_config(to_yaml(hybrid_routing(**overrides)), {})
    except ConfigError as exc:
        return exc.problems
    return []


def test_settle_and_read_every_are_checked_with_one_line_each() -> None:
    assert problems(sources=[cloudwatch(settle="2m", read_every="5m")]) == []
    assert problems(sources=[cloudwatch(settle="0s")]) == []
    assert problems(sources=[cloudwatch(settle="2h")]) == ["sources[0].settle: at most 1h (got 2h) (line 10)"]
    assert problems(sources=[cloudwatch(read_every="0s")]) == ["sources[0].read_every: at least 1s (got 0s) (line 10)"]
    assert problems(rule={"read_every": "90s"}) == [
        "targets[0].rules[0].read_every: 90s is not a whole number of this rule's 1m periods (line 22)"]
    # A source's read_every shorter than a rule's period reads that rule every period; one that the period
    # does not divide is the rule's problem (it may set its own).
    assert problems(sources=[cloudwatch(read_every="5m")], period="1h") == []
    assert problems(sources=[cloudwatch(read_every="5m")], period="120s") == [
        "targets[0].rules[0].metric: its 2m period does not divide source cloudwatch's read_every 5m: give the rule "
        "a read_every of its own (line 17)"]
    assert problems(sources=[cloudwatch(read_every="5m")], period="120s", rule={"read_every": "4m"}) == []


def test_a_bad_read_every_is_one_line_and_exit_2_from_check_config(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(to_yaml(hybrid_routing(rule={"read_every": "45s"})))
    r = cli("check-config", "-c", str(path))
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "targets[0].rules[0].read_every: 45s is not a whole number "
                                                          "of this rule's 1m periods (line 22)\n")


@settings(max_examples=200, deadline=None)
@given(period=st.sampled_from([1, 5, 10, 30, 60, 120, 300, 3600]), every=st.integers(1, 7200))
def test_any_read_every_is_taken_when_whole_periods_and_refused_in_one_line_otherwise(period: int, every: int) -> None:
    got = problems(period=f"{period}s", rule={"read_every": f"{every}s"})
    if every % period == 0:
        assert got == []
    else:
        assert len(got) == 1 and got[0].startswith("targets[0].rules[0].read_every: ") and "Traceback" not in got[0]
