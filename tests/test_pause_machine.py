"""Pause and manual rollback in the escalation machine (pure, fake clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from watchdog.core.escalation import Phase, RunLevel
from watchdog.core.pause import GLOBAL, Pauses

from test_escalation import BAD, TARGET, World, kinds  # tests/ is on sys.path


class PausedWorld(World):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.pauses = Pauses()

    def hold(self) -> str | None:
        p = self.pauses.active(TARGET, self.now)
        return p.describe() if p else None


def test_a_paused_target_opens_nothing_and_says_what_it_would_run_once() -> None:
    w = PausedWorld()
    w.pauses.set(GLOBAL, w.now + timedelta(minutes=30), "deploy freeze")
    cmds = w.open()
    assert kinds(cmds) == ["would_run"]
    ev = cmds[0]
    assert ev.level == 1 and "would run level 1" in ev.why and "deploy freeze" in ev.why
    assert ev.next == "no action while paused; resume to act"
    assert w.machine.phase is Phase.NORMAL and w.machine.incident is None
    w.advance(seconds=30)
    assert w.observe() == []  # announced once, not every poll
    # The pause expires by itself: the next evaluation acts.
    w.now += timedelta(minutes=31)
    w.breach_history()
    cmds = w.observe()
    assert kinds(cmds) == ["incident_opened", "level_started", "RunLevel"]


def test_a_failed_level_is_held_while_paused_and_escalates_on_resume() -> None:
    w = PausedWorld()
    w.open()
    w.pauses.set(TARGET, w.now + timedelta(hours=1), "investigating")
    cmds = w.finish(ok=False, detail="HTTP 503")
    assert kinds(cmds) == ["level_failed", "would_run"]
    assert w.machine.phase is Phase.VERIFYING and w.machine.level == 1
    assert not [c for c in cmds if isinstance(c, RunLevel)]
    w.now = w.at(minutes=3, seconds=30)
    w.point("latency", BAD, w.at(minutes=1, seconds=5))
    w.point("latency", BAD, w.at(minutes=2, seconds=5))
    assert w.observe() == []  # still breaching, still paused, already announced
    w.pauses.clear(TARGET)
    cmds = w.observe()
    assert kinds(cmds) == ["verification_failed", "level_started", "RunLevel"]
    assert w.machine.level == 2


def test_a_pause_for_another_target_does_not_hold_this_one() -> None:
    w = PausedWorld()
    w.pauses.set("some-other-target", w.now + timedelta(hours=1), "x")
    assert kinds(w.open()) == ["incident_opened", "level_started", "RunLevel"]


def test_manual_rollback_runs_the_level_even_when_paused() -> None:
    w = PausedWorld()
    w.pauses.set(GLOBAL, w.now + timedelta(hours=1), "freeze")
    cmds = w.machine.manual(w.now, 2, "operator saw errors")
    assert kinds(cmds) == ["incident_opened", "level_started", "RunLevel"]
    assert cmds[-1].level == 2 and "manual rollback: operator saw errors" in cmds[1].why
    with pytest.raises(ValueError, match="running now"):
        w.machine.manual(w.now, 3, "again")
    with pytest.raises(ValueError, match="1..3"):
        PausedWorld().machine.manual(w.now, 4, "no such level")


def _fresh_points(w: PausedWorld, value: float) -> None:
    """Three complete buckets of `value` after now (the hold), then the clock past them."""
    start = w.now
    for k in (1, 2, 3):
        w.point("latency", value, start + k * timedelta(minutes=1))
    w.now = start + timedelta(minutes=4, seconds=5)


def test_a_level_held_before_it_started_runs_itself_at_resume_not_the_next() -> None:
    w = PausedWorld()
    w.open()  # level 1 decided; its first action waits
    w.pauses.set(TARGET, w.now + timedelta(hours=1), "an operator takes over")
    cmds = w.machine.level_held(w.now, w.incident, 1, "not started: paused", w.hold() or "paused")
    assert kinds(cmds) == ["would_run"] and cmds[0].level == 1
    inc = w.machine.incident
    assert inc is not None and inc.runs[-1].outcome == "not_started" and w.machine.phase is Phase.VERIFYING
    _fresh_points(w, BAD)
    assert w.observe() == []  # still paused: held, said once
    w.pauses.clear(TARGET)
    cmds = w.observe()
    assert kinds(cmds) == ["level_started", "RunLevel"] and cmds[-1].level == 1
    assert "held by a pause before it ran" in cmds[0].why


def test_a_held_level_whose_rules_recover_during_the_pause_is_mitigated_without_running() -> None:
    w = PausedWorld()
    w.open()
    w.pauses.set(TARGET, w.now + timedelta(hours=1), "an operator takes over")
    w.machine.level_held(w.now, w.incident, 1, "not started: paused", w.hold() or "paused")
    _fresh_points(w, 1.0)
    w.pauses.clear(TARGET)
    cmds = w.observe()
    assert kinds(cmds) == ["mitigated"] and "it did not run" in cmds[0].why
    assert not any(isinstance(c, RunLevel) for c in cmds)
