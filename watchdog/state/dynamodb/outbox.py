"""The notification outbox (watchdog/state/outbox.py's Outbox) on the shared DynamoDB table.

As the store does (store.py), it answers reads from a mirror read at open and writes through the store's writer,
in order with the audit records. A message's delivery id is a number of the table's counter (`META/outbox-id`),
so it is the same whichever watchdog sends it. `(channel, key)` is unique as in the SQLite file: each message is
put in one transaction with an `OUTKEY` item that may exist once, so an event queued twice, by one watchdog or
two, is one message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from watchdog.shared.events import Event
from watchdog.state.dynamodb.store import DynamoStore
from watchdog.state.outbox import Landed, OutboxRows, Pending, event_from_json, event_to_json
from watchdog.state.peering import Peering

log = structlog.get_logger("watchdog.state.outbox")
KEEP_SENT, KEEP_DEAD = timedelta(days=7), timedelta(days=30)  # as the SQLite file keeps them


def _sk(id_: int) -> str:
    return f"{id_:020d}"


class DynamoOutbox(OutboxRows):
    def __init__(self, store: DynamoStore, peers: Peering):
        self._store, self._table, self._peers = store, store.table, peers
        self._rows: dict[int, Pending] = {}
        self._done: dict[int, str] = {}  # id -> when it was sent or dead-lettered (ISO), for the pruning
        self._threads: dict[tuple[str, str], str] = {}
        self._mark: int | None = None

    async def refresh(self) -> None:
        rows, done = {}, {}
        for item in await self._table.query("OUTBOX"):
            id_ = int(item["sk"]["S"])
            state = item["state"]["S"]
            error = item.get("last_error", {}).get("S")
            try:
                event = event_from_json(item["event"]["S"])
            except ValueError as exc:
                if state == "pending":
                    self._dead_letter_unreadable(id_, item["channel"]["S"], exc)
                continue
            rows[id_] = Pending(id_, item["channel"]["S"], event, item["dry_run"]["BOOL"], int(item["attempts"]["N"]),
                                float(item["next_at"]["N"]), state, error)
            if "done_at" in item:
                done[id_] = item["done_at"]["S"]
        self._rows, self._done = rows, done
        self._threads = {tuple(json.loads(i["sk"]["S"])): i["ref"]["S"] for i in await self._table.query("THREAD")}
        mark = await self._table.get("META", "outbox-mark")
        self._mark = int(mark["audit_seq"]["N"]) if mark else None

    def _dead_letter_unreadable(self, id_: int, channel: str, exc: ValueError) -> None:
        why = f"the stored message cannot be read back: {type(exc).__name__}"
        log.critical("notification_unreadable", channel=channel, delivery=id_, why=why,
                     next="dead-lettered; the channel's later messages go on (see the table's OUTBOX items)")
        self._store.write("write the outbox", lambda: self._table.update(
            "OUTBOX", _sk(id_), "SET #s = :dead, last_error = :e", {":dead": {"S": "dead"}, ":e": {"S": why}},
            names={"#s": "state"}))

    def enqueue(self, key: str, event: Event, dry_run: bool, channels: Sequence[str], now: datetime,
                audit_seq: int | None, then: Landed) -> None:
        text = event_to_json(event)

        async def insert() -> list[Pending]:
            made: list[Pending] = []
            if channels:
                last = await self._table.count("outbox-id", len(channels))
                for k, channel in enumerate(channels):
                    id_ = last - len(channels) + 1 + k
                    item = {"pk": {"S": "OUTBOX"}, "sk": {"S": _sk(id_)}, "channel": {"S": channel},
                            "key": {"S": key}, "state": {"S": "pending"}, "event": {"S": text},
                            "dry_run": {"BOOL": bool(dry_run)}, "attempts": {"N": "0"},
                            "created_at": {"S": now.isoformat()}, "next_at": {"N": repr(now.timestamp())}}
                    once = {"pk": {"S": "OUTKEY"}, "sk": {"S": json.dumps([channel, key])}}
                    # A number a lost race took is left unused: ids only need to be unique and to grow.
                    if await self._table.transact([{"Put": {"Item": once, "ConditionExpression": "attribute_not_exists(pk)"}},
                                                   {"Put": {"Item": item}}]):
                        made.append(Pending(id_, channel, event, bool(dry_run), 0, now.timestamp()))
            if audit_seq is not None:
                await self._table.update("META", "outbox-mark", "SET audit_seq = :s", {":s": {"N": str(audit_seq)}},
                                         "attribute_not_exists(audit_seq) OR audit_seq < :s")
            return made

        def landed(made: list[Pending]) -> None:
            for p in made:
                self._rows[p.id] = p
            if audit_seq is not None:
                self._mark = max(self._mark or 0, audit_seq)
            then()

        self._store.write("write the outbox", insert, landed)

    def head(self, channel: str) -> Pending | None:
        """The channel's oldest waiting message of a target this watchdog holds the lease of: only the holder
        notifies, and a message its sender died with is sent by the next holder, under the same delivery id."""
        may = self._peers.may_act
        return next((self._rows[i] for i in sorted(self._rows) if self._rows[i].channel == channel
                     and self._rows[i].state == "pending" and may(self._rows[i].event.target)), None)

    async def claim(self, id: int) -> bool:
        """Claimed by a conditional write before it is sent, in one transaction with a check of the lease of its
        target: only the holder sends it, once. Refused (the lease moved, or another watchdog sent it), it is
        dropped from the mirror until the next refresh says what became of it."""
        p = self._rows.get(id)
        fence = self._peers.fence(p.event.target) if p is not None else None
        if p is None or fence is None:
            return False
        target, me, epoch = fence

        async def claim() -> bool:
            return await self._table.transact([
                {"ConditionCheck": {"Key": {"pk": {"S": "LEASE"}, "sk": {"S": target}},
                                    "ConditionExpression": "holder = :me AND epoch = :e",
                                    "ExpressionAttributeValues": {":me": {"S": me}, ":e": {"N": str(epoch)}}}},
                {"Update": {"Key": {"pk": {"S": "OUTBOX"}, "sk": {"S": _sk(id)}},
                            "UpdateExpression": "SET claimed_by = :me, claimed_epoch = :e",
                            "ConditionExpression": "#s = :pending", "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {":me": {"S": me}, ":e": {"N": str(epoch)},
                                                          ":pending": {"S": "pending"}}}}])

        if await self._store.landed("claim a message", claim):
            return True
        self._rows.pop(id, None)
        return False

    async def _set(self, id_: int, changes: dict[str, Any], now: datetime | None = None) -> None:
        values = {f":{k}": v for k, v in changes.items()}
        sets = [f"#{k} = :{k}" for k in changes]
        names = {f"#{k}": k for k in changes}
        if now is not None:
            sets.append("done_at = :done")
            values[":done"] = {"S": now.isoformat()}
        update = "SET " + ", ".join(sets)
        if "last_error" not in changes:
            update += " REMOVE last_error"
        await self._store.landed("write the outbox", lambda: self._table.update(
            "OUTBOX", _sk(id_), update, values, names=names))
        if now is not None:
            self._done[id_] = now.isoformat()

    async def mark_sent(self, id: int, now: datetime) -> None:
        p = self._rows[id]
        await self._set(id, {"state": {"S": "sent"}, "attempts": {"N": str(p.attempts + 1)}}, now)
        self._rows[id] = replace(p, state="sent", attempts=p.attempts + 1, last_error=None)

    async def mark_retry(self, id: int, attempts: int, next_at: float, error: str) -> None:
        await self._set(id, {"attempts": {"N": str(attempts)}, "next_at": {"N": repr(next_at)},
                             "last_error": {"S": error}})
        self._rows[id] = replace(self._rows[id], attempts=attempts, next_at=next_at, last_error=error)

    async def mark_dead(self, id: int, attempts: int, now: datetime, error: str) -> None:
        await self._set(id, {"state": {"S": "dead"}, "attempts": {"N": str(attempts)}, "last_error": {"S": error}}, now)
        self._rows[id] = replace(self._rows[id], state="dead", attempts=attempts, last_error=error)

    def thread(self, channel: str, incident: str) -> str | None:
        return self._threads.get((channel, incident))

    async def set_thread(self, channel: str, incident: str, ref: str) -> None:
        item = {"pk": {"S": "THREAD"}, "sk": {"S": json.dumps([channel, incident])}, "ref": {"S": ref}}
        await self._store.landed("write the outbox", lambda: self._table.put(item, "attribute_not_exists(pk)"))
        self._threads.setdefault((channel, incident), ref)

    def strand(self, channels: set[str], now: datetime, then: Callable[[int], None]) -> None:
        gone = [p for p in self._rows.values() if p.state == "pending" and p.channel not in channels]
        why = "channel no longer configured"

        async def dead_letter() -> int:
            n = 0
            for p in gone:  # each only while still waiting: another watchdog may have sent it meanwhile
                n += await self._table.update(
                    "OUTBOX", _sk(p.id), "SET #s = :dead, done_at = :done, last_error = :e",
                    {":dead": {"S": "dead"}, ":done": {"S": now.isoformat()}, ":e": {"S": why},
                     ":pending": {"S": "pending"}}, "#s = :pending", names={"#s": "state"})
            return n

        def landed(n: int) -> None:
            for p in gone:
                self._rows[p.id] = replace(p, state="dead", last_error=why)
            then(n)

        self._store.write("write the outbox", dead_letter, landed)

    def last_audit_seq(self) -> int | None:
        return self._mark

    def prune(self, now: datetime) -> None:
        """Delivered messages are only a cache of the audit log: the old ones go, as from the SQLite file."""
        old = [i for i, at in self._done.items()
               if datetime.fromisoformat(at) < now - (KEEP_SENT if self._rows[i].state == "sent" else KEEP_DEAD)]
        for id_ in old:
            del self._rows[id_], self._done[id_]

        async def prune() -> None:
            for id_ in old:
                await self._table.delete("OUTBOX", _sk(id_))

        if old:
            self._store.write("prune the outbox", prune)
