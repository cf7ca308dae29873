"""The cloudwatch_alarms source, polled, against a real moto server (and, for paging, a loopback endpoint).

moto never evaluates an alarm from data: every state here is set with set_alarm_state, as CloudWatch would
after judging. moto's alarms are kept per region, so each test works in its own region. moto's new alarms
start OK (AWS's start INSUFFICIENT_DATA), which changes nothing below: every state a test relies on is set.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from alarm_endpoints import Alarm, counting, paging_cloudwatch, reason_data
from configs import hybrid_routing, level, http, make_target, parsed
from polls import started
from watchdog.config import ConfigError
from watchdog.config.models import AwsSection, Rule
from watchdog.config.schema import rule_model
from watchdog.core.rules import align
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch_alarms import MAX_PAGES, RECONCILE_EVERY, CloudWatchAlarms, CloudWatchAlarmsSource
from watchdog.sources.hooks import SourceHooks, Verifying
from watchdog.support.metrics import Metrics

UTC = timezone.utc
S = timedelta(seconds=1)


def rule(name: str, **reads: Any) -> Rule:
    return rule_model().model_validate({"name": name, "category": "performance", "source": "alarms", **reads})


def source(url: str, region: str, rules: dict[str, Rule], interval: str = "10s",
           verifying: Callable[[str], Verifying | None] | None = None) -> CloudWatchAlarms:
    cfg = CloudWatchAlarmsSource.model_validate({"name": "alarms", "type": "cloudwatch_alarms", "interval": interval,
                                                 "timeout": "5s", "retry": {"attempts": 1}})
    hooks = SourceHooks(verifying=verifying) if verifying else SourceHooks()
    # A rule's key is "target/rule"; a bare rule name is of target t.
    return CloudWatchAlarms(cfg, [Query(k if "/" in k else f"t/{k}", r) for k, r in rules.items()],
                            AwsSection(region=region, endpoint_url=url), Metrics(), hooks)


def cw(url: str, region: str) -> Any:
    return boto3.client("cloudwatch", region_name=region, endpoint_url=url)


def put_alarm(client: Any, name: str, metric: str = "Errors", period: int = 60, threshold: float = 5.0,
              n: int = 1, m: int = 1) -> None:
    client.put_metric_alarm(AlarmName=name, Namespace="Shop", MetricName=metric, Statistic="Average", Period=period,
                            EvaluationPeriods=n, DatapointsToAlarm=m, Threshold=threshold,
                            ComparisonOperator="GreaterThanThreshold")


def values(points: Any) -> list[Any]:
    return [v for _, v in points]


# --- what a rule reads ---------------------------------------------------------------------------


async def test_a_rule_is_in_alarm_while_its_alarm_is_and_insufficient_data_is_no_evidence(moto_url, aws_env):
    region = "eu-west-1"
    client = cw(moto_url, region)
    for name in ("checkout-5xx", "node-1", "node-2", "unrelated"):
        put_alarm(client, name)
    src = source(moto_url, region, {"one": rule("one", alarm="checkout-5xx"), "fam": rule("fam", alarm_prefix="node-")})
    t = datetime.now(UTC)
    # Target t is hot (an open incident): its alarms are read by name at every poll, so a change between OK and
    # INSUFFICIENT_DATA shows at the next poll (for a calm target, at the next reconcile: the test below).
    hot = {"t"}
    async with started(src):
        got = await src.poll_due(t, hot)
        assert values(got["t/one"]) == [False] and values(got["t/fam"]) == [False]  # OK is ok

        client.set_alarm_state(AlarmName="checkout-5xx", StateValue="ALARM", StateReason="test")
        client.set_alarm_state(AlarmName="node-2", StateValue="INSUFFICIENT_DATA", StateReason="test")
        got = await src.poll_due(t + 10 * S, hot)
        assert values(got["t/one"]) == [False, True]
        # A family with a member that cannot be judged and none in ALARM: nothing is known of it; the reading
        # it had stands for nothing now either.
        assert got["t/fam"] == []

        client.set_alarm_state(AlarmName="node-1", StateValue="ALARM", StateReason="test")
        client.set_alarm_state(AlarmName="checkout-5xx", StateValue="INSUFFICIENT_DATA", StateReason="test")
        got = await src.poll_due(t + 20 * S, hot)
        assert values(got["t/fam"]) == [True]  # any member in ALARM is the family's alarm
        assert got["t/one"] == []  # INSUFFICIENT_DATA: the rule has no datapoint, so it is insufficient_data

        client.set_alarm_state(AlarmName="unrelated", StateValue="ALARM", StateReason="test")
        client.set_alarm_state(AlarmName="node-1", StateValue="OK", StateReason="test")
        client.set_alarm_state(AlarmName="node-2", StateValue="OK", StateReason="test")
        got = await src.poll_due(t + 30 * S, hot)
        assert values(got["t/fam"]) == [True, False] and "unrelated" not in src.book.records


def asked(requests: list[tuple[str, dict[str, str]]]) -> list[str]:
    """Each DescribeAlarms request by what it selects: a state, the first name, or a prefix."""
    return [p.get("StateValue") or p.get("AlarmNames.member.1") or f"prefix {p['AlarmNamePrefix']}"
            for api, p in requests if api == "DescribeAlarms"]


async def test_a_calm_account_of_1000_alarms_costs_one_request_per_poll(moto_url, aws_env):
    region = "ap-south-1"
    client = cw(moto_url, region)
    names = [f"svc-{i:04d}" for i in range(1000)]
    for name in names:
        put_alarm(client, name)
    rules = {"a": rule("a", alarm="svc-0007"), "b": rule("b", alarm="svc-0512"), "fam": rule("fam", alarm_prefix="svc-09")}
    assert RECONCILE_EVERY == 10 * 60 * S  # the hand count below rests on it
    async with counting(moto_url) as proxy:
        src = source(proxy.url, region, rules, interval="60s")
        t = datetime.now(UTC)
        async with started(src):
            # 30 minutes polled each minute: 31 polls (0..30). The reconciles are at minutes 0, 10, 20 and 30,
            # each 2 requests (the 2 names in one, the family svc-09* by its prefix: 100 alarms, one page); the
            # other 27 polls ask ALARM only, 1 request each: 4 * 2 + 27 = 35.
            for k in range(31):
                before = len(proxy.requests)
                await src.poll(t + k * 60 * S)
                polled = proxy.requests[before:]
                if k % 10 == 0:
                    assert asked(polled) == ["svc-0007", "prefix svc-09"], k
                else:
                    assert [(api, p["StateValue"], p["MaxRecords"]) for api, p in polled] == [
                        ("DescribeAlarms", "ALARM", "100")], k
            assert proxy.count("DescribeAlarms") == 35 == len(proxy.requests)

            # An alarm that leaves ALARM costs one read by name, in that poll only.
            client.set_alarm_state(AlarmName="svc-0512", StateValue="ALARM", StateReason="test")
            await src.poll(t + 31 * 60 * S)
            client.set_alarm_state(AlarmName="svc-0512", StateValue="OK", StateReason="test")
            before = len(proxy.requests)
            got = await src.poll(t + 32 * 60 * S)
            assert asked(proxy.requests[before:]) == ["ALARM", "svc-0512"]
            assert values(got["t/b"])[-2:] == [True, False]
            before = len(proxy.requests)
            await src.poll(t + 33 * 60 * S)
            assert asked(proxy.requests[before:]) == ["ALARM"]
            assert proxy.count("GetMetricData") == 0


async def test_a_calm_alarm_gone_insufficient_shows_at_the_next_reconcile(moto_url, aws_env):
    """A calm rule's INSUFFICIENT_DATA (no evidence, never an action) is learned at the reconcile, not by a second
    request at every poll; a hot target's is learned at the next poll, by name."""
    region = "ap-northeast-2"
    client = cw(moto_url, region)
    for name in ("calm-1", "calm-2", "hot-1"):
        put_alarm(client, name)
    rules = {"quiet/calm": rule("calm", alarm="calm-1"), "quiet/fam": rule("fam", alarm_prefix="calm-"),
             "busy/hot": rule("hot", alarm="hot-1")}
    async with counting(moto_url) as proxy:
        src = source(proxy.url, region, rules, interval="60s")
        t = datetime.now(UTC)
        async with started(src):
            got = await src.poll_due(t, {"busy"})
            assert values(got["quiet/calm"]) == values(got["busy/hot"]) == [False]
            for name in ("calm-2", "hot-1"):
                client.set_alarm_state(AlarmName=name, StateValue="INSUFFICIENT_DATA", StateReason="test")
            for k in range(1, 10):  # minutes 1..9: the calm alarm's change is not asked for
                before = len(proxy.requests)
                got = await src.poll_due(t + k * 60 * S, {"busy"})
                assert asked(proxy.requests[before:]) == ["ALARM", "hot-1"], k  # the hot target's alarm by name
                assert got["busy/hot"] == [], k  # insufficient at once: hot
                assert values(got["quiet/fam"])[-1] is False, k  # still the OK read at minute 0
            got = await src.poll_due(t + 10 * 60 * S, {"busy"})  # the reconcile
            assert got["quiet/fam"] == []  # a member in INSUFFICIENT_DATA, none in ALARM: no evidence
            assert values(got["quiet/calm"])[-1] is False  # calm-1 itself stayed OK


async def test_describe_alarms_pages_are_followed_on_an_endpoint_that_pages(aws_env):
    # moto answers DescribeAlarms in one page whatever MaxRecords says, so paging is proven here, on a loopback
    # CloudWatch that pages as AWS documents (tests/alarm_endpoints.py).
    alarms = [Alarm(f"a-{i:03d}", "ALARM") for i in range(250)] + [Alarm(f"b-{i:03d}") for i in range(150)]
    alarms[30] = Alarm("a-030", "INSUFFICIENT_DATA")
    async with paging_cloudwatch(alarms) as cloud:
        src = source(cloud.url, "us-east-1", {"first": rule("first", alarm="a-005"), "last": rule("last", alarm="a-249"),
                                             "fam": rule("fam", alarm_prefix="b-")})
        t = datetime.now(UTC)
        async with started(src):
            got = await src.poll(t)  # the whole read: the two names in one call, the family over two pages
            assert [(f.get("AlarmNamePrefix"), f.get("NextToken")) for f in cloud.forms] == [
                (None, None), ("b-", None), ("b-", "100")]
            assert values(got["t/last"]) == [True] and values(got["t/fam"]) == [False]
            cloud.forms.clear()
            got = await src.poll(t + 10 * S)  # 249 alarms in ALARM: three pages of 100; nothing else asked
            assert [(f["StateValue"], f["MaxRecords"], f.get("NextToken")) for f in cloud.forms] == [
                ("ALARM", "100", None), ("ALARM", "100", "100"), ("ALARM", "100", "200")]
            assert values(got["t/first"]) == [True, True] and values(got["t/last"]) == [True, True]


async def test_paging_that_never_ends_fails_the_poll_within_a_bound(aws_env):
    # Every page is a billed request: an endpoint that always says "more" must not be followed forever.
    alarms = [Alarm(f"a-{i:05d}", "ALARM") for i in range(100 * MAX_PAGES + 1)]
    async with paging_cloudwatch(alarms) as cloud:
        src = source(cloud.url, "us-east-1", {"one": rule("one", alarm_prefix="a-")})
        async with started(src):
            with pytest.raises(SourceError, match=f"still paging after {MAX_PAGES} pages"):
                await src.poll(datetime.now(UTC))
            assert len(cloud.forms) == MAX_PAGES


# --- an alarm that is gone -----------------------------------------------------------------------


async def test_an_alarm_deleted_while_in_alarm_fails_the_poll_until_it_exists_again(moto_url, aws_env):
    region = "eu-central-1"
    client = cw(moto_url, region)
    put_alarm(client, "orders-latency")
    put_alarm(client, "orders-errors")
    src = source(moto_url, region, {"lat": rule("lat", alarm="orders-latency"), "err": rule("err", alarm="orders-errors")})
    t = datetime.now(UTC)
    async with started(src):
        await src.poll(t)
        client.set_alarm_state(AlarmName="orders-latency", StateValue="ALARM", StateReason="test")
        assert values((await src.poll(t + 10 * S))["t/lat"])[-1] is True
        client.delete_alarms(AlarmNames=["orders-latency"])
        # Gone from the ALARM answer: the read by name tells deleted from OK, at once.
        with pytest.raises(SourceError, match="alarm 'orders-latency' \\(rule t/lat\\): not in CloudWatch"):
            await src.poll(t + 20 * S)
        put_alarm(client, "orders-latency")
        with pytest.raises(SourceError):  # an OK alarm is not in either answer: found by the next whole read
            await src.poll(t + 30 * S)
        got = await src.poll(t + 20 * S + RECONCILE_EVERY)
        assert values(got["t/lat"])[-1] is False and values(got["t/err"])[-1] is False


async def test_a_misnamed_alarm_fails_the_first_poll(moto_url, aws_env):
    region = "eu-west-2"
    put_alarm(cw(moto_url, region), "real")
    src = source(moto_url, region, {"typo": rule("typo", alarm="rael"), "fam": rule("fam", alarm_prefix="nothing-")})
    async with started(src):
        with pytest.raises(SourceError) as err:
            await src.poll(datetime.now(UTC))
    assert "alarm 'rael' (rule t/typo)" in str(err.value) and "the alarms named nothing-* (rule t/fam)" in str(err.value)


# --- verification: only what is newer than the actions -----------------------------------------------


async def test_verification_counts_only_datapoints_judged_after_the_actions(moto_url, aws_env):
    """While a level is verified, a reading is what the values newer than the actions say, by the alarm's own
    M of N (here 2 of 3, "> 5"), stamped when read; never the alarm's state, which may stand on older ones."""
    region = "sa-east-1"
    client = cw(moto_url, region)
    metric = f"Errors{uuid.uuid4().hex[:8]}"
    put_alarm(client, "api", metric=metric, period=10, threshold=5.0, n=3, m=2)
    since = align(datetime.now(UTC), 10 * S) - 30 * S  # on the metric's 10 s grid, as the actions' end need not be
    verifying: dict[str, Verifying | None] = {"t": None}
    async with counting(moto_url) as proxy:
        src = source(proxy.url, region, {"api": rule("api", alarm="api")}, interval="1s",
                     verifying=lambda target: verifying[target])
        async with started(src):
            client.set_alarm_state(AlarmName="api", StateValue="ALARM", StateReason="test",
                                   StateReasonData=reason_data([(since - 20 * S, 9.0)]))
            now = datetime.now(UTC)
            assert (await src.poll(now))["t/api"] == [(now, True)]  # not verifying: the state itself

            # CloudWatch went OK after the actions on [9 (before them), 9, 1]: of those after, 1 of 2 breach,
            # short of 2: not in alarm. (Counting the one before would make it 2 of 3: in alarm.)
            client.set_alarm_state(AlarmName="api", StateValue="OK", StateReason="test", StateReasonData=reason_data(
                [(since - 10 * S, 9.0), (since + 5 * S, 9.0), (since + 12 * S, 1.0)]))
            verifying["t"] = (since, now + 60 * S)
            assert (await src.poll(now + 1 * S))["t/api"][-1] == (now + 1 * S, False)
            # Back in ALARM on [9, 8] after them: 2 of 2.
            client.set_alarm_state(AlarmName="api", StateValue="ALARM", StateReason="test", StateReasonData=reason_data(
                [(since + 5 * S, 9.0), (since + 12 * S, 8.0)]))
            assert (await src.poll(now + 2 * S))["t/api"][-1] == (now + 2 * S, True)
            assert proxy.count("GetMetricData") == 0

            # Still in ALARM on a change from before the actions: nothing CloudWatch said counts. Before the
            # verification is due, nothing is read and there is no reading; when it is, one GetMetricData of the
            # alarm's own metric decides.
            client.set_alarm_state(AlarmName="api", StateValue="ALARM", StateReason="test",
                                   StateReasonData=reason_data([(since - 10 * S, 8.0)]))
            got = await src.poll(now + 3 * S)
            assert got["t/api"][-1][0] == now + 2 * S and proxy.count("GetMetricData") == 0
            stamps = [since - 20 * S, since - 10 * S, since + 10 * S, since + 20 * S]
            client.put_metric_data(Namespace="Shop", MetricData=[
                {"MetricName": metric, "Timestamp": ts, "Value": v} for ts, v in zip(stamps, [9.0, 9.0, 1.0, 7.0])])
            verifying["t"] = (since, now + 4 * S)
            got = await src.poll(now + 4 * S)
            assert proxy.count("GetMetricData") == 1
            [gmd] = proxy.of("GetMetricData")
            assert gmd["MetricDataQueries.member.1.MetricStat.Metric.MetricName"] == metric
            assert gmd["MetricDataQueries.member.1.MetricStat.Period"] == "10"
            # The 10 s buckets after the actions, 1 and 7: 1 of 2 breach "> 5": not in alarm (with the two 9s
            # from before them it would be).
            assert got["t/api"][-1] == (now + 4 * S, False)

            # INSUFFICIENT_DATA: no evidence, no read, and no reading of before it stands (the rule is insufficient).
            client.set_alarm_state(AlarmName="api", StateValue="INSUFFICIENT_DATA", StateReason="test")
            got = await src.poll(now + 5 * S)
            assert got["t/api"] == [] and proxy.count("GetMetricData") == 1


@pytest.mark.parametrize("path", [("ALARM", "INSUFFICIENT_DATA"), ("ALARM", "OK", "INSUFFICIENT_DATA")])
async def test_an_alarm_gone_insufficient_during_verification_leaves_the_rule_insufficient(moto_url, aws_env, path):
    """While level 1 is verified, the alarm goes INSUFFICIENT_DATA (straight from ALARM, or after an OK judged on
    datapoints after the actions): the next poll has the rule without a datapoint, so it is insufficient and
    nothing (no mitigated) rests on the OK before it. Its other target, calm, costs nothing more."""
    region = "eu-central-1" if len(path) == 2 else "eu-south-1"
    client = cw(moto_url, region)
    put_alarm(client, "api", period=10)
    put_alarm(client, "quiet", period=10)
    since = datetime.now(UTC).replace(microsecond=0) - 30 * S
    verifying: dict[str, Verifying | None] = {"t": None, "calm": None}
    async with counting(moto_url) as proxy:
        src = source(proxy.url, region, {"api": rule("api", alarm="api"), "calm/quiet": rule("quiet", alarm="quiet")},
                     interval="1s", verifying=lambda target: verifying[target])
        async with started(src):
            now = datetime.now(UTC)
            await src.poll(now)
            client.set_alarm_state(AlarmName="api", StateValue="ALARM", StateReason="test",
                                   StateReasonData=reason_data([(since - 10 * S, 9.0)]))
            assert values((await src.poll(now + 1 * S))["t/api"])[-1] is True
            verifying["t"] = (since, now + 60 * S)  # level 1's actions ended at `since`; judged in a minute
            for k, state in enumerate(path[1:], start=2):
                client.set_alarm_state(AlarmName="api", StateValue=state, StateReason="test",
                                       StateReasonData=reason_data([(since + 5 * S, 1.0)]))
                before = len(proxy.requests)
                got = await src.poll(now + k * S)
                # Verified: its alarm by name at every poll besides the ALARM answer; calm's alarm never.
                assert asked(proxy.requests[before:]) == ["ALARM", "api"]
                if state == "OK":  # judged on 1.0 after the actions: not in alarm
                    assert got["t/api"][-1] == (now + k * S, False)
            assert got["t/api"] == []
            assert values(got["calm/quiet"])[-1] is False


async def test_a_mitigated_incidents_alarm_still_in_alarm_is_read_at_every_poll(moto_url, aws_env):
    region = "ca-central-1"
    client = cw(moto_url, region)
    metric = f"Latency{uuid.uuid4().hex[:8]}"
    put_alarm(client, "lat", metric=metric, period=10)
    put_alarm(client, "other", metric=metric + "x", period=10)
    since = datetime.now(UTC).replace(microsecond=0) - 30 * S
    async with counting(moto_url) as proxy:
        src = source(proxy.url, region, {"lat": rule("lat", alarm="lat"), "other": rule("other", alarm="other")},
                     interval="1s", verifying=lambda target: (since, None))
        async with started(src):
            client.set_alarm_state(AlarmName="lat", StateValue="ALARM", StateReason="test",
                                   StateReasonData=reason_data([(since - 10 * S, 9.0)]))
            now = datetime.now(UTC)
            for k in range(3):
                await src.poll(now + k * S)
            # Only the alarm in ALARM is read (an OK one would change state, and say so, if it breached).
            assert proxy.count("GetMetricData") == 3


# --- the config -------------------------------------------------------------------------------------


def alarm_config(**rule_keys: Any) -> dict[str, Any]:
    source = {"name": "alarms", "type": "cloudwatch_alarms"}
    rules = [{"name": "r", "category": "performance", "source": "alarms", **rule_keys}]
    return hybrid_routing(sources=[source], targets=[make_target("t", rules, [level(1, "l1", http("http://127.0.0.1:9/x"))])])


@pytest.mark.parametrize("keys, problem", [
    ({"alarm": "a", "missing_data": "breaching"}, "missing_data: a cloudwatch_alarms rule takes the alarm's own"),
    ({"alarm": "a", "alarm_prefix": "b"}, "set one of alarm or alarm_prefix, not both"),
    ({}, "alarm: required: source 'alarms' is a cloudwatch_alarms source; use alarm or alarm_prefix"),
    ({"alarm": ""}, "alarm"),
    ({"alarm": "a", "change": {"over": "1h", "percent": "> 5"}}, "change: an alert rule is in alarm while"),
    ({"alarm": "a" * 256}, "alarm"),
])
def test_rule_keys_are_checked(keys: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parsed(alarm_config(**keys))
    assert problem in str(err.value)


def test_a_queue_url_must_be_an_url_and_an_alarm_rule_takes_no_threshold() -> None:
    cfg = parsed(alarm_config(alarm="a"))
    assert str(cfg.targets[0].rules[0].judged_by) == "== true"
    config = alarm_config(alarm="a")
    config["sources"][0]["queue_url"] = "not a url"
    with pytest.raises(ConfigError, match="queue_url"):
        parsed(config)
