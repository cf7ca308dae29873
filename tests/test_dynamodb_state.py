"""The DynamoDB state backend (`state: {type: dynamodb, table: T}`) through what an operator and the daemon do
with it, against moto's DynamoDB in server mode (../shared/aws-emulators.md: conditions, transactions and
consistent reads as DynamoDB documents them), through the daemon's own aioboto3 client:
- `state init` makes the table, finds it the second time, refuses a table with other keys, and says an
  unreachable endpoint in one line;
- `incidents list/show/report/verify-log` read it, and verify-log finds an edited record;
- a missing table is one line naming `state init`, for the daemon and the commands alike;
- a write AWS refuses shows in the backend's health and the listener, is retried, and lands once allowed;
  a write whose answer was lost is found where it landed, never written twice;
- what one watchdog writes, another reads after its refresh, and the chain two writers make verifies.
The store contract itself (every capability, alike on every backend) is tests/test_store_contract.py's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from aws_gate import gate
from configs import CLOSED, hybrid_routing, parsed, write
from timing import FakeClock
from watchdog.cli.main import main
from watchdog.config.models import AwsSection
from watchdog.core.pause import Pause
from watchdog.lifecycle.validate import state_check
from watchdog.shared.events import Event
from watchdog.state.backend import StateDeps, state_kind
from watchdog.state.codec import encode_incident
from watchdog.state.storage import StoreError, WriteFailure
from watchdog.core.escalation import Incident, LevelRun, Phase, Trigger

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
S = timedelta(seconds=1)
KIND = state_kind("dynamodb")


def config(table: str, endpoint: str, **state: Any) -> dict[str, Any]:
    return hybrid_routing(aws_endpoint=endpoint, watchdog={"state": {"type": "dynamodb", "table": table, **state}})


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


async def opened(table: str, endpoint: str, me: str = "w-a", clock: FakeClock | None = None) -> Any:
    """The backend as the daemon opens it, after its first lease round (a lease nobody holds is taken at once)."""
    cfg = KIND.config.model_validate({"type": "dynamodb", "table": table})
    state = await KIND.open(cfg, StateDeps("test", clock or FakeClock(T0), AwsSection(endpoint_url=endpoint), me,
                                           ("svc",)))
    try:
        for change in await state.peers.round(()):
            state.peers.settled(change.target)  # as the runtime does once it has resumed the target
    except Exception:
        await state.aclose()
        raise
    return state


def an_incident(id_: str) -> Incident:
    inc = Incident(id=id_, target="svc", opened_at=T0, phase=Phase.VERIFYING, level=1)
    inc.trigger = {"latency": Trigger(1800.0, "> 1500", T0, "3 of 3 datapoints breach > 1500")}
    inc.watch = {"latency"}
    inc.runs.append(LevelRun(1, T0, "alarm", T0 + 2 * S, "succeeded", "HTTP 200"))
    return inc


def opened_event(incident: str) -> Event:
    return Event("incident_opened", "warning", "svc", incident, 1, T0, "alarm: latency = 1800", "running level 1")


# --- state init ---------------------------------------------------------------------------------------------


def test_state_init_makes_the_table_then_finds_it(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    name = f"init-me-{uuid.uuid4().hex[:8]}"
    path = write(tmp_path, config(name, moto_url))
    code, out, err = run(["state", "init", "-c", path], capsys)
    assert (code, out, err) == (0, f"state table {name}: created\n", "")
    described = boto3.client("dynamodb", endpoint_url=moto_url).describe_table(TableName=name)["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in described["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    code, out, err = run(["state", "init", "-c", path], capsys)
    assert (code, out, err) == (0, f"state table {name}: exists with the expected keys\n", "")


def test_state_init_refuses_a_table_with_other_keys(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    name = f"other-keys-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", endpoint_url=moto_url).create_table(
        TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
    code, out, err = run(["state", "init", "-c", write(tmp_path, config(name, moto_url))], capsys)
    assert code == 1 and out == ""
    assert err == (f"rollback-watchdog state init: dynamodb table {name} exists with other keys (id (HASH)); "
                   "it needs pk (HASH) and sk (RANGE), both strings\n")


def test_state_init_says_an_unreachable_endpoint_in_one_line(tmp_path: Path, aws_env: dict[str, str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["state", "init", "-c", write(tmp_path, config("t01", CLOSED))], capsys)
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err == ('rollback-watchdog state init: dynamodb table t01: cannot create it: Could not connect to the endpoint '
                   'URL: "http://127.0.0.1:9/"\n')


def test_state_init_on_the_sqlite_file_has_nothing_to_make(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["state", "init", "-c", write(tmp_path, hybrid_routing(state_path=tmp_path / "w.db"))],
                         capsys)
    assert (code, err) == (0, "") and out == (f"state path {tmp_path / 'w.db'}: nothing to create; the daemon makes "
                                              "it at its first start\n")
    assert not (tmp_path / "w.db").exists()


@pytest.mark.parametrize(("state", "problem"), [
    ({"table": "ab"}, "watchdog.state.table: a DynamoDB table's name: 3 to 255 of A-Z a-z 0-9 _ . - (line 5)"),
    ({"table": "a table"}, "watchdog.state.table: a DynamoDB table's name: 3 to 255 of A-Z a-z 0-9 _ . - (line 5)"),
    ({"table": "t01", "lease": "1s"}, "watchdog.state.lease: at least 3s (got 1s) (line 6)"),
    ({"table": "t01", "tabel": "t02"}, "watchdog.state.tabel: unknown key (a typo?) (line 6)"),
])
def test_a_wrong_state_section_is_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                state: dict[str, Any], problem: str) -> None:
    cfg = hybrid_routing(watchdog={"state": {"type": "dynamodb", **state}})
    code, out, err = run(["check-config", "-c", write(tmp_path, cfg)], capsys)
    assert (code, out, err) == (2, "", problem + "\n")


# --- the incidents commands ----------------------------------------------------------------------------------


def test_the_incidents_commands_read_the_table_and_verify_log_finds_an_edit(
        tmp_path: Path, moto_url: str, state_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    async def keep() -> None:
        state = await opened(state_table, moto_url)
        s = state.store
        s.event(opened_event("svc-1"))
        s.intent(T0 + S, "svc", "svc-1", 1, "#1 http: PUT /admin/feature-flags", 1, False)
        s.outcome(T0 + 2 * S, "svc", "svc-1", 1, "#1 http: PUT /admin/feature-flags", 1, "succeeded", "HTTP 200",
                  False)
        s.save_incident(encode_incident(an_incident("svc-1")))
        await s.flush()
        await state.aclose()

    asyncio.run(keep())
    path = write(tmp_path, config(state_table, moto_url))
    code, out, err = run(["incidents", "list", "-c", path], capsys)
    assert code == 0 and err == "" and "svc-1" in out and "verifying" in out
    code, out, err = run(["incidents", "show", "svc-1", "-c", path], capsys)
    assert code == 0 and "#2" in out and "intent" in out and "#3" in out and "succeeded" in out
    code, out, err = run(["incidents", "report", "svc-1", "-c", path], capsys)
    assert code == 0 and "svc-1" in out and "latency" in out
    code, out, err = run(["incidents", "verify-log", "-c", path], capsys)
    assert (code, err) == (0, "") and "3 records" in out

    dynamo = boto3.client("dynamodb", endpoint_url=moto_url)
    key = {"pk": {"S": "AUDIT"}, "sk": {"S": f"{2:020d}"}}
    row = json.loads(dynamo.get_item(TableName=state_table, Key=key)["Item"]["row"]["S"])
    row["data"]["action"] = "#1 http: PUT /admin/somewhere-else"
    dynamo.update_item(TableName=state_table, Key=key, UpdateExpression="SET #r = :r",
                       ExpressionAttributeNames={"#r": "row"},
                       ExpressionAttributeValues={":r": {"S": json.dumps(row, sort_keys=True, separators=(",", ":"))}})
    code, out, err = run(["incidents", "verify-log", "-c", path], capsys)
    assert code == 1 and "record 2: content does not match its hash (edited)" in out + err


def test_a_missing_table_is_one_line_naming_state_init(tmp_path: Path, moto_url: str, aws_env: dict[str, str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError) as raised:
        asyncio.run(opened("never-made", moto_url))
    said = "dynamodb table never-made does not exist: create it with `rollback-watchdog state init -c CONFIG`"
    assert str(raised.value) == said
    code, out, err = run(["incidents", "list", "-c", write(tmp_path, config("never-made", moto_url))], capsys)
    assert (code, out, err) == (1, "", f"rollback-watchdog incidents: {said}\n")


async def test_validate_probes_the_table(moto_url: str, state_table: str) -> None:
    check = await state_check(parsed(config(state_table, moto_url)))
    assert (check.name, check.ok, check.detail) == (f"state table {state_table}", True,
                                                    "exists with its keys; the audit log holds 0 records")
    check = await state_check(parsed(config("never-made", moto_url)))
    assert not check.ok and "does not exist: create it with `rollback-watchdog state init" in check.detail


# --- writes that fail, and recover -----------------------------------------------------------------------------


class Heard:
    def __init__(self) -> None:
        self.changes: list[WriteFailure | None] = []

    def changed(self, failure: WriteFailure | None) -> None:
        self.changes.append(failure)


async def until(cond: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "not reached in time"
        await asyncio.sleep(0.02)


async def test_a_refused_write_shows_is_retried_and_lands_once_allowed(moto_url: str, state_table: str) -> None:
    async with gate(moto_url) as g:
        state = await opened(state_table, g.url)
        heard = Heard()
        state.watch(heard)
        try:
            g.deny.add("TransactWriteItems")
            made = state.store.event(opened_event("svc-1"))
            await until(lambda: state.health.failure is not None and state.health.failure.attempts >= 2)
            failure = state.health.failure
            assert failure.error.startswith(f"dynamodb table {state_table}: cannot write the audit log: "
                                            "AccessDeniedException: User: ")
            assert state.health.pending == 1 and state.store.records() == []
            g.deny.clear()
            await state.store.flush()
            await until(lambda: state.health.failure is None and state.health.pending == 0)  # told on the loop
            assert [c is None for c in heard.changes] == [False, True]
            assert state.store.records() == [made]
            assert await state.store.table.check_chain() == (1, [])
        finally:
            await state.aclose()


async def test_a_write_whose_answer_was_lost_is_found_where_it_landed(moto_url: str, state_table: str) -> None:
    async with gate(moto_url) as g:
        state = await opened(state_table, g.url)
        try:
            async def lose_the_answer() -> None:
                raise ConnectionResetError("the answer never came back")

            g.after["TransactWriteItems"] = lose_the_answer  # the record lands, the writer hears a failure
            made = state.store.event(opened_event("svc-1"))
            await state.store.flush()
            assert g.count("TransactWriteItems") == 1  # tried again as a read of the number it took, not a write
            assert state.store.records() == [made]
            assert await state.store.table.check_chain() == (1, [])
        finally:
            await state.aclose()


# --- two watchdogs on one table ----------------------------------------------------------------------------------


async def test_what_one_watchdog_writes_the_other_reads_after_its_refresh(moto_url: str, state_table: str) -> None:
    a, b = await opened(state_table, moto_url, "w-a"), await opened(state_table, moto_url, "w-b")
    assert a.peers.may_act("svc") and not b.peers.may_act("svc")
    try:
        b.store.event(opened_event("svc-1"))
        await b.store.flush()
        # a has not read b's record: its own is numbered as if it were the only writer, and lands after b's
        guess = a.store.event(Event("level_started", "warning", "svc", "svc-1", 1, T0 + S, "alarm", "verify"))
        a.store.save_pause(Pause("svc", T0 + timedelta(hours=1), "router upgrade"))
        a.store.save_incident(encode_incident(an_incident("svc-1")))
        await a.store.flush()
        assert guess.seq == 1 and [r.seq for r in a.store.records()] == [2]
        await a.store.refresh()
        await b.store.refresh()
        for s in (a.store, b.store):
            assert [(r.seq, r.data["event"]) for r in s.records()] == [(1, "incident_opened"), (2, "level_started")]
            assert s.pauses() == ([Pause("svc", T0 + timedelta(hours=1), "router upgrade")], [])
            assert [r["id"] for r in s.open_incidents()] == ["svc-1"]
        assert await a.store.table.check_chain() == (2, [])
    finally:
        await a.aclose()
        await b.aclose()


async def test_only_the_lease_holder_claims_a_message_and_a_deposed_one_is_refused(moto_url: str,
                                                                                    state_table: str) -> None:
    a, b = await opened(state_table, moto_url, "w-a"), await opened(state_table, moto_url, "w-b")
    try:
        done: list[str] = []
        a.outbox.enqueue("audit-1", opened_event("svc-1"), False, ["pager"], T0, None, lambda: done.append("1"))
        a.outbox.enqueue("audit-2", opened_event("svc-1"), False, ["pager"], T0, None, lambda: done.append("2"))
        await a.store.flush()
        await b.refresh()
        first = a.outbox.head("pager")
        assert first is not None and done == ["1", "2"]
        assert b.outbox.head("pager") is None  # b holds no lease of svc: none of its messages is b's to send
        assert not await b.outbox.claim(first.id)
        assert await a.outbox.claim(first.id)
        # Another watchdog takes the lease over (as after a lease unrenewed) while a still believes it holds it:
        # a's claim of the next message is refused by the table, whatever a believes.
        dynamo = boto3.client("dynamodb", endpoint_url=moto_url)
        dynamo.update_item(TableName=state_table, Key={"pk": {"S": "LEASE"}, "sk": {"S": "svc"}},
                           UpdateExpression="SET holder = :b, epoch = epoch + :one, version = :v",
                           ExpressionAttributeValues={":b": {"S": "w-b"}, ":one": {"N": "1"}, ":v": {"S": "taken"}})
        assert a.peers.may_act("svc")
        await a.outbox.mark_sent(first.id, T0 + S)
        second = a.outbox.head("pager")
        assert second is not None and second.id != first.id
        assert not await a.outbox.claim(second.id)
        assert a.outbox.head("pager") is None  # refused: out of a's mirror until a refresh says what became of it
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_takeover_queues_the_events_the_dead_holder_recorded_and_never_queued(moto_url: str,
                                                                                      state_table: str) -> None:
    """a holds svc. Long before it died it recorded an event that nobody queued (no channel took it then); just
    before dying it recorded one and queued it, then another and died before queuing it. b read each at its
    refreshes. Taking svc over a lease later, b queues the last one only: the one before is queued already
    (one message per key and channel), and the first arrived more than two leases ago (default lease 20 s)."""
    clock_b = FakeClock(T0)
    a, b = await opened(state_table, moto_url, "w-a"), await opened(state_table, moto_url, "w-b", clock_b)
    try:
        def event(kind: str, at: int) -> Event:
            return Event(kind, "warning", "svc", "svc-1", 1, T0 + at * S, "alarm", "next")

        def queue(state: Any, seq: int, ev: Event) -> None:
            state.outbox.enqueue(f"audit-{seq}", ev, False, ["pager"], T0, seq, lambda: None)

        a.store.event(event("would_run", 0))
        await a.store.flush()
        await b.refresh()
        clock_b.advance(seconds=60)
        queued_one = a.store.event(event("incident_opened", 60))
        queue(a, queued_one.seq, event("incident_opened", 60))
        unqueued = a.store.event(event("level_started", 61))  # a dies here, before queuing it
        await a.store.flush()
        await b.refresh()
        clock_b.advance(seconds=20)  # a lease later, b takes svc over

        handed: list[int] = []

        def replay(events: Any) -> int:
            # The notifier's replay, for one channel that takes every event: each queued under its record's key.
            for seq, ev, dry_run in events:
                handed.append(seq)
                queue(b, seq, ev)
            return len(events)

        b.requeue(replay, taken="svc")
        b.requeue(replay, taken="other")  # another target's takeover: none of svc's events
        await b.store.flush()
        assert handed == [queued_one.seq, unqueued.seq]  # not the old one
        items = boto3.client("dynamodb", endpoint_url=moto_url).query(
            TableName=state_table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "OUTBOX"}},
            ConsistentRead=True)["Items"]
        keys = sorted(i["key"]["S"] for i in items)
        assert keys == sorted([f"audit-{queued_one.seq}", f"audit-{unqueued.seq}"])  # each once, the old one not
    finally:
        await a.aclose()
        await b.aclose()
