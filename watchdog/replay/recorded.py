"""Reading a recording of the daemon's polls (written by watchdog/recording.py) into replay sources."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from watchdog.replay.sources import Outage, Series

MAX_LINE = 1 << 20


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


def read_recording(path: Path) -> dict[str, Recorded]:
    out: dict[str, Recorded] = {}
    failing: dict[str, tuple[datetime, str]] = {}
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        for n, raw in enumerate(fh, start=1):
            if len(raw) > MAX_LINE:
                raise RecordingError(f"{path}:{n}: a line longer than {MAX_LINE} bytes")
            if not raw.strip():
                continue
            try:
                line = json.loads(raw.decode("utf-8"))
                at = _time(line["at"])
                name = line["source"]
                if not isinstance(name, str):
                    raise ValueError("source is not a string")
                rec = out.setdefault(name, Recorded())
                rec.polls.append(at)
                took = line.get("took", 0.0)
                if not isinstance(took, (int, float)) or isinstance(took, bool) or not 0 <= took < 86_400:
                    raise ValueError(f"took {took!r} is not a duration in seconds")
                rec.took[at] = float(took)
                if name in failing and "error" not in line:
                    since, why = failing.pop(name)
                    rec.outages.append(Outage(since, at, why))
                if "error" in line:
                    failing.setdefault(name, (at, str(line["error"])))
                elif line.get("points") is None:
                    rec.history = True
                else:
                    for key, pts in dict(line["points"]).items():
                        s = rec.series.setdefault(str(key), Series())
                        for ts, value in pts:
                            s.add(_time(ts), _value(value))
            except (ValueError, KeyError, TypeError, RecursionError, UnicodeDecodeError) as exc:
                raise RecordingError(f"{path}:{n}: not a recorded poll ({type(exc).__name__}: {exc})"[:300]) from None
    for name, (since, why) in failing.items():
        out[name].outages.append(Outage(since, datetime.max.replace(tzinfo=since.tzinfo), why))
    return out


def _time(text: Any) -> datetime:
    t = datetime.fromisoformat(str(text))
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return t


def _value(v: Any) -> float | bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
        return float(v)
    raise ValueError(f"{v!r} is not a reading")
