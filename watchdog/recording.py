"""A recording of the daemon's polls (`run --record FILE`, or `watchdog.record`), for `replay` to read.

One JSON object per line, per poll: `{"at", "source", "took", "points": {key: [[time, value], ...]}}`,
or `{"at", "source", "took", "error"}` for a failed poll; `took` is how long the read took in seconds
(the rules are judged after it: a replay judges them as late). A sampled source's line holds only the readings new since
its previous line (the replay keeps the same short history the live source keeps); a CloudWatch line holds
no points (`"points": null`: polled, the data comes from CloudWatch's own history), so a recording stays
small. Lines are appended and flushed per poll: a crash loses at most the line being written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

import structlog

from watchdog.rules import Datapoint

log = structlog.get_logger("watchdog.recording")


class Recorder(Protocol):
    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None: ...

    def close(self) -> None: ...


class RecordingUnwritable(Exception):
    """One line: the file `--record` names cannot be opened for appending."""


class NoRecorder:
    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None:
        return None

    def close(self) -> None:
        return None


class FileRecorder:
    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise RecordingUnwritable(f"the recording {path} cannot be opened: {exc.strerror or exc}") from None
        self._last: dict[str, datetime] = {}  # per query key: the newest reading already written
        self._failing = False

    def polled(self, source: str, kind: str, sampled: bool, at: datetime, took: float,
               data: Mapping[str, Sequence[Datapoint]] | None, error: str | None) -> None:
        line: dict[str, Any] = {"at": at.isoformat(), "source": source, "took": round(took, 6)}
        if error is not None:
            line["error"] = error
        elif kind == "cloudwatch" or data is None:
            line["points"] = None
        else:
            points: dict[str, list[list[Any]]] = {}
            for key, pts in data.items():
                seen = self._last.get(key) if sampled else None
                new = [p for p in pts if seen is None or p[0] > seen]
                if new:
                    points[key] = [[ts.isoformat(), v] for ts, v in new]
                    self._last[key] = max(p[0] for p in new)
            line["points"] = points
        try:
            self._fh.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._fh.flush()
        except (OSError, ValueError) as exc:  # a full disk stops the recording, never the polling
            if not self._failing:
                log.critical("recording_failed", path=str(self.path), error=f"{type(exc).__name__}: {exc}",
                             next="polling and deciding go on; this recording has a gap")
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:  # what could not be written was said when it failed
            log.error("recording_close_failed", path=str(self.path), error=f"{type(exc).__name__}: {exc}")


