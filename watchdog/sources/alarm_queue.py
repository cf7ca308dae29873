"""The SQS queue an EventBridge rule fills with "CloudWatch Alarm State Change" events (deploy/cloudformation/),
long-polled by a `cloudwatch_alarms` source with `queue_url:`.

Each round: ReceiveMessage (up to 10, waiting up to 20 s), then, for the events of alarms the rules name,
a row each in the state's alarm ledger, then a wait until those rows have landed, then DeleteMessage. A
message is deleted only once what it said is durable: killed between the receive and the record, the
message comes back after its visibility timeout and is handled then; killed between the record and the
delete, it comes back and changes nothing (a change no newer than what is known is dropped). An event of
an alarm no rule names, or a message that is no such event, is deleted without a record (logged once).

SQS's own requests are not retried by botocore (tenacity owns retries elsewhere): a failed round is logged,
the loop waits (1 s, doubling to 30 s) and tries again, and the source's poll fails meanwhile, so its rules
are insufficient_data and, after `blind_after`, its targets are blind and a human is paged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from watchdog.sources.alarm_book import AlarmRecord, NotAnAlarmEvent, from_event
from watchdog.state.storage import AlarmLedger, StoreError

log = structlog.get_logger("watchdog.sources.alarm_queue")

WAIT = timedelta(seconds=20)  # SQS's longest long poll
BATCH = 10  # SQS's most messages per receive
RECORD_WAIT = 10.0  # seconds a round waits for its rows to land before it leaves its messages for later
BACKOFF = (1.0, 30.0)  # after a failed round: the first wait and the longest, doubling between


class AlarmQueue:
    """One source's queue. `take` applies the events to the source's book (True when a rule's state may have
    changed: then `wake` asks for a poll now); `count` counts each request by its API."""

    def __init__(self, source: str, url: str, client: Any, ledger: AlarmLedger, wanted: Callable[[str], bool],
                 take: Callable[[Sequence[AlarmRecord]], bool], wake: Callable[[str], None],
                 reach: Callable[..., Awaitable[None]], count: Callable[[str], None],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, record_wait: float = RECORD_WAIT):
        self.source, self.url, self._client, self.ledger = source, url, client, ledger
        self._wanted, self._take, self._wake, self._reach, self._count = wanted, take, wake, reach, count
        self._sleep, self._record_wait = sleep, record_wait
        self.failure: str | None = None  # why the last round failed; None once one succeeds

    async def run(self) -> None:
        backoff = BACKOFF[0]
        while True:
            try:
                await self.round()
            except Exception as exc:  # whatever it is, the loop goes on (a cancel is no Exception)
                said = _said(exc)
                if self.failure is None:
                    log.error("alarm_queue_failing", source=self.source, error=said)
                self.failure = f"ReceiveMessage: {said}"
                await self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF[1])
                continue
            if self.failure is not None:
                log.info("alarm_queue_recovered", source=self.source)
                self.failure, backoff = None, BACKOFF[0]

    async def round(self) -> int:
        """One receive and what follows it; the number of messages received."""
        answer = await self._call("ReceiveMessage", "receive_message", {
            "QueueUrl": self.url, "MaxNumberOfMessages": BATCH, "WaitTimeSeconds": int(WAIT.total_seconds())})
        messages = [m for m in answer.get("Messages") or [] if isinstance(m, dict) and m.get("ReceiptHandle")]
        if not messages:
            return 0
        await self._reach("after_receive", source=self.source, messages=len(messages))
        events = [e for e in (self._event(m) for m in messages) if e is not None]
        if events and not await self._recorded(events):
            return len(messages)  # left on the queue: they come back after their visibility timeout
        if events and self._take(events):
            self._wake(self.source)
        for m in messages:
            try:
                await self._call("DeleteMessage", "delete_message", {"QueueUrl": self.url,
                                                                      "ReceiptHandle": m["ReceiptHandle"]})
            except (ClientError, BotoCoreError, OSError) as exc:  # it comes back, and changes nothing then
                log.warning("alarm_event_not_deleted", source=self.source, message=m.get("MessageId"),
                            error=_said(exc))
        return len(messages)

    def _event(self, message: dict[str, Any]) -> AlarmRecord | None:
        try:
            rec = from_event(message.get("Body"))
        except NotAnAlarmEvent as exc:
            log.warning("alarm_event_ignored", source=self.source, message=message.get("MessageId"), why=str(exc))
            return None
        if not self._wanted(rec.name):
            return None  # the rule feeds every alarm of the account; only the named ones are kept
        log.info("alarm_event_received", source=self.source, alarm=rec.name, state=rec.state,
                 at=rec.at.isoformat(), message=message.get("MessageId"))
        return rec

    async def _recorded(self, events: Sequence[AlarmRecord]) -> bool:
        """Every event's row written and landed; False (logged) when the state cannot take them now."""
        try:
            for e in events:
                self.ledger.record_alarm(self.source, e.name, e.state, e.at, e.reason_data)
            await asyncio.wait_for(self.ledger.flush(), self._record_wait)
        except (StoreError, TimeoutError) as exc:
            log.error("alarm_events_not_recorded", source=self.source, events=len(events),
                      error=str(exc) or f"not written within {self._record_wait:g}s")
            return False
        return True

    async def _call(self, op: str, method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._count(op)
        answer: dict[str, Any] = await getattr(self._client, method)(**kwargs)
        return answer


def _said(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
