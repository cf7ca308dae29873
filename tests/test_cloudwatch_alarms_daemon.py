"""The real daemon on a cloudwatch_alarms source: moto as CloudWatch and SQS, a real admin API on loopback.

moto never evaluates an alarm: each test sets the states CloudWatch would reach (set_alarm_state, with the
StateReasonData CloudWatch would write) and puts on the queue the events EventBridge would deliver
(tests/alarm_endpoints.py; that EventBridge on moto delivers such an event to the queue the deploy template
makes is tests/test_deploy_alarm_events.py's). moto keeps alarms and queues per region: each test has its own.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from alarm_endpoints import counting, reason_data, state_change
from configs import http, hybrid_routing, level, make_target, write
from tests.daemon import Daemon, polled, status
from timing import until

UTC = timezone.utc
S = timedelta(seconds=1)
pytestmark = pytest.mark.slow


def clients(url: str, region: str) -> tuple[Any, Any]:
    return (boto3.client("cloudwatch", region_name=region, endpoint_url=url),
            boto3.client("sqs", region_name=region, endpoint_url=url))


def put_alarm(cw: Any, name: str, metric: str = "Errors", period: int = 10, threshold: float = 5.0) -> None:
    cw.put_metric_alarm(AlarmName=name, Namespace="Shop", MetricName=metric, Statistic="Average", Period=period,
                        EvaluationPeriods=1, Threshold=threshold, ComparisonOperator="GreaterThanThreshold")


def config(tmp_path: Path, url: str, region: str, admin: str, alarms: dict[str, str], *, interval: str = "1s",
           queue_url: str | None = None, verify_window: str = "2m") -> str:
    """One target per rule (`target: alarm`), so an incident names the alarm that opened it."""
    source: dict[str, Any] = {"name": "alarms", "type": "cloudwatch_alarms", "interval": interval, "timeout": "5s",
                              "retry": {"attempts": 2, "initial_backoff": "50ms", "max_backoff": "200ms"}}
    if queue_url is not None:
        source["queue_url"] = queue_url
    targets = [make_target(t, [{"name": f"{t}-alarm", "category": "performance", "source": "alarms", "alarm": a}],
                           [level(1, "flags", http(f"{admin}/{t}/l1")), level(2, "route", http(f"{admin}/{t}/l2"))],
                           verify_window=verify_window)
               for t, a in alarms.items()]
    return write(tmp_path, hybrid_routing(state_path=tmp_path / "watchdog.db", aws_endpoint=url, aws={"region": region},
                                          sources=[source], targets=targets))


async def rule_state(port: int, target: str) -> str:
    doc = await status(port)
    return next(r["state"] for r in doc["rules"] if r["target"] == target)


def opened(d: Daemon, target: str) -> int:
    return len([e for e in d.events("incident_opened") if e.get("target") == target])


def next_second(at: datetime) -> datetime:
    """The start of the next whole second: a datapoint stamped there is in a 1 s bucket wholly after `at`."""
    return at.replace(microsecond=0) + S


# --- polled --------------------------------------------------------------------------------------


async def test_the_daemon_acts_on_alarm_and_never_on_insufficient_data(tmp_path, moto_url, aws_env, admin_api):
    region = "eu-north-1"
    cw, _ = clients(moto_url, region)
    put_alarm(cw, "pay-errors")
    # INSUFFICIENT_DATA from the start: the read at start learns it (a calm alarm's later change to it waits for
    # the 10-minute reconcile, tests/test_cloudwatch_alarms.py).
    cw.set_alarm_state(AlarmName="pay-errors", StateValue="INSUFFICIENT_DATA", StateReason="no data")
    d = await Daemon(config(tmp_path, moto_url, region, admin_api.url, {"pay": "pay-errors"})).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "pay"), "insufficient_data"), 20, "the rule insufficient_data")
        doc = await polled(port, 5)  # five more polls of a rule without evidence: nothing is done
        assert await rule_state(port, "pay") == "insufficient_data"
        assert doc["targets"][0]["level"] == 0 and not d.events("incident_opened")
        assert admin_api.count("/pay/l1") == 0

        cw.set_alarm_state(AlarmName="pay-errors", StateValue="ALARM", StateReason="threshold crossed")
        started = await d.wait_for("level_started", timeout=20, level=1)
        assert started["target"] == "pay"
        await until(lambda: admin_api.count("/pay/l1", "PUT") == 1, 10, "level 1's request")
        assert await rule_state(port, "pay") == "alarm"
    finally:
        await d.stop()


async def _is(state: Any, wanted: str) -> bool:
    return await state == wanted


async def test_level_1_is_verified_from_the_datapoints_judged_after_its_actions(tmp_path, moto_url, aws_env, admin_api):
    """`cured`: CloudWatch went OK on datapoints after the actions: mitigated. `stale`: it went OK, but the change
    judged datapoints from before the actions only; nothing else newer is known (its metric has no data), so
    nothing is verified: blind, paged, no escalation."""
    region = "eu-west-3"
    cw, _ = clients(moto_url, region)
    put_alarm(cw, "cured-errors", metric=f"E{uuid.uuid4().hex[:8]}")
    put_alarm(cw, "stale-errors", metric=f"E{uuid.uuid4().hex[:8]}")
    path = config(tmp_path, moto_url, region, admin_api.url, {"cured": "cured-errors", "stale": "stale-errors"},
                  verify_window="3s")
    d = await Daemon(path).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "cured"), "ok"), 20, "the first poll")
        before = datetime.now(UTC)
        for name in ("cured-errors", "stale-errors"):
            cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="threshold crossed",
                               StateReasonData=reason_data([(before - 10 * S, 9.0)]))
        for target in ("cured", "stale"):
            await d.wait_for("level_succeeded", timeout=20, target=target, level=1)
        after = next_second(datetime.now(UTC))  # every action has ended by now
        cw.set_alarm_state(AlarmName="cured-errors", StateValue="OK", StateReason="recovered",
                           StateReasonData=reason_data([(after, 1.0)]))
        cw.set_alarm_state(AlarmName="stale-errors", StateValue="OK", StateReason="recovered",
                           StateReasonData=reason_data([(before - 5 * S, 1.0)]))
        await d.wait_for("mitigated", timeout=20, target="cured")
        blind = await d.wait_for("blind", timeout=20, target="stale")
        assert "no datapoint newer than level 1's actions" in blind["why"]
        assert admin_api.count("/cured/l2") == 0 and admin_api.count("/stale/l2") == 0
        assert not [e for e in d.events("mitigated") if e.get("target") == "stale"]
    finally:
        await d.stop()


async def test_an_alarm_gone_insufficient_during_verification_mitigates_nothing(tmp_path, moto_url, aws_env,
                                                                               admin_api):
    """Level 1 ran; CloudWatch went OK on a datapoint after the actions, then INSUFFICIENT_DATA before the
    verification is judged. The verified target's alarm is read by name at every poll, so the rule is
    insufficient at the next one: no mitigated rests on the OK before it; blind and paged instead."""
    region = "ap-southeast-2"
    cw, _ = clients(moto_url, region)
    put_alarm(cw, "gone-errors", metric=f"E{uuid.uuid4().hex[:8]}")
    d = await Daemon(config(tmp_path, moto_url, region, admin_api.url, {"gone": "gone-errors"},
                            verify_window="15s")).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "gone"), "ok"), 20, "the first poll")
        cw.set_alarm_state(AlarmName="gone-errors", StateValue="ALARM", StateReason="threshold crossed",
                           StateReasonData=reason_data([(datetime.now(UTC) - 10 * S, 9.0)]))
        await d.wait_for("level_succeeded", timeout=20, target="gone", level=1)
        after = next_second(datetime.now(UTC))
        cw.set_alarm_state(AlarmName="gone-errors", StateValue="OK", StateReason="recovered",
                           StateReasonData=reason_data([(after, 1.0)]))
        await until(lambda: _is(rule_state(port, "gone"), "ok"), 10, "the OK judged after the actions")
        cw.set_alarm_state(AlarmName="gone-errors", StateValue="INSUFFICIENT_DATA", StateReason="no data")
        await until(lambda: _is(rule_state(port, "gone"), "insufficient_data"), 10, "the rule insufficient_data")
        blind = await d.wait_for("blind", timeout=30, target="gone")
        assert "no datapoint newer than level 1's actions" in blind["why"]
        assert not d.events("mitigated") and admin_api.count("/gone/l2") == 0
    finally:
        await d.stop()


@pytest.mark.parametrize("value, outcome", [(1.0, "mitigated"), (9.0, "verification_failed")])
async def test_an_alarm_still_in_alarm_is_verified_by_one_read_of_its_metric(tmp_path, moto_url, aws_env, admin_api,
                                                                             value, outcome):
    """CloudWatch still says ALARM (its last change is from before the actions): the alarm's metric after the
    actions decides, held against the alarm's own "> 5"."""
    region = "us-west-1" if outcome == "mitigated" else "us-west-2"
    cw, _ = clients(moto_url, region)
    metric = f"Errors{uuid.uuid4().hex[:8]}"
    put_alarm(cw, "api-errors", metric=metric, period=10)
    async with counting(moto_url) as proxy:
        d = await Daemon(config(tmp_path, proxy.url, region, admin_api.url, {"api": "api-errors"},
                                verify_window="12s")).start()
        publishing = None
        try:
            port = await d.port()
            await until(lambda: _is(rule_state(port, "api"), "ok"), 20, "the first poll")
            cw.set_alarm_state(AlarmName="api-errors", StateValue="ALARM", StateReason="threshold crossed",
                               StateReasonData=reason_data([(datetime.now(UTC) - 10 * S, 9.0)]))
            succeeded = await d.wait_for("level_succeeded", timeout=20, target="api", level=1)
            read_before = proxy.count("GetMetricData")

            async def publish() -> None:  # the service after the actions: `value` every second
                while True:
                    await asyncio.to_thread(cw.put_metric_data, Namespace="Shop", MetricData=[
                        {"MetricName": metric, "Timestamp": datetime.now(UTC), "Value": value}])
                    await asyncio.sleep(1)

            publishing = asyncio.create_task(publish())
            waited = time.monotonic()
            await d.wait_for(outcome, timeout=40, target="api")
            assert read_before == 0  # nothing was read of the metric before the verification was due
            assert proxy.count("GetMetricData") >= 1 and time.monotonic() - waited >= 10
            if outcome == "mitigated":
                assert admin_api.count("/api/l2") == 0
            else:
                await d.wait_for("level_started", timeout=10, target="api", level=2)
            assert succeeded["target"] == "api"
        finally:
            if publishing is not None:
                publishing.cancel()
            await d.stop()


# --- pushed --------------------------------------------------------------------------------------


def pushed(url: str, region: str, alarms: tuple[str, ...], visibility: int = 30) -> tuple[Any, Any, str]:
    """The alarms (OK) and a queue "alarm-events" in `region`: the CloudWatch and SQS clients and the queue's URL."""
    cw, sqs = clients(url, region)
    for name in alarms:
        put_alarm(cw, name)
    queue: str = sqs.create_queue(QueueName="alarm-events",
                                  Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
    return cw, sqs, queue


def messages_left(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def ledger(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "watchdog.db") as db:
        return dict(db.execute("SELECT alarm, state FROM alarm_states WHERE source = 'alarms'").fetchall())


async def test_an_event_on_the_queue_opens_an_incident_within_one_long_poll(tmp_path, moto_url, aws_env, admin_api):
    region = "ap-northeast-1"
    cw, sqs, url = pushed(moto_url, region, ("cart-errors",))
    # interval 1h: the read at start is the only one, so only the event can open the incident.
    d = await Daemon(config(tmp_path, moto_url, region, admin_api.url, {"cart": "cart-errors"}, interval="1h",
                            queue_url=url)).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "cart"), "ok"), 20, "the read at start")
        await asyncio.sleep(1)  # the queue's first long poll is waiting
        sent = time.monotonic()
        sqs.send_message(QueueUrl=url, MessageBody=state_change("cart-errors", "ALARM", datetime.now(UTC)))
        await d.wait_for("level_started", timeout=30, target="cart", level=1)
        took = time.monotonic() - sent
        assert took < 20 + 5, f"{took:.1f}s: longer than one long poll (20 s) and slack"
        await until(lambda: messages_left(sqs, url) == 0, 10, "the message deleted")
        assert ledger(tmp_path) == {"cart-errors": "ALARM"}
        await until(lambda: admin_api.count("/cart/l1", "PUT") == 1, 10, "level 1's request")
    finally:
        await d.stop()


async def test_after_a_reload_the_new_source_takes_the_events_of_its_new_rule(tmp_path, moto_url, aws_env, admin_api):
    region = "ap-south-2"
    # The old source's long poll is cut short at the reload, and SQS may still hand it the next message
    # (its server side waits on): that message comes back after its visibility timeout, 2 s here.
    cw, sqs, url = pushed(moto_url, region, ("web-errors", "api-errors"), visibility=2)
    path = config(tmp_path, moto_url, region, admin_api.url, {"web": "web-errors"}, interval="1h", queue_url=url)
    d = await Daemon(path).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "web"), "ok"), 20, "the read at start")
        config(tmp_path, moto_url, region, admin_api.url, {"web": "web-errors", "api": "api-errors"}, interval="1h",
               queue_url=url)
        d.signal(signal.SIGHUP)
        await d.wait_for("reloaded", timeout=20)
        await until(lambda: _is(rule_state(port, "api"), "ok"), 20, "the new source's read")
        await asyncio.sleep(1)
        sqs.send_message(QueueUrl=url, MessageBody=state_change("api-errors", "ALARM", datetime.now(UTC)))
        await d.wait_for("level_started", timeout=20 + 2 + 5, target="api", level=1)  # no full read for 1 h
        await until(lambda: messages_left(sqs, url) == 0, 10, "the message deleted")
        assert ledger(tmp_path) == {"api-errors": "ALARM"}
    finally:
        await d.stop()


async def test_duplicate_late_and_lost_events_leave_every_rule_right_after_the_next_reconcile(
        tmp_path, moto_url, aws_env, admin_api):
    region = "ap-southeast-1"
    cw, sqs, url = pushed(moto_url, region, ("dup", "late", "lost"))
    d = await Daemon(config(tmp_path, moto_url, region, admin_api.url, {"dup": "dup", "late": "late", "lost": "lost"},
                            interval="6s", queue_url=url)).start()
    try:
        port = await d.port()
        await until(lambda: _is(rule_state(port, "lost"), "ok"), 20, "the read at start")
        await asyncio.sleep(1)
        t1 = datetime.now(UTC)
        cw.set_alarm_state(AlarmName="dup", StateValue="ALARM", StateReason="test")
        cw.set_alarm_state(AlarmName="late", StateValue="ALARM", StateReason="test")
        cw.set_alarm_state(AlarmName="late", StateValue="OK", StateReason="test")
        cw.set_alarm_state(AlarmName="lost", StateValue="ALARM", StateReason="test")
        t2 = datetime.now(UTC)
        body = state_change("dup", "ALARM", t1)
        sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody=body)  # delivered twice, as SQS may
        sqs.send_message(QueueUrl=url, MessageBody=state_change("late", "OK", t2, previous="ALARM"))
        sqs.send_message(QueueUrl=url, MessageBody=state_change("late", "ALARM", t1))  # older, arriving after
        # ("lost" changed to ALARM and its event never came.)
        await until(lambda: len([e for e in d.events("alarm_event_received") if e["alarm"] == "late"]) == 2, 30,
                    "both events of 'late' received")
        await d.wait_for("level_started", timeout=10, target="dup", level=1)
        await until(lambda: messages_left(sqs, url) == 0, 10, "every message deleted")
        await d.wait_for("level_started", timeout=6 + 10, target="lost", level=1)  # the next reconcile
        await polled(port, 2)
        # "dup" and "lost" are in alarm (each opened its incident, once; their rules now show what is known since
        # level 1's actions); "late" is OK, as CloudWatch's last change says, and was never acted on.
        assert opened(d, "dup") == 1 and opened(d, "late") == 0 and opened(d, "lost") == 1
        assert await rule_state(port, "late") == "ok"
        assert admin_api.count("/dup/l1") == 1 and admin_api.count("/late/l1") == 0
    finally:
        await d.stop()


async def test_killed_between_the_receive_and_the_record_the_event_is_handled_once_after_the_restart(
        tmp_path, moto_url, aws_env, admin_api):
    region = "me-south-1"
    cw, sqs, url = pushed(moto_url, region, ("ship-errors",), visibility=3)
    path = config(tmp_path, moto_url, region, admin_api.url, {"ship": "ship-errors"}, interval="1h", queue_url=url)
    first = await Daemon(path, env={"WATCHDOG_TEST_FAILPOINTS": "after_receive"}).start()
    try:
        port = await first.port()
        await until(lambda: _is(rule_state(port, "ship"), "ok"), 20, "the read at start")
        # CloudWatch's own state stays OK (moto's, from before): only the event says ALARM, so only the event,
        # handled after the restart, can open the incident.
        sqs.send_message(QueueUrl=url, MessageBody=state_change("ship-errors", "ALARM", datetime.now(UTC)))
        await first.wait_for("failpoint_reached", timeout=30, failpoint="after_receive")
        first.proc.kill()  # type: ignore[union-attr]  # SIGKILL: nothing is flushed, nothing is deleted
        await first.wait(10)
    finally:
        await first.stop()
    assert not first.events("incident_opened") and ledger(tmp_path) == {}
    assert messages_left(sqs, url) == 1

    second = await Daemon(path).start()
    try:
        await second.port()
        await second.wait_for("level_started", timeout=30, target="ship", level=1)  # after the visibility timeout
        await until(lambda: messages_left(sqs, url) == 0, 10, "the message deleted")
        await asyncio.sleep(3 + 1)  # a visibility timeout more: nothing comes back
        assert len(second.events("alarm_event_received")) == 1
        assert opened(second, "ship") == 1 and admin_api.count("/ship/l1", "PUT") == 1
        assert ledger(tmp_path) == {"ship-errors": "ALARM"}
    finally:
        await second.stop()


# --- validate --------------------------------------------------------------------------------------


async def validate(path: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "watchdog", "validate", "-c", path,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    row = next(ln for ln in out.decode().splitlines() if ln.startswith("source alarms (cloudwatch_alarms)"))
    return proc.returncode or 0, " ".join(row.split())


async def test_validate_reads_the_alarms_by_name_and_the_queue_and_takes_nothing_from_it(tmp_path, moto_url, aws_env,
                                                                                          admin_api):
    region = "af-south-1"
    cw, sqs, url = pushed(moto_url, region, ("inv-errors",))
    sqs.send_message(QueueUrl=url, MessageBody=state_change("inv-errors", "ALARM", datetime.now(UTC)))
    async with counting(moto_url) as proxy:
        code, row = await validate(config(tmp_path, proxy.url, region, admin_api.url, {"inv": "inv-errors"},
                                          queue_url=url))
        assert "pass answered (inv-alarm)" in row, row
        assert [(api, p.get("AlarmNames.member.1") or p.get("QueueUrl")) for api, p in proxy.requests] == [
            ("GetQueueAttributes", url), ("DescribeAlarms", "inv-errors")]
        assert messages_left(sqs, url) == 1  # the event stays for the daemon

        code, row = await validate(config(tmp_path, proxy.url, region, admin_api.url, {"inv": "inv-erors"},
                                          queue_url=url))
        assert code == 1 and "FAIL alarm 'inv-erors' (rule inv/inv-alarm): not in CloudWatch" in row, row
        code, row = await validate(config(tmp_path, proxy.url, region, admin_api.url, {"inv": "inv-errors"},
                                          queue_url=url + "-gone"))
        assert code == 1 and "FAIL GetQueueAttributes: QueueDoesNotExist: The specified queue does not exist." in row, row
