"""`replay`'s bad inputs: one clear line, exit 2, no traceback, nothing fetched (the config's AWS
endpoint is a closed port: a fetch would fail with exit 1, not 2). Labels and recordings also get
generated and hostile files."""

from __future__ import annotations

import io
import itertools
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from binaries import cli
from configs import cloudwatch, hybrid_routing, metric_rule, parsed, write
from hostile import alias_rows
from watchdog.cli.replay import BadTime, parse_time
from watchdog.replay.labels import LabelsError, read_labels
from watchdog.replay.recorded import RecordingError, read_recording

UTC = timezone.utc
NOW = datetime.now(UTC)


@pytest.fixture
def config(tmp_path: Path) -> str:
    rules = [metric_rule(f"r{i}", dimensions={"Rule": f"r{i}"}) for i in range(3)]
    return write(tmp_path, hybrid_routing(rules=rules, state_path=tmp_path / "w.db"))


def replay(config: str, *args: str) -> tuple[int, str, str]:
    r = cli("replay", "-c", config, *args, timeout=60)
    return r.returncode, r.stdout, r.stderr


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_from_after_to(config: str) -> None:
    code, _, err = replay(config, "--from", "-1h", "--to", "-2h")
    assert code == 2
    assert one_line(err).startswith("rollback-watchdog replay: --from ") and "is not before --to" in err


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-45", "-7x", ""])
def test_a_time_that_is_no_time(config: str, bad: str) -> None:
    code, _, err = replay(config, "--from", bad)
    assert code == 2
    assert "is not a time: give ISO 8601" in one_line(err)


def test_a_time_too_far_back_to_count(config: str) -> None:
    code, _, err = replay(config, "--from", "-99999999999d")
    assert code == 2
    assert one_line(err) == ("rollback-watchdog replay: '-99999999999d' reaches back past the year 1: "
                             "give a range CloudWatch can keep")


@given(st.one_of(st.text(max_size=40), st.from_regex(r"-[0-9]{1,30} ?[smhdw]", fullmatch=True)))
def test_any_text_is_a_time_or_one_bad_time(text: str) -> None:
    try:
        when = parse_time(text, NOW)
    except BadTime as exc:
        assert "\n" not in str(exc)
    else:
        assert when.tzinfo is not None


def test_a_range_past_retention(config: str) -> None:
    code, out, err = replay(config, "--from", "-20d", "--to", "-19d")
    assert code == 2 and out == ""
    assert one_line(err).startswith("rollback-watchdog replay: hybrid-routing/r0: CloudWatch keeps data of a 60s "
                                    "period for 15 days: --from must be after ")


def test_an_unreadable_cache(config: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    cache.write_bytes(b"\x00\xffnot a database" * 100)
    code, _, err = replay(config, "--from", "-2h", "--to", "-1h", "--cache", str(cache))
    assert code == 2
    assert one_line(err) == (f"rollback-watchdog replay: cache {cache} cannot be used: file is not a database "
                             "(delete it to start afresh)")


def test_a_cache_in_a_place_that_cannot_be_a_directory(config: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = replay(config, "--from", "-2h", "--to", "-1h", "--cache", str(tmp_path / "file" / "c.db"))
    assert code == 2 and "cannot be used" in one_line(err)


def test_an_unknown_target_in_the_labels(config: str, tmp_path: Path) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("- {target: checkout, start: 2026-11-30T10:00:00Z, end: 2026-11-30T11:00:00Z, rollback: true}\n")
    code, _, err = replay(config, "--from", "-2h", "--to", "-1h", "--labels", str(labels))
    assert code == 2
    assert one_line(err) == (f"rollback-watchdog replay: {labels}: labels[0].target: unknown target 'checkout' "
                             "(the config has hybrid-routing)")


def test_a_fetch_above_the_cost_limit_without_a_terminal(config: str, tmp_path: Path) -> None:
    code, out, err = replay(config, "--from", "-2h", "--to", "-1h", "--max-cost", "0",
                            "--cache", str(tmp_path / "c.db"))
    assert code == 2
    assert out.startswith("cost: source cloudwatch: 1 GetMetricData calls, 3 metrics requested, $0.00003 at $0.01 per 1 000")
    assert one_line(err).startswith("rollback-watchdog replay: the fetch would cost $0.00003, above --max-cost "
                                    "$0: re-run with --yes")


def test_a_recording_that_is_not_one(config: str, tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_bytes(b'{"at": "2026-11-30T10:00:00+00:00", "source": "cloudwatch", "points": null}\n{"at": 12}\n')
    code, _, err = replay(config, "--from", "-2h", "--to", "-1h", "--recording", str(rec))
    assert code == 2
    assert one_line(err).startswith(f"rollback-watchdog replay: {rec}:2: not a recorded poll")



@pytest.mark.parametrize("where, says", [
    ("nodir/r.html", "cannot be written: {tmp}/nodir is not a directory"),
    ("file/r.html", "cannot be written: {tmp}/file is not a directory"),
    (".", "is a directory: give a file name"),
])
def test_a_report_that_cannot_be_written_is_said_before_the_fetch(config: str, tmp_path: Path, where: str,
                                                                  says: str) -> None:
    (tmp_path / "file").write_text("x")
    code, out, err = replay(config, "--from", "-2h", "--to", "-1h", "--report", str(tmp_path / where))
    assert code == 2 and out == ""  # no cost line: nothing was planned, let alone fetched
    assert one_line(err).endswith(says.format(tmp=tmp_path))


def test_a_device_as_the_report_is_refused_before_the_fetch(config: str) -> None:
    """/dev/full: the report is written beside its target and renamed onto it, which would replace the
    device; so a path that is not a regular file is refused up front. (The full disk under a report is
    test_replay_hostile.py's tmpfs test.)"""
    code, out, err = replay(config, "--from", "-2h", "--to", "-1h", "--report", "/dev/full")
    assert code == 2 and out == ""
    assert one_line(err) == ("rollback-watchdog replay: --report /dev/full is not a regular file (a FIFO, a device "
                             "or a socket): give a file name")

# --- the readers, in process: generated and hostile files ---------------------------------------

TARGETS = {"hybrid-routing"}


@pytest.mark.parametrize("raw, says", [
    (b"- {target: hybrid-routing, start: 2026-11-30T10:00:00Z, end: 2026-11-30T09:00:00Z, rollback: true}",
     "labels[0]: end is before start"),
    (b"- {target: hybrid-routing, start: 2026-11-30T10:00:00, end: 2026-11-30T11:00:00, rollback: true}",
     "labels[0]: give start and end with a time zone (Z)"),
    (b"- {target: hybrid-routing, start: 2026-11-30T10:00:00Z, end: 2026-11-30T11:00:00Z}",
     "labels[0].rollback: Field required"),
    (b"- {target: hybrid-routing, start: 2026-11-30T10:00:00Z, end: 2026-11-30T11:00:00Z, rollback: true, lvl: 2}",
     "labels[0].lvl: Extra inputs are not permitted"),
    ("caf\xe9: 1".encode("latin-1"), "not UTF-8: byte 0xe9 on line 1"),
    ("\n".join(["a:"] + alias_rows(8)).encode(), "YAML anchors and aliases are not supported"),
    (b"[" * 100_000 + b"]" * 100_000, "not YAML or JSON: exceeded maximum nesting depth"),
    (b"{target: hybrid-routing}", "a list of labels (target, start, end, rollback) is expected"),
    (b"- 1e999999", "labels[0]: Input should be a valid dictionary"),
])
def test_labels_that_are_wrong_say_so_in_one_line(tmp_path: Path, raw: bytes, says: str) -> None:
    path = tmp_path / "labels.yaml"
    path.write_bytes(raw)
    with pytest.raises(LabelsError) as exc:
        read_labels(path, TARGETS)
    assert says in str(exc.value) and "\n" not in str(exc.value)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_as_labels_are_a_list_or_one_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "labels.yaml"
    path.write_bytes(raw)
    try:
        read_labels(path, TARGETS)
    except LabelsError as exc:
        assert "\n" not in str(exc)


json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                           max_leaves=20)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(json_values | st.fixed_dictionaries({"at": st.sampled_from(["2026-11-30T10:00:00+00:00", "x", 5]),
                                                     "source": st.sampled_from(["cw", 3]),
                                                     "points": json_values}), max_size=5))
def test_any_json_lines_as_a_recording_are_read_or_refused_in_one_line(tmp_path: Path, lines: list) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    try:
        read_recording(path)
    except RecordingError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


def test_an_undecodable_or_deep_recording_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_bytes(b'{"at": "2026-11-30T10:00:00+00:00", "source": "cw", "points": null}\n\xff\xfe\n')
    with pytest.raises(RecordingError, match=r"rec.jsonl:2: not a recorded poll \(UnicodeDecodeError"):
        read_recording(path)
    path.write_bytes(b"[" * 50_000 + b"]" * 50_000 + b"\n")
    with pytest.raises(RecordingError, match=r"rec.jsonl:1: not a recorded poll"):
        read_recording(path)


def test_a_recording_that_cannot_be_written_says_so_once_and_polling_goes_on(tmp_path: Path) -> None:
    """/dev/full: every write fails with ENOSPC, as on a full disk."""
    import structlog

    from watchdog.runtime.recording import FileRecorder, RecordingUnwritable

    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    rec = FileRecorder(full)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            rec.polled("compliance", "http_json", True, NOW, 0.01, {"t/gdpr": [(NOW, True)]}, None)
        rec.close()  # the stop must not fail on it either
    critical = [e for e in logs if e["event"] == "recording_failed"]
    assert len(critical) == 1 and critical[0]["log_level"] == "critical" and "No space left" in critical[0]["error"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingUnwritable, match="cannot be opened"):  # at start: one line, `run` exits 1
        FileRecorder(tmp_path / "file" / "under" / "x.jsonl")


# --- generated recordings and cache rows: no traceback ----------------------------------------------

GEN_NOW = datetime.now(UTC).replace(second=0, microsecond=0)
GEN_START = GEN_NOW - timedelta(hours=2)
MIN = timedelta(minutes=1)
_examples = itertools.count()

in_range = st.floats(GEN_START.timestamp() - 600, GEN_START.timestamp() + 2400)
sql_values = st.one_of(in_range, st.floats(-1e4, 1e4), st.floats(allow_nan=False), st.integers(-(2 ** 63), 2 ** 63 - 1),
                       st.text(max_size=6), st.binary(max_size=4))
minutes = st.integers(-10, 40).map(lambda k: (GEN_START + k * MIN).isoformat())
times = st.one_of(minutes, st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+05:00",
                                            "2026-11-30T10:00:00", "x", ""]), st.integers())
readings = st.one_of(st.booleans(), st.floats(), st.integers(), st.text(max_size=3), st.none(), st.lists(st.none()))
good_lines = st.builds(lambda at, ok, took: {"at": at, "source": "compliance", "took": took,
                                             "points": {"hybrid-routing/gdpr": [[at, ok]]}},
                       minutes, st.booleans(), st.floats(0, 5))
poll_lines = st.one_of(
    good_lines,
    st.fixed_dictionaries({"at": times, "source": st.sampled_from(["compliance", "cloudwatch", "other", 7]),
                           "took": st.one_of(st.floats(), st.integers(-1, 10 ** 6), st.text(max_size=2)),
                           "points": st.one_of(st.none(), st.dictionaries(
                               st.sampled_from(["hybrid-routing/gdpr", "hybrid-routing/r0", "nope"]),
                               st.lists(st.tuples(times, readings), max_size=3), max_size=2))}),
    st.fixed_dictionaries({"at": minutes, "source": st.just("compliance"),
                           "error": st.lists(st.sampled_from(["\ud800", "\udfff", "down", "\n", "\x00"]),
                                             max_size=4).map("".join)}),
)


def _gen_config() -> Any:
    sources = [cloudwatch(interval="60s", retry={"attempts": 1}),
               {"name": "compliance", "type": "http_json", "url": "http://127.0.0.1:9/x", "interval": "60s"}]
    rules = [metric_rule("r0", dimensions={"Rule": "r0"}, evaluation_periods=3, datapoints_to_alarm=2),
             {"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
              "threshold": "== false"}]
    return parsed(hybrid_routing(sources=sources, rules=rules, verify_window="3m"))


GEN_CONFIG = _gen_config()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(poll_lines, max_size=8), cut=st.integers(0, 40),
       points=st.lists(st.one_of(st.tuples(in_range, st.floats(-1e4, 1e4)), st.tuples(sql_values, sql_values)),
                       max_size=12),
       fetched=st.lists(st.tuples(sql_values, sql_values), max_size=3))
async def test_generated_recordings_and_cache_rows_never_give_a_traceback(tmp_path: Path, lines: list[Any], cut: int,
                                                                          points: list[Any], fetched: list[Any]) -> None:
    """Whatever the recording and the cache hold, the replay ends with an exit code, one line when it refuses
    (and none otherwise; the cost and poll lines go to stderr with --json), and its output can be written
    as UTF-8. The cache's history is marked fetched for every time,
    so nothing is fetched (the endpoint is a closed port)."""
    from watchdog.replay.cache import HistoryCache
    from watchdog.replay.command import Options, run_replay
    from watchdog.replay.history import query_key
    from watchdog.core.signals import Query

    work = Path(tmp_path) / f"gen{next(_examples)}"
    work.mkdir()
    raw = b"".join((json.dumps(x) + "\n").encode() for x in lines)
    (work / "rec.jsonl").write_bytes(raw[:len(raw) - cut] if cut < len(raw) else raw)
    key = query_key(Query("hybrid-routing/r0", GEN_CONFIG.targets[0].rules[0]))
    HistoryCache(work / "cache.db").close()
    with sqlite3.connect(work / "cache.db") as db:
        db.execute("INSERT INTO fetched VALUES (?, 0, 1e10)", (key,))
        db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)", [(key, ts, v) for ts, v in points])
        db.executemany("INSERT INTO fetched VALUES (?, ?, ?)", [(key, a, b) for a, b in fetched])
    opt = Options(start=GEN_START, end=GEN_START + 30 * MIN, now=GEN_NOW, cache=work / "cache.db",
                  recording=work / "rec.jsonl", as_json=bool(cut % 2))
    out, err = io.StringIO(), io.StringIO()
    code = await run_replay(GEN_CONFIG, opt, out=out, err=err)
    event(f"exit {code}")
    assert code in (0, 2, 3), (code, err.getvalue())
    refusals = [ln for ln in err.getvalue().splitlines() if ln.startswith("rollback-watchdog replay: ")]
    assert len(refusals) == (1 if code == 2 else 0), err.getvalue()
    out.getvalue().encode("utf-8")
    err.getvalue().encode("utf-8")
