"""The notifier and its outbox: never blocking, per-channel, retried, dead-lettered, durable.

The channels here are in-process doubles of the Channel protocol (the real
channels are tested against local servers in test_notify_*.py); the outbox is
a real SQLite file where durability is the point.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from watchdog.shared.clock import SystemClock
from watchdog.notify.webhook import WebhookNotification
from watchdog.shared.events import Event
from watchdog.support.metrics import Metrics
from watchdog.notify import DeliveryFailed, Message, Notifier
from watchdog.notify.notifier import accepts, backoff
from watchdog.state.outbox import MemoryOutbox
from watchdog.state.sqlite.outbox import SqliteOutbox
from watchdog.state.sqlite.store import SqliteStore
from receivers import receivers  # noqa: F401  (fixture)
from timing import until

FAST = {"attempts": 4, "initial_backoff": "20ms", "max_backoff": "50ms"}


def cfg(name: str, **kw: Any) -> WebhookNotification:
    return WebhookNotification.model_validate({"type": "webhook", "name": name, "url": "http://127.0.0.1:9/x",
                                               "timeout": "300ms", "retry": FAST, **kw})


class Recording:
    def __init__(self, name: str = "good", fail: list[Exception] | None = None, ref: str | None = None):
        self.name, self.fail, self.ref = name, list(fail or []), ref
        self.got: list[Message] = []
        self.tries: list[float] = []

    async def send(self, msg: Message) -> str | None:
        self.tries.append(time.monotonic())
        if self.fail:
            raise self.fail.pop(0)
        self.got.append(msg)
        return self.ref

    async def close(self) -> None:
        pass

    @property
    def kinds(self) -> list[str]:
        return [m.event.kind for m in self.got]


class Hanging(Recording):
    in_flight = 0  # sends begun and not ended (answered, cut off or cancelled)

    async def send(self, msg: Message) -> str | None:
        self.tries.append(time.monotonic())
        self.in_flight += 1
        try:
            await asyncio.sleep(60)
        finally:
            self.in_flight -= 1
        return None


def event(kind: str, severity: str = "warning", target: str = "svc", incident: str | None = "inc-1") -> Event:
    return Event(kind, severity, target, incident, 1, datetime(2024, 1, 1, tzinfo=timezone.utc), "why", "next")  # type: ignore[arg-type]


class Journal:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def notification(self, at, target, incident, level, channel, event, delivery, outcome, attempts, detail, dry_run):
        self.rows.append({"channel": channel, "event": event, "outcome": outcome, "attempts": attempts,
                          "detail": detail, "delivery": delivery, "dry_run": dry_run})


@pytest.fixture
async def make():
    """A notifier with its supervisor running; closed after the test."""
    made: list[Notifier] = []

    def build(*pairs: tuple[WebhookNotification, Any], outbox: Any = None, journal: Any = None) -> tuple[Notifier, Metrics]:
        metrics = Metrics()
        n = Notifier(metrics, SystemClock(), outbox if outbox is not None else MemoryOutbox(),
                     journal if journal is not None else Journal(), rng=random.Random(1))
        n.set_channels(list(pairs))
        n.start()
        made.append(n)
        return n, metrics

    yield build
    for n in made:
        await n.close()


def svc_config(tmp_path: Any, url: str, retry: str) -> str:
    """One target, a CloudWatch source that is never polled (no scheduler), and one webhook channel."""
    return f"""
watchdog: {{listen: "127.0.0.1:0", state_path: "{tmp_path}/w.db"}}
sources: [{{name: cw, type: cloudwatch, interval: 1h}}]
aws: {{region: us-east-1, endpoint_url: "http://127.0.0.1:9"}}
targets:
  - name: svc
    rules: [{{name: r, category: performance, source: cw, metric: {{namespace: N, name: M}}, threshold: "> 1"}}]
    levels: [{{level: 1, name: one, deadline: 5s, actions: [{{type: http, method: PUT, url: "{url}/l1"}}]}}]
notifications: [{{type: webhook, name: hook, url: "{url}/hook", retry: {{{retry}}}}}]
"""


def settled(n: Notifier) -> bool:
    """Nothing waits in any channel's outbox: a message that was queued is delivered or dead by now, so a
    count taken after this is final, with no sleep to prove that nothing more comes."""
    return all(ch["pending"] == 0 for ch in n.status().values())


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_publish_only_writes_the_outbox_and_a_hanging_channel_holds_up_no_other(make) -> None:
    good, hanging = Recording("good"), Hanging("hanging")
    n, metrics = make((cfg("hanging"), hanging), (cfg("good"), good))
    for kind in ("incident_opened", "level_started", "level_failed", "exhausted"):
        n.publish(event(kind), dry_run=kind == "exhausted")
    # No send happens inside publish: when it returns, no channel has been tried, and all four wait in
    # each channel's outbox (proved by what the channels saw, not by how long publish took).
    assert good.tries == [] and hanging.tries == []
    assert [n.status()[name]["pending"] for name in ("good", "hanging")] == [4, 4]
    await until(lambda: len(good.got) == 4)
    assert good.kinds == ["incident_opened", "level_started", "level_failed", "exhausted"]
    assert [m.dry_run for m in good.got] == [False, False, False, True]
    assert sample(metrics, "watchdog_notifications_total", channel="good", outcome="sent") == 4.0
    await until(lambda: sample(metrics, "watchdog_notifications_total", channel="hanging", outcome="failed") == 1.0)
    assert sample(metrics, "watchdog_notifications_pending", channel="hanging") == 4.0
    assert n.status()["hanging"]["up"] is False and "no answer within 0.3s" in n.status()["hanging"]["last_error"]
    assert n.status()["good"]["up"] is True and n.status()["good"]["pending"] == 0


async def test_filters_by_severity_target_and_event(make) -> None:
    pager, svc_only, opened_only = Recording("pager"), Recording("svc"), Recording("opened")
    n, _ = make((cfg("pager", min_severity="critical"), pager), (cfg("svc", targets=["svc"]), svc_only),
                (cfg("opened", events=["incident_opened"]), opened_only))
    n.publish(event("incident_opened"))
    n.publish(event("level_started", target="other"))
    n.publish(event("exhausted", "critical"))
    await until(lambda: len(pager.got) == 1 and len(svc_only.got) == 2 and len(opened_only.got) == 1 and settled(n))
    assert {name: ch["sent"] for name, ch in n.status().items()} == {"pager": 1, "svc": 2, "opened": 1}
    assert pager.kinds == ["exhausted"]
    assert svc_only.kinds == ["incident_opened", "exhausted"]
    assert opened_only.kinds == ["incident_opened"]
    assert accepts(cfg("x", events=["mitigated"]), event("mitigated"))
    assert not accepts(cfg("x", min_severity="warning"), event("level_succeeded", "info"))


async def test_a_failure_is_retried_in_order_and_the_audit_records_the_result(make) -> None:
    flaky = Recording("flaky", fail=[DeliveryFailed("Slack answered HTTP 500"), DeliveryFailed("HTTP 503")])
    journal = Journal()
    n, metrics = make((cfg("flaky"), flaky), journal=journal)
    n.publish(event("incident_opened"))
    n.publish(event("level_started"))
    await until(lambda: len(flaky.got) == 2)
    assert flaky.kinds == ["incident_opened", "level_started"]  # the second waits behind the first: order kept
    assert len(flaky.tries) == 4
    assert sample(metrics, "watchdog_notifications_total", channel="flaky", outcome="failed") == 2.0
    assert [(r["event"], r["outcome"], r["attempts"]) for r in journal.rows] == [
        ("incident_opened", "sent", 3), ("level_started", "sent", 1)]


async def test_retry_after_is_honoured_when_longer_than_the_backoff(make) -> None:
    limited = Recording("limited", fail=[DeliveryFailed("HTTP 429", retry_after=0.5)])
    n, _ = make((cfg("limited"), limited))
    n.publish(event("incident_opened"))
    await until(lambda: len(limited.got) == 1)
    assert limited.tries[1] - limited.tries[0] >= 0.5  # the backoff alone would be under 50 ms


def test_backoff_doubles_with_jitter_up_to_the_cap_and_never_under_retry_after() -> None:
    c = cfg("x", retry={"attempts": 10, "initial_backoff": "1s", "max_backoff": "8s"})
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (9, 8)]:
        for _ in range(50):
            assert base / 2 <= backoff(c, attempt, None, rng) <= base
    assert backoff(c, 1, 30.0, rng) == 30.0


async def test_a_permanent_failure_is_dead_at_once_and_the_next_message_goes(make) -> None:
    ch = Recording("ch", fail=[DeliveryFailed("webhook answered HTTP 404", permanent=True)])
    journal = Journal()
    n, metrics = make((cfg("ch"), ch), journal=journal)
    n.publish(event("incident_opened"))
    n.publish(event("level_started"))
    await until(lambda: len(ch.got) == 1)
    assert ch.kinds == ["level_started"] and len(ch.tries) == 2
    assert journal.rows[0]["outcome"] == "dead" and "retrying cannot help" in journal.rows[0]["detail"]
    assert sample(metrics, "watchdog_notifications_total", channel="ch", outcome="dead") == 1.0
    assert n.status()["ch"]["dead"] == 1


async def test_after_the_last_attempt_a_message_is_dead_lettered(make) -> None:
    down = Recording("down", fail=[DeliveryFailed("HTTP 500")] * 10)
    journal = Journal()
    n, metrics = make((cfg("down"), down), journal=journal)
    n.publish(event("exhausted", "critical"))
    await until(lambda: journal.rows)
    assert len(down.tries) == FAST["attempts"]
    assert journal.rows == [{"channel": "down", "event": "exhausted", "outcome": "dead", "attempts": 4,
                             "detail": "HTTP 500 (after 4 attempts)", "delivery": 1, "dry_run": False}]
    assert sample(metrics, "watchdog_notifications_pending", channel="down") == 0.0


async def test_a_raising_channel_or_listener_never_reaches_the_caller(make) -> None:
    broken = Recording("broken", fail=[KeyError("bug in a channel")])
    n, _ = make((cfg("broken"), broken))
    seen: list[str] = []
    n.listen(lambda ev, dry: (_ for _ in ()).throw(ValueError("timeline bug")))
    n.listen(lambda ev, dry: seen.append(ev.kind))
    n.publish(event("level_started"))
    await until(lambda: len(broken.got) == 1)
    assert seen == ["level_started"]
    assert n.status()["broken"]["failed_attempts"] == 1


async def test_the_first_message_of_an_incident_starts_the_thread_the_rest_join(make) -> None:
    ch = Recording("bot", ref="1700000000.000100")
    n, _ = make((cfg("bot"), ch))
    for kind in ("incident_opened", "level_started", "mitigated"):
        n.publish(event(kind))
    n.publish(event("paused", "warning", incident=None))
    n.publish(event("incident_opened", incident="inc-2"))
    await until(lambda: len(ch.got) == 5)
    assert [m.thread for m in ch.got] == [None, "1700000000.000100", "1700000000.000100", None, None]


async def test_the_same_event_key_is_queued_once(make) -> None:
    ch = Recording("ch")
    n, _ = make((cfg("ch"), ch))
    n.publish(event("incident_opened"), audit_seq=7)
    n.publish(event("incident_opened"), audit_seq=7)
    n.publish(event("level_started"), audit_seq=8)
    assert n.status()["ch"]["pending"] == 2  # the repeat never became a row
    await until(lambda: len(ch.got) == 2 and settled(n))
    assert ch.kinds == ["incident_opened", "level_started"]


async def test_waiting_messages_survive_a_restart_and_are_sent_once(make, tmp_path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    down = Hanging("slack")
    n, _ = make((cfg("slack"), down), outbox=SqliteOutbox(store), journal=store)
    for i, kind in enumerate(("incident_opened", "level_started", "level_failed")):
        n.publish(event(kind), audit_seq=i)
    await until(lambda: len(down.tries) == 1)
    await n.close()  # the process "dies" with three messages waiting
    store.close()

    store = SqliteStore(path)
    outbox = SqliteOutbox(store)
    assert outbox.counts("slack")["pending"] == 3
    up = Recording("slack")
    n2, _ = make((cfg("slack"), up), outbox=outbox, journal=store)
    n2.publish(event("incident_opened"), audit_seq=0)  # the same event again is not a second message
    await until(lambda: len(up.got) == 3 and settled(n2))
    assert up.kinds == ["incident_opened", "level_started", "level_failed"]
    assert outbox.counts("slack") == {"pending": 0, "sent": 3, "dead": 0}
    audit = [r.data for r in store.records() if r.kind == "notification"]
    assert [(a["event"], a["outcome"]) for a in audit] == [
        ("incident_opened", "sent"), ("level_started", "sent"), ("level_failed", "sent")]
    assert store.verify_chain() == []
    store.close()


async def test_drain_returns_at_its_deadline_and_leaves_the_rest_waiting(make) -> None:
    """drain(0.2) gives the send 0.2 s and returns with the send still in flight: it does not wait for the
    channel's 30 s timeout (the send is not over when drain returns), nor return before its own deadline."""
    hanging = Hanging("hanging")
    n, _ = make((cfg("hanging", timeout="30s"), hanging))
    n.publish(event("incident_opened"))
    await until(lambda: hanging.tries, what="the send under way")
    started = time.monotonic()
    async with asyncio.timeout(20):  # a bound for the test only, well short of the channel's timeout
        await n.drain(0.2)
    assert time.monotonic() - started >= 0.2
    assert hanging.in_flight == 1 and len(hanging.tries) == 1  # the one send, not ended nor retried
    assert n.status()["hanging"]["pending"] == 1


def test_a_huge_retry_after_is_capped() -> None:
    from watchdog.notify.notifier import MAX_RETRY_AFTER

    c = cfg("x", retry={"attempts": 10, "initial_backoff": "1s", "max_backoff": "8s"})
    assert backoff(c, 1, 86400.0, random.Random(1)) == MAX_RETRY_AFTER == 600.0


async def test_an_outbox_that_cannot_be_written_loses_the_message_not_the_caller(make) -> None:
    from watchdog.state.storage import StoreError

    class Full(MemoryOutbox):
        def enqueue(self, *args: Any) -> int | None:
            raise StoreError("state_path x: cannot write the outbox: database or disk is full")

    ch = Recording("ch")
    n, metrics = make((cfg("ch"), ch), outbox=Full())
    seen: list[str] = []
    n.listen(lambda ev, dry: seen.append(ev.kind))
    n.publish(event("level_started"))  # must not raise into the executor, which starts the level next
    assert seen == ["level_started"]
    assert sample(metrics, "watchdog_notifications_total", channel="ch", outcome="lost") == 1.0


async def test_messages_of_a_channel_no_longer_configured_are_dead_lettered(make, tmp_path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    outbox = SqliteOutbox(store)
    n, _ = make((cfg("old-name"), Hanging("old-name")), outbox=outbox, journal=store)
    n.publish(event("incident_opened"), audit_seq=1)
    await n.close()
    n.set_channels([(cfg("new-name"), Recording("new-name"))])  # the channel was renamed
    assert outbox.counts("old-name") == {"pending": 0, "sent": 0, "dead": 1}
    assert outbox.dead("old-name")[0].last_error == "channel no longer configured"
    store.close()


async def test_a_stored_message_that_cannot_be_read_back_is_dead_lettered_and_the_next_one_goes(make, tmp_path) -> None:
    """A pending row whose event this version cannot decode (a kind another version wrote, a hand edit) must
    not wedge its channel: it is dead-lettered, said in a critical line, and the later messages are sent."""
    store = SqliteStore(tmp_path / "s.db")
    outbox = SqliteOutbox(store)
    future = Event("from_a_newer_version", "warning", "svc", "inc-1", 1,  # type: ignore[arg-type]
                   datetime(2024, 1, 1, tzinfo=timezone.utc), "why", "next")
    outbox.enqueue("audit-1", future, False, ["ch"], datetime.now(timezone.utc), 1, lambda: None)
    outbox.enqueue("audit-2", event("incident_opened"), False, ["ch"], datetime.now(timezone.utc), 2, lambda: None)
    ch = Recording("ch")
    make((cfg("ch"), ch), outbox=outbox, journal=store)
    await until(lambda: len(ch.got) == 1, what="the readable message, past the unreadable one")
    assert ch.kinds == ["incident_opened"]
    await until(lambda: outbox.counts("ch") == {"pending": 0, "sent": 1, "dead": 1})
    (last_error,) = store.reader.execute("SELECT last_error FROM outbox WHERE event_key = 'audit-1'").fetchone()
    assert last_error == "the stored message cannot be read back: ValidationError"
    store.close()


async def test_an_audit_event_that_cannot_be_read_back_does_not_stop_the_start(tmp_path, receivers) -> None:
    """The replay of events the outbox missed skips one it cannot decode (logged critical) and sends the rest."""
    from watchdog.lifecycle.app import App
    from watchdog.config import parse_config

    store = SqliteStore(tmp_path / "w.db")
    store.event(Event("from_a_newer_version", "warning", "svc", "inc-1", 1,  # type: ignore[arg-type]
                      datetime.now(timezone.utc), "why", "next"))
    store.event(event("level_started"))  # recorded; the process died before either reached the outbox
    store.close()
    app = await App.create(parse_config(svc_config(tmp_path, receivers.url, "attempts: 3, initial_backoff: 10ms"), {}),
                           schedule=False)
    await app.start()
    try:
        await until(lambda: len(receivers.ok("/hook")) == 1 and settled(app.runtime.notifier))
    finally:
        await app.stop()
    assert [h.body["event"] for h in receivers.ok("/hook")] == ["level_started"]


async def test_events_the_audit_has_but_the_outbox_missed_are_queued_at_start(tmp_path, receivers) -> None:
    """A kill between the audit write and the outbox write: the next start queues what was missed, once."""
    from watchdog.lifecycle.app import App
    from watchdog.config import parse_config

    text = svc_config(tmp_path, receivers.url, "attempts: 3, initial_backoff: 10ms")
    store = SqliteStore(tmp_path / "w.db")
    outbox = SqliteOutbox(store)
    first = store.event(event("incident_opened"))
    outbox.enqueue(f"audit-{first.seq}", event("incident_opened"), False, ["hook"], datetime.now(timezone.utc),
                   first.seq, lambda: None)
    await outbox.mark_sent(1, datetime.now(timezone.utc))
    store.event(event("level_started"))  # recorded; the process died before it reached the outbox
    store.close()
    app = await App.create(parse_config(text, {}), schedule=False)
    await app.start()
    try:
        await until(lambda: len(receivers.ok("/hook")) == 1 and settled(app.runtime.notifier))
    finally:
        await app.stop()
    assert [h.body["event"] for h in receivers.ok("/hook")] == ["level_started"]  # the missed one, not the sent one


async def test_the_first_event_of_a_new_state_file_is_not_lost_to_a_kill(tmp_path, receivers) -> None:
    """The outbox's mark starts at 0 in a new file: an event recorded before any message was ever queued (a
    kill between the two writes) is still queued by the next start."""
    from watchdog.lifecycle.app import App
    from watchdog.config import parse_config

    text = svc_config(tmp_path, receivers.url, "attempts: 3, initial_backoff: 10ms")
    store = SqliteStore(tmp_path / "w.db")
    store.event(event("incident_opened"))  # the very first record; the process died before the outbox row
    store.close()
    app = await App.create(parse_config(text, {}), serve_http=False, schedule=False)
    await app.start()
    try:
        await until(lambda: receivers.ok("/hook"), what="the missed message")
    finally:
        await app.stop()
    assert [h.body["event"] for h in receivers.ok("/hook")] == ["incident_opened"]


async def test_a_restart_after_the_prune_does_not_send_old_messages_again(tmp_path, receivers) -> None:
    """A dead letter outlives the sent rows (30 days against 7): it must not become the mark from which a
    restart re-sends every message after it. Found by trying it: "mitigated" and "resolved" of an incident
    closed a week earlier went to every channel again, with new delivery ids."""
    from datetime import timedelta

    from timing import FakeClock
    from watchdog.lifecycle.app import App
    from watchdog.config import parse_config

    text = svc_config(tmp_path, receivers.url, "attempts: 1")
    receivers.answer("/hook", 400, 200)  # the first message is refused for good (dead), the rest delivered
    eight_days_ago = datetime.now(timezone.utc) - timedelta(days=8)
    app = await App.create(parse_config(text, {}), clock=FakeClock(eight_days_ago), serve_http=False, schedule=False)
    await app.start()
    try:
        ex = app.runtime.executors["svc"]
        for sent, paused in enumerate((True, False, True), start=1):  # three messages through audit and outbox
            ex.pause_changed(paused, "why", "next")
            await until(lambda: len(receivers.all("/hook")) == sent)
        await until(lambda: app.runtime.notifier.status()["hook"]["pending"] == 0)
    finally:
        await app.stop()
    assert [h.status for h in receivers.all("/hook")] == [400, 200, 200]

    import sqlite3

    for _ in range(2):  # the first start prunes the week-old sent rows; neither start queues anything again
        app = await App.create(parse_config(text, {}), serve_http=False, schedule=False)
        await app.start()
        try:
            await app.runtime.journal.flush()  # what start() queued (the prune, any replay) has landed
            with sqlite3.connect(tmp_path / "w.db") as db:
                rows = db.execute("SELECT kind, state FROM outbox ORDER BY id").fetchall()
        finally:
            await app.stop()
        assert rows == [("paused", "dead")]  # only the dead letter is left; nothing re-queued
    assert len(receivers.all("/hook")) == 3


async def test_a_worker_that_crashes_is_started_again_and_delivers(caplog) -> None:
    """A bug outside a send (here the outbox's head() raising once) ends the worker's task; the runtime's
    guarded spawn logs it and starts the worker again, and the waiting message still goes."""

    class Flaky(MemoryOutbox):
        crashed = 0

        def head(self, channel: str) -> Any:
            if not self.crashed:
                Flaky.crashed += 1
                raise RuntimeError("a bug in the outbox")
            return super().head(channel)

    ch = Recording("ch")
    n = Notifier(Metrics(), SystemClock(), Flaky(), Journal(), rng=random.Random(1), restart_after=0.01)
    n.set_channels([(cfg("ch"), ch)])
    n.publish(event("incident_opened"))
    n.start()
    try:
        await until(lambda: len(ch.got) == 1, what="the message, after the worker was started again")
    finally:
        await n.close()
    assert Flaky.crashed == 1


async def test_a_reload_does_not_resend_a_failed_message_whose_retry_mark_is_on_its_way() -> None:
    """The worker failed a send and is writing the retry (a slow disk); a reload replaces the worker. The new
    one must wait for the mark, not take the row as it was (due at once) and try again with no backoff."""
    landing = asyncio.Event()

    class SlowMarks(MemoryOutbox):
        async def mark_retry(self, *args: Any) -> None:
            await landing.wait()
            await super().mark_retry(*args)

    flaky = Recording("ch", fail=[DeliveryFailed("HTTP 503")])
    slow_cfg = cfg("ch", retry={"attempts": 3, "initial_backoff": "10s", "max_backoff": "10s"})
    outbox = SlowMarks()
    n = Notifier(Metrics(), SystemClock(), outbox, Journal(), rng=random.Random(1))
    n.set_channels([(slow_cfg, flaky)])
    n.start()
    try:
        n.publish(event("incident_opened"))
        await until(lambda: len(flaky.tries) == 1, what="the first, failing try")
        n.set_channels([(slow_cfg, flaky)])  # a reload: the worker is cancelled and a new one starts
        for _ in range(20):  # the new worker runs round its loop; nothing may be due until the mark lands
            await asyncio.sleep(0)
        assert len(flaky.tries) == 1
        landing.set()
        await until(lambda: n.status()["ch"]["failed_attempts"] == 1 and outbox.head("ch").attempts == 1,
                    what="the retry mark, landed")
        assert len(flaky.tries) == 1  # the retry waits its 5-10 s backoff, not sent again at once
    finally:
        await n.close()
