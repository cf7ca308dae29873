"""`rollback-watchdog incidents ...` on a real state file, and the daemon path that fills it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from configs import CLOSED, http, hybrid_routing, level, parsed, write
from conftest import AWS_ENV
from executor_support import (  # noqa: F401  (http_session is a fixture)
    BAD,
    GOOD,
    MIN,
    T0,
    FakeClock,
    Harness,
    build_target,
    default_levels,
    http_session,
)
from watchdog.lifecycle.app import App
from watchdog.core.escalation import Incident, LevelRun, Phase, RuleView, Trigger
from watchdog.shared.events import Event
from watchdog.state.report import render_report
from watchdog.core.rules import align, evaluate
from watchdog.core.signals import spec_for
from watchdog.state.codec import encode_incident as snapshot
from watchdog.state.storage import StoreError
from watchdog.state.sqlite.store import SqliteStore

UTC = timezone.utc
OPENED = datetime(2024, 3, 1, 2, 0, 0, tzinfo=UTC)



def config(state: Path, admin: str = CLOSED) -> dict[str, Any]:
    flags = level(1, "feature-flags", http(f"{admin}/l1", json={"enabled": False}), deadline="2m")
    return hybrid_routing(state_path=state, interval="30s", timeout="1s", retry={"attempts": 1}, levels=[flags])


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watchdog", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **AWS_ENV})


def write_config(tmp_path: Path, state: Path, admin: str = CLOSED) -> str:
    return write(tmp_path, config(state, admin))


def at(seconds: float) -> datetime:
    return OPENED + timedelta(seconds=seconds)


def fill(state: Path) -> None:
    """Two incidents: one mitigated at level 2 (then resolved), one in dry run with an unknown attempt."""
    s = SqliteStore(state)
    inc = Incident(id="hybrid-routing-1", target="hybrid-routing", opened_at=OPENED, phase=Phase.MITIGATED, level=2)
    inc.trigger = {"latency": Trigger(2100.0, "> 1500", at(-30), "3 of 3 breach")}
    inc.runs = [LevelRun(1, at(0), "alarm", at(4), "succeeded", "#1 http: HTTP 200"),
                LevelRun(2, at(130), "level 1 did not cure it", at(131.5), "succeeded", "#1 http: HTTP 200")]
    inc.mitigated_at, inc.closed_at = at(260), at(600)
    iid, t = inc.id, inc.target

    def ev(kind: str, sec: float, level: int, severity: str = "warning") -> None:
        s.event(Event(kind, severity, t, iid, level, at(sec), f"why {kind}", f"next {kind}"))

    ev("incident_opened", 0, 1)
    ev("level_started", 0, 1)
    s.notification(at(1), t, iid, 1, "slack", "incident_opened", 1, "sent", 1, "delivered", False)
    s.notification(at(9), t, iid, 1, "pagerduty", "incident_opened", 2, "sent", 3, "delivered", False)
    s.intent(at(0), t, iid, 1, "#1 http: PUT /admin/flags", 1, False)
    s.outcome(at(1.5), t, iid, 1, "#1 http: PUT /admin/flags", 1, "failed", "HTTP 503", False)
    s.intent(at(2), t, iid, 1, "#1 http: PUT /admin/flags", 2, False)
    s.outcome(at(4), t, iid, 1, "#1 http: PUT /admin/flags", 2, "succeeded", "HTTP 200", False)
    ev("level_succeeded", 4, 1, "info")
    ev("verification_failed", 130, 1)
    ev("level_started", 130, 2)
    s.intent(at(130), t, iid, 2, "#1 http: PUT /admin/routing", 1, False)
    s.outcome(at(131.5), t, iid, 2, "#1 http: PUT /admin/routing", 1, "succeeded", "HTTP 200", False)
    ev("level_succeeded", 131.5, 2, "info")
    s.check(at(259), t, iid, 2, "GET /health", True, "HTTP 200")
    ev("mitigated", 260, 2, "info")
    ev("resolved", 600, 0, "info")
    s.save_incident(snapshot(inc))

    dry = Incident(id="hybrid-routing-2", target="hybrid-routing", opened_at=at(3600), phase=Phase.RUNNING, level=1)
    dry.runs = [LevelRun(1, at(3600), "alarm")]
    s.event(Event("incident_opened", "warning", t, dry.id, 1, at(3600), "alarm", "running level 1"), True)
    s.intent(at(3601), t, dry.id, 1, "#1 command: deploy | rollback", 1, True)
    s.notification(at(3602), t, dry.id, 1, "slack", "incident_opened", 3, "dead", 12, "HTTP 500 (after 12 attempts)", True)
    s.save_incident(snapshot(dry))
    s.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "watchdog.db"
    fill(path)
    return path


def no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


# --- the commands -----------------------------------------------------------------------


def test_list_prints_every_incident_newest_first(tmp_path: Path, state: Path) -> None:
    r = cli("incidents", "list", "-c", write_config(tmp_path, state))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "TARGET", "PHASE", "LEVEL", "OPENED", "CLOSED"]
    assert lines[1].split()[:4] == ["hybrid-routing-2", "hybrid-routing", "running", "1"]
    assert lines[1].split()[-1] == "-"
    assert lines[2].split()[:5] == ["hybrid-routing-1", "hybrid-routing", "resolved", "(mitigated)", "2"]
    assert lines[2].split()[-1] == at(600).isoformat()
    assert len(lines) == 3


def test_list_of_an_empty_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    SqliteStore(empty).close()
    r = cli("incidents", "list", "-c", write_config(tmp_path, empty))
    assert (r.returncode, r.stdout.strip()) == (0, "no incidents")


def test_show_prints_the_incident_and_its_records(tmp_path: Path, state: Path) -> None:
    r = cli("incidents", "show", "hybrid-routing-1", "-c", write_config(tmp_path, state))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "incident   hybrid-routing-1" in out and "resolved (mitigated) at level 2" in out
    assert "trigger    latency: value 2100.0 threshold > 1500" in out
    assert "records    17" in out
    assert out.index("intent  L1") < out.index('"outcome": "failed"') < out.index('"outcome": "succeeded"')
    dry = cli("incidents", "show", "hybrid-routing-2", "-c", write_config(tmp_path, state))
    assert " dry_run " in dry.stdout


def test_report_is_markdown_with_every_attempt_and_dry_run_marks(tmp_path: Path, state: Path) -> None:
    cfg = write_config(tmp_path, state)
    r = cli("incidents", "report", "hybrid-routing-1", "-c", cfg)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith("# Incident hybrid-routing-1\n")
    for section in ("## Trigger", "## Levels", "## Actions", "## Verification", "## Notifications", "## Timeline"):
        assert section in md
    assert "- state: resolved (was mitigated at level 2)" in md
    assert "- mitigated: 02:04:20Z (4m20s after opening)" in md
    assert "- latency: value 2100 at 01:59:30Z, threshold > 1500: 3 of 3 breach" in md
    assert "| 1 | 02:00:00Z | 02:00:04Z | 4.0s | succeeded | #1 http: HTTP 200 |" in md
    assert "| 2 | 02:02:10Z | 02:02:11Z | 1.5s | succeeded |" in md
    assert "| 1 | #1 http: PUT /admin/flags | 1 | 02:00:00Z | failed | 1.5s | HTTP 503 |" in md
    assert "| 1 | #1 http: PUT /admin/flags | 2 | 02:00:02Z | succeeded | 2.0s | HTTP 200 |" in md
    assert "check: GET /health: passed (HTTP 200)" in md
    assert "| 02:00:01Z | slack | incident_opened | 1 | sent | 1 | delivered |" in md
    assert "| 02:00:09Z | pagerduty | incident_opened | 1 | sent | 3 | delivered |" in md
    assert "dry run" not in md

    dry = cli("incidents", "report", "hybrid-routing-2", "-c", cfg).stdout
    assert "- mode: **dry run**" in dry
    assert "| 1 | #1 command: deploy \\| rollback | 1 | 03:00:01Z | **no outcome recorded** (unknown) (dry run) |" in dry
    assert "| 03:00:02Z | slack | incident_opened | 1 | dead (dry run) | 12 | HTTP 500 (after 12 attempts) |" in dry
    assert "| 1 | 03:00:00Z | - | - | running |" in dry


def test_unknown_id_and_missing_state_file_are_one_line_errors(tmp_path: Path, state: Path) -> None:
    r = cli("incidents", "show", "nope", "-c", write_config(tmp_path, state))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"rollback-watchdog incidents: no incident 'nope' in {state}"]
    r = cli("incidents", "report", "nope", "-c", write_config(tmp_path, state))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1

    missing = tmp_path / "nowhere" / "watchdog.db"
    for args in (("list",), ("show", "x"), ("report", "x"), ("verify-log",)):
        r = cli("incidents", *args, "-c", write_config(tmp_path, missing))
        assert r.returncode == 1, r
        no_traceback(r)
        assert len(r.stderr.strip().splitlines()) == 1 and "no such state file" in r.stderr
    assert not missing.parent.exists()  # the read commands never create a state file


def test_a_damaged_state_file_and_a_bad_config_do_not_print_tracebacks(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 500)
    r = cli("incidents", "list", "-c", write_config(tmp_path, garbage))
    assert r.returncode == 1
    no_traceback(r)
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("watchdog: {colour: red}\n")
    r = cli("incidents", "list", "-c", str(bad))
    assert r.returncode == 2
    no_traceback(r)
    r = cli("incidents", "show", "-c", str(bad))  # the id is missing: usage
    assert r.returncode == 2
    no_traceback(r)


def test_verify_log_intact_then_tampered(tmp_path: Path, state: Path) -> None:
    cfg = write_config(tmp_path, state)
    r = cli("incidents", "verify-log", "-c", cfg)
    assert (r.returncode, r.stdout) == (0, "audit log intact: 20 records\n"), r.stderr
    conn = sqlite3.connect(state, isolation_level=None)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET data = replace(data, 'failed', 'succeeded') WHERE seq = 6")
    conn.close()
    r = cli("incidents", "verify-log", "-c", cfg)
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["record 6: content does not match its hash (edited)"]
    no_traceback(r)


def test_render_report_accepts_a_bare_snapshot() -> None:
    inc = Incident(id="x-1", target="x", opened_at=OPENED, phase=Phase.VERIFYING, level=1)
    md = render_report(snapshot(inc), [])
    assert md.startswith("# Incident x-1") and "- state: verifying at level 1" in md and "(no level ran)" in md


# --- the daemon path writes to the store ------------------------------------------------------


def store_harness(target, session, store: SqliteStore) -> Harness:
    return Harness(target, session, journal=store)


async def test_executor_writes_intents_before_outcomes_and_saves_the_incident(tmp_path, admin_api, http_session) -> None:
    path = tmp_path / "watchdog.db"
    store = SqliteStore(path)
    admin_api.script["/l1"] = [503, 200]
    h = store_harness(build_target(default_levels(admin_api.url)), http_session, store)
    await h.open()
    row = store.incident("inc-1")
    assert row is not None and (row["phase"], row["level"], row["closed_at"]) == ("verifying", 1, None)
    assert [r["outcome"] for r in row["snapshot"]["runs"]] == ["succeeded"]

    h.clock.advance(minutes=3)  # level 1 did not cure it: level 2
    current = align(h.clock.now(), MIN)
    h.point(BAD, current - 2 * MIN + timedelta(seconds=5))
    h.point(BAD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert (store.incident("inc-1")["phase"], store.incident("inc-1")["level"]) == ("verifying", 2)
    h.clock.advance(minutes=3)  # recovered on fresh data; the check passes
    current = align(h.clock.now(), MIN)
    h.point(GOOD, current - 2 * MIN + timedelta(seconds=5))
    h.point(GOOD, current - MIN + timedelta(seconds=5))
    await h.observe()
    assert h.machine.phase is Phase.MITIGATED
    await h.executor.resolve("fixed")
    store.close()

    again = SqliteStore(path)  # everything is in the file, not in memory
    row = again.incident("inc-1")
    assert row is not None and (row["phase"], row["level"]) == ("mitigated", 2)
    assert row["closed_at"] == h.clock.now().isoformat() and again.open_incidents() == []
    records = again.records("inc-1")
    acts = [(r.kind, r.level, r.data["attempt"], r.data.get("outcome")) for r in records if r.kind in ("intent", "outcome")]
    assert acts == [("intent", 1, 1, None), ("outcome", 1, 1, "failed"), ("intent", 1, 2, None),
                    ("outcome", 1, 2, "succeeded"), ("intent", 2, 1, None), ("outcome", 2, 1, "succeeded")]
    events = [r.data["event"] for r in records if r.kind == "event"]
    assert events == ["incident_opened", "level_started", "level_succeeded", "verification_failed",
                      "level_started", "level_succeeded", "mitigated", "resolved"]
    assert [r.kind for r in records].count("check") == 1
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert again.verify_chain() == []


async def test_the_app_opens_the_store_at_state_path_and_closes_it_on_stop(tmp_path, admin_api, aws_env) -> None:
    path = tmp_path / "deep" / "state.db"
    cfg = parsed(config(path, admin_api.url))
    clock = FakeClock(T0 + timedelta(seconds=10))
    app = await App.create(cfg, clock=clock, serve_http=False, schedule=False)
    await app.start()
    try:
        assert isinstance(app.runtime.journal, SqliteStore) and path.is_file()
        # Drive the real executor with breaching views, as an evaluation would.
        rule = cfg.targets[0].rules[0]
        spec = spec_for(rule, sampled=False, interval_s=30, period=MIN)  # the rule's metric period
        current = align(clock.now(), MIN)
        points = tuple((current - k * MIN + timedelta(seconds=5), BAD * 10) for k in (3, 2, 1))
        views = {rule.name: RuleView(rule.name, rule.level, spec, points, evaluate(spec, points, clock.now()))}
        ex = app.runtime.executors["hybrid-routing"]
        await ex.observe(views, clock.now())
        assert ex.level_task is not None
        await ex.level_task
    finally:
        await app.stop()
    assert admin_api.count("/l1", "PUT") == 1
    with pytest.raises(sqlite3.ProgrammingError):  # closed by stop()
        app.runtime.journal.records()
    store = SqliteStore(path)
    [row] = store.list_incidents(5)
    assert (row["target"], row["phase"], row["level"]) == ("hybrid-routing", "verifying", 1)
    kinds = [(r.kind, r.data.get("event") or r.data.get("outcome")) for r in store.records(row["id"])]
    assert kinds == [("event", "incident_opened"), ("event", "level_started"), ("intent", None),
                     ("outcome", "succeeded"), ("event", "level_succeeded")]
    assert store.verify_chain() == []


async def test_the_app_refuses_an_unwritable_state_path_in_one_line(tmp_path, aws_env, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cfg = parsed(config(blocker / "watchdog.db"))
    opened: list[object] = []
    monkeypatch.setattr("aiohttp.ClientSession.__init__", lambda self, *a, **k: opened.append(self))
    with pytest.raises(StoreError, match="exists and is not a directory"):
        await App.create(cfg, serve_http=False, schedule=False)
    assert opened == []  # it failed before opening any network client


def test_run_reports_an_unwritable_state_path_and_once_never_creates_one(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = cli("run", "-c", write_config(tmp_path, blocker / "watchdog.db"), timeout=60)
    assert r.returncode == 1
    no_traceback(r)
    assert r.stderr.strip().splitlines() == [
        f"rollback-watchdog: cannot start: StoreError: state_path {blocker / 'watchdog.db'}: "
        f"{blocker} exists and is not a directory"
    ]
    state = tmp_path / "once" / "watchdog.db"
    r = cli("run", "-c", write_config(tmp_path, state), "--once", timeout=60)
    assert r.returncode in (0, 1), r.stderr
    no_traceback(r)
    assert not state.parent.exists()


# --- an emptied state file, a read-only mount (issue 12, defect 13) -------------------------


def test_a_zero_length_state_file_is_refused_not_taken_as_fresh(tmp_path: Path) -> None:
    """Before: the daemon started on it as on a new file and verify-log said "intact: 0 records"."""
    emptied = tmp_path / "state" / "watchdog.db"
    emptied.parent.mkdir()
    emptied.write_bytes(b"")
    config = write_config(tmp_path, emptied)
    why = f"state_path {emptied}: the file is empty (0 bytes), so its history is gone"
    for args in (["incidents", "verify-log"], ["incidents", "list"]):
        r = cli(*args, "-c", config)
        no_traceback(r)
        assert r.returncode == 1 and why in r.stderr and "intact" not in r.stdout, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1
    r = cli("run", "-c", config, timeout=60)
    no_traceback(r)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"rollback-watchdog: cannot start: StoreError: {why}; move it away to start with a new state file"]
    assert emptied.stat().st_size == 0  # left as it was found, for whoever looks into it


def test_a_new_state_file_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    """It is made under another name and renamed into place, so a crash while making it never leaves the
    empty file that the check above refuses."""
    path = tmp_path / "s" / "watchdog.db"
    SqliteStore(path).close()
    assert path.stat().st_size > 0 and sorted(p.name for p in path.parent.iterdir()) == ["watchdog.db"]


def _read_only_mount(directory: Path, *command: str) -> subprocess.CompletedProcess[str] | None:
    """Run `command` with `directory` bind-mounted read-only in a mount namespace of its own (None where no
    namespace can be made)."""
    if shutil.which("unshare") is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, str(directory), *command], capture_output=True,
                       text=True, timeout=60, env={**os.environ, **AWS_ENV})
    if r.returncode != 0 and ("mount:" in r.stderr or "unshare:" in r.stderr):
        return None
    return r


@pytest.mark.parametrize("wal_left", [False, True], ids=["after-a-clean-stop", "after-kill-9"])
def test_list_and_verify_log_read_a_state_file_on_a_read_only_mount(tmp_path: Path, state: Path,
                                                                     wal_left: bool) -> None:
    """A copy of the state taken for a post-mortem, or a daemon's volume mounted read-only."""
    config = write_config(tmp_path, state)
    if wal_left:  # the daemon died: its WAL and shared-memory index are still beside the file
        keep = SqliteStore(state)
        keep.event(Event("blind", "critical", "hybrid-routing", "hybrid-routing-2", 1, at(3700), "no data", "look"))
        keep._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # part of it only; -wal and -shm stay
        assert Path(f"{state}-wal").exists()
    listed = _read_only_mount(state.parent, sys.executable, "-m", "watchdog", "incidents", "list", "-c", config)
    if listed is None:
        pytest.skip("cannot bind-mount read-only in a private mount namespace here (needs CAP_SYS_ADMIN)")
    verified = _read_only_mount(state.parent, sys.executable, "-m", "watchdog", "incidents", "verify-log", "-c", config)
    assert verified is not None
    if wal_left:
        keep.close()
    for r in (listed, verified):
        no_traceback(r)
        assert r.returncode == 0, r.stderr
    assert "hybrid-routing-1" in listed.stdout and "hybrid-routing-2" in listed.stdout
    assert verified.stdout.strip() == f"audit log intact: {21 if wal_left else 20} records"
