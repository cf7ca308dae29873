"""The recovery decision for an interrupted level, as a pure function of the journal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from watchdog.journal import Record
from watchdog.recovery import action_states, plan_resume

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
