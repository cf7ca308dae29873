"""The shared table's primitives (watchdog/state/dynamodb/table.py) against moto's DynamoDB in server mode, through
the daemon's own aioboto3 client: `state init`, the lease writes on their conditions, the audit chain that two
writers cannot fork, and the fence that keeps a deposed holder from recording an intent. moto enforces
ConditionExpression and TransactWriteItems' ConditionCheck as DynamoDB documents (../shared/aws-emulators.md);
each expectation below is the documented rule, and the chain is checked by the same verifier as the SQLite file's.

Then the lease rules (watchdog/core/lease.py) driven against the real table by two watchdogs on a test clock:
one stops renewing (SIGSTOP), the other takes over a lease later, and the woken one can no longer record an
intent.
"""

from __future__ import annotations

import itertools
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import boto3
import pytest

from aws_gate import gate
from watchdog.config.models import AwsSection
from watchdog.core.lease import Handover, Held, LeaseItem, Lost, Release, Renew, Take, Wait, may_act, observe, plan
from watchdog.state.dynamodb.table import Fenced, Table
from watchdog.state.storage import StoreError
from watchdog.support.aws import aws_client

_versions = itertools.count(1)


def version() -> str:
    return f"v{next(_versions)}"


@pytest.fixture
def table(shared_table: Table) -> Table:
    return shared_table


def row(n: int, target: str = "svc") -> dict[str, Any]:
    return {"at": f"2026-12-07T10:00:{n % 60:02}+00:00", "kind": "intent", "target": target, "incident": "svc-1",
            "level": 1, "dry_run": False, "data": {"action": "#1 http: PUT /l1", "attempt": n}}


async def test_state_init_is_idempotent_and_refuses_a_table_with_other_keys(table: Table, moto_url: str) -> None:
    assert await table.create() == "exists"
    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_url).create_table(
        TableName="other-keys", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    with pytest.raises(StoreError) as wrong:
        await Table(table._client, "other-keys").create()
    assert str(wrong.value) == ("dynamodb table other-keys exists with other keys (id (HASH)); it needs pk (HASH) and "
                                "sk (RANGE), both strings")


async def test_a_lease_is_taken_by_one_of_two_renewed_by_its_holder_only_and_released(table: Table) -> None:
    # Both saw no item and both take: the second take's condition fails. (One after the other: moto's server
    # applies concurrent requests in threads without DynamoDB's isolation, so a race there proves nothing.)
    won = [await table.write_lease("svc", "b", Take(1, None), version()),
           await table.write_lease("svc", "a", Take(1, None), version())]
    assert won == [True, False]
    winner, loser = "b", "a"
    held = (await table.leases()).get("svc")
    assert held is not None and (held.holder, held.epoch) == (winner, 1)
    assert not await table.write_lease("svc", loser, Renew(1), version())
    assert await table.write_lease("svc", winner, Renew(1), "v-renewed")
    assert (await table.leases()).get("svc") == LeaseItem(winner, 1, "v-renewed")
    assert not await table.write_lease("svc", loser, Take(2, "v-stale"), version())  # watched an older version
    assert await table.write_lease("svc", loser, Take(2, "v-renewed"), "v-taken")  # the one it watched: taken
    assert not await table.write_lease("svc", winner, Renew(1), version())  # the deposed holder cannot renew
    assert await table.write_lease("svc", loser, Release(2), "v-released")
    assert (await table.leases()).get("svc") == LeaseItem(None, 2, "v-released")


async def test_a_lease_handed_over_names_its_taker_at_once_and_only_the_taker_takes_it_up(table: Table) -> None:
    assert await table.write_lease("svc", "a", Take(1, None), "v1")
    assert not await table.write_lease("svc", "b", Handover(1, "c"), version())  # not b's to give
    assert not await table.write_lease("svc", "a", Handover(2, "c"), version())  # not at a's epoch
    assert await table.write_lease("svc", "a", Handover(1, "c"), "v2")
    assert (await table.leases()).get("svc") == LeaseItem("c", 1, "v2", handed_by="a")  # one holder throughout
    assert not await table.write_lease("svc", "a", Renew(1), version())  # the giver holds it no more
    assert not await table.write_lease("svc", "c", Take(2, "v1"), version())  # on the version it read, only
    assert await table.write_lease("svc", "c", Take(2, "v2"), "v3")
    assert (await table.leases()).get("svc") == LeaseItem("c", 2, "v3")  # taken up: no longer "handed"
    assert await table.write_lease("svc", "c", Renew(2), "v4")


async def test_two_writers_never_fork_the_audit_chain(table: Table, moto_url: str) -> None:
    """Writer `a` reads the head; before its write goes out, writer `b` appends three records (the gate runs b's
    appends right after a's read). a's transaction, on the head it read, fails; it reads the new head and links
    to it. Each step is one request after another: moto's server applies concurrent requests in threads without
    DynamoDB's isolation, so only an interleaving made on purpose tests the rule."""
    async with gate(moto_url) as g, AsyncExitStack() as stack:
        client = await aws_client(stack, "dynamodb", "us-east-1", AwsSection(endpoint_url=g.url),
                                  timedelta(seconds=10))
        a = Table(client, table.name)
        assert await a.append(row(0)) == 1

        async def b_appends() -> None:
            for n in range(3):
                await table.append(row(10 + n))  # b: straight to moto
        g.after["GetItem"] = b_appends  # right after a's next read of the head
        assert await a.append(row(1)) == 5  # not 2: b's records took 2..4, and a linked to them
    assert g.calls.count("TransactWriteItems") == 3  # a's first append, its lost race, its retry
    assert [seq for seq, *_ in await table.records()] == [1, 2, 3, 4, 5]
    assert await table.check_chain() == (5, [])


async def test_a_deposed_holder_cannot_record_an_intent(table: Table) -> None:
    assert await table.write_lease("svc", "a", Take(1, None), "v1")
    assert await table.append(row(1), fence=("svc", "a", 1)) == 1
    assert await table.write_lease("svc", "b", Take(2, "v1"), "v2")  # a took too long to renew: b took over
    with pytest.raises(Fenced) as fenced:
        await table.append(row(2), fence=("svc", "a", 1))
    assert str(fenced.value) == "lease of svc is no longer a's at epoch 1: the intent was not recorded"
    assert await table.append(row(3), fence=("svc", "b", 2)) == 2
    assert await table.check_chain() == (2, [])  # nothing of a's second intent was written


async def test_an_edited_record_shows_in_the_chain(table: Table, moto_url: str) -> None:
    for n in range(3):
        await table.append(row(n))
    boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_url).update_item(
        TableName=table.name, Key={"pk": {"S": "AUDIT"}, "sk": {"S": f"{2:020d}"}},
        UpdateExpression="SET #r = :r", ExpressionAttributeNames={"#r": "row"},
        ExpressionAttributeValues={":r": {"S": '{"at":"x","data":{},"dry_run":false,"incident":null,"kind":"event",'
                                               '"level":0,"seq":2,"target":"svc"}'}})
    checked, problems = await table.check_chain()
    assert checked == 3 and problems == ["record 2: content does not match its hash (edited)"]


class Dog:
    """One watchdog's lease loop for one target, on a test clock: the rules of core/lease.py, the real table."""

    def __init__(self, name: str, table: Table):
        self.name, self.table = name, table
        self.watch: Any = None
        self.held: Held | None = None

    async def round(self, now: float, lease: float, others: dict[str, int]) -> None:
        item = (await self.table.leases()).get("svc")
        self.watch = observe(self.watch, item.version if item else None, now)
        items = {"svc": item} if item else {}
        held = {"svc": self.held} if self.held else {}
        d = plan(self.name, ["svc"], items, {"svc": self.watch}, held, now, lease, others, busy=["svc"])["svc"]
        if isinstance(d, Lost):
            self.held = None
            return
        if isinstance(d, Wait):
            return
        v = version()
        if await self.table.write_lease("svc", self.name, d, v):
            self.held = Held(d.epoch, v, now)
        else:
            self.held = None

    async def intent(self, now: float, lease: float) -> int | None:
        """An action's intent, only while the rules let it act, fenced on the lease it believes it holds."""
        if self.held is None or not may_act(self.held, now, lease, margin=2.0):
            return None
        return await self.table.append(row(int(now)), fence=("svc", self.name, self.held.epoch))


async def test_the_lease_rules_on_the_table_a_paused_holder_is_taken_over_and_cannot_act(table: Table) -> None:
    lease = 10.0
    a, b = Dog("a", table), Dog("b", table)
    for now in range(0, 5):  # a is the first to deal the free lease: a takes it; then b deals it to a
        await a.round(now, lease, {"b": 0})
        await b.round(now, lease, {"a": 1})
    assert a.held is not None and b.held is None and await a.intent(4, lease) == 1
    paused_at = 5  # a is stopped (SIGSTOP); b keeps watching the version, which no longer moves
    took = None
    for now in range(paused_at, paused_at + 20):
        await b.round(now, lease, {})
        if b.held is not None:
            took = now
            break
    assert took is not None and 4 + lease <= took <= paused_at + lease + 1  # a lease after a's last renewal seen
    assert await b.intent(took, lease) == 2
    # a wakes: by its own clock its renewal is too old to act on; and were it to try, the fence refuses it
    assert await a.intent(took + 1, lease) is None
    with pytest.raises(Fenced):
        await table.append(row(99), fence=("svc", "a", a.held.epoch if a.held else 1))
    await a.round(took + 1, lease, {"b": 1})  # it reads the lease: taken, so it holds nothing any more
    assert a.held is None and ((await table.leases()).get("svc")).holder == "b"  # type: ignore[union-attr]
    assert await table.check_chain() == (2, [])
