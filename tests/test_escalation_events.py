"""Every command the escalation machine gives, compared whole: each event's kind, severity, target,
incident, level, time, why and next, as an operator reads them in a page or the audit log.

test_escalation.py proves the decisions; this file proves what is said about them, field by field, so a
wrong severity ("info" for a blind target), a missing time or a lost reason cannot pass unseen. Written
from the rules and a hand derivation (the mutation run, bench/mutants.md, found these fields unguarded).
The World: a rule > 100 over 1-minute buckets, M = 2 of N = 3, verify window 2m, levels 1..3.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from watchdog.core.escalation import Incident, LevelRun, Phase, RunChecks, RunLevel, TargetMachine, Trigger
from watchdog.shared.events import Event
from watchdog.core.rules import RuleSpec

from test_escalation import BAD, GOOD, T0, TARGET, World  # tests/ is on sys.path

ID = f"{TARGET}-120010-1"  # the World's first incident, opened at 12:00:10
ALARM3 = "latency = 900 (3 of 3 datapoints breach > 100 (alarm at 2))"
PAUSED = "no action while paused; resume to act"


def at(minutes: int = 0, seconds: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def ev(kind: str, severity: str, incident: str | None, level: int, when: datetime, why: str, nxt: str,
       **details: Any) -> Event:
    return Event(kind, severity, TARGET, incident, level, when, why, nxt, details)  # type: ignore[arg-type]


def test_a_whole_incident_through_every_level_is_said_as_it_happens() -> None:
    w = World()
    w.breach_history()  # 900 at 11:57:05, 11:58:05, 11:59:05
    why = f"alarm: {ALARM3}"
    trigger = {"latency": {"value": BAD, "threshold": "> 100", "at": "2024-01-01T11:59:00+00:00",
                           "reason": "3 of 3 datapoints breach > 100 (alarm at 2)"}}
    assert w.observe() == [ev("incident_opened", "warning", ID, 1, at(0, 10), why, "running level 1", trigger=trigger),
                           ev("level_started", "warning", ID, 1, at(0, 10), why, "running level 1 actions"),
                           RunLevel(ID, 1, why, False)]
    inc = w.machine.incident
    assert inc is not None
    assert (inc.id, inc.target, inc.opened_at, inc.phase, inc.actions_ended_at, inc.verify_due) == (
        ID, TARGET, at(0, 10), Phase.RUNNING, None, None)
    assert inc.trigger["latency"] == Trigger(BAD, "> 100", at(-1), "3 of 3 datapoints breach > 100 (alarm at 2)")

    w.now = at(0, 30)
    failed = "level 1 failed: HTTP 500"
    assert w.finish(ok=False, detail="HTTP 500") == [ev("level_failed", "warning", ID, 1, at(0, 30), failed, "escalating"),
                                                      ev("level_started", "warning", ID, 2, at(0, 30), failed,
                                                         "running level 2 actions"),
                                                      RunLevel(ID, 2, failed, False)]
    assert (inc.runs[0].finished, inc.runs[0].outcome, inc.runs[0].detail) == (at(0, 30), "failed", "HTTP 500")

    w.now = at(1)
    assert w.finish(ok=True, detail="2 actions") == [
        ev("level_succeeded", "info", ID, 2, at(1), "level 2 actions succeeded: 2 actions",
           "verifying at 12:03:00 on datapoints newer than the actions")]
    assert (inc.runs[1].outcome, inc.actions_ended_at, inc.verify_due) == ("succeeded", at(1), at(3))

    # 12:01 and 12:02 start at or after the actions' end (12:01:00): 2 of 2 fresh buckets breach.
    w.point("latency", BAD, at(1, 5))
    w.point("latency", BAD, at(2, 5))
    w.now = at(3)
    cured = "level 2 did not cure it: latency = 900 (2 of 2 datapoints since the action breach > 100 (alarm at 2))"
    assert w.observe() == [ev("verification_failed", "warning", ID, 2, at(3), cured, "escalating"),
                           ev("level_started", "warning", ID, 3, at(3), cured, "running level 3 actions"),
                           RunLevel(ID, 3, cured, False)]

    w.now = at(3, 20)
    w.finish(ok=True)
    w.point("latency", GOOD, at(4, 5))
    w.now = at(5, 20)
    assert w.observe() == [RunChecks(ID, 3)]
    w.now = at(5, 30)
    checks = "level 3 checks failed: GET /health -> 503"
    assert w.checks(ok=False, detail="GET /health -> 503") == [
        ev("verification_failed", "warning", ID, 3, at(5, 30), checks, "escalating"),
        ev("exhausted", "critical", ID, 3, at(5, 30), f"level 3 is the last level; {checks}",
           "no more automatic actions; a human must act and resolve")]

    assert w.machine.resolve(at(6), "rolled forward") == [
        ev("resolved", "info", ID, 0, at(6), "resolved by a human: rolled forward", "watching")]


def test_mitigated_then_realarmed_and_the_same_realarm_while_paused() -> None:
    realarm = ("new alarm on a mitigated incident: latency = 900 (2 of 3 datapoints since the action breach > 100 "
               "(alarm at 2))")
    for hold in (None, "paused by ops until 13:00"):
        w = World()
        w.to_verifying()  # actions ended 12:00:40
        w.now = at(2, 40)
        w.point("latency", GOOD, at(1, 5))
        w.observe()
        assert w.checks(ok=True) == [ev("mitigated", "info", ID, 1, at(2, 40),
                                        "level 1 held: rules recovered and checks passed (1/1 passed)",
                                        "watching; resolve closes the incident")]
        # Fresh buckets 12:01 (50), 12:03 and 12:04 (900): 2 of 3 breach, M = 2.
        w.point("latency", BAD, at(3, 5))
        w.point("latency", BAD, at(4, 5))
        w.now = at(5)
        cmds = w.machine.observe(w.now, w.views(), hold)
        if hold is None:
            assert cmds == [ev("realarmed", "warning", ID, 1, at(5), realarm, "escalating"),
                            ev("level_started", "warning", ID, 2, at(5), realarm, "running level 2 actions"),
                            RunLevel(ID, 2, realarm, False)]
        else:  # said once, as what it would run; no "realarmed" on top, and nothing runs
            assert cmds == [ev("would_run", "warning", ID, 2, at(5), f"{hold}: would run level 2: {realarm}", PAUSED)]
            assert (w.machine.phase, w.machine.level) == (Phase.MITIGATED, 1)


def test_a_paused_target_says_what_it_would_open() -> None:
    w = World()
    w.breach_history()
    assert w.machine.observe(w.now, w.views(), "deploy freeze") == [
        Event("would_run", "warning", TARGET, None, 1, at(0, 10), f"deploy freeze: would run level 1: alarm: {ALARM3}",
              PAUSED)]


def test_checks_that_fail_while_paused_hold_the_next_level() -> None:
    w = World()
    w.to_verifying()
    w.now = at(2, 40)
    w.point("latency", GOOD, at(1, 5))
    assert w.observe() == [RunChecks(ID, 1)]
    cmds = w.machine.checks_finished(w.now, ID, 1, False, "boom", "maintenance")
    assert cmds == [ev("verification_failed", "warning", ID, 1, at(2, 40), "level 1 checks failed: boom", "escalating"),
                    ev("would_run", "warning", ID, 2, at(2, 40), "maintenance: would run level 2: level 1 checks failed: "
                       "boom", PAUSED)]
    assert (w.machine.phase, w.machine.level) == (Phase.VERIFYING, 1)


def test_a_level_that_fails_while_paused_is_held() -> None:
    w = World()
    w.open()
    w.now = at(0, 30)
    cmds = w.machine.level_finished(w.now, ID, 1, False, "HTTP 503", "investigating")
    assert cmds == [ev("level_failed", "warning", ID, 1, at(0, 30), "level 1 failed: HTTP 503", "escalating"),
                    ev("would_run", "warning", ID, 2, at(0, 30), "investigating: would run level 2: level 1 failed: "
                       "HTTP 503", PAUSED)]


def test_blind_names_every_watched_rule_without_fresh_data() -> None:
    w = World({"latency": 1, "errors": 1})
    w.breach_history("latency")
    w.breach_history("errors")
    both = f"alarm: errors = 900 (3 of 3 datapoints breach > 100 (alarm at 2)); {ALARM3}"
    assert w.observe()[0].why == both
    w.advance(seconds=30)
    w.finish()
    w.now = at(2, 40)
    assert w.observe() == [ev("blind", "critical", ID, 1, at(2, 40),
                              "no datapoint newer than level 1's actions for errors, latency",
                              "not escalating on missing evidence; a human must look")]


def test_a_rule_alarming_on_missing_data_says_which_datapoints_were_missing() -> None:
    w = World()
    w.spec = RuleSpec(w.spec.threshold, w.spec.period, 3, 2, missing_data="breaching")
    # At 12:00:10 the range is 11:55-11:59, all empty: the three newest buckets are counted as breaching.
    reason = ("3 of 3 datapoints breach > 100 (alarm at 2; 3 missing counted as breaching: 11:57:00Z, 11:58:00Z, "
              "11:59:00Z)")
    [opened, *_] = w.observe()
    assert opened.why == f"alarm: latency = missing ({reason})"
    assert opened.details["trigger"]["latency"] == {"value": None, "threshold": "> 100", "at": None, "reason": reason}


def test_a_level_held_before_it_ran_then_the_rules_recovered() -> None:
    w = World()
    assert w.machine.level_held(at(0, 10), "nothing-open", 1, "x", "H") == []  # no incident: a stale report
    w.open()
    assert w.machine.level_held(at(0, 20), "another-incident", 1, "x", "H") == []
    why = f"alarm: {ALARM3}"
    assert w.machine.level_held(at(0, 20), ID, 1, why, "deploy freeze") == [
        ev("would_run", "warning", ID, 1, at(0, 20), f"deploy freeze: would run level 1: {why}", PAUSED)]
    inc = w.machine.incident
    assert (inc.phase, inc.held_level, inc.runs[-1].outcome) == (Phase.VERIFYING, 1, "not_started")
    assert w.machine.level_held(at(0, 25), ID, 1, why, "deploy freeze") == []  # not running any more
    w.point("latency", GOOD, at(1, 5))
    w.now = at(2)
    assert w.observe() == [ev("mitigated", "info", ID, 1, at(2), "level 1 held: the rules recovered while level 1 "
                              "was held by a pause; it did not run", "watching; resolve closes the incident")]


def test_a_manual_rollback_opens_an_incident_run_by_hand() -> None:
    w = World()
    why = "manual rollback: bad deploy"
    assert w.machine.manual(at(0, 10), 1, "bad deploy") == [
        ev("incident_opened", "warning", ID, 1, at(0, 10), why, "running level 1"),
        ev("level_started", "warning", ID, 1, at(0, 10), why, "running level 1 actions"),
        RunLevel(ID, 1, why, True)]
    inc = w.machine.incident
    assert (inc.id, inc.target, inc.opened_at, inc.phase) == (ID, TARGET, at(0, 10), Phase.RUNNING)
    for level in (0, 4):
        with pytest.raises(ValueError, match=r"^level must be 1\.\.3$"):
            World().machine.manual(at(0, 10), level, "x")


def test_the_circuit_breaker_is_said_when_it_trips() -> None:
    w = World(max_level=5, per_hour=2)
    w.open()
    w.now = at(0, 20)
    w.finish(ok=False, detail="a")
    w.now = at(0, 30)
    assert w.finish(ok=False, detail="b")[-1] == ev(
        "exhausted", "critical", ID, 2, at(0, 30), "circuit breaker: 2 rollbacks in the last hour "
        "(max_rollbacks_per_hour=2); would run level 3", "no more automatic actions; a human must act and resolve")


def test_what_the_watchdog_says_of_its_own_condition() -> None:
    m = TargetMachine(TARGET, 3, timedelta(minutes=2), 10, lambda target, now: "unused")
    now = at(1)
    assert m.pause_changed(now, True, "paused for 1h by ops", "no action until 13:01") == [
        Event("paused", "info", TARGET, None, 0, now, "paused for 1h by ops", "no action until 13:01")]
    assert m.pause_changed(now, False, "resumed by ops", "acting again") == [
        Event("resumed", "info", TARGET, None, 0, now, "resumed by ops", "acting again")]
    assert m.sources_blind(now, {"cw": "source cw down since 12:00:00Z: boom"}) == [
        Event("blind", "critical", TARGET, None, 0, now, "source cw down since 12:00:00Z: boom",
              "no action on rules of source cw until it answers; check the source")]
    assert m.sources_blind(at(2), {}) == [
        Event("sight_restored", "info", TARGET, None, 0, at(2), "source cw answers again",
              "rules of that source are judged again")]
    assert m.state_file(now, False, "disk full", "no action until it is written") == [
        Event("state_unwritable", "critical", TARGET, None, 0, now, "disk full", "no action until it is written")]
    assert m.state_file(now, True, "written again", "acting again") == [
        Event("state_writable", "info", TARGET, None, 0, now, "written again", "acting again")]
    assert m.restore_failed(now, "web-1", "unreadable row") == [
        Event("recovery_failed", "critical", TARGET, "web-1", 0, now, "unreadable row",
              "a human must look at the state file and resolve the incident")]
    assert m.reconfigure(2, timedelta(minutes=5), 4) == []
    assert (m.max_level, m.verify_window, m.max_rollbacks_per_hour) == (2, timedelta(minutes=5), 4)


def restored(per_hour: int, runs: list[LevelRun]) -> tuple[World, list[Any]]:
    """An incident read back after a restart, in phase checking at level 2, its verification due."""
    w = World(per_hour=per_hour)
    w.now = at(30)
    inc = Incident(id="web-7", target=TARGET, opened_at=at(0), phase=Phase.CHECKING, level=2, watch={"latency"},
                   actions_ended_at=at(20), verify_due=at(22), runs=runs)
    return w, w.machine.restore(w.now, inc)


def test_a_restored_incident_is_said_and_its_last_hour_of_levels_counts_for_the_breaker() -> None:
    w, cmds = restored(10, [LevelRun(1, at(0), "a", at(5), "failed"), LevelRun(2, at(10), "b", at(20), "succeeded")])
    assert cmds == [Event("recovered", "warning", TARGET, "web-7", 2, at(30),
                          "resumed after a restart in phase checking at level 2", "continuing")]
    assert w.machine.incident is not None and w.machine.incident.id == "web-7"
    assert w.machine.phase is Phase.VERIFYING  # its checks run again
    assert w.machine.outcome_unknown(at(30), "PUT /admin/flags") == [
        Event("outcome_unknown", "critical", TARGET, "web-7", 2, at(30), "PUT /admin/flags: outcome unknown after a "
              "restart", "verifying on fresh data; a human must check")]
    # One level started in the hour before 12:30 (12:10; 11:29 is older): with max 1 per hour the next is refused.
    w, _ = restored(1, [LevelRun(1, at(-31), "a", at(-30), "failed"), LevelRun(2, at(10), "b", at(20), "succeeded")])
    w.point("latency", BAD, at(28, 5))
    w.point("latency", BAD, at(29, 5))
    assert [c.kind for c in w.observe() if isinstance(c, Event)] == ["verification_failed", "exhausted"]
    w, _ = restored(2, [LevelRun(1, at(-31), "a", at(-30), "failed"), LevelRun(2, at(10), "b", at(20), "succeeded")])
    w.point("latency", BAD, at(28, 5))
    w.point("latency", BAD, at(29, 5))
    assert [c.level for c in w.observe() if isinstance(c, RunLevel)] == [3]
