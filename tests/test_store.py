"""The SQLite store (SPEC 4.3): a real file in tmp_path, reopened, tampered with, migrated."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from watchdog.state import auditchain

from watchdog.state.sqlite import file as store_mod
from watchdog.core.escalation import Incident, LevelRun, Phase, Trigger
from watchdog.shared.events import Event
from watchdog.state.journal import MemoryStore
from watchdog.state.storage import Store
from watchdog.state.codec import encode_incident as snapshot
from watchdog.state.auditchain import GENESIS
from watchdog.state.sqlite.store import SqliteStore, StoreError

UTC = timezone.utc
T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def fill(s: SqliteStore | MemoryStore, incident: str = "inc-1") -> None:
    s.event(Event("incident_opened", "warning", "svc", incident, 1, T0, "alarm: latency = 900", "running level 1",
                  {"trigger": {"latency": {"value": 900.0, "at": T0}}}))
    s.intent(T0 + timedelta(seconds=1), "svc", incident, 1, "#1 http: PUT /l1", 1, False)
    s.outcome(T0 + timedelta(seconds=2), "svc", incident, 1, "#1 http: PUT /l1", 1, "failed", "HTTP 503", False)
    s.intent(T0 + timedelta(seconds=3), "svc", incident, 1, "#1 http: PUT /l1", 2, False)
    s.outcome(T0 + timedelta(seconds=4), "svc", incident, 1, "#1 http: PUT /l1", 2, "succeeded", "HTTP 200", False)
    s.check(T0 + timedelta(minutes=3), "svc", incident, 1, "GET /health", True, "HTTP 200")


def comparable(records):
    return [(r.kind, r.at, r.target, r.incident, r.level, r.dry_run, r.data) for r in records]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "watchdog.db"


def raw(db: Path) -> sqlite3.Connection:
    """A second connection, as a tamperer would open it (the triggers dropped first)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return conn


# --- the journal ------------------------------------------------------------------------


def test_is_a_drop_in_for_the_memory_journal_and_survives_reopening(db: Path) -> None:
    s = SqliteStore(db)  # the parent directory does not exist yet
    mem = MemoryStore()
    assert isinstance(s, Store) and isinstance(mem, Store)
    fill(s)
    fill(mem)
    s.intent(T0, "other", "inc-2", 2, "#1 command: x", 1, True)
    written = s.records()
    assert [r.seq for r in written] == list(range(1, 8))
    assert comparable(written[:6]) == comparable(mem.records())
    assert written[0].data["details"]["trigger"]["latency"] == {"value": 900.0, "at": T0.isoformat()}
    s.close()

    again = SqliteStore(db)
    assert again.records() == written
    assert [r.seq for r in again.records("inc-2")] == [7] and again.records("inc-2")[0].dry_run is True
    assert len(again.records("inc-1")) == 6
    assert again.records("nope") == []
    again.intent(T0, "svc", "inc-1", 1, "#1", 3, False)
    assert again.records()[-1].seq == 8  # the sequence goes on after a reopen
    assert again.verify_chain() == []
    again.close()


def test_wal_full_sync_and_each_write_committed_before_it_returns(db: Path) -> None:
    s = SqliteStore(db)
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    reader = sqlite3.connect(db)
    assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.intent(T0, "svc", "inc-1", 1, "#1 http: PUT /l1", 1, False)
    # Another connection sees it at once: no transaction is left open after the call.
    assert reader.execute("SELECT kind, incident FROM audit").fetchall() == [("intent", "inc-1")]
    assert not s._db.in_transaction
    reader.close()
    s.close()


def test_an_intent_written_before_kill_9_survives(db: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from datetime import datetime, timezone\n"
        "from watchdog.state.sqlite.store import SqliteStore\n"
        "s = SqliteStore(sys.argv[1])\n"
        "s.intent(datetime.now(timezone.utc), 'svc', 'inc-1', 1, '#1 http: PUT /l1', 1, False)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", script, str(db)], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9, r.stderr
    s = SqliteStore(db)
    [rec] = s.records()
    assert (rec.kind, rec.data["action"], rec.data["attempt"]) == ("intent", "#1 http: PUT /l1", 1)
    assert s.verify_chain() == []


def test_rows_are_hash_chained(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    rows = sqlite3.connect(db).execute("SELECT seq, prev_hash, hash FROM audit ORDER BY seq").fetchall()
    assert rows[0][1] == GENESIS
    for (_, _, before), (_, prev, _) in zip(rows, rows[1:]):
        assert prev == before
    assert len({h for _, _, h in rows}) == len(rows)


# --- tampering --------------------------------------------------------------------------


def test_an_intact_log_verifies(db: Path) -> None:
    s = SqliteStore(db)
    assert s.verify_chain() == [] and s.check_chain() == (0, [])
    fill(s)
    assert s.check_chain() == (6, [])


def test_the_log_is_append_only_for_ordinary_sql(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    conn = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET data = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 2")
    assert s.verify_chain() == []


@pytest.mark.parametrize("column, value", [
    ("data", json.dumps({"action": "#1 http: PUT /l1", "attempt": 1, "outcome": "succeeded", "detail": "HTTP 200"})),
    ("at", "2024-01-01T11:00:00+00:00"),
    ("dry_run", 1),
    ("incident", "inc-9"),
])
def test_an_edited_row_is_detected(db: Path, column: str, value: object) -> None:
    s = SqliteStore(db)
    fill(s)
    raw(db).execute(f"UPDATE audit SET {column} = ? WHERE seq = 3", (value,))
    problems = s.verify_chain()
    assert problems == ["record 3: content does not match its hash (edited)"]


def test_an_edited_row_with_a_recomputed_hash_still_breaks_the_next_link(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    conn = raw(db)
    seq, at, kind, target, inc, level, dry, data, prev = conn.execute(
        "SELECT seq, at, kind, target, incident, level, dry_run, data, prev_hash FROM audit WHERE seq = 3").fetchone()
    forged = json.loads(data) | {"outcome": "succeeded"}
    row = {"seq": seq, "at": at, "kind": kind, "target": target, "incident": inc, "level": level,
           "dry_run": bool(dry), "data": forged}
    conn.execute("UPDATE audit SET data = ?, hash = ? WHERE seq = 3",
                 (auditchain.canonical(forged), auditchain.row_hash(prev, row)))
    assert s.verify_chain() == ["record 4: does not link to the record before it (deleted, inserted or reordered)"]


def test_a_deleted_row_is_detected(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    raw(db).execute("DELETE FROM audit WHERE seq = 3")
    problems = s.verify_chain()
    assert any("record 4: follows record 2" in p for p in problems), problems
    assert any("record 4: does not link" in p for p in problems), problems


def test_a_row_removed_from_the_end_is_detected(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    raw(db).execute("DELETE FROM audit WHERE seq = 6")
    assert s.verify_chain() == ["the newest record is 5 but the audit head says 6 "
                                "(records removed from the end, or the head edited)"]


def test_a_swapped_pair_is_detected(db: Path) -> None:
    s = SqliteStore(db)
    fill(s)
    conn = raw(db)
    cols = "at, kind, target, incident, level, dry_run, data, prev_hash, hash"
    two = conn.execute(f"SELECT {cols} FROM audit WHERE seq = 2").fetchone()
    three = conn.execute(f"SELECT {cols} FROM audit WHERE seq = 3").fetchone()
    assign = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
    conn.execute(f"UPDATE audit SET {assign} WHERE seq = 2", three)
    conn.execute(f"UPDATE audit SET {assign} WHERE seq = 3", two)
    problems = s.verify_chain()
    assert problems, "a reordered pair must not verify"
    assert any(p.startswith("record 2:") for p in problems) and any(p.startswith("record 3:") for p in problems)


# --- schema and migrations ------------------------------------------------------------


def test_schema_version_is_set_and_a_newer_file_is_refused(db: Path) -> None:
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    v = store_mod.SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == v == len(store_mod.MIGRATIONS) >= 2
    conn.execute(f"PRAGMA user_version = {v + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        SqliteStore(db)
    msg = str(err.value)
    assert f"schema version {v + 1} is newer than this program's {v}" in msg and str(db) in msg and "\n" not in msg


def test_migrations_bring_an_older_file_up_to_date(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = SqliteStore(db)
    fill(s)
    s.close()
    newer = store_mod.SCHEMA_VERSION + 1
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS + [["CREATE TABLE extra (x INTEGER)"]])
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", newer)
    s = SqliteStore(db)
    assert s.schema_version == newer
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone()
    assert len(s.records()) == 6 and s.verify_chain() == []


def test_a_version_1_file_gains_the_outbox_and_keeps_its_audit(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # a file as the first release wrote it
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
        m.setattr(store_mod, "SCHEMA_VERSION", 1)
        s = SqliteStore(db)
        fill(s)
        s.close()
    assert not sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE name = 'outbox'").fetchone()
    s = SqliteStore(db)
    assert s.schema_version == store_mod.SCHEMA_VERSION
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox", "notify_threads", "audit", "incidents"} <= tables
    assert len(s.records()) == 6 and s.verify_chain() == []


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a rollback-watchdog state file"):
        SqliteStore(path)


def test_a_file_that_is_not_a_database_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as err:
        SqliteStore(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_an_unwritable_path_is_a_one_line_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StoreError) as err:
        SqliteStore(blocker / "state" / "watchdog.db")
    msg = str(err.value)
    assert msg.startswith(f"state_path {blocker / 'state' / 'watchdog.db'}: cannot create directory") and "\n" not in msg


def test_opening_for_reading_never_creates_a_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "watchdog.db"
    with pytest.raises(StoreError, match="no such state file"):
        SqliteStore(path, create=False)
    assert not path.parent.exists()
    bare = tmp_path / "bare.db"
    conn = sqlite3.connect(bare)
    conn.execute("PRAGMA user_version = 0")
    conn.execute("CREATE TABLE IF NOT EXISTS x (y)")
    conn.execute("DROP TABLE x")  # a real SQLite file with no schema is not a state file either
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="no schema"):
        SqliteStore(bare, create=False)


# --- incidents ----------------------------------------------------------------------------


def make_incident(id_: str = "svc-1", opened: datetime = T0) -> Incident:
    inc = Incident(id=id_, target="svc", opened_at=opened, phase=Phase.VERIFYING, level=1)
    inc.trigger = {"latency": Trigger(900.0, "> 100", opened, "3 of 3 breach")}
    inc.watch = {"latency", "errors"}
    inc.runs.append(LevelRun(1, opened, "alarm", opened + timedelta(seconds=2), "succeeded", "HTTP 200"))
    inc.verify_due = opened + timedelta(minutes=2)
    return inc


def test_snapshot_is_plain_json() -> None:
    snap = snapshot(make_incident())
    assert json.loads(json.dumps(snap)) == snap
    assert snap["phase"] == "verifying" and snap["watch"] == ["errors", "latency"]
    assert snap["opened_at"] == T0.isoformat() and snap["closed_at"] is None
    assert snap["runs"][0] == {"level": 1, "started": T0.isoformat(), "reason": "alarm",
                               "finished": (T0 + timedelta(seconds=2)).isoformat(), "outcome": "succeeded",
                               "detail": "HTTP 200"}
    assert snap["trigger"]["latency"]["at"] == T0.isoformat()


def test_incidents_upsert_list_and_open(db: Path) -> None:
    s = SqliteStore(db)
    first, second = make_incident("svc-1"), make_incident("svc-2", T0 + timedelta(hours=1))
    s.save_incident(snapshot(first))
    s.save_incident(snapshot(second))
    first.phase, first.level = Phase.MITIGATED, 2
    first.mitigated_at = first.closed_at = T0 + timedelta(minutes=10)
    s.save_incident(snapshot(first))
    s.close()

    s = SqliteStore(db)
    row = s.incident("svc-1")
    assert row is not None
    assert (row["phase"], row["level"], row["closed_at"]) == ("mitigated", 2, first.closed_at.isoformat())
    assert row["snapshot"] == snapshot(first)
    assert s.incident("nope") is None
    assert [r["id"] for r in s.open_incidents()] == ["svc-2"]
    assert [r["id"] for r in s.list_incidents(10)] == ["svc-2", "svc-1"]  # newest first
    assert [r["id"] for r in s.list_incidents(1)] == ["svc-2"]
    # Saving an unchanged snapshot is not a write; a changed one is.
    def updated() -> str:
        return sqlite3.connect(db).execute("SELECT updated_at FROM incidents WHERE id = 'svc-2'").fetchone()[0]

    s.save_incident(snapshot(second))  # a reopened store writes once
    before = updated()
    s.save_incident(snapshot(second))
    assert updated() == before
    second.blind = True
    s.save_incident(snapshot(second))
    assert updated() != before and s.incident("svc-2")["snapshot"]["blind"] is True


def test_a_write_ahead_log_left_without_its_file_is_not_adopted(db: Path) -> None:
    s = SqliteStore(db)
    s.intent(T0, "svc", "inc-1", 1, "#1", 1, False)
    keep = sqlite3.connect(db)  # holds the WAL open, as a killed daemon leaves it
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    s._db.execute("PRAGMA wal_autocheckpoint = 0")
    s.intent(T0, "svc", "inc-1", 1, "#1", 2, False)
    wal = Path(f"{db}-wal").read_bytes()
    s.close()
    keep.close()
    db.rename(db.with_name("moved-away.db"))
    Path(f"{db}-wal").write_bytes(wal or b"x")  # what was beside it stays behind
    with pytest.raises(StoreError, match="-wal is left from a state file that is no longer there"):
        SqliteStore(db)
    assert not db.exists()
