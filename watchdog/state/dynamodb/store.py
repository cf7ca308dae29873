"""The store (watchdog/state/storage.py's Protocols) on the shared DynamoDB table: the audit log, incidents,
pauses and the alarm ledger of every watchdog that shares it (SPEC 4.5).

The Protocols are synchronous, as the SQLite store's are: a write returns at once and lands in its turn, a
read answers at once. So the store keeps a mirror of the table in memory, read at open and moved on by
`refresh` (what the other watchdogs wrote: their incidents, pauses, and the audit records after the newest
one seen); reads answer from it. Writes go, in the order they were made, through the same StateWriter as the
SQLite file's (watchdog/state/writer.py): each is retried until it lands, and while it fails /healthz, the
state gauge and a page say so. The writer's thread only sequences: each write is a coroutine run on the event
loop through the daemon's one aioboto3 client, and the thread waits for it.

The codec, the record format and the hash chain are the SQLite store's (watchdog/state/codec.py,
auditchain.py); what is particular here is where the items live (table.py's key schema) and that the chain has
several writers: a record's number is the one its conditional write won, known once it has landed. So an
audit record enters the mirror when it lands, with that number; the Record a write returns carries the
number it will have if no other watchdog writes first (the only case while one watchdog writes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Callable, Collection, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from watchdog.core.pause import Pause
from watchdog.state.auditchain import canonical
from watchdog.state.codec import decode_pause, encode_pause, jsonable
from watchdog.state.dynamodb.table import Fenced, Table
from watchdog.state.peering import Peering
from watchdog.state.journal import IncidentRows, JournalRows, Record
from watchdog.state.storage import StoreError
from watchdog.state.writer import StateWriter
from watchdog.support.aws import client_error

T = TypeVar("T")
log = structlog.get_logger("watchdog.state.dynamodb")
KEEP = 10_000  # audit records kept in the mirror, newest: recovery and /status read an open incident's own
# Longer than the client's own timeouts (a request is cut there first): only a loop that stopped answering hits it.
WRITE_WAIT = 60.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def said(exc: BaseException) -> str:
    """An AWS or network failure in one line."""
    if isinstance(exc, ClientError):
        return client_error(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def record_of(seq: int, text: str) -> Record:
    r = json.loads(text)
    return Record(seq, datetime.fromisoformat(r["at"]), r["kind"], r["target"], r["incident"], r["level"],
                  r["data"], bool(r["dry_run"]))


def incident_row(item: dict[str, Any]) -> dict[str, Any]:
    closed = item.get("closed_at", {}).get("S")
    try:
        snapshot: Any = json.loads(item["snapshot"]["S"])
    except ValueError:  # damaged: recovery refuses it like any unreadable incident, and pages
        snapshot = item["snapshot"]["S"]
    return {"id": item["sk"]["S"], "target": item["target"]["S"], "opened_at": item["opened_at"]["S"],
            "phase": item["phase"]["S"], "level": int(item["level"]["N"]), "closed_at": closed,
            "updated_at": item["updated_at"]["S"], "snapshot": snapshot}


class DynamoStore(JournalRows, IncidentRows):
    """Every store capability on the table, read from a mirror, written through `writer` (started)."""

    durable = True

    def __init__(self, table: Table, writer: StateWriter, loop: asyncio.AbstractEventLoop, peers: Peering):
        self._table, self._writer, self._loop, self._peers = table, writer, loop, peers
        self._records: dict[int, Record] = {}
        self._seen = 0  # the newest audit record read or written
        self._upto = 0  # every record up to this one is in the mirror (another's may lie between my own)
        self._incidents: dict[str, dict[str, Any]] = {}
        self._pauses: dict[str, str] = {}  # scope -> the stored text
        self._alarms: dict[tuple[str, str], tuple[str, datetime, str]] = {}
        self._last_saved: dict[str, str] = {}
        self._queued = 0  # audit records written and not landed: the numbers they will most likely get

    @property
    def where(self) -> str:
        return f"dynamodb table {self._table.name}"

    @property
    def table(self) -> Table:
        return self._table

    # --- the mirror ----------------------------------------------------------------------------------------

    @property
    def seen(self) -> int:
        """The newest audit record read or written."""
        return self._seen

    async def refresh(self) -> None:
        """The mirror moved on to what the table holds now (other watchdogs' writes included)."""
        incidents = {i["sk"]["S"]: incident_row(i) for i in await self._table.query("INCIDENT")}
        pauses = {i["sk"]["S"]: i["pause"]["S"] for i in await self._table.query("PAUSE")}
        alarms = {}
        for i in await self._table.query("ALARM"):
            source, alarm = json.loads(i["sk"]["S"])
            at = _EPOCH + timedelta(microseconds=int(i["at"]["N"]))
            alarms[source, alarm] = (i["state"]["S"], at, i["reason_data"]["S"])
        for seq, text, _, _ in await self._table.records(self._upto):
            self._records[seq] = record_of(seq, text)
            self._seen, self._upto = max(self._seen, seq), seq
        self._incidents, self._pauses, self._alarms = incidents, pauses, alarms
        self._trim()

    def _trim(self) -> None:
        if len(self._records) > KEEP:
            for seq in sorted(self._records)[:len(self._records) - KEEP]:
                del self._records[seq]

    # --- writing -------------------------------------------------------------------------------------------

    def write(self, what: str, make: Callable[[], Coroutine[Any, Any, T]], then: Callable[[T], None] | None = None) -> None:
        self._writer.submit(lambda: self._blocking(what, make), then)

    async def landed(self, what: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        result: T = await self._writer.landed(self._writer.submit(lambda: self._blocking(what, make)))
        return result

    def _blocking(self, what: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """On the writer's thread: the write run on the loop, awaited there; a failure is a StoreError, which
        the writer tries again."""
        fut = asyncio.run_coroutine_threadsafe(make(), self._loop)
        try:
            return fut.result(timeout=WRITE_WAIT)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise StoreError(f"{self.where}: cannot {what}: no answer within {WRITE_WAIT:.0f} s") from None
        except StoreError:
            raise
        except (ClientError, BotoCoreError, OSError, asyncio.TimeoutError) as exc:
            raise StoreError(f"{self.where}: cannot {what}: {said(exc)}") from None

    async def flush(self) -> None:
        await self._writer.flush()

    # --- the journal -----------------------------------------------------------------------------------------

    def _append(self, at: datetime, kind: str, target: str, incident: str | None, level: int, dry_run: bool,
                data: dict[str, Any]) -> Record:
        """An intent is written in one transaction with a check of the target's lease (SPEC 4.5): refused, it is
        not recorded, the lease is given up at once, and the executor, which waits for it to land, does not act."""
        fenced = kind == "intent"
        data = jsonable(data)
        row = {"at": at.isoformat(), "kind": kind, "target": target, "incident": incident, "level": level,
               "dry_run": bool(dry_run), "data": data}
        canonical(row)  # what cannot be encoded fails here, on the caller, never on the writer's thread
        tried: list[int] = []
        self._queued += 1

        fence = self._peers.fence(target) if fenced else None

        async def append() -> int | None:
            if fenced and fence is None:
                self._refused(target, "intent", "this watchdog holds no lease of it")
                return None
            try:
                return await self._table.append(row, fence=fence, tried=tried)
            except Fenced:
                self._refused(target, "intent", "the lease moved to another watchdog")
                return None

        def landed(seq: int | None) -> None:
            self._queued -= 1
            if seq is None:
                return
            self._records[seq] = Record(seq, at, kind, target, incident, level, data, bool(dry_run))
            self._seen = max(self._seen, seq)
            if seq == self._upto + 1:
                self._upto = seq
            self._trim()

        self.write("write the audit log", append, landed)
        return Record(self._seen + self._queued, at, kind, target, incident, level, data, bool(dry_run))

    def _refused(self, target: str, what: str, why: str) -> None:
        """A write on the lease's fence that was refused: nothing was written, and the lease is given up."""
        self._peers.fenced(target)
        log.error("fenced", target=target, write=what, why=f"not written: {why}",
                  next="no action follows it; the lease's holder acts")

    def records(self, incident: str | None = None) -> list[Record]:
        return [self._records[s] for s in sorted(self._records)
                if incident is None or self._records[s].incident == incident]

    def events_after(self, seq: int) -> list[Record]:
        return [r for r in self.records() if r.seq > seq and r.kind == "event"]

    # --- incidents -------------------------------------------------------------------------------------------

    def save_incident(self, snap: dict[str, Any]) -> None:
        text = canonical(snap)
        if self._last_saved.get(snap["id"]) == text:
            return
        item = {"pk": {"S": "INCIDENT"}, "sk": {"S": snap["id"]}, "target": {"S": snap["target"]},
                "opened_at": {"S": snap["opened_at"]}, "phase": {"S": snap["phase"]},
                "level": {"N": str(int(snap.get("level", 0)))},
                "updated_at": {"S": datetime.now().astimezone().isoformat()}, "snapshot": {"S": text}}
        if snap.get("closed_at") is not None:
            item["closed_at"] = {"S": snap["closed_at"]}
        self._incidents[snap["id"]] = incident_row(item)
        target = snap["target"]
        fence = self._peers.fence(target)

        async def save() -> None:
            # Only the lease's holder writes the target's incident: a deposed one must not overwrite the
            # snapshot its successor keeps (a check of the lease in the same transaction).
            if fence is None:
                self._refused(target, f"incident {snap['id']}", "this watchdog holds no lease of it")
                return
            _, me, epoch = fence
            if not await self._table.transact([
                    {"ConditionCheck": {"Key": {"pk": {"S": "LEASE"}, "sk": {"S": target}},
                                        "ConditionExpression": "holder = :me AND epoch = :e",
                                        "ExpressionAttributeValues": {":me": {"S": me}, ":e": {"N": str(epoch)}}}},
                    {"Put": {"Item": item}}]):
                self._refused(target, f"incident {snap['id']}", "the lease moved to another watchdog")

        self.write(f"save incident {snap['id']}", save)
        if len(self._last_saved) > 1000:
            self._last_saved.clear()
        self._last_saved[snap["id"]] = text

    # --- pauses ----------------------------------------------------------------------------------------------

    def save_pause(self, pause: Pause) -> None:
        text = canonical(encode_pause(pause))
        self._pauses[pause.scope] = text
        item = {"pk": {"S": "PAUSE"}, "sk": {"S": pause.scope}, "pause": {"S": text}}
        self.write(f"save the pause of {pause.scope}", lambda: self._table.put(item))

    def delete_pause(self, scope: str) -> None:
        self._pauses.pop(scope, None)
        self.write(f"end the pause of {scope}", lambda: self._table.delete("PAUSE", scope))

    def pauses(self) -> tuple[list[Pause], list[tuple[str, str]]]:
        out, bad = [], []
        for scope in sorted(self._pauses):
            try:
                out.append(decode_pause(json.loads(self._pauses[scope])))
            except ValueError as exc:
                bad.append((scope, f"the stored pause cannot be read: {type(exc).__name__}"))
        return out, bad

    # --- the alarm ledger ------------------------------------------------------------------------------------

    def record_alarm(self, source: str, alarm: str, state: str, at: datetime, reason_data: str) -> None:
        kept = self._alarms.get((source, alarm))
        if kept is None or at > kept[1]:
            self._alarms[source, alarm] = (state, at, reason_data)
        micros = str((at - _EPOCH) // timedelta(microseconds=1))
        item = {"pk": {"S": "ALARM"}, "sk": {"S": json.dumps([source, alarm])}, "state": {"S": state},
                "at": {"N": micros}, "reason_data": {"S": reason_data}}
        # Only a newer change replaces the kept one, in the table too: another watchdog may have kept a newer one.
        self.write(f"record the state of alarm {alarm}", lambda: self._table.put(
            item, "attribute_not_exists(pk) OR #at < :at", {":at": {"N": micros}}, {"#at": "at"}))

    def alarm_records(self, source: str) -> list[tuple[str, str, datetime, str]]:
        return [(a, *self._alarms[s, a]) for s, a in sorted(self._alarms) if s == source]

    def forget_alarms(self, source: str, alarms: Collection[str]) -> None:
        gone = [json.dumps([source, alarm]) for alarm in alarms]
        for alarm in alarms:
            self._alarms.pop((source, alarm), None)

        async def forget() -> None:
            for key in gone:
                await self._table.delete("ALARM", key)

        self.write(f"forget {len(gone)} alarms of source {source}", forget)
