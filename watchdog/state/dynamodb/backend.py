"""The DynamoDB state backend (`state: {type: dynamodb, table: NAME, lease: 20s}`; region and endpoint from
`aws:`): one table that any number of watchdogs share (SPEC 4.5), made by `rollback-watchdog state init`.

Opening it opens one aioboto3 client (botocore's retries off: the writer retries each write until it lands),
checks that the table is there with its keys, reads the mirror the store and the outbox answer from
(store.py, outbox.py), then starts the writer. Closing drains the writer, then closes the client. The `incidents`
commands read it through a reader that loads what they show once, on a thread of its own with its own loop, so
that it works from a command line and from inside a running loop alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AfterValidator

from watchdog.config.models import AwsSection, State
from watchdog.config.types import Lease
from watchdog.state.backend import OpenState, Requeue, StateDeps, StateKind, Verdict
from watchdog.state.dynamodb.leases import LeaseKeeper
from watchdog.state.dynamodb.outbox import DynamoOutbox
from watchdog.state.dynamodb.store import DynamoStore, incident_row, record_of, said
from watchdog.state.dynamodb.table import Table
from watchdog.state.journal import IncidentRows, Record
from watchdog.state.storage import StoreError
from watchdog.state.written import WrittenState
from watchdog.support.aws import aws_client

T = TypeVar("T")
log = structlog.get_logger("watchdog.state.dynamodb")
REQUEST_TIMEOUT = timedelta(seconds=5)  # one DynamoDB request: a lease is renewed several times within its life


def _table_name(v: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{3,255}", v):
        raise ValueError("a DynamoDB table's name: 3 to 255 of A-Z a-z 0-9 _ . -")
    return v


TableName = Annotated[str, AfterValidator(_table_name)]


class DynamoState(State):
    type: Literal["dynamodb"]
    table: TableName
    # How long a lease lives unrenewed before a standby may take it (SPEC 4.5); renewed every third of it.
    lease: Lease = timedelta(seconds=20)


async def _client(stack: AsyncExitStack, aws: AwsSection) -> Any:
    return await aws_client(stack, "dynamodb", aws.region, aws, REQUEST_TIMEOUT)


class DynamoBackend(WrittenState):
    def __init__(self, stack: AsyncExitStack, table: Table, keeper: LeaseKeeper, clock: Callable[[], float],
                 lease: float):
        super().__init__(keeper)
        self._stack, self._keeper, self._clock, self._lease = stack, keeper, clock, lease
        self.store = DynamoStore(table, self._writer, asyncio.get_running_loop(), keeper)
        self.outbox = DynamoOutbox(self.store, keeper)
        self._arrived: deque[tuple[float, int]] = deque(maxlen=64)  # per refresh: when, and the newest record
        self._closed = False

    async def refresh(self) -> None:
        """What the other watchdogs wrote: their incidents, pauses, audit records and messages."""
        await _guarded(self.store.where, "read it", self.store.refresh)
        await _guarded(self.store.where, "read its outbox", self.outbox.refresh)
        self._arrived.append((self._clock(), self.store.seen))

    def requeue(self, replay: Requeue, taken: str | None = None) -> None:
        if taken is None:
            super().requeue(replay)
            return
        # The dead holder renewed at most a round before it died, and its lease was taken a lease and two looks
        # after its last renewal: what it recorded before it died arrived here within the last two leases. Its
        # events among those are queued again; one it had queued is not queued twice (its key, per channel).
        since = self._clock() - 2 * self._lease
        older = [seq for at, seq in self._arrived if at <= since]
        after = older[-1] if older else self._arrived[0][1] if self._arrived else self.store.seen
        self._replay(replay, after, taken)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if await self._drain():  # a write still under way keeps the client it runs on
            released = await self._keeper.release_all()  # handed over: taken up at once, not a lease later
            if released:
                log.info("leases_released", targets=released, why="a clean stop",
                         next="handed to the least loaded other watchdog, which takes each up at its next look")
            await self._stack.aclose()


async def _guarded(where: str, what: str, make: Callable[[], Awaitable[T]]) -> T:
    """AWS's refusal or an unreachable endpoint as one StoreError line."""
    try:
        return await make()
    except (ClientError, BotoCoreError, OSError, asyncio.TimeoutError) as exc:
        raise StoreError(f"{where}: cannot {what}: {said(exc)}") from None


async def open_dynamodb(cfg: DynamoState, deps: StateDeps) -> OpenState:
    stack = AsyncExitStack()
    try:
        table = Table(await _client(stack, deps.aws), cfg.table)
        where = f"dynamodb table {cfg.table}"
        await _guarded(where, "describe it", table.exists)
        lease = cfg.lease.total_seconds()
        # It stops acting a quarter of a lease before a standby may take over: room for a renewal's own
        # round trip and for two clocks' rates to differ.
        keeper = LeaseKeeper(table, deps.instance, deps.targets, lease, lease / 4, deps.clock.monotonic)
        backend = DynamoBackend(stack, table, keeper, deps.clock.monotonic, lease)
        await backend.refresh()
    except BaseException:
        await stack.aclose()
        raise
    backend._writer.start()
    backend.outbox.prune(deps.clock.now())
    return backend


class DynamoReader(IncidentRows):
    """The table as the `incidents` commands read it: loaded once, never written."""

    def __init__(self, name: str, incidents: dict[str, dict[str, Any]], records: list[Record],
                 chain: tuple[int, list[str]]):
        self.where = f"dynamodb table {name}"
        self._incidents, self._records, self._chain = incidents, records, chain

    def records(self, incident: str | None = None) -> list[Record]:
        return [r for r in self._records if incident is None or r.incident == incident]

    def check_chain(self) -> tuple[int, list[str]]:
        return self._chain

    def close(self) -> None:
        return None


def _on_own_loop(make: Callable[[], Awaitable[T]]) -> T:
    """`make()` run to its end on a loop of its own, on a thread of its own: callable with or without a loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result()  # type: ignore[arg-type]


def read_dynamodb(cfg: DynamoState, aws: AwsSection) -> DynamoReader:
    async def load() -> DynamoReader:
        async with AsyncExitStack() as stack:
            table = Table(await _client(stack, aws), cfg.table)
            where = f"dynamodb table {cfg.table}"
            await _guarded(where, "describe it", table.exists)

            async def everything() -> DynamoReader:
                incidents = {i["sk"]["S"]: incident_row(i) for i in await table.query("INCIDENT")}
                chain = await table.check_chain()
                records = [record_of(seq, text) for seq, text, _, _ in await table.records()]
                return DynamoReader(cfg.table, incidents, records, chain)

            return await _guarded(where, "read it", everything)

    return _on_own_loop(load)


def describe(cfg: DynamoState) -> str:
    return f"state table {cfg.table}"


async def probe(cfg: DynamoState, aws: AwsSection) -> Verdict:
    """Whether the table is there with its keys, and can be read (a read cannot prove the right to write)."""
    async with AsyncExitStack() as stack:
        table = Table(await _client(stack, aws), cfg.table)
        try:
            await _guarded(f"dynamodb table {cfg.table}", "describe it", table.exists)
            head = await _guarded(f"dynamodb table {cfg.table}", "read it", table.head)
        except StoreError as exc:
            return False, str(exc)
        return True, f"exists with its keys; the audit log holds {head[0]} records"


async def init(cfg: DynamoState, aws: AwsSection) -> str:
    """`state init`: the table made, or found with the expected keys ("created" / "exists"); StoreError if not."""
    async with AsyncExitStack() as stack:
        table = Table(await _client(stack, aws), cfg.table)
        return await _guarded(f"dynamodb table {cfg.table}", "create it", table.create)


KIND = StateKind(type="dynamodb", config=DynamoState, open=open_dynamodb, read=read_dynamodb, describe=describe,
                 probe=probe, init=init)
