"""Issue 22, "Cost you can see": the projection of each source's requests per 30 days (watchdog/sources/cost.py,
watchdog/core/cost.py), the gauge, and the lines of `validate` and `run --once`.

Every expected figure is derived by hand in the test, from the documented schedule (docs/deciding.md "When it
polls", docs/configuration.md "cloudwatch_alarms") and AWS's list prices (docs/cost.md): a month is 30 days,
43 200 minutes.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from binaries import cli
from configs import CLOSED, cloudwatch, http, hybrid_routing, level, make_target, metric_rule, parsed, to_yaml
from watchdog.config import Config
from watchdog.core.cost import Usage, dollars
from watchdog.sources.cost import CYCLE_TICKS, project, show
from watchdog.support.metrics import Metrics

MINUTES = 43_200  # in 30 days


def target(rules: list[dict[str, Any]], name: str = "web") -> dict[str, Any]:
    return make_target(name, rules, [level(1, "flags", http(f"{CLOSED}/flags"))])


def cw_rule(k: int, period: str = "60s", metric: str | None = None, **extra: Any) -> dict[str, Any]:
    return metric_rule(f"r{k}-{period}", source="cw", namespace="Shop", metric=metric or f"M{k}", period=period,
                       **extra)


def config(sources: list[dict[str, Any]], targets: list[dict[str, Any]]) -> Config:
    return parsed(hybrid_routing(sources=sources, targets=targets))


def alarm_rules(names: list[str], prefixes: list[str] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
    rules = [{"name": f"a{k}", "category": "performance", "source": "alarms", "alarm": n} for k, n in enumerate(names)]
    return rules + [{"name": f"p{k}", "category": "performance", "source": "alarms", "alarm_prefix": p}
                    for k, p in enumerate(prefixes)]


def only(cfg: Config) -> Usage:
    [u] = project(cfg)
    return u


# --- cloudwatch --------------------------------------------------------------------------------


def test_each_distinct_query_is_billed_once_a_period() -> None:
    """100 rules at 60 s and 100 at 300 s on distinct metrics, and 30 more asking what the first 30 60 s
    rules ask (other thresholds: the same query). Per 30 days: 100 x 43 200 + 100 x 8 640 = 5 184 000
    metrics, $51.84. 200 queries at most in a poll: one call a minute, 43 200 calls."""
    rules = [cw_rule(k) for k in range(100)] + [cw_rule(k, "300s") for k in range(100)]
    dup = [cw_rule(k, metric=f"M{k}", threshold="> 9", evaluation_periods=3) for k in range(30)]
    u = only(config([cloudwatch("cw", interval="30s")], [target(rules), target(dup, "api")]))
    assert u.metrics == 100 * MINUTES + 100 * MINUTES // 5 == 5_184_000
    assert u.requests == {"GetMetricData": MINUTES}
    assert u.dollars == pytest.approx(51.84)
    # the worst rule: 3 of 3 one-minute buckets + settle 2m (the 300 s rules: 1 x 5m + 2m = 7m)
    assert u.delay == timedelta(minutes=7)


def test_calls_are_packed_500_to_a_call_as_the_source_packs_them() -> None:
    """501 distinct 60 s queries and one 300 s query: every minute 501 or 502 are due, two calls each time:
    2 x 43 200 calls; 501 x 43 200 + 8 640 metrics."""
    rules = [cw_rule(k) for k in range(501)] + [cw_rule(0, "300s")]
    u = only(config([cloudwatch("cw")], [target(rules)]))
    assert u.requests == {"GetMetricData": 2 * MINUTES}
    assert u.metrics == 501 * MINUTES + MINUTES // 5


def test_an_expression_is_billed_for_each_metric_it_sends() -> None:
    """A ratio of two metrics sends three queries (the two metrics and the expression): 3 x 43 200."""
    ratio = {"name": "ratio", "category": "performance", "source": "cw", "threshold": "> 5",
             "expression": "100 * errors / requests",
             "metrics": {"errors": {"namespace": "Shop", "name": "Errors", "stat": "Sum"},
                         "requests": {"namespace": "Shop", "name": "Requests", "stat": "Sum"}}}
    u = only(config([cloudwatch("cw")], [target([ratio])]))
    assert u.metrics == 3 * MINUTES and u.dollars == pytest.approx(1.296)


def test_read_every_reads_and_bills_a_fifth() -> None:
    """`read_every: 5m` on the source: the 60 s queries are read 8 640 times, each a fifth of the money;
    3 of 3 one-minute buckets, settle 2m, read every 5m: 3m + 2m + 4m = 9m (docs/deciding.md)."""
    rules = [cw_rule(k, evaluation_periods=3) for k in range(100)]
    u = only(config([cloudwatch("cw", read_every="5m")], [target(rules)]))
    assert u.metrics == 100 * MINUTES // 5 and u.requests == {"GetMetricData": MINUTES // 5}
    assert u.delay == timedelta(minutes=9)
    assert "open incident" in u.describe()  # what is not projected is said


def test_a_cloudwatch_source_without_rules_costs_nothing() -> None:
    cfg = config([cloudwatch("cw"), cloudwatch("idle")], [target([cw_rule(0)])])
    assert [(u.source, u.dollars) for u in project(cfg)] == [("cw", pytest.approx(0.432)), ("idle", 0)]


# --- cloudwatch_alarms -------------------------------------------------------------------------


def alarms_source(**keys: Any) -> dict[str, Any]:
    return {"name": "alarms", "type": "cloudwatch_alarms", **keys}


def test_polled_alarms_cost_one_request_a_poll_and_the_reconcile() -> None:
    """150 named alarms and a family, every 60 s: 43 200 polls; every tenth (minute 0, 10, ...) the whole
    read, 2 requests for the names (100 a request) and 1 for the family: 4 320 x 3; the other 38 880 ask
    ALARM alone: 51 840 DescribeAlarms, $0.5184 at $0.01 per 1 000; nothing after the free tier."""
    rules = alarm_rules([f"svc-{k}" for k in range(150)], ["node-"])
    u = only(config([alarms_source(interval="60s")], [target(rules)]))
    assert u.requests == {"DescribeAlarms": 4320 * 3 + 38_880}
    assert u.dollars == pytest.approx(0.5184) and u.after_free_tier == 0
    assert u.delay is None and "the alarm's own + up to 1m" in u.describe()


def test_a_poll_interval_longer_than_the_reconcile_makes_every_poll_whole() -> None:
    """interval 7m: 30 days are 6 171.4 intervals, so 6 172 polls (minute 0 to 43 197); the whole read when 10
    minutes have passed since the last: every second poll (0, 14m, ...), 3 086 of them, 1 request each."""
    u = only(config([alarms_source(interval="7m")], [target(alarm_rules(["a"]))]))
    assert u.requests == {"DescribeAlarms": 6172}


def test_pushed_alarms_cost_the_reconcile_and_the_long_polls() -> None:
    """queue_url, interval 5m: 8 640 whole reads of 3 requests (250 names: 3 a read); ReceiveMessage every 20 s:
    129 600. $0.2592 + $0.05184 at list price; inside both free tiers, $0. DeleteMessage is said, not counted."""
    rules = alarm_rules([f"svc-{k}" for k in range(250)])
    u = only(config([alarms_source(interval="5m", queue_url="https://sqs.us-east-1.amazonaws.com/1/q")],
                    [target(rules)]))
    assert u.requests == {"DescribeAlarms": 8640 * 3, "ReceiveMessage": 129_600}
    assert u.dollars == pytest.approx(0.2592 + 0.05184) and u.after_free_tier == 0
    assert "DeleteMessage per event" in u.describe()


def test_the_free_tier_takes_off_a_million_requests_of_each_pool() -> None:
    """2 000 000 DescribeAlarms and 3 000 000 ReceiveMessage: $20 + $1.20 listed; $10 + $0.80 after."""
    u = Usage("s", "cloudwatch_alarms", {"DescribeAlarms": 2_000_000, "ReceiveMessage": 3_000_000})
    assert u.dollars == pytest.approx(21.2) and u.after_free_tier == pytest.approx(10.8)


# --- cost_explorer and the rest ----------------------------------------------------------------


def test_cost_explorer_bills_each_call_and_free_kinds_are_not_shown() -> None:
    """Two rules every 6h: 120 polls x 2 calls x $0.01 = $2.40. An http_json source is not billed per call."""
    ce = {"name": "ce", "type": "cost_explorer", "interval": "6h"}
    web = {"name": "web", "type": "http_json", "url": "http://127.0.0.1:9/x", "interval": "10s"}
    rules = [{"name": f"c{k}", "category": "cost", "source": "ce", "threshold": "> 5", "cost": {}} for k in range(2)]
    rules.append({"name": "h", "category": "performance", "source": "web", "threshold": "> 1", "field": "x"})
    u = only(config([ce, web], [target(rules)]))
    assert (u.source, u.requests, u.dollars) == ("ce", {"GetCostAndUsage": 240}, pytest.approx(2.40))


def test_dollars_are_never_a_misleading_zero() -> None:
    assert [dollars(x) for x in (0, 0.00003, 0.01, 1.256, 4320)] == ["$0", "$0.00003", "$0.01", "$1.26", "$4320.00"]


# --- the gauge ---------------------------------------------------------------------------------


def test_the_gauge_holds_the_total_and_each_source_and_forgets_a_source_gone() -> None:
    """cw: one 60 s rule, $0.432; alarms polled, one alarm: 43 200 requests, $0.432. Then cw alone."""
    metrics = Metrics()
    both = config([cloudwatch("cw"), alarms_source(interval="60s")],
                  [target([cw_rule(0)] + alarm_rules(["a"]))])
    show(metrics, project(both))
    r = metrics.registry
    assert r.get_sample_value("watchdog_cloudwatch_projected_monthly_cost_dollars") == pytest.approx(0.864)
    for source in ("cw", "alarms"):
        assert r.get_sample_value("watchdog_source_projected_monthly_cost_dollars",
                                  {"source": source}) == pytest.approx(0.432)
    show(metrics, project(config([cloudwatch("cw")], [target([cw_rule(0)])])))
    assert r.get_sample_value("watchdog_cloudwatch_projected_monthly_cost_dollars") == pytest.approx(0.432)
    assert r.get_sample_value("watchdog_source_projected_monthly_cost_dollars", {"source": "alarms"}) is None


async def test_the_gauge_is_set_at_start_and_after_a_reload(tmp_path: Path) -> None:
    """The App `run` builds: $0.432 with one 60 s rule; reloaded with read_every 5m, a fifth: $0.0864."""
    from watchdog.lifecycle.app import App
    from watchdog.state.memory import in_memory

    def cfg(**source: Any) -> Config:
        return parsed(hybrid_routing(sources=[cloudwatch("cw", **source)], targets=[target([cw_rule(0)])],
                                     aws_endpoint=CLOSED))

    app = await App.create(cfg(), serve_http=False, schedule=False, state=in_memory())
    try:
        gauge = "watchdog_cloudwatch_projected_monthly_cost_dollars"
        assert app.runtime.metrics.registry.get_sample_value(gauge) == pytest.approx(0.432)
        await app.reload(cfg(read_every="5m"))
        assert app.runtime.metrics.registry.get_sample_value(gauge) == pytest.approx(0.0864)
    finally:
        await app.stop()


# --- the lines ---------------------------------------------------------------------------------


def test_validate_and_run_once_print_each_source_and_the_total(tmp_path: Path, aws_env: dict[str, str]) -> None:
    """AWS unreachable (a closed port): the reads fail, the cost lines are there all the same, from the config.
    cw: one 60 s rule, 3 of 3: 43 200 calls and metrics, $0.43, 5m; alarms: 43 200 DescribeAlarms, $0.43."""
    doc = hybrid_routing(sources=[cloudwatch("cw", retry={"attempts": 1}, timeout="1s"),
                                  alarms_source(interval="60s", retry={"attempts": 1}, timeout="1s")],
                         targets=[target([cw_rule(0, evaluation_periods=3)] + alarm_rules(["a"]))],
                         aws_endpoint=CLOSED)
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(doc))
    # validate: its reads FAIL (1); run --once: a source down is no alarm (0)
    for args, code in ((["validate", "-c", str(path)], 1), (["run", "--once", "-c", str(path)], 0)):
        r = cli(*args, env=aws_env)
        if args[0] == "validate":
            assert r.stdout.splitlines()[-1].endswith("failed")  # its count of checks stays last
        assert r.returncode == code, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert ("cost of source cw (cloudwatch): 43 200 GetMetricData per 30 days, 43 200 metrics requested: $0.43 "
                "a month at list price; worst-case detection delay 5m") in lines, r.stdout
        assert ("cost of source alarms (cloudwatch_alarms): 43 200 DescribeAlarms per 30 days: $0.43 a month at "
                "list price; worst-case detection delay the alarm's own + up to 1m") in lines, r.stdout
        assert ("projected cost: $0.86 per 30 days at list price, 2 billed sources (docs/cost.md: prices and free "
                "tier)") in lines, r.stdout
        assert lines[0].split()[0] in ("CHECK", "TARGET")  # the table first, the cost after it


# --- generated configs -------------------------------------------------------------------------

PERIODS = (60, 120, 300, 420, 660, 780, 1020, 3600)  # 7, 11, 13 and 17 minutes: grids of little common measure


@settings(max_examples=40, deadline=None)
@example([(0, 420, 1), (1, 660, 1), (2, 780, 1), (3, 1020, 1), (4, 60, 19)])  # 323 323 ticks: the walk stops
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(PERIODS), st.integers(1, 7)), min_size=1, max_size=25))
def test_any_plan_is_billed_month_over_every_for_each_distinct_query(shapes: list[tuple[int, int, int]]) -> None:
    """By hand: a distinct query (metric, period) is read once per `read_every` of its most frequent rule (its
    period when none), so 30 days bill month / every metrics for it, whatever the other queries do. A cycle
    of grids longer than CYCLE_TICKS polls is walked that far and scaled: each grid's count in the walk is off
    by at most one read, so the projection is off by at most one read's metrics per grid, times month / walk."""
    rules = [cw_rule(k, f"{period}s", metric=f"M{metric}", read_every=f"{period * times}s")
             for k, (metric, period, times) in enumerate(shapes)]
    every: dict[tuple[int, int], int] = {}
    for metric, period, times in shapes:
        every[metric, period] = min(every.get((metric, period), period * times), period * times)
    month = 30 * 86_400
    exact = sum(month / e for e in every.values())
    u = only(config([cloudwatch("cw")], [target(rules)]))
    grids = set(every.values())
    step = math.gcd(*(p for _, p in every))
    ticks = math.lcm(*grids) // step
    if ticks <= CYCLE_TICKS:
        assert u.metrics == pytest.approx(exact)
    else:
        walked = CYCLE_TICKS * step
        per_grid = {g: sum(1 for e in every.values() if e == g) for g in grids}
        assert abs(u.metrics - exact) <= sum(per_grid.values()) * month / walked + 1e-6
