"""The escalation state machine (SPEC 4.2), driven with hand-built views and a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from watchdog.config.types import parse_threshold
from watchdog.core.escalation import Phase, RuleView, RunChecks, RunLevel, TargetMachine
from watchdog.shared.events import Event
from watchdog.core.rules import RuleSpec, RuleState, align, evaluate

UTC = timezone.utc
MIN = timedelta(minutes=1)
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
BAD, GOOD = 900.0, 50.0  # against "> 100"
TARGET = "hybrid-routing"


class World:
    """A fake clock, rules with their datapoints, and one TargetMachine."""

    def __init__(self, levels: dict[str, int] | None = None, max_level: int = 3, per_hour: int = 10):
        self.now = T0 + timedelta(seconds=10)
        self.levels = levels or {"latency": 1}
        self.spec = RuleSpec(parse_threshold("> 100"), MIN, evaluation_periods=3, datapoints_to_alarm=2)
        self.points: dict[str, list] = {name: [] for name in self.levels}
        self.ids = 0
        self.machine = TargetMachine(TARGET, max_level, 2 * MIN, per_hour, self._new_id)

    def _new_id(self, target: str, now: datetime) -> str:
        self.ids += 1
        return f"{target}-{now:%H%M%S}-{self.ids}"

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)

    def at(self, **kw) -> datetime:
        return T0 + timedelta(**kw)

    def point(self, rule: str, value: float, at: datetime | None = None) -> None:
        self.points[rule].append((at or self.now, value))

    def breach_history(self, rule: str = "latency") -> None:
        """Breaching points in the three complete buckets before the current one."""
        current = align(self.now, MIN)
        for k in (3, 2, 1):
            self.point(rule, BAD, current - k * MIN + timedelta(seconds=5))

    def views(self) -> dict[str, RuleView]:
        return {
            name: RuleView(name, lvl, self.spec, tuple(self.points[name]), evaluate(self.spec, self.points[name], self.now))
            for name, lvl in self.levels.items()
        }

    def hold(self) -> str | None:
        """The pause holding the target now, as the executor passes it in: none here."""
        return None

    def observe(self) -> list:
        return self.machine.observe(self.now, self.views(), self.hold())

    @property
    def incident(self) -> str:
        assert self.machine.incident is not None
        return self.machine.incident.id

    def finish(self, ok: bool = True, detail: str = "done") -> list:
        return self.machine.level_finished(self.now, self.incident, self.machine.level, ok, detail, self.hold())

    def checks(self, ok: bool = True, detail: str = "1/1 passed") -> list:
        return self.machine.checks_finished(self.now, self.incident, self.machine.level, ok, detail, self.hold())

    def open(self) -> list:
        self.breach_history()
        return self.observe()

    def to_verifying(self) -> None:
        """Alarm at 12:00:10, level 1's actions end at 12:00:40, verification due at 12:02:40."""
        self.open()
        self.advance(seconds=30)
        self.finish()

    def to_mitigated(self) -> None:
        self.to_verifying()
        self.now = self.at(minutes=2, seconds=40)
        self.point("latency", GOOD, self.at(minutes=1, seconds=5))
        assert isinstance(self.observe()[-1], RunChecks)
        self.checks(ok=True)
        assert self.machine.phase is Phase.MITIGATED


def kinds(cmds: list) -> list[str]:
    return [c.kind if isinstance(c, Event) else type(c).__name__ for c in cmds]


def run_levels(cmds: list) -> list[int]:
    return [c.level for c in cmds if isinstance(c, RunLevel)]


# --- opening an incident -------------------------------------------------------


def test_nothing_happens_while_rules_are_ok_or_insufficient() -> None:
    w = World()
    assert w.observe() == []  # no data: insufficient_data is not an alarm
    for k in (3, 2, 1):
        w.point("latency", GOOD, T0 - k * MIN)
    assert w.observe() == []
    assert (w.machine.phase, w.machine.level, w.machine.incident) == (Phase.NORMAL, 0, None)


@pytest.mark.parametrize(
    "levels, alarming, level",
    [
        ({"latency": 1}, ["latency"], 1),
        ({"latency": 1, "gdpr": 2}, ["latency"], 1),
        ({"latency": 1, "gdpr": 2}, ["gdpr"], 2),
        ({"latency": 1, "gdpr": 2}, ["latency", "gdpr"], 2),
        ({"latency": 3, "gdpr": 2, "cost": 1}, ["cost", "gdpr"], 2),
    ],
)
def test_alarm_opens_an_incident_at_the_highest_level(levels, alarming, level) -> None:
    w = World(levels)
    for name in alarming:
        w.breach_history(name)
    cmds = w.observe()
    assert kinds(cmds) == ["incident_opened", "level_started", "RunLevel"]
    inc = w.machine.incident
    assert inc is not None and cmds[-1] == RunLevel(inc.id, level, cmds[1].why)
    assert (w.machine.phase, w.machine.level) == (Phase.RUNNING, level)
    assert inc.watch == set(alarming) and set(inc.trigger) == set(alarming)
    assert inc.opened_at == w.now and inc.runs[-1].level == level
    assert cmds[0].level == level  # the opened event names the level it opens at


def test_events_carry_target_incident_level_why_next() -> None:
    w = World()
    opened, started, run = w.open()
    inc = w.incident
    assert inc == f"{TARGET}-120010-1"
    assert (opened.target, opened.incident, opened.severity, opened.at) == (TARGET, inc, "warning", w.now)
    assert opened.why == "alarm: latency = 900 (3 of 3 datapoints breach > 100 (alarm at 2))"
    assert opened.next == "running level 1"
    assert opened.details["trigger"]["latency"]["value"] == BAD
    assert opened.details["trigger"]["latency"]["threshold"] == "> 100"
    assert (started.target, started.incident, started.level, started.next) == (TARGET, inc, 1, "running level 1 actions")
    assert run.reason == opened.why == started.why


# --- running a level -----------------------------------------------------------


def test_failed_level_escalates_at_once() -> None:
    w = World()
    w.open()
    w.advance(seconds=20)
    cmds = w.finish(ok=False, detail="HTTP 500 after 3 attempts")
    assert kinds(cmds) == ["level_failed", "level_started", "RunLevel"]
    failed = cmds[0]
    assert (failed.level, failed.severity, failed.next) == (1, "warning", "escalating")
    assert failed.why == "level 1 failed: HTTP 500 after 3 attempts"
    assert cmds[1].level == 2 and run_levels(cmds) == [2]
    assert (w.machine.phase, w.machine.level) == (Phase.RUNNING, 2)
    first = w.machine.incident.runs[0]
    assert (first.outcome, first.finished, first.detail) == ("failed", w.now, "HTTP 500 after 3 attempts")


def test_observe_while_running_does_nothing() -> None:
    w = World({"latency": 1, "gdpr": 3})
    w.open()
    w.breach_history("gdpr")
    assert w.observe() == []
    assert (w.machine.phase, w.machine.level) == (Phase.RUNNING, 1)


def test_success_starts_verification_and_nothing_happens_before_due() -> None:
    w = World()
    w.open()
    w.advance(seconds=30)
    cmds = w.finish(ok=True, detail="1 action")
    assert kinds(cmds) == ["level_succeeded"]
    assert cmds[0].next == "verifying at 12:02:40 on datapoints newer than the actions"
    inc = w.machine.incident
    assert (inc.phase, inc.actions_ended_at, inc.verify_due) == (Phase.VERIFYING, w.at(seconds=40), w.at(minutes=2, seconds=40))
    # Fresh breaching data before verify_due changes nothing.
    w.point("latency", BAD, w.at(minutes=1, seconds=5))
    for now in (w.at(minutes=1, seconds=30), w.at(minutes=2, seconds=39)):
        w.now = now
        assert w.observe() == []
    assert w.machine.phase is Phase.VERIFYING


# --- verification -----------------------------------------------------------------


@pytest.mark.parametrize(
    "levels, fresh, level",
    [({"latency": 1}, {"latency": BAD}, 2), ({"latency": 1, "gdpr": 3}, {"latency": GOOD, "gdpr": BAD}, 3)],
    ids=["next-level", "level-of-a-higher-rule"],
)
def test_verify_with_fresh_breaching_data_escalates(levels, fresh, level) -> None:
    w = World(levels)
    w.to_verifying()
    w.now = w.at(minutes=3, seconds=40)
    for name, value in fresh.items():
        w.point(name, value, w.at(minutes=1, seconds=5))
        w.point(name, value, w.at(minutes=2, seconds=5))
    cmds = w.observe()
    assert kinds(cmds) == ["verification_failed", "level_started", "RunLevel"]
    alarming = [n for n, v in fresh.items() if v == BAD]
    assert cmds[0].why.startswith(f"level 1 did not cure it: {alarming[0]} = 900")
    assert (cmds[0].level, run_levels(cmds), w.machine.level) == (1, [level], level)
    assert w.machine.incident.watch == {"latency", *alarming}


def test_one_blip_of_a_bystander_rule_does_not_escalate() -> None:
    """Only the rules that alarmed get the lenient M; another rule needs its full M of fresh data."""
    w = World({"latency": 1, "gdpr": 2})
    w.to_verifying()
    w.now = w.at(minutes=2, seconds=40)
    w.point("latency", GOOD, w.at(minutes=1, seconds=5))
    w.point("gdpr", BAD, w.at(minutes=1, seconds=5))
    assert kinds(w.observe()) == ["RunChecks"]


@pytest.mark.parametrize("after", ["good-then-bad", "nothing"])
def test_old_breaching_points_do_not_fail_verification(after: str) -> None:
    """The key property: only datapoints newer than the action count, and the bucket in which the action
    ended holds older ones, so none of it counts (fresh buckets start at or after the action's end).

    The rule is > 100, M = 2 of N = 3, 1-minute buckets. Level 1's actions end at 12:00:40, inside the
    12:00 bucket, which breaches only before that (12:00:20, 12:00:39).
    - good-then-bad: 12:01 holds 50 and 12:02 holds 900. Judged at 12:03:40 on the fresh buckets 12:01 and
      12:02: 1 of 2 breach, and the watched rule's M is min(2, 2) = 2, so it is ok: the checks run. Were the
      12:00 bucket counted, 2 of 3 would breach (M = 2): level 2.
    - nothing: no datapoint after 12:00:40. At 12:02:40 the machine is blind (a page, no action). Were the
      12:00 bucket counted, 1 of 1 would breach (M = min(2, 1) = 1): level 2.
    """
    w = World()
    w.to_verifying()
    assert w.machine.incident.actions_ended_at == w.at(seconds=40)
    w.point("latency", BAD, w.at(seconds=20))
    w.point("latency", BAD, w.at(seconds=39))
    if after == "good-then-bad":
        w.point("latency", GOOD, w.at(minutes=1, seconds=5))
        w.point("latency", BAD, w.at(minutes=2, seconds=5))
        w.now = w.at(minutes=3, seconds=40)
    else:
        w.now = w.at(minutes=2, seconds=40)
    views = w.views()
    assert views["latency"].evaluation.state is RuleState.ALARM  # the plain M-of-N alarms on the same points
    cmds = w.machine.observe(w.now, views, None)
    if after == "good-then-bad":
        assert cmds == [RunChecks(w.incident, 1)]
        assert w.machine.phase is Phase.CHECKING
    else:
        assert [(c.kind, c.why) for c in cmds] == [("blind", "no datapoint newer than level 1's actions for latency")]
        assert (w.machine.phase, w.machine.level) == (Phase.VERIFYING, 1)


@pytest.mark.parametrize("first_level_failed", [False, True])
def test_breaches_during_a_slow_action_do_not_fail_verification(first_level_failed: bool) -> None:
    """Points after the alarm but before the actions ended are not evidence either, the one in the bucket
    where they ended included.

    The actions end at 12:02:30; 12:01 and 12:02 breach before that (12:01:05, 12:02:10). After: 12:03
    holds 50, 12:04 holds 900. At 12:05:30 the fresh buckets are 12:03 and 12:04: 1 of 2 breach, M =
    min(2, 2) = 2, ok: the checks run. Counting the 12:02 bucket would make it 2 of 3: the next level."""
    w = World()
    w.open()  # 12:00:10
    if first_level_failed:
        w.advance(seconds=20)
        w.finish(ok=False)  # level 2 starts at 12:00:30
    w.point("latency", BAD, w.at(minutes=1, seconds=5))
    w.point("latency", BAD, w.at(minutes=2, seconds=10))
    w.now = w.at(minutes=2, seconds=30)
    w.finish(ok=True)  # the actions took until 12:02:30
    level = w.machine.level
    w.point("latency", GOOD, w.at(minutes=3, seconds=5))
    w.point("latency", BAD, w.at(minutes=4, seconds=5))
    w.now = w.at(minutes=5, seconds=30)
    views = w.views()
    assert views["latency"].evaluation.state is RuleState.ALARM  # 2 of 3 in the plain window
    assert w.machine.observe(w.now, views, None) == [RunChecks(w.incident, level)]


@pytest.mark.parametrize("then, outcome", [(GOOD, [RunChecks("hybrid-routing-120010-1", 1)]), (BAD, [2])])
def test_no_fresh_data_is_blind_once_then_recovers(then: float, outcome: list) -> None:
    w = World()
    w.to_verifying()
    w.point("latency", BAD, w.at(seconds=30))  # old evidence only
    w.now = w.at(minutes=2, seconds=40)
    (blind,) = w.observe()
    assert (blind.kind, blind.severity, blind.level, blind.incident) == ("blind", "critical", 1, w.incident)
    assert blind.why == "no datapoint newer than level 1's actions for latency"
    assert blind.next == "not escalating on missing evidence; a human must look"
    assert w.machine.incident.blind is True
    for _ in range(3):  # announced once; never escalates on missing evidence
        w.advance(seconds=30)
        assert w.observe() == []
    assert (w.machine.phase, w.machine.level) == (Phase.VERIFYING, 1)
    w.point("latency", then, w.at(minutes=3, seconds=5))
    w.now = w.at(minutes=4, seconds=10)
    cmds = w.observe()
    assert (cmds if then == GOOD else run_levels(cmds)) == outcome
    assert w.machine.incident.blind is False


@pytest.mark.parametrize(
    "levels, fresh, blind_on",
    [({"latency": 1, "gdpr": 2}, ["latency"], None), ({"latency": 1, "errors": 1}, ["latency"], "errors")],
    ids=["unwatched-rule-without-data", "one-watched-rule-without-data"],
)
def test_only_watched_rules_can_make_it_blind(levels, fresh, blind_on) -> None:
    w = World(levels)
    for name, lvl in levels.items():
        if lvl == 1:
            w.breach_history(name)
    w.observe()
    w.advance(seconds=30)
    w.finish()
    w.now = w.at(minutes=2, seconds=40)
    for name in fresh:
        w.point(name, GOOD, w.at(minutes=1, seconds=5))
    cmds = w.observe()
    if blind_on is None:
        assert cmds == [RunChecks(w.incident, 1)]
    else:
        assert [c.why for c in cmds] == [f"no datapoint newer than level 1's actions for {blind_on}"]


@pytest.mark.parametrize(
    "ok, expected, phase, level",
    [
        (True, ["mitigated"], Phase.MITIGATED, 1),
        (False, ["verification_failed", "level_started", "RunLevel"], Phase.RUNNING, 2),
    ],
)
def test_checks_decide(ok: bool, expected: list[str], phase: Phase, level: int) -> None:
    w = World()
    w.to_verifying()
    w.now = w.at(minutes=2, seconds=40)
    w.point("latency", GOOD, w.at(minutes=1, seconds=5))
    assert w.observe() == [RunChecks(w.incident, 1)]
    w.advance(seconds=3)
    cmds = w.checks(ok=ok, detail="GET /health -> 503" if not ok else "1/1 passed")
    assert kinds(cmds) == expected
    assert (w.machine.phase, w.machine.level) == (phase, level)
    if ok:
        assert cmds[0].why == "level 1 held: rules recovered and checks passed (1/1 passed)"
        assert (cmds[0].severity, w.machine.incident.mitigated_at) == ("info", w.now)
    else:
        assert cmds[0].why == "level 1 checks failed: GET /health -> 503"


# --- exhaustion --------------------------------------------------------------------


def test_past_the_last_level_is_exhausted() -> None:
    w = World(max_level=2)
    w.open()
    w.finish(ok=False)
    assert w.machine.level == 2
    cmds = w.finish(ok=False, detail="timeout")
    assert kinds(cmds) == ["level_failed", "exhausted"]
    exhausted = cmds[-1]
    assert kinds(World({"latency": 4}, max_level=3).open()) == ["incident_opened", "exhausted"]
    assert (exhausted.severity, exhausted.level) == ("critical", 2)
    assert exhausted.why == "level 2 is the last level; level 2 failed: timeout"
    assert run_levels(cmds) == []
    assert w.machine.phase is Phase.EXHAUSTED
    # No more automatic action, whatever the rules say.
    w.advance(minutes=5)
    w.point("latency", BAD)
    assert w.observe() == []


def test_circuit_breaker() -> None:
    w = World(max_level=5, per_hour=2)
    w.open()
    w.finish(ok=False)
    cmds = w.finish(ok=False)
    assert kinds(cmds) == ["level_failed", "exhausted"]
    assert cmds[-1].severity == "critical"
    assert cmds[-1].why == ("circuit breaker: 2 rollbacks in the last hour (max_rollbacks_per_hour=2); "
                            "would run level 3")
    assert (w.machine.phase, w.machine.level) == (Phase.EXHAUSTED, 2)


def test_circuit_breaker_counts_across_incidents_for_an_hour() -> None:
    w = World(per_hour=1)
    w.open()
    w.machine.resolve(w.now, "fixed")
    w.advance(minutes=30)
    w.breach_history()
    cmds = w.observe()  # a second incident within the hour
    assert kinds(cmds) == ["incident_opened", "exhausted"]
    w.machine.resolve(w.now, "ok")
    w.now = T0 + timedelta(hours=1, seconds=9)  # a second short of an hour after the first start
    w.breach_history()
    assert kinds(w.observe()) == ["incident_opened", "exhausted"]
    w.machine.resolve(w.now, "ok")
    w.now = T0 + timedelta(hours=1, seconds=10)  # exactly an hour after the first start
    assert run_levels(w.observe()) == [1]


# --- mitigated, resolve, stale reports -------------------------------------------


def test_new_alarm_on_a_mitigated_incident_escalates() -> None:
    w = World()
    w.to_mitigated()
    w.now = w.at(minutes=5)
    assert w.observe() == []  # still fine
    w.point("latency", BAD, w.at(minutes=3, seconds=5))
    w.point("latency", BAD, w.at(minutes=4, seconds=5))
    cmds = w.observe()
    assert kinds(cmds) == ["realarmed", "level_started", "RunLevel"]
    assert cmds[0].why.startswith("new alarm on a mitigated incident: latency")
    assert (cmds[0].level, run_levels(cmds), w.machine.level) == (1, [2], 2)


def test_mitigated_ignores_pre_action_breaches() -> None:
    """A mitigated incident is watched on the buckets after the actions' end only. They end at 12:02:30;
    12:01 and 12:02 breach before that (12:02:05 in the bucket where they ended). After: 12:03 holds 50,
    12:04 holds 900. At 12:05:10 the fresh buckets give 1 of 2, M = min(2, 2) = 2: still mitigated.
    Counting the 12:02 bucket would give 2 of 3: a realarm and level 2."""
    w = World()
    w.open()
    w.point("latency", BAD, w.at(minutes=1, seconds=5))  # while the actions ran
    w.point("latency", BAD, w.at(minutes=2, seconds=5))
    w.now = w.at(minutes=2, seconds=30)
    w.finish(ok=True)
    w.point("latency", GOOD, w.at(minutes=3, seconds=5))
    w.now = w.at(minutes=4, seconds=30)
    assert isinstance(w.observe()[-1], RunChecks)
    w.checks(ok=True)
    w.advance(seconds=10)
    assert w.views()["latency"].evaluation.state is RuleState.ALARM
    assert w.observe() == []
    w.point("latency", BAD, w.at(minutes=4, seconds=5))
    w.now = w.at(minutes=5, seconds=10)
    assert w.views()["latency"].evaluation.state is RuleState.ALARM  # 12:02, 12:03, 12:04: 2 of 3
    assert w.observe() == []
    assert (w.machine.phase, w.machine.level) == (Phase.MITIGATED, 1)


@pytest.mark.parametrize("setup", ["running", "verifying", "mitigated", "exhausted"])
def test_resolve_returns_to_normal(setup: str) -> None:
    w = World(max_level=1)
    {"running": w.open, "verifying": w.to_verifying, "mitigated": w.to_mitigated,
     "exhausted": lambda: (w.open(), w.finish(ok=False))}[setup]()
    assert w.machine.phase is Phase(setup)
    inc = w.incident
    (ev,) = w.machine.resolve(w.now, "rolled forward by hand")
    assert (ev.kind, ev.incident, ev.level, ev.target) == ("resolved", inc, 0, TARGET)
    assert ev.why == "resolved by a human: rolled forward by hand"
    assert (w.machine.phase, w.machine.level, w.machine.incident) == (Phase.NORMAL, 0, None)
    assert w.machine.last_closed.id == inc and w.machine.last_closed.closed_at == w.now
    assert w.machine.resolve(w.now, "again") == []


def test_a_new_incident_after_resolve_gets_a_new_id() -> None:
    w = World()
    w.open()
    first = w.incident
    w.machine.resolve(w.now, "x")
    w.advance(minutes=1)
    cmds = w.observe()  # the old alarm still shows: a new incident
    assert run_levels(cmds) == [1] and w.incident != first


def test_stale_reports_are_ignored() -> None:
    w = World()
    w.open()
    inc = w.incident
    assert w.machine.level_finished(w.now, "other-incident", 1, False, "x", None) == []
    assert w.machine.level_finished(w.now, inc, 2, False, "x", None) == []
    assert w.machine.checks_finished(w.now, inc, 1, False, "x", None) == []  # not checking
    assert (w.machine.phase, w.machine.level) == (Phase.RUNNING, 1)
    w.finish(ok=True)
    assert w.machine.level_finished(w.now, inc, 1, False, "late duplicate", None) == []
    assert w.machine.phase is Phase.VERIFYING
    w.now = w.at(minutes=2, seconds=40)
    w.point("latency", GOOD, w.at(minutes=1, seconds=5))
    w.observe()
    assert w.machine.checks_finished(w.now, inc, 2, True, "wrong level", None) == []
    assert w.machine.phase is Phase.CHECKING
    w.machine.resolve(w.now, "x")
    assert w.machine.level_finished(w.now, inc, 1, True, "x", None) == []
    assert w.machine.checks_finished(w.now, inc, 1, True, "x", None) == []
    assert w.machine.phase is Phase.NORMAL


# --- a standby (SPEC 4.5: another watchdog holds the target's lease) ---------------------


def test_a_standby_decides_and_announces_nothing_and_the_leader_opens_on_the_same_views() -> None:
    w = World()
    w.breach_history()
    assert w.machine.observe(w.now, w.views(), None, standby=True) == []  # alarming, but the lease is another's
    assert w.machine.incident is None
    assert w.machine.observe(w.now, w.views(), "paused: x", standby=True) == []  # not even a "would run"
    assert run_levels(w.observe()) == [1]  # the same views, as the holder: level 1


def test_a_machine_made_fresh_keeps_its_settings_and_forgets_the_incident() -> None:
    w = World(per_hour=4)
    w.to_verifying()
    fresh = w.machine.fresh()
    assert fresh.incident is None and fresh.last_closed is None and fresh.phase is Phase.NORMAL
    assert (fresh.target, fresh.max_level, fresh.verify_window, fresh.max_rollbacks_per_hour) == \
        (TARGET, 3, 2 * MIN, 4)
    assert run_levels(fresh.observe(w.now, w.views(), None)) == [1]  # it decides again from nothing
