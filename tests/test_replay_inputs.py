"""`replay`'s bad inputs: one clear line, exit 2, no traceback, nothing fetched (the config's AWS
endpoint is a closed port: a fetch would fail with exit 1, not 2). Labels and recordings also get
generated and hostile files."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binaries import cli
from configs import hybrid_routing, metric_rule, write
from hostile import alias_rows
from watchdog.cli_replay import BadTime, parse_time
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


def test_a_report_that_fails_to_write_keeps_the_outcome(tmp_path: Path) -> None:
    """The disk fills while the replay runs (/dev/full): the would-be incidents are still printed, then one
    line, exit 1."""
    sources = [{"name": "compliance", "type": "http_json", "url": "http://127.0.0.1:9/x", "interval": "60s"}]
    rules = [{"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
              "threshold": "== false", "level": 2}]
    cfg = write(tmp_path, hybrid_routing(rules=rules, sources=sources, state_path=tmp_path / "w.db"))
    code, out, err = replay(cfg, "--from", "-2h", "--to", "-1h", "--report", "/dev/full")
    assert code == 1
    assert "would-be incidents: 0" in out and "note: source compliance skipped" in out
    assert one_line(err) == "rollback-watchdog replay: the report /dev/full could not be written: No space left on device"

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

    from watchdog.recording import FileRecorder, RecordingUnwritable

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
