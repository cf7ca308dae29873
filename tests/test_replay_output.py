"""What a user reads from `replay` (issue 20): the same history gives the same bytes, the replayed runtime's
pages stay off stderr, and a line the outcome does not show otherwise is listed in it, stamped with the
simulated time it was logged at."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog

from configs import CLOSED, hybrid_routing, parsed, write
from replay_runs import replay_measured
from watchdog.support.logs import setup_logging
from watchdog.replay.engine import replay
from watchdog.replay.labels import Score
from watchdog.replay.outcome import outcome_of, render_text
from watchdog.replay.sources import HistorySource, Outage, Series

UTC = timezone.utc
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def compliance(tmp: Path, threshold: str = "== false") -> dict[str, Any]:
    sources = [{"name": "compliance", "type": "http_json", "url": f"{CLOSED}/x", "interval": "60s"}]
    rules = [{"name": "gdpr", "category": "security", "source": "compliance", "field": "gdpr.compliant",
              "threshold": threshold}]
    return hybrid_routing(rules=rules, sources=sources, verify_window="3m", state_path=tmp / "w.db")


def poll(k: int) -> str:
    """Poll k, a minute apart from T0: polls 10-19 fail (a blind spell from the 5th failed minute on), the
    document says non-compliant at polls 30-32 (an incident), compliant otherwise."""
    at = (T0 + k * MIN).isoformat()
    line: dict[str, Any] = {"at": at, "source": "compliance", "took": 0.013}
    if 10 <= k < 20:
        line["error"] = "HTTP 500: down"
    else:
        line["points"] = {"hybrid-routing/gdpr": [[at, not 30 <= k < 33]]}
    return json.dumps(line) + "\n"


def test_two_replays_of_the_same_history_are_the_same_bytes_and_page_nothing_on_stderr(tmp_path: Path) -> None:
    config = write(tmp_path, compliance(tmp_path), "c.yaml")
    rec = tmp_path / "rec.jsonl"
    rec.write_text("".join(poll(k) for k in range(90)))
    args = ["-c", config, "--from", T0.isoformat(), "--to", (T0 + 89 * MIN).isoformat(), "--json", "--recording",
            str(rec)]
    # Two processes with other string hashes: a set or dict order that hangs on them shows as a difference.
    first = replay_measured(*args, env={"PYTHONHASHSEED": "1"})
    second = replay_measured(*args, env={"PYTHONHASHSEED": "2"})
    assert first.code == second.code == 0, first.err[-2000:]
    assert first.out == second.out
    doc = json.loads(first.out)
    # Derived from the recording: the incident opens at the poll of minute 30, judged when its read was over.
    [inc] = doc["incidents"]
    assert inc["opened"] == "2026-11-30T10:30:00.013Z"
    assert inc["id"].startswith("hybrid-routing-20261130T103000Z-")
    # The blind spell (polls 10-19 failed: blind from the poll of minute 15) is in the outcome ...
    assert [(b["target"], b["start"]) for b in doc["blind"]] == [("hybrid-routing", "2026-11-30T10:15:00.013Z")]
    assert doc["logged"] == []  # ... and so not listed again
    # ... and its critical page is on neither stream: stderr has the config's warnings at most, no log line.
    for err in (first.err, second.err):
        assert [ln for ln in err.splitlines() if ln.startswith("{")] == [], err


async def test_a_line_the_outcome_would_not_show_is_listed_at_its_simulated_time() -> None:
    """A crashed evaluation (a value of a type no rule can compare: a bug of a source) is logged at error
    level; a failed poll at warning. In a replay it is neither written to stderr nor lost: the outcome lists it, stamped with the poll's
    simulated time and `replay: true`, and the logging set up before is back afterwards."""
    cfg = parsed(compliance(Path("/nonexistent"), "> 100"))
    data = Series()
    data.add(T0 + 2 * MIN, "not a number")  # type: ignore[arg-type]

    def build(c: Any, queries: Any) -> HistorySource:
        return HistorySource(c.name, c.interval, True, queries, {"hybrid-routing/gdpr": data},
                             [Outage(T0 + MIN, T0 + 2 * MIN, "HTTP 500")], took={T0 + 2 * MIN: 0.25})

    stream, root = io.StringIO(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    setup_logging("info", stream)
    try:
        r = await replay(cfg, T0, T0 + 2 * MIN, build)  # polls at minutes 0, 1, 2
        structlog.get_logger("test").error("after_the_replay")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    o = outcome_of(r, [])
    [crash] = o.logged
    assert (crash["event"], crash["ts"], crash["replay"]) == ("evaluation_crashed", "2026-11-30T10:02:00.250Z", True)
    assert crash["target"] == "hybrid-routing" and crash["error"].startswith("TypeError")
    assert any("evaluation_crashed" in line and "2026-11-30T10:02:00.250Z" in line for line in render_text(o))
    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert not any(line["log_level"] == "error" and line.get("replay") for line in written)
    # The failed poll's warning was written, stamped as the replay's ...
    [failed] = [line for line in written if line["event"] == "source_poll_failed"]
    assert (failed["ts"], failed["replay"]) == ("2026-11-30T10:01:00.000Z", True)
    # ... and a line after it is the daemon's again: today's time, no replay flag, written.
    [after] = [line for line in written if line["event"] == "after_the_replay"]
    assert "replay" not in after and not after["ts"].startswith("2026-11-30")


def test_a_detection_delay_is_said_to_the_second() -> None:
    s = Score(delays=[timedelta(seconds=180, milliseconds=12), timedelta(seconds=185, milliseconds=400)])
    assert s.line() == "score: 0 false, 0 missed, 0 wrong level; detection delay median 185s, max 185s"
    assert Score(delays=[timedelta(minutes=3)]).line().endswith("detection delay median 3m, max 3m")
