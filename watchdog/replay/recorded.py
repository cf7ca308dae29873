"""Reading a recording of the daemon's polls (written by watchdog/runtime/recording.py) into replay sources."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from watchdog.replay.sources import Outage, Series

MAX_LINE = 1 << 20  # bytes, its newline included
MAX_RECORDING = 1 << 30  # bytes: a week of 10 s polls of 20 sources is a tenth of it


class RecordingError(Exception):
    """The recording cannot be read; one line with the line number."""


@dataclass
class Recorded:
    """One source's polls from a recording: when it was polled, its readings, and when it failed."""

    polls: list[datetime] = field(default_factory=list)
    took: dict[datetime, float] = field(default_factory=dict)  # how long each poll's read took
    series: dict[str, Series] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    history: bool = False  # a CloudWatch source: its data comes from CloudWatch's history


@dataclass
class Recording:
    sources: dict[str, Recorded]
    notes: list[str]  # what was read but left out (a last line cut short)


def open_regular(path: Path, what: str, limit: int) -> BinaryIO:
    """`path` opened for reading, if it is a regular file of at most `limit` bytes. Opened without blocking
    and checked on the open file: a FIFO is refused, not waited on, and cannot be swapped in after a check."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise RecordingError(f"{what} {path} is not a regular file (a FIFO, a device, a socket or a directory): "
                             "give a file")
    if info.st_size > limit:
        os.close(fd)
        raise RecordingError(f"{what} {path} is {info.st_size} bytes, above the limit of {limit}: "
                             "give a shorter recording (cut it to the range, one line per poll)")
    return os.fdopen(fd, "rb")


def read_recording(path: Path) -> Recording:
    out: dict[str, Recorded] = {}
    notes: list[str] = []
    failing: dict[str, tuple[datetime, str]] = {}
    with open_regular(path, "--recording", MAX_RECORDING) as fh:
        n = 0
        while raw := fh.readline(MAX_LINE + 1):  # never more than one line's limit in memory
            n += 1
            if len(raw) > MAX_LINE:
                raise RecordingError(f"{path}:{n}: a line longer than {MAX_LINE} bytes")
            if not raw.strip():
                continue
            try:
                _read_line(raw, out, failing)
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
                if not raw.endswith(b"\n"):  # the last line, cut by a crash or a full disk mid-write
                    notes.append(f"the recording's last line ({path}:{n}) is cut short, as a crash or a full "
                                 "disk leaves it: skipped")
                    break
                raise RecordingError(f"{path}:{n}: not a recorded poll ({type(exc).__name__}: {exc})"[:300]) from None
    for name, (since, why) in failing.items():
        out[name].outages.append(Outage(since, datetime.max.replace(tzinfo=since.tzinfo), why))
    return Recording(out, notes)


def _read_line(raw: bytes, out: dict[str, Recorded], failing: dict[str, tuple[datetime, str]]) -> None:
    line = json.loads(raw.decode("utf-8"))
    at = _time(line["at"])
    name = line["source"]
    if not isinstance(name, str):
        raise ValueError("source is not a string")
    took = line.get("took", 0.0)
    if not isinstance(took, (int, float)) or isinstance(took, bool) or not 0 <= took < 86_400:
        raise ValueError(f"took {took!r} is not a duration in seconds")
    if "error" in line:
        error = _text(line["error"])
        series = None
    elif line.get("points") is None:
        series = None
    else:
        series = {str(key): [(_time(ts), _value(value)) for ts, value in pts]
                  for key, pts in dict(line["points"]).items()}
    # Only a line read whole changes what is kept (a cut last line is skipped, not half applied).
    rec = out.setdefault(name, Recorded())
    rec.polls.append(at)
    rec.took[at] = float(took)
    if name in failing and "error" not in line:
        since, why = failing.pop(name)
        rec.outages.append(Outage(since, at, why))
    if "error" in line:
        failing.setdefault(name, (at, error))
    elif series is None:
        rec.history = True
    else:
        for key, pts in series.items():
            s = rec.series.setdefault(key, Series())
            for ts, value in pts:
                s.add(ts, value)


def _text(v: Any) -> str:
    """A recorded error as printable text: an escaped lone surrogate (valid JSON, not valid UTF-8) would
    fail the output that prints it, so it stays escaped; and one error is one line of reasonable size."""
    text = str(v).encode("utf-8", "backslashreplace").decode("utf-8")
    return " ".join(text.split())[:500]


def _time(text: Any) -> datetime:
    t = datetime.fromisoformat(str(text))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return t.astimezone(timezone.utc)  # OverflowError for a time whose UTC is past the year 9999 or before 1


def _value(v: Any) -> float | bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
        return float(v)
    raise ValueError(f"{v!r} is not a reading")
