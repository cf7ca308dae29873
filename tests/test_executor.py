"""TargetExecutor: levels run for real against conftest's admin_api, on a fake wall clock."""

from __future__ import annotations

import sys

import pytest
import time
from datetime import timedelta

from executor_support import (  # noqa: F401  (http_session is a fixture)
    BAD,
    GOOD,
    MIN,
    TARGET,
    Harness,
    build_target,
    default_levels,
    http_action,
    http_session,
    level,
    process_gone,
)
from watchdog.core.escalation import Phase
from watchdog.core.rules import align


def assert_intent_before_outcome(h: Harness, lvl: int, outcomes: list[str]) -> None:
    """Each attempt's intent is journaled before its outcome, attempts in order."""
    recs = [r for r in h.journal.records() if r.level == lvl and r.kind in ("intent", "outcome")]
    expected = []
    for attempt, outcome in enumerate(outcomes, start=1):
        expected += [("intent", attempt, None), ("outcome", attempt, outcome)]
    assert [(r.kind, r.data["attempt"], r.data.get("outcome")) for r in recs] == expected
    assert [r.seq for r in recs] == sorted(r.seq for r in recs)


# --- retries, permanent failures, deadlines --------------------------------------------


async def test_5xx_is_retried_until_it_succeeds(admin_api, http_session) -> None:
    admin_api.script["/l1"] = [503, 503, 200]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    await h.open()
    assert admin_api.count("/l1", "PUT") == 3
    assert admin_api.count("/l2") == 0
    assert_intent_before_outcome(h, 1, ["failed", "failed", "succeeded"])
    assert h.records("outcome", 1)[0].data["detail"] == "HTTP 503"
    assert (h.machine.phase, h.machine.level) == (Phase.VERIFYING, 1)
    assert h.kinds() == ["incident_opened", "level_started", "level_succeeded"]
    assert (h.attempts(1, "failed"), h.attempts(1, "succeeded")) == (2.0, 1.0)
    assert h.rollbacks(1, "succeeded") == 1.0 and h.rollbacks(1, "failed") is None


async def test_5xx_forever_uses_exactly_the_attempts_then_escalates_at_once(admin_api, http_session) -> None:
    admin_api.script["/l1"] = [503]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    started = time.monotonic()
    await h.open()  # one observation only: level 2 follows without waiting for any evaluation
    assert time.monotonic() - started < 2.0  # backoffs are 10-50ms; no verify window in between
    assert admin_api.count("/l1") == 3
    assert admin_api.count("/l2", "PUT") == 1
    assert admin_api.calls[-1] == ("PUT", "/l2", {"mode": "mcp_only"})
    assert_intent_before_outcome(h, 1, ["failed", "failed", "failed"])
    assert h.kinds() == ["incident_opened", "level_started", "level_failed", "level_started", "level_succeeded"]
    failed = h.events[2][0]
    assert "HTTP 503" in failed.why and "attempt 3/3" in failed.why
    assert (h.machine.phase, h.machine.level) == (Phase.VERIFYING, 2)


async def test_4xx_is_not_retried_and_escalates(admin_api, http_session) -> None:
    admin_api.script["/l1"] = [404, 200]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    await h.open()
    assert admin_api.count("/l1") == 1
    assert admin_api.count("/l2") == 1
    assert_intent_before_outcome(h, 1, ["failed"])
    assert h.kinds()[2] == "level_failed" and "HTTP 404" in h.events[2][0].why
    assert h.machine.level == 2


async def test_level_past_its_deadline_escalates_and_records_unknown(admin_api, http_session) -> None:
    admin_api.delay["/l1"] = 4.0  # the action's own timeout (5s) is longer than the deadline
    h = Harness(build_target(default_levels(admin_api.url, l1=level(1, [http_action(f"{admin_api.url}/l1")],
                                                                      deadline="300ms"))), http_session)
    started = time.monotonic()
    await h.open()
    elapsed = time.monotonic() - started
    # Cut at the deadline (0.3 s), not at the answer (4 s); the upper slack is for a loaded machine.
    assert 0.25 < elapsed < 3.0, elapsed
    assert admin_api.count("/l1") == 1 and admin_api.count("/l2") == 1
    assert_intent_before_outcome(h, 1, ["unknown"])  # no retry once the deadline has passed
    assert "cancelled" in h.records("outcome", 1)[0].data["detail"]
    failed = h.events[2][0]
    assert failed.kind == "level_failed" and "deadline 0.3s passed" in failed.why
    assert h.attempts(1, "unknown") == 1.0 and h.rollbacks(1, "failed") == 1.0
    assert (h.machine.phase, h.machine.level) == (Phase.VERIFYING, 2)


async def test_command_level_past_its_deadline_kills_the_command(admin_api, http_session, tmp_path) -> None:
    pidfile = tmp_path / "pid"
    script = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(30)"
    cmd = {"type": "command", "argv": [sys.executable, "-c", script], "timeout": "10s"}
    h = Harness(build_target(default_levels(admin_api.url, l1=level(1, [cmd], deadline="500ms"))), http_session)
    started = time.monotonic()
    await h.open()
    assert time.monotonic() - started < 2.0  # the deadline (500ms) cut it, not the command's end
    pid = int(pidfile.read_text())
    assert process_gone(pid)
    assert_intent_before_outcome(h, 1, ["unknown"])
    assert admin_api.count("/l2") == 1


async def test_a_request_the_client_refuses_fails_the_level_instead_of_hanging_it(admin_api, http_session) -> None:
    # A token read from a file often ends in a newline; aiohttp refuses such a header with ValueError.
    act = http_action(f"{admin_api.url}/l1", headers={"Authorization": "Bearer s3cr3t\n"})
    h = Harness(build_target(default_levels(admin_api.url, l1=level(1, [act]))), http_session)
    await h.open()
    assert admin_api.count("/l1") == 0 and admin_api.count("/l2") == 1
    assert_intent_before_outcome(h, 1, ["failed"])  # not retried: it cannot change
    assert h.records("outcome", 1)[0].data["detail"] == "unexpected ValueError"
    assert h.kinds()[2] == "level_failed" and h.machine.level == 2
    assert not any("s3cr3t" in str(r.data) for r in h.journal.records())


async def test_a_crashing_check_fails_verification_instead_of_hanging_it(admin_api, http_session) -> None:
    bad_check = {"type": "http", "url": f"{admin_api.url}/health", "headers": {"X-Token": "s3cr3t\r\n"}}
    levels = default_levels(admin_api.url, l1=level(1, [http_action(f"{admin_api.url}/l1")], checks=[bad_check]))
    h = Harness(build_target(levels), http_session)
    await verified_level_1(h, admin_api)
    h.point(GOOD, align(h.clock.now(), MIN) - MIN + timedelta(seconds=5))
    await h.observe()
    [check] = h.records("check", 1)
    assert (check.data["ok"], check.data["detail"]) == (False, "unexpected ValueError")
    assert "verification_failed" in h.kinds() and admin_api.count("/l2") == 1


# --- dry run ----------------------------------------------------------------------------


async def test_dry_run_executes_nothing_but_records_and_announces_everything(admin_api, http_session, tmp_path) -> None:
    marker = tmp_path / "ran"
    touch = {"type": "command", "argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}
    levels = default_levels(admin_api.url, l1=level(1, [http_action(f"{admin_api.url}/l1"), touch]))
    h = Harness(build_target(levels), http_session, dry_run=True)
    await h.open()
    assert admin_api.calls == [] and not marker.exists()
    intents, outcomes = h.records("intent", 1), h.records("outcome", 1)
    assert [r.data["action"].split(" ")[:2] for r in intents] == [["#1", "http:"], ["#2", "command:"]]
    assert [r.data["outcome"] for r in outcomes] == ["dry_run", "dry_run"]
    assert all(r.dry_run for r in h.journal.records())  # events included
    assert h.rollbacks(1, "dry_run") == 1.0 and h.rollbacks(1, "succeeded") is None
    assert h.attempts(1, "dry_run") == 2.0 and h.attempts(1, "succeeded") is None
    assert h.kinds() == ["incident_opened", "level_started", "level_succeeded"]
    assert all(dry for _, dry in h.events)
    # The same machine runs on: a failed verification escalates, still without executing.
    h.clock.advance(minutes=3)
    current = align(h.clock.now(), MIN)
    h.point(BAD, current - MIN + timedelta(seconds=5))
    h.point(BAD, current - 2 * MIN + timedelta(seconds=5))
    await h.observe()
    assert h.machine.level == 2 and h.rollbacks(2, "dry_run") == 1.0
    assert admin_api.calls == []


# --- verification, end to end ----------------------------------------------------------


async def verified_level_1(h: Harness, admin_api) -> None:
    """Open at 12:00:10; level 1's actions end at once, verification due at 12:02:10."""
    await h.open()
    assert admin_api.count("/l1") == 1 and h.machine.phase is Phase.VERIFYING
    h.clock.advance(minutes=3)  # 12:03:10: buckets 12:01 and 12:02 are newer than the actions


async def test_breach_after_level_1_runs_level_2_then_recovery_checks_and_mitigates(admin_api, http_session) -> None:
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    await h.open()
    h.clock.advance(minutes=1)  # before verify_due (12:02:10): nothing is decided yet
    await h.observe()
    assert admin_api.count("/l2") == 0 and h.machine.phase is Phase.VERIFYING
    h.clock.advance(minutes=2)
    current = align(h.clock.now(), MIN)
    h.point(BAD, current - 2 * MIN + timedelta(seconds=5))
    h.point(BAD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert admin_api.count("/l2") == 1 and admin_api.count("/health") == 0
    assert (h.machine.phase, h.machine.level) == (Phase.VERIFYING, 2)
    assert h.sample("watchdog_target_level", target=TARGET) == 2.0
    # Level 2's actions ended at 12:03:10; at 12:06:10 buckets 12:04 and 12:05 are fresh and OK.
    h.clock.advance(minutes=3)
    current = align(h.clock.now(), MIN)
    h.point(GOOD, current - 2 * MIN + timedelta(seconds=5))
    h.point(GOOD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert admin_api.count("/health", "GET") == 1
    assert admin_api.count("/l3") == 0
    assert (h.machine.phase, h.machine.level) == (Phase.MITIGATED, 2)
    assert h.kinds() == ["incident_opened", "level_started", "level_succeeded",
                         "verification_failed", "level_started", "level_succeeded", "mitigated"]
    [check] = h.records("check", 2)
    assert check.data["ok"] is True and check.data["detail"] == "HTTP 200"
    assert h.rollbacks(1, "succeeded") == 1.0 and h.rollbacks(2, "succeeded") == 1.0
    assert h.sample("watchdog_incidents_open", target=TARGET) == 1.0  # mitigated is still open


async def test_failed_check_escalates_to_the_next_level(admin_api, http_session) -> None:
    admin_api.script["/health"] = [503]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    await verified_level_1(h, admin_api)
    current = align(h.clock.now(), MIN)
    h.point(GOOD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert admin_api.count("/health") == 1 and admin_api.count("/l2") == 1
    assert "verification_failed" in h.kinds() and "mitigated" not in h.kinds()
    [check] = h.records("check", 1)
    assert check.data["ok"] is False and check.data["detail"] == "HTTP 503"
    assert h.machine.level == 2


async def test_no_fresh_data_is_blind_not_an_escalation(admin_api, http_session) -> None:
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    await verified_level_1(h, admin_api)  # only the old, pre-action datapoints exist
    await h.observe()
    assert admin_api.count("/l2") == 0 and admin_api.count("/health") == 0
    assert h.events[-1][0].kind == "blind" and h.events[-1][0].severity == "critical"
    assert h.sample("watchdog_target_blind", target=TARGET) == 1.0
    assert h.machine.level == 1


# --- metrics ------------------------------------------------------------------------------


async def test_metrics_follow_levels_attempts_and_rollbacks(admin_api, http_session) -> None:
    admin_api.script["/l1"] = [503]
    admin_api.script["/l2"] = [500, 200]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    assert h.sample("watchdog_target_level", target=TARGET) is None
    await h.open()
    assert h.sample("watchdog_target_level", target=TARGET) == 2.0
    assert h.sample("watchdog_incidents_open", target=TARGET) == 1.0
    assert (h.attempts(1, "failed"), h.attempts(1, "succeeded")) == (3.0, None)
    assert (h.attempts(2, "failed"), h.attempts(2, "succeeded")) == (1.0, 1.0)
    assert (h.rollbacks(1, "failed"), h.rollbacks(1, "succeeded")) == (1.0, None)
    assert (h.rollbacks(2, "failed"), h.rollbacks(2, "succeeded")) == (None, 1.0)
    for lvl in ("1", "2"):
        count = h.sample("watchdog_rollback_duration_seconds_count", target=TARGET, level=lvl)
        assert count == 1.0
    await h.executor.resolve("fixed by hand")
    assert h.sample("watchdog_target_level", target=TARGET) == 0.0
    assert h.sample("watchdog_incidents_open", target=TARGET) == 0.0


@pytest.mark.parametrize("idempotent, calls", [(False, 1), (True, 3)])
async def test_a_timed_out_request_is_repeated_only_when_idempotent(admin_api, http_session, idempotent, calls) -> None:
    # The request reached the server; only the answer was late. It may have taken effect.
    admin_api.delay["/l1"] = 0.5
    act = http_action(f"{admin_api.url}/l1", timeout="100ms", idempotent=idempotent)
    h = Harness(build_target(default_levels(admin_api.url, l1=level(1, [act]))), http_session)
    await h.open()
    assert admin_api.count("/l1") == calls
    assert_intent_before_outcome(h, 1, ["unknown"] * calls)
    assert h.kinds()[2] == "level_failed" and h.machine.level == 2


async def test_a_refused_connection_is_retried_even_when_not_idempotent(admin_api, http_session) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/l1"
    h = Harness(build_target(default_levels(admin_api.url, l1=level(1, [http_action(dead)]))), http_session)
    await h.open()
    assert_intent_before_outcome(h, 1, ["failed", "failed", "failed"])  # never sent: safe to retry


async def test_no_level_starts_once_shutdown_began(admin_api, http_session) -> None:
    admin_api.script["/l1"] = [503]
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    h.executor.stopping = True
    await h.open()
    assert admin_api.count("/l1") == 0 and admin_api.count("/l2") == 0


async def test_a_blind_source_pages_once_and_its_return_is_announced(admin_api, http_session) -> None:
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    why = "source compliance down since 12:01:00Z: HTTP 500"
    h.executor.set_blind_sources({"compliance": why}, h.clock.now())
    h.executor.set_blind_sources({"compliance": why}, h.clock.now())  # still blind: no second page
    assert [(ev.kind, ev.severity, ev.why) for ev, _ in h.events] == [("blind", "critical", why)]
    assert "no action on rules of source compliance" in h.events[0][0].next
    assert h.sample("watchdog_target_blind", target=TARGET) == 1.0
    h.executor.set_blind_sources({}, h.clock.now())
    assert [ev.kind for ev, _ in h.events] == ["blind", "sight_restored"]
    assert h.sample("watchdog_target_blind", target=TARGET) == 0.0
    assert [r.data["event"] for r in h.records("event")] == ["blind", "sight_restored"]
    assert admin_api.calls == []  # blindness never acts


async def test_no_second_level_starts_beside_a_running_one(admin_api, http_session) -> None:
    """At most one level per target, ever: not through resolve, not through a direct start (issue 12, defect 3)."""
    import asyncio

    from watchdog.core.escalation import RunLevel

    admin_api.delay["/l1"] = 0.5
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    h.breach_history()
    await h.executor.observe(h.views(), h.clock.now())  # level 1 starts; its request is in flight
    while admin_api.count("/l1") == 0:
        await asyncio.sleep(0.01)
    assert h.executor.busy
    with pytest.raises(ValueError, match="level 1 is running"):
        await h.executor.resolve("looks fine")
    with pytest.raises(RuntimeError, match="while another level runs"):
        h.executor.start_level(RunLevel("inc-1", 3, "by hand"))
    assert h.machine.incident is not None and h.machine.phase is Phase.RUNNING  # not closed under the level
    await h.settle()
    assert admin_api.count("/l1") == 1 and admin_api.count("/l3") == 0
    await h.executor.resolve("now it may close")  # nothing runs any more
    assert h.machine.incident is None


async def test_the_pause_the_executor_reads_is_what_the_machine_decides_on(admin_api, http_session) -> None:
    """The executor passes the pause holding its target (`hold`) into every decision: paused, an alarm runs
    nothing and says what it would run, once; the pause lifted, the next evaluation runs level 1."""
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    h.pause = "paused until 12:30:00Z (deploy freeze)"
    await h.open()
    await h.settle()
    assert admin_api.count("/l1") == 0 and h.kinds() == ["would_run"]
    assert "deploy freeze" in h.events[0][0].why and h.rollbacks(1, "skipped") == 1.0
    await h.observe()
    assert h.kinds() == ["would_run"]  # said once
    h.pause = None
    await h.observe()
    await h.settle()
    assert admin_api.count("/l1", "PUT") == 1
    assert h.kinds() == ["would_run", "incident_opened", "level_started", "level_succeeded"]


async def test_a_standby_refuses_a_manual_rollback_and_sends_nothing(http_session, admin_api) -> None:
    """Another watchdog holds the target's lease (SPEC 4.5): a rollback sent here is refused in one line that says
    where to send it, and nothing is decided, journaled or requested."""
    h = Harness(build_target(default_levels(admin_api.url)), http_session)
    h.lead = False
    with pytest.raises(ValueError, match="another watchdog holds the lease of .*: send it to the holder"):
        await h.executor.manual(1, "by hand")
    await h.settle()
    assert h.machine.incident is None and h.journal.records() == [] and h.events == [] and admin_api.calls == []
    h.lead = True
    await h.executor.manual(1, "by hand")  # the holder starts it
    await h.settle()
    assert len(admin_api.calls) == 1
