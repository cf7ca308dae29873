"""The recovery decision for an interrupted level, as a pure function of the journal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from watchdog.state.journal import Record
from watchdog.runtime.recovery import action_states, plan_resume

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)


def rec(seconds: int, kind: str, index: int, attempt: int = 1, outcome: str | None = None) -> Record:
    data = {"action": f"#{index + 1} http: PUT http://admin/x{index}", "attempt": attempt}
    if outcome:
        data.update(outcome=outcome, detail="")
    return Record(seconds, T0 + timedelta(seconds=seconds), kind, "web", "inc", 1, data)


def actions(*idempotent: bool) -> list:
    return [SimpleNamespace(idempotent=i) for i in idempotent]


@pytest.mark.parametrize(
    "records, idem, expected",
    [
        # killed after the intent, before the request went out (or during it): unknown, never repeated
        ([rec(1, "intent", 0)], (False, False), ("unknown", 0)),
        # killed after the action ran but before its outcome was written: the same evidence
        ([rec(1, "intent", 0), rec(2, "outcome", 0, outcome="succeeded"), rec(3, "intent", 1)], (False, False),
         ("unknown", 1)),
        # an idempotent action in the same spot is simply run again
        ([rec(1, "intent", 0)], (True, False), ("resume", 0)),
        # a definite failure is safe to retry; a never-started action is safe to start
        ([rec(1, "intent", 0), rec(2, "outcome", 0, outcome="failed")], (False,), ("resume", 0)),
        ([rec(1, "intent", 0), rec(2, "outcome", 0, outcome="succeeded")], (False, False), ("resume", 1)),
        # everything had succeeded: nothing to run, only the verdict was lost
        ([rec(1, "intent", 0), rec(2, "outcome", 0, outcome="succeeded")], (False,), ("done", 1)),
        # a later attempt's intent without outcome overrides an earlier failure
        ([rec(1, "intent", 0), rec(2, "outcome", 0, outcome="failed"), rec(3, "intent", 0, attempt=2)], (False,),
         ("unknown", 0)),
    ],
)
def test_plan(records, idem, expected):
    assert plan_resume(actions(*idem), action_states(records, T0)) == expected


def test_records_of_an_earlier_run_of_the_level_do_not_count():
    old = [rec(1, "intent", 0), rec(2, "outcome", 0, outcome="succeeded")]
    assert plan_resume(actions(False), action_states(old, T0 + timedelta(seconds=10))) == ("resume", 0)


@pytest.mark.parametrize("damage", ['{"id": "x", "phase": "no-such-phase"}', "{not json at all"])
async def test_an_open_incident_that_cannot_be_read_back_is_paged_and_the_start_goes_on(tmp_path, damage) -> None:
    """Recovery never acts on an incident it cannot read, never stays silent about it, and never lets one
    damaged row stop the daemon (a restart loop under systemd): `recovery_failed`, critical, and running."""
    import sqlite3

    from configs import hybrid_routing, parsed

    from watchdog.lifecycle.app import App
    from watchdog.state.codec import encode_incident
    from watchdog.core.escalation import Incident, Phase
    from watchdog.state.sqlite.store import SqliteStore

    path = tmp_path / "w.db"
    store = SqliteStore(path)
    store.save_incident(encode_incident(Incident("hybrid-routing-1", "hybrid-routing", T0, Phase.VERIFYING, level=1)))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE incidents SET snapshot = ? WHERE id = 'hybrid-routing-1'", (damage,))
    events: list = []
    app = await App.create(parsed(hybrid_routing(state_path=path)), serve_http=False, schedule=False,
                           listeners=(lambda ev, dry: events.append(ev),))
    await app.start()
    try:
        assert [(e.kind, e.severity, e.incident) for e in events] == [("recovery_failed", "critical", "hybrid-routing-1")]
        assert app.runtime.executors["hybrid-routing"].machine.incident is None  # nothing acted on
    finally:
        await app.stop()
