"""Labelled incidents (`replay --labels FILE`) and the score of a replay against them.

A label: `{target, start, end, rollback: true|false, level: N (optional), failed_levels: [N, ...]
(optional)}`. `rollback: true` says the watchdog should have acted in [start, end]; `false` that whatever
happened then was no reason to. `failed_levels`: those levels' actions failed in that span, and fail in
the replay too (otherwise every replayed action succeeds).
An incident that opens inside a `true` label's span (or up to `grace` after its end) matches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from watchdog.config.reading import Refused, read_data
from watchdog.config.types import format_duration
from watchdog.core.escalation import Incident
from watchdog.replay.outcome import highest_level


class Label(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    start: datetime
    end: datetime
    rollback: bool
    level: int | None = Field(None, ge=1)
    # Levels whose actions failed in this span (the replay makes them fail, so it escalates as live did).
    failed_levels: tuple[int, ...] = ()
    note: str | None = None


class LabelsError(Exception):
    """The labels file is unreadable or wrong; one line."""


def read_labels(path: Path, targets: set[str]) -> list[Label]:
    try:
        data: Any = read_data(path)
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Refused as exc:
        raise LabelsError(f"{path}: {exc}") from None
    if isinstance(data, dict) and "labels" in data:
        data = data["labels"]
    if not isinstance(data, list):
        raise LabelsError(f"{path}: a list of labels (target, start, end, rollback) is expected")
    out = []
    for i, item in enumerate(data):
        try:
            label = Label.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise LabelsError(f"{path}: labels[{i}]{'.' + where if where else ''}: {err['msg']}") from None
        if label.start.tzinfo is None or label.end.tzinfo is None:
            raise LabelsError(f"{path}: labels[{i}]: give start and end with a time zone (Z)")
        if label.target not in targets:
            raise LabelsError(f"{path}: labels[{i}].target: unknown target {label.target!r} "
                              f"(the config has {', '.join(sorted(targets))})")
        if label.end < label.start:
            raise LabelsError(f"{path}: labels[{i}]: end is before start")
        out.append(label)
    return out


@dataclass
class Score:
    false: list[Incident] = field(default_factory=list)
    missed: list[Label] = field(default_factory=list)
    wrong: list[tuple[Label, Incident]] = field(default_factory=list)
    delays: list[timedelta] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"false": len(self.false), "missed": len(self.missed), "wrong": len(self.wrong),
                "false_incidents": [i.id for i in self.false],
                "missed_labels": [f"{lb.target} {lb.start:%Y-%m-%dT%H:%M:%SZ}" for lb in self.missed],
                "wrong_levels": [{"label": f"{lb.target} {lb.start:%Y-%m-%dT%H:%M:%SZ}", "expected": lb.level,
                                  "ran": highest_level(i)} for lb, i in self.wrong],
                "detection_delay_seconds": [d.total_seconds() for d in self.delays]}

    def line(self) -> str:
        delay = ""
        if self.delays:
            ds = sorted(self.delays)
            delay = f"; detection delay median {_seconds(ds[len(ds) // 2])}, max {_seconds(ds[-1])}"
        return f"score: {len(self.false)} false, {len(self.missed)} missed, {len(self.wrong)} wrong level{delay}"


def _seconds(d: timedelta) -> str:
    """A delay to the second (`3m`, `185s`): labels are written to the second or the minute, and an incident
    opened by a recorded poll carries that read's milliseconds (`180012ms` says nothing more)."""
    return format_duration(timedelta(seconds=round(d.total_seconds())))


def failures(labels: list[Label]) -> list[tuple[str, int, datetime, datetime]]:
    """(target, level, start, end) for every level a label says failed."""
    return [(lb.target, level, lb.start, lb.end) for lb in labels for level in lb.failed_levels]


def score(incidents: list[Incident], labels: list[Label], grace: timedelta = timedelta(minutes=10)) -> Score:
    s = Score()
    acted = [i for i in incidents if i.runs]
    matched: set[str] = set()
    for lb in labels:
        if not lb.rollback:
            continue
        # opened_at - grace, not end + grace: a label may end at 9999-12-31, past which no time can be added.
        hits = [i for i in acted if i.target == lb.target and lb.start <= i.opened_at and i.opened_at - grace <= lb.end]
        if not hits:
            s.missed.append(lb)
            continue
        first = min(hits, key=lambda i: i.opened_at)
        matched.update(i.id for i in hits)
        s.delays.append(first.opened_at - lb.start)
        if lb.level is not None and max(highest_level(i) for i in hits) != lb.level:
            s.wrong.append((lb, first))
    s.false = [i for i in acted if i.id not in matched]
    return s
