"""The shared DynamoDB table of several watchdogs (SPEC 4.5): its key schema, `state init`, the lease items and
the hash-chained audit log, each write conditional, so that two watchdogs can never both win.

One table, two string keys (`pk`, `sk`), on demand:

| item | pk | sk | attributes |
|---|---|---|---|
| a target's lease | `LEASE` | the target | `holder` (absent: released), `epoch`, `version` |
| a watchdog's heartbeat | `PEER` | its instance id | `version`, `load` (leases it holds) |
| an audit record | `AUDIT` | the sequence number, 20 digits | `row` (canonical JSON), `prev`, `hash` |
| the audit head | `META` | `audit-head` | `seq`, `hash` |

The lease writes are core/lease.py's decisions, each on the condition that makes it safe: a take on the version
the taker watched (or on there being no item), a renewal or a release on holder and epoch. An audit record is
put with its head in one transaction, on the condition that the head is still the one it follows, so two writers
can never fork the chain: the loser reads the new head and tries again. An action's intent adds a check of the
lease to that transaction (holder and epoch): a deposed holder cannot record an intent, and so never acts.
TTL plays no part in any of it (DynamoDB deletes expired items within days, at no fixed time).

Not wired to the runtime yet (issue 24): the store backend on this table comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchdog.core.lease import LeaseItem, Release, Renew, Take
from watchdog.state.auditchain import GENESIS, canonical, chain_hash, chain_problems
from watchdog.state.storage import StoreError

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
HEAD = {"pk": {"S": "META"}, "sk": {"S": "audit-head"}}
APPEND_TRIES = 20  # each lost race means another writer's record landed: the chain moved on, never stuck


class Fenced(StoreError):
    """The lease is no longer this watchdog's (holder or epoch moved): the intent was not recorded."""


def _lease_key(target: str) -> dict[str, Any]:
    return {"pk": {"S": "LEASE"}, "sk": {"S": target}}


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class Table:
    """The table's writes and reads, through one aioboto3 DynamoDB client (botocore's retries off: a write that
    fails is decided again by its caller, never repeated blindly)."""

    def __init__(self, client: Any, name: str):
        self._client, self.name = client, name

    # --- state init ----------------------------------------------------------------------------------------

    async def create(self) -> str:
        """The table made, or found with the expected keys: "created" or "exists"; StoreError otherwise."""
        try:
            await self._client.create_table(TableName=self.name, KeySchema=KEYS, BillingMode="PAY_PER_REQUEST",
                                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                                  {"AttributeName": "sk", "AttributeType": "S"}])
        except Exception as exc:
            if _code(exc) != "ResourceInUseException":
                raise StoreError(f"dynamodb table {self.name}: cannot create it: {_code(exc) or exc}") from None
            described = (await self._client.describe_table(TableName=self.name))["Table"]
            if sorted(map(str, described["KeySchema"])) != sorted(map(str, KEYS)):
                keys = ", ".join(f"{k['AttributeName']} ({k['KeyType']})" for k in described["KeySchema"])
                raise StoreError(f"dynamodb table {self.name} exists with other keys ({keys}); it needs pk (HASH) "
                                 "and sk (RANGE), both strings") from None
            return "exists"
        waiter = self._client.get_waiter("table_exists")
        await waiter.wait(TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        return "created"

    # --- leases --------------------------------------------------------------------------------------------

    async def lease(self, target: str) -> LeaseItem | None:
        got = await self._client.get_item(TableName=self.name, Key=_lease_key(target), ConsistentRead=True)
        item = got.get("Item")
        if item is None:
            return None
        return LeaseItem(item["holder"]["S"] if "holder" in item else None, int(item["epoch"]["N"]),
                         item["version"]["S"])

    async def write_lease(self, target: str, me: str, decision: Take | Renew | Release, version: str) -> bool:
        """The decision written on its condition; False when the condition failed (somebody else moved first)."""
        values: dict[str, Any] = {":v": {"S": version}, ":e": {"N": str(decision.epoch)}, ":me": {"S": me}}
        if isinstance(decision, Take):
            update = "SET holder = :me, epoch = :e, version = :v"
            if decision.expected is None:
                condition = "attribute_not_exists(pk)"
            else:
                condition, values[":old"] = "version = :old", {"S": decision.expected}
        elif isinstance(decision, Renew):
            update, condition = "SET version = :v", "holder = :me AND epoch = :e"
        else:
            update, condition = "SET version = :v REMOVE holder", "holder = :me AND epoch = :e"
        try:
            await self._client.update_item(TableName=self.name, Key=_lease_key(target), UpdateExpression=update,
                                           ConditionExpression=condition, ExpressionAttributeValues=values)
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def beat(self, me: str, version: str, load: int) -> None:
        await self._client.put_item(TableName=self.name, Item={
            "pk": {"S": "PEER"}, "sk": {"S": me}, "version": {"S": version}, "load": {"N": str(load)}})

    async def peers(self) -> dict[str, tuple[str, int]]:
        """Every heartbeat: instance id -> (version, load)."""
        out = {}
        for item in await self._query("PEER"):
            out[item["sk"]["S"]] = (item["version"]["S"], int(item["load"]["N"]))
        return out

    # --- the audit log -------------------------------------------------------------------------------------

    async def head(self) -> tuple[int, str]:
        got = await self._client.get_item(TableName=self.name, Key=HEAD, ConsistentRead=True)
        item = got.get("Item")
        return (int(item["seq"]["N"]), item["hash"]["S"]) if item else (0, GENESIS)

    async def append(self, row: Mapping[str, Any], fence: tuple[str, str, int] | None = None) -> int:
        """`row` (the audit record's fields but its seq) as the next record; its seq. `fence` (target, holder,
        epoch): only while that lease is still so, else Fenced and nothing is written."""
        for _ in range(APPEND_TRIES):
            seq, top = await self.head()
            text = canonical({**row, "seq": seq + 1})
            digest = chain_hash(top, text)
            items: list[dict[str, Any]] = []
            if fence is not None:
                target, me, epoch = fence
                items.append({"ConditionCheck": {
                    "TableName": self.name, "Key": _lease_key(target), "ConditionExpression": "holder = :me AND epoch = :e",
                    "ExpressionAttributeValues": {":me": {"S": me}, ":e": {"N": str(epoch)}}}})
            items.append({"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
                "pk": {"S": "AUDIT"}, "sk": {"S": f"{seq + 1:020d}"}, "row": {"S": text}, "prev": {"S": top},
                "hash": {"S": digest}}}})
            head_values = {":s": {"N": str(seq + 1)}, ":h": {"S": digest}, ":old": {"N": str(seq)}}
            items.append({"Update": {
                "TableName": self.name, "Key": HEAD, "UpdateExpression": "SET seq = :s, #h = :h",
                "ConditionExpression": "attribute_not_exists(pk) OR seq = :old" if seq == 0 else "seq = :old",
                "ExpressionAttributeNames": {"#h": "hash"}, "ExpressionAttributeValues": head_values}})
            try:
                await self._client.transact_write_items(TransactItems=items)
                return seq + 1
            except Exception as exc:
                if _code(exc) != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in getattr(exc, "response", {}).get("CancellationReasons", [])]
                if fence is not None and reasons and reasons[0] == "ConditionalCheckFailed":
                    raise Fenced(f"lease of {fence[0]} is no longer {fence[1]}'s at epoch {fence[2]}: "
                                 "the intent was not recorded") from None
                # another writer's record took this number: read the new head, link to it
        raise StoreError(f"dynamodb table {self.name}: the audit log moved {APPEND_TRIES} times under one write")

    async def records(self) -> list[tuple[int, str, str, str]]:
        """Every audit record, oldest first: (seq, row text, prev, hash)."""
        return [(int(i["sk"]["S"]), i["row"]["S"], i["prev"]["S"], i["hash"]["S"]) for i in await self._query("AUDIT")]

    async def check_chain(self) -> tuple[int, list[str]]:
        """(records checked, what is wrong with the chain), as `incidents verify-log` says it."""
        import json

        rows = []
        for seq, text, prev, digest in await self.records():
            r = json.loads(text)
            rows.append((seq, r.get("at"), r.get("kind"), r.get("target"), r.get("incident"), r.get("level"),
                         r.get("dry_run"), canonical(r.get("data")), prev, digest))
        head = await self._client.get_item(TableName=self.name, Key=HEAD, ConsistentRead=True)
        item = head.get("Item")
        return len(rows), chain_problems(rows, (int(item["seq"]["N"]), item["hash"]["S"]) if item else None)

    async def _query(self, pk: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"TableName": self.name, "KeyConditionExpression": "pk = :pk",
                              "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
        while True:
            got = await self._client.query(**kw)
            out += got.get("Items", [])
            if "LastEvaluatedKey" not in got:
                return out
            kw["ExclusiveStartKey"] = got["LastEvaluatedKey"]
