"""The shared DynamoDB table of several watchdogs (SPEC 4.5): its key schema, `state init`, the lease items and
the hash-chained audit log, each write conditional, so that two watchdogs can never both win.

One table, two string keys (`pk`, `sk`), on demand:

| item | pk | sk | attributes |
|---|---|---|---|
| a target's lease | `LEASE` | the target | `holder` (absent: released), `epoch`, `version`, `handed_by` |
| a watchdog's heartbeat | `PEER` | its instance id | `version`, `load` (leases it holds) |
| an audit record | `AUDIT` | the sequence number, 20 digits | `row` (canonical JSON), `prev`, `hash` |
| the audit head | `META` | `audit-head` | `seq`, `hash` |

`handed_by` is there while a lease handed over has not been taken up by the holder it names. The lease writes
are core/lease.py's decisions, each on the condition that makes it safe: a take on the version the taker
watched (or on there being no item), a renewal, a handover or a release on holder and epoch. An audit record is
put with its head in one transaction, on the condition that the head is still the one it follows, so two writers
can never fork the chain: the loser reads the new head and tries again. An action's intent adds a check of the
lease to that transaction (holder and epoch): a deposed holder cannot record an intent, and so never acts.
TTL plays no part in any of it (DynamoDB deletes expired items within days, at no fixed time).

The store's items (watchdog/state/dynamodb/store.py, outbox.py) share the table:

| item | pk | sk | attributes |
|---|---|---|---|
| an incident | `INCIDENT` | its id | `target`, `opened_at`, `phase`, `level`, `closed_at`, `updated_at`, `snapshot` |
| a pause | `PAUSE` | its scope | `pause` (canonical JSON) |
| an alarm's newest state | `ALARM` | `[source, alarm]` as JSON | `state`, `at` (µs since the epoch), `reason_data` |
| a notification | `OUTBOX` | its delivery id, 20 digits | `channel`, `key`, `state`, `event`, `dry_run`, ... |
| a notification's key per channel | `OUTKEY` | `[channel, key]` as JSON | (none: it exists once) |
| a channel's thread of an incident | `THREAD` | `[channel, incident]` as JSON | `ref` |
| counters and marks | `META` | `audit-head`, `outbox-id`, `outbox-mark` | `seq`, `hash`, `n`, `audit_seq` |

A watchdog's lease rounds are leases.py; how the runtime uses them, docs/ha.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchdog.core.lease import Handover, LeaseItem, Release, Renew, Take
from watchdog.state.auditchain import GENESIS, canonical, chain_hash, chain_problems
from watchdog.state.storage import StoreError

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
HEAD = {"pk": {"S": "META"}, "sk": {"S": "audit-head"}}
APPEND_TRIES = 20  # each lost race means another writer's record landed: the chain moved on, never stuck


class Fenced(StoreError):
    """The lease is no longer this watchdog's (holder or epoch moved): the intent was not recorded."""


def _lease_key(target: str) -> dict[str, Any]:
    return {"pk": {"S": "LEASE"}, "sk": {"S": target}}


def _audit_key(seq: int) -> dict[str, Any]:
    return {"pk": {"S": "AUDIT"}, "sk": {"S": f"{seq:020d}"}}


def _code(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


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

    async def leases(self) -> dict[str, LeaseItem]:
        """Every target's lease, in one consistent Query (a round reads them all at once)."""
        return {i["sk"]["S"]: LeaseItem(i["holder"]["S"] if "holder" in i else None, int(i["epoch"]["N"]),
                                        i["version"]["S"], i["handed_by"]["S"] if "handed_by" in i else None)
                for i in await self.query("LEASE")}

    async def write_lease(self, target: str, me: str, decision: Take | Renew | Handover | Release,
                          version: str) -> bool:
        """The decision written on its condition; False when the condition failed (somebody else moved first)."""
        values: dict[str, Any] = {":v": {"S": version}, ":e": {"N": str(decision.epoch)}, ":me": {"S": me}}
        if isinstance(decision, Take):
            update = "SET holder = :me, epoch = :e, version = :v REMOVE handed_by"
            if decision.expected is None:
                condition = "attribute_not_exists(pk)"
            else:
                condition, values[":old"] = "version = :old", {"S": decision.expected}
        elif isinstance(decision, Renew):
            update, condition = "SET version = :v", "holder = :me AND epoch = :e"
        elif isinstance(decision, Handover):
            update, condition = "SET holder = :to, handed_by = :me, version = :v", "holder = :me AND epoch = :e"
            values[":to"] = {"S": decision.to}
        else:
            update, condition = "SET version = :v REMOVE holder, handed_by", "holder = :me AND epoch = :e"
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
        for item in await self.query("PEER"):
            out[item["sk"]["S"]] = (item["version"]["S"], int(item["load"]["N"]))
        return out

    # --- the audit log -------------------------------------------------------------------------------------

    async def head(self) -> tuple[int, str]:
        got = await self._client.get_item(TableName=self.name, Key=HEAD, ConsistentRead=True)
        item = got.get("Item")
        return (int(item["seq"]["N"]), item["hash"]["S"]) if item else (0, GENESIS)

    async def append(self, row: Mapping[str, Any], fence: tuple[str, str, int] | None = None,
                     tried: list[int] | None = None) -> int:
        """`row` (the audit record's fields but its seq) as the next record; its seq. `fence` (target, holder,
        epoch): only while that lease is still so, else Fenced and nothing is written. `tried` keeps the numbers
        a call tried across calls: a write whose answer was lost (a timeout) may have landed, and is then found
        at the number it tried instead of being written twice."""
        tried = [] if tried is None else tried
        for seq in tried:
            got = await self._client.get_item(TableName=self.name, Key=_audit_key(seq), ConsistentRead=True)
            if "Item" in got and got["Item"]["row"]["S"] == canonical({**row, "seq": seq}):
                return seq
        for _ in range(APPEND_TRIES):
            seq, top = await self.head()
            tried.append(seq + 1)
            text = canonical({**row, "seq": seq + 1})
            digest = chain_hash(top, text)
            items: list[dict[str, Any]] = []
            if fence is not None:
                target, me, epoch = fence
                items.append({"ConditionCheck": {
                    "TableName": self.name, "Key": _lease_key(target), "ConditionExpression": "holder = :me AND epoch = :e",
                    "ExpressionAttributeValues": {":me": {"S": me}, ":e": {"N": str(epoch)}}}})
            items.append({"Put": {"TableName": self.name, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
                **_audit_key(seq + 1), "row": {"S": text}, "prev": {"S": top}, "hash": {"S": digest}}}})
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
                reasons = [r.get("Code") for r in (getattr(exc, "response", None) or {}).get("CancellationReasons", [])]
                if fence is not None and reasons and reasons[0] == "ConditionalCheckFailed":
                    raise Fenced(f"lease of {fence[0]} is no longer {fence[1]}'s at epoch {fence[2]}: "
                                 "the intent was not recorded") from None
                # another writer's record took this number: read the new head, link to it
        raise StoreError(f"dynamodb table {self.name}: the audit log moved {APPEND_TRIES} times under one write")

    async def records(self, after: int = 0) -> list[tuple[int, str, str, str]]:
        """The audit records after `after`, oldest first: (seq, row text, prev, hash)."""
        items = await self.query("AUDIT", f"{after:020d}" if after else None)
        return [(int(i["sk"]["S"]), i["row"]["S"], i["prev"]["S"], i["hash"]["S"]) for i in items]

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

    # --- the store's items ------------------------------------------------------------------------------

    async def put(self, item: dict[str, Any], condition: str | None = None, values: dict[str, Any] | None = None,
                  names: dict[str, str] | None = None) -> bool:
        """`item` written; False when `condition` failed (the write was not wanted: nothing changed)."""
        kw: dict[str, Any] = {"TableName": self.name, "Item": item}
        if condition:
            kw["ConditionExpression"] = condition
        if values:
            kw["ExpressionAttributeValues"] = values
        if names:
            kw["ExpressionAttributeNames"] = names
        return await self._conditional(self._client.put_item(**kw))

    async def update(self, pk: str, sk: str, update: str, values: dict[str, Any], condition: str | None = None,
                     names: dict[str, str] | None = None) -> bool:
        kw: dict[str, Any] = {"TableName": self.name, "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                              "UpdateExpression": update, "ExpressionAttributeValues": values}
        if condition:
            kw["ConditionExpression"] = condition
        if names:
            kw["ExpressionAttributeNames"] = names
        return await self._conditional(self._client.update_item(**kw))

    async def delete(self, pk: str, sk: str) -> None:
        await self._client.delete_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    async def transact(self, items: list[dict[str, Any]]) -> bool:
        """All of `items` or none; False when a condition of one failed."""
        for it in items:
            next(iter(it.values()))["TableName"] = self.name
        try:
            await self._client.transact_write_items(TransactItems=items)
        except Exception as exc:
            if _code(exc) == "TransactionCanceledException":
                codes = [r.get("Code") for r in (getattr(exc, "response", None) or {}).get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    return False
            raise
        return True

    async def count(self, name: str, n: int) -> int:
        """A counter of the table moved on by `n`: its new value (the numbers after the old one are the caller's)."""
        got = await self._client.update_item(
            TableName=self.name, Key={"pk": {"S": "META"}, "sk": {"S": name}}, UpdateExpression="ADD n :n",
            ExpressionAttributeValues={":n": {"N": str(n)}}, ReturnValues="UPDATED_NEW")
        return int(got["Attributes"]["n"]["N"])

    async def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        got = await self._client.get_item(TableName=self.name, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                          ConsistentRead=True)
        item: dict[str, Any] | None = got.get("Item")
        return item

    async def exists(self) -> None:
        """StoreError (one line) unless the table is there with its keys: `state init` makes it."""
        try:
            described = (await self._client.describe_table(TableName=self.name))["Table"]
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise StoreError(f"dynamodb table {self.name} does not exist: create it with "
                                 "`rollback-watchdog state init -c CONFIG`") from None
            raise
        if sorted(map(str, described["KeySchema"])) != sorted(map(str, KEYS)):
            raise StoreError(f"dynamodb table {self.name} has other keys than pk (HASH) and sk (RANGE)")

    @staticmethod
    async def _conditional(call: Any) -> bool:
        try:
            await call
        except Exception as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    async def query(self, pk: str, after: str | None = None) -> list[dict[str, Any]]:
        """Every item of partition `pk` (those whose sk sorts after `after`), in sk order, all pages."""
        out: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"TableName": self.name, "KeyConditionExpression": "pk = :pk",
                              "ExpressionAttributeValues": {":pk": {"S": pk}}, "ConsistentRead": True}
        if after is not None:
            kw["KeyConditionExpression"] += " AND sk > :after"
            kw["ExpressionAttributeValues"][":after"] = {"S": after}
        while True:
            got = await self._client.query(**kw)
            out += got.get("Items", [])
            if "LastEvaluatedKey" not in got:
                return out
            kw["ExclusiveStartKey"] = got["LastEvaluatedKey"]
