"""The alarm-events queue of a pushed cloudwatch_alarms source, on moto's SQS, and the alarm ledger it records
into (the state: a real SQLite file written through the daemon's writer thread, or memory).

A message is deleted only once its record has landed: here the state file's write lock is held by another
process (as an operator's sqlite3 shell would), so the record cannot land, and the message stays on the queue
until it can.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from alarm_endpoints import state_change
from polls import started
from timing import until
from watchdog.config.models import AwsSection
from watchdog.config.schema import rule_model
from watchdog.sources.alarm_book import AlarmRecord
from watchdog.sources.alarm_queue import AlarmQueue
from watchdog.sources.base import Query, SourceError
from watchdog.sources.cloudwatch_alarms import CloudWatchAlarms, CloudWatchAlarmsSource
from watchdog.sources.hooks import SourceHooks
from watchdog.state.journal import MemoryStore
from watchdog.state.sqlite.store import SqliteStore
from watchdog.state.writer import StateWriter
from watchdog.support.metrics import Metrics

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def sqs_in(url: str, region: str) -> Any:
    return boto3.client("sqs", region_name=region, endpoint_url=url)


def left(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


class Heard:
    def __init__(self) -> None:
        self.events: list[AlarmRecord] = []
        self.wakes: list[str] = []
        self.requests: list[str] = []

    def take(self, events: Any) -> bool:
        self.events += events
        return True


async def aio_sqs(url: str, region: str) -> Any:
    import aioboto3
    return aioboto3.Session().client("sqs", region_name=region, endpoint_url=url)


# --- the ledger ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_ledger_keeps_the_newest_change_per_source_and_alarm(tmp_path: Path, kind: str) -> None:
    store: Any = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "w.db")
    store.record_alarm("s", "a", "ALARM", T0 + 10 * S, "{}")
    store.record_alarm("s", "a", "OK", T0 + 5 * S, "late")  # older: dropped
    store.record_alarm("s", "a", "ALARM", T0 + 10 * S, "again")  # as old: dropped (a repeated event)
    store.record_alarm("s", "b", "OK", T0, "")
    store.record_alarm("other", "a", "INSUFFICIENT_DATA", T0 + 20 * S, "")
    # A time in another zone is the same instant.
    store.record_alarm("s", "b", "ALARM", (T0 + S).astimezone(timezone(timedelta(hours=-5))), "x")
    assert store.alarm_records("s") == [("a", "ALARM", T0 + 10 * S, "{}"), ("b", "ALARM", T0 + S, "x")]
    store.forget_alarms("s", ["b", "never-kept"])
    assert [r[0] for r in store.alarm_records("s")] == ["a"] and len(store.alarm_records("other")) == 1
    assert store.durable is (kind == "sqlite")
    if kind == "sqlite":
        store.close()
        again = SqliteStore(tmp_path / "w.db")  # what landed survives a restart
        assert again.alarm_records("s") == [("a", "ALARM", T0 + 10 * S, "{}")]
        again.close()


# --- the queue -------------------------------------------------------------------------------------


async def test_a_message_is_deleted_only_once_its_record_has_landed(tmp_path: Path, moto_url: str, aws_env: Any) -> None:
    region = "eu-west-1"
    sqs = sqs_in(moto_url, region)
    url = sqs.create_queue(QueueName="held", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    store = SqliteStore(tmp_path / "w.db")
    writer = StateWriter(initial_backoff=0.01, max_backoff=0.05)
    writer.start()
    store.attach(writer)
    holder = subprocess.Popen(  # another process holds the file's write lock
        [sys.executable, "-c", "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n", str(tmp_path / "w.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    heard = Heard()
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        sqs.send_message(QueueUrl=url, MessageBody=state_change("pay", "ALARM", T0))
        async with await aio_sqs(moto_url, region) as client:
            q = AlarmQueue("src", url, client, store, lambda name: True, heard.take, heard.wakes.append,
                           _no_failpoint, heard.requests.append, record_wait=0.5)
            assert await q.round() == 1
            # Not recorded, so not deleted: in flight, then back on the queue when its visibility ends.
            assert heard.requests == ["ReceiveMessage"] and heard.events == [] and heard.wakes == []
            await until(lambda: left(sqs, url) == (1, 0), 5, "the message visible again")
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(10)
            assert await q.round() == 1
            assert heard.requests == ["ReceiveMessage", "ReceiveMessage", "DeleteMessage"]
            assert [(e.name, e.state) for e in heard.events] == [("pay", "ALARM")] and heard.wakes == ["src"]
            assert left(sqs, url) == (0, 0) and store.alarm_records("src")[0][:2] == ("pay", "ALARM")
    finally:
        if holder.poll() is None:
            holder.kill()
        await writer.stop(timeout=5)
        store.close()


async def _no_failpoint(name: str, **where: Any) -> None:
    return None


async def test_messages_of_unnamed_alarms_and_messages_that_are_no_event_are_deleted_unrecorded(
        moto_url: str, aws_env: Any) -> None:
    region = "eu-west-2"
    sqs = sqs_in(moto_url, region)
    url = sqs.create_queue(QueueName="mixed")["QueueUrl"]
    for body in (state_change("other-team", "ALARM", T0), "not json", '{"detail-type": "EC2 Instance"}',
                 state_change("pay", "OK", T0)):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    store, heard = MemoryStore(), Heard()
    async with await aio_sqs(moto_url, region) as client:
        q = AlarmQueue("src", url, client, store, lambda name: name == "pay", heard.take, heard.wakes.append,
                       _no_failpoint, heard.requests.append)
        got = 0
        while got < 4:
            got += await q.round()
    assert [e.name for e in heard.events] == ["pay"] and [r[0] for r in store.alarm_records("src")] == ["pay"]
    assert heard.requests.count("DeleteMessage") == 4 and left(sqs, url) == (0, 0)


def pushed(moto_url: str, region: str, queue: str, ledger: Any, **cfg: Any) -> tuple[Any, str, CloudWatchAlarms]:
    """An alarm "pay" in `region`, a queue `queue`, and a source whose one rule reads "pay" through that queue."""
    boto3.client("cloudwatch", region_name=region, endpoint_url=moto_url).put_metric_alarm(
        AlarmName="pay", Namespace="Shop", MetricName="E", Statistic="Average", Period=60, EvaluationPeriods=1,
        Threshold=5, ComparisonOperator="GreaterThanThreshold")
    sqs = sqs_in(moto_url, region)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    config = CloudWatchAlarmsSource.model_validate({"name": "src", "type": "cloudwatch_alarms", "queue_url": url,
                                                    "retry": {"attempts": 1}, **cfg})
    rule = rule_model().model_validate({"name": "r", "category": "performance", "source": "src", "alarm": "pay"})
    src = CloudWatchAlarms(config, [Query("t/r", rule)], AwsSection(region=region, endpoint_url=moto_url), Metrics(),
                           SourceHooks(ledger=ledger))
    return sqs, url, src


async def test_a_queue_that_cannot_be_read_fails_the_source_and_it_recovers(tmp_path: Path, moto_url: str,
                                                                            aws_env: Any) -> None:
    store = SqliteStore(tmp_path / "w.db")
    sqs, url, src = pushed(moto_url, "eu-west-3", "flaky", store, interval="1h")
    async with started(src):
        now = datetime.now(UTC)
        assert [v for _, v in (await src.poll(now))["t/r"]] == [False]
        sqs.delete_queue(QueueUrl=url)
        await until(lambda: src.queue is not None and src.queue.failure, 30, "the queue's failure seen")
        with pytest.raises(SourceError, match="ReceiveMessage: .*(NonExistentQueue|QueueDoesNotExist)"):
            await src.poll(now + S)
        sqs.create_queue(QueueName="flaky")
        await until(lambda: src.queue is not None and src.queue.failure is None, 30, "the queue read again")
        assert [v for _, v in (await src.poll(now + 2 * S))["t/r"]][-1] is False
    store.close()


async def test_a_queue_that_does_not_exist_fails_the_first_poll_in_one_line(moto_url: str, aws_env: Any) -> None:
    region = "eu-central-1"
    cfg = CloudWatchAlarmsSource.model_validate({
        "name": "src", "type": "cloudwatch_alarms", "retry": {"attempts": 1},
        "queue_url": f"{moto_url}/123456789012/no-such-queue"})
    rule = rule_model().model_validate({"name": "r", "category": "performance", "source": "src", "alarm": "pay"})
    src = CloudWatchAlarms(cfg, [Query("t/r", rule)], AwsSection(region=region, endpoint_url=moto_url), Metrics())
    async with started(src):
        with pytest.raises(SourceError) as err:
            await src.poll(datetime.now(UTC))
    assert str(err.value).startswith("GetQueueAttributes: ") and "\n" not in str(err.value)
    assert src.queue is None  # a state in memory: nothing would be taken from the queue


async def test_without_a_durable_state_nothing_is_taken_from_the_queue(moto_url: str, aws_env: Any) -> None:
    # `run --once` and `validate`: their state is in memory.
    sqs, url, src = pushed(moto_url, "ap-east-1", "kept", MemoryStore())
    sqs.send_message(QueueUrl=url, MessageBody=state_change("pay", "ALARM", datetime.now(UTC)))
    async with started(src):
        got = await src.poll(datetime.now(UTC))
        await asyncio.sleep(0.5)
    assert [v for _, v in got["t/r"]] == [False]  # CloudWatch's own state: the event was not taken
    assert left(sqs, url) == (1, 0)
