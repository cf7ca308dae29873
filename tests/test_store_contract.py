"""One contract for every store backend: the in-memory one, the SQLite file written at once, the SQLite
file written through the daemon's writer thread, and every state backend as the runtime gets it, opened
through its descriptor (watchdog/state/backend.py): each one registered in watchdog.shared.kinds STATES, the
in-memory opener of `run --once` and the replay, and the toy JSON-file backend the tests define
(tests/toy_state.py). What the executor, recovery and the runtime rely on (watchdog/state/storage.py's Protocols and
watchdog/state/outbox.py's Outbox) gives the same results on each, `details` of an event included. A registered
backend must say here how a test configures it (OPENED), or the contract fails; a durable one must give back
what was written once it has been closed and opened again, and its read-only view (`incidents`) must show it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from configs import hybrid_routing, parsed
from toy_state import TOY_STATE
from timing import FakeClock

from watchdog.config.models import AwsSection
from watchdog.state.codec import encode_incident
from watchdog.core.escalation import Incident, LevelRun, Phase, Trigger
from watchdog.shared.events import Event
from watchdog.state.journal import MemoryStore
from watchdog.state.outbox import MemoryOutbox, Outbox
from watchdog.state.sqlite.outbox import SqliteOutbox
from watchdog.shared.kinds import STATES
from watchdog.core.pause import Pause
from watchdog.state.memory import in_memory
from watchdog.state.backend import OpenState, StateDeps, state_kind
from watchdog.state.writer import StateWriter
from watchdog.state.storage import AuditJournal, IncidentStore, PauseStore, Store
from watchdog.state.sqlite.store import SqliteStore

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)
TARGETS = ("svc", "other")  # the targets the records and incidents below name
S = timedelta(seconds=1)


# How a test configures each state backend: its config's keys besides `type`, in a fresh directory (or, for the
# shared table, a fresh table in the moto server: `request` gives the fixtures), and the config's `aws:` section.
OPENED: dict[str, Any] = {
    "sqlite": lambda tmp, request: ({"path": tmp / "state" / "w.db"}, AwsSection()),
    "toy_json": lambda tmp, request: ({"file": tmp / "toy" / "state.json"}, AwsSection()),
    "dynamodb": lambda tmp, request: ({"table": request.getfixturevalue("state_table")},
                                      AwsSection(endpoint_url=request.getfixturevalue("moto_url"))),
}
DURABLE = [*STATES.types(), TOY_STATE.type]  # every registered backend, and the tests' own


@dataclass
class Backend:
    store: Store
    outbox: Outbox


async def opened(type_: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, AwsSection, OpenState]:
    """The backend as build_runtime gets it: its descriptor's `open`, on a config parsed by its own model."""
    kind = state_kind(type_)
    keys, aws = OPENED[type_](tmp_path, request)
    cfg = kind.config.model_validate({"type": type_, **keys})
    state = await kind.open(cfg, StateDeps("the contract test", FakeClock(T0), aws, "contract", TARGETS))
    # A shared table's leases taken (the first round on a new table) and settled, as the runtime settles them
    for change in await state.peers.round(()):
        state.peers.settled(change.target)
    return cfg, aws, state


@pytest.fixture
def toy_registered() -> Any:
    with STATES.registered(TOY_STATE):  # type: ignore[arg-type]
        yield


@pytest.fixture(params=["memory", "sqlite", "sqlite-writer", "opened:memory", *(f"opened:{t}" for t in DURABLE)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, toy_registered: None) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend(MemoryStore(), MemoryOutbox())
        return
    if request.param.startswith("opened:"):
        type_ = request.param.removeprefix("opened:")
        if type_ == "memory":
            state = await in_memory()(parsed(hybrid_routing()), StateDeps("the contract test", FakeClock(T0)))
        else:
            _, _, state = await opened(type_, tmp_path, request)
        yield Backend(state.store, state.outbox)
        await state.aclose()
        return
    store = SqliteStore(tmp_path / "state.db")
    writer = StateWriter()
    if request.param == "sqlite-writer":
        writer.start()
        store.attach(writer)
    yield Backend(store, SqliteOutbox(store))
    await writer.stop(timeout=5)
    store.close()


def incident(id_: str, opened: datetime, phase: Phase = Phase.VERIFYING, closed: datetime | None = None) -> Incident:
    inc = Incident(id=id_, target="svc", opened_at=opened, phase=phase, level=1, closed_at=closed)
    inc.trigger = {"latency": Trigger(900.0, "> 100", opened, "3 of 3 breach")}
    inc.watch = {"latency"}
    inc.runs.append(LevelRun(1, opened, "alarm", opened + 2 * S, "succeeded", "HTTP 200"))
    return inc


async def test_every_backend_has_every_capability(backend: Backend) -> None:
    for capability in (AuditJournal, IncidentStore, PauseStore, Store):
        assert isinstance(backend.store, capability)


async def test_the_journal_keeps_the_same_records_details_included(backend: Backend) -> None:
    s = backend.store
    opened = Event("incident_opened", "warning", "svc", "inc-1", 1, T0, "alarm: latency = 900", "running level 1",
                   {"trigger": {"latency": {"value": 900.0, "at": T0, "reason": "3 of 3"}}, "phases": {"b", "a"}})
    made = [s.event(opened),
            s.intent(T0 + S, "svc", "inc-1", 1, "#1 http: PUT /l1", 1, False),
            s.outcome(T0 + 2 * S, "svc", "inc-1", 1, "#1 http: PUT /l1", 1, "failed", "HTTP 503", False),
            s.check(T0 + 3 * S, "svc", "inc-1", 1, "GET /health", True, "HTTP 200"),
            s.notification(T0 + 4 * S, "svc", "inc-1", 1, "slack", "incident_opened", 7, "sent", 2, "delivered", True),
            s.intent(T0 + 5 * S, "other", "inc-2", 2, "#1 command: x", 1, True)]
    await s.flush()
    assert [r.seq for r in made] == [1, 2, 3, 4, 5, 6]
    assert s.records() == made  # what a write returns is what is read back
    assert made[0].data == {"event": "incident_opened", "severity": "warning", "why": "alarm: latency = 900",
                            "next": "running level 1",
                            "details": {"trigger": {"latency": {"value": 900.0, "at": T0.isoformat(), "reason": "3 of 3"}},
                                        "phases": ["a", "b"]}}
    assert [r.seq for r in s.records("inc-2")] == [6] and s.records("nope") == []
    assert made[4].dry_run is True and made[4].data["delivery"] == 7


async def test_incidents_upsert_and_are_listed_alike(backend: Backend) -> None:
    s = backend.store
    first = incident("svc-1", T0)
    second = incident("svc-2", T0 + timedelta(hours=1))
    s.save_incident(encode_incident(first))
    s.save_incident(encode_incident(second))
    first.phase, first.closed_at = Phase.MITIGATED, T0 + timedelta(minutes=10)
    s.save_incident(encode_incident(first))
    await s.flush()

    def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]  # when it was written: the file's

    assert [r["id"] for r in s.open_incidents()] == ["svc-2"]
    assert [r["id"] for r in s.list_incidents(10)] == ["svc-2", "svc-1"] and len(s.list_incidents(1)) == 1
    row = s.incident("svc-1")
    assert row is not None and plain([row]) == [{
        "id": "svc-1", "target": "svc", "opened_at": T0.isoformat(), "phase": "mitigated", "level": 1,
        "closed_at": first.closed_at.isoformat(), "snapshot": encode_incident(first)}]
    assert s.incident("nope") is None


async def test_pauses_are_kept_replaced_and_ended_alike(backend: Backend) -> None:
    s = backend.store
    s.save_pause(Pause("*", T0 + timedelta(minutes=30), "maintenance"))
    s.save_pause(Pause("svc", T0 + timedelta(hours=2), "router upgrade"))
    s.save_pause(Pause("svc", T0 + timedelta(hours=3), "longer"))
    s.delete_pause("*")
    s.delete_pause("never-paused")
    await s.flush()
    assert s.pauses() == ([Pause("svc", T0 + timedelta(hours=3), "longer")], [])


async def test_the_outbox_behaves_alike(backend: Backend) -> None:
    o = backend.outbox
    landed: list[str] = []
    ev = Event("incident_opened", "warning", "svc", "inc-1", 1, T0, "why", "next", {"n": 1})
    o.enqueue("audit-1", ev, False, ["slack", "pager"], T0, 1, lambda: landed.append("1"))
    o.enqueue("audit-1", ev, False, ["slack"], T0, 1, lambda: landed.append("again"))  # the same key: once
    o.enqueue("audit-2", ev, True, ["slack"], T0 + S, 2, lambda: landed.append("2"))
    await backend.store.flush()
    assert landed == ["1", "again", "2"]
    head = o.head("slack")
    assert head is not None and (head.event, head.dry_run, head.attempts) == (ev, False, 0)
    await o.mark_retry(head.id, 1, (T0 + 10 * S).timestamp(), "HTTP 500")
    head = o.head("slack")
    assert head is not None and (head.attempts, head.last_error) == (1, "HTTP 500")
    await o.mark_sent(head.id, T0 + 11 * S)
    second = o.head("slack")
    assert second is not None and second.dry_run is True
    await o.mark_dead(second.id, 3, T0 + 12 * S, "HTTP 404")
    assert o.head("slack") is None
    assert o.counts("slack") == {"pending": 0, "sent": 1, "dead": 1}
    assert [(p.state, p.attempts, p.last_error) for p in o.dead("slack")] == [("dead", 3, "HTTP 404")]
    await o.set_thread("slack", "inc-1", "1700.01")
    await o.set_thread("slack", "inc-1", "1700.02")  # the first one stays the thread
    assert o.thread("slack", "inc-1") == "1700.01" and o.thread("slack", "inc-9") is None
    stranded: list[int] = []
    o.strand({"slack"}, T0 + 13 * S, stranded.append)  # "pager" is no longer configured
    await backend.store.flush()
    assert stranded == [1] and o.counts("pager") == {"pending": 0, "sent": 0, "dead": 1}


def test_every_registered_backend_is_held_to_the_contract() -> None:
    assert "sqlite" in STATES.types() and set(STATES.types()) <= set(OPENED)


@pytest.mark.parametrize("type_", DURABLE)
async def test_a_durable_backend_gives_back_what_it_kept_once_opened_again(type_: str, tmp_path: Path,
                                                                          toy_registered: None,
                                                                          request: pytest.FixtureRequest) -> None:
    """Closed and opened again (a restart), and read-only (the `incidents` commands): the same records,
    incidents and pauses."""
    cfg, aws, state = await opened(type_, tmp_path, request)
    s = state.store
    made = [s.event(Event("incident_opened", "warning", "svc", "svc-1", 1, T0, "why", "next")),
            s.intent(T0 + S, "svc", "svc-1", 1, "#1 http: PUT /l1", 1, False)]
    first = incident("svc-1", T0)
    s.save_incident(encode_incident(first))
    s.save_pause(Pause("svc", T0 + timedelta(hours=2), "router upgrade"))
    await s.flush()
    await state.aclose()

    cfg, aws, again = await opened(type_, tmp_path, request)
    try:
        assert again.store.records() == made
        assert [r["id"] for r in again.store.open_incidents()] == ["svc-1"]
        assert again.store.pauses() == ([Pause("svc", T0 + timedelta(hours=2), "router upgrade")], [])
    finally:
        await again.aclose()
    reader = state_kind(type_).read(cfg, aws)
    try:
        row = reader.incident("svc-1")
        assert row is not None and row["snapshot"] == encode_incident(first)
        assert [r["id"] for r in reader.list_incidents(10)] == ["svc-1"] and reader.records() == made
        assert reader.check_chain() == (2, []) and reader.where
    finally:
        reader.close()
