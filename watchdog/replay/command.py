"""`rollback-watchdog replay`: history in, the runtime driven over it, what it would have done out.

The order an operator needs: what the fetch will cost and how many polls it will simulate are printed
(and agreed to, above the limits) before anything is fetched; a replay that cannot be run as asked says so
in one line, exit 2, and fetches nothing. What it could not see is said after the outcome, and a replay
in which a rule saw no datapoint at all exits 3: a script must not take "no incident" from it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from watchdog.config.models import Config
from watchdog.config.models import Source as SourceConfig
from watchdog.support.metrics import Metrics
from watchdog.replay import history
from watchdog.replay.cache import CacheError, HistoryCache
from watchdog.replay.engine import PauseWindow, count_polls, replay
from watchdog.replay.labels import Label, LabelsError, failures, read_labels, score
from watchdog.replay.outcome import outcome_of, render_text
from watchdog.replay.recorded import Recorded, Recording, RecordingError, read_recording
from watchdog.replay.sources import HistorySource, Series
from watchdog.core.signals import Query
from watchdog.sources import source_kind
from watchdog.sources.base import SourceError
from watchdog.sources.cloudwatch import fetch_window
from watchdog.runtime.wiring import board_for

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNSEEN = 0, 1, 2, 3
MAX_POLLS = 1_000_000  # simulated polls a replay runs without --yes (or a yes on a terminal)


class ReplayError(Exception):
    """The replay cannot run as asked; one line, exit 2."""


@dataclass(frozen=True)
class Options:
    start: datetime
    end: datetime
    now: datetime
    cache: Path
    recording: Path | None = None
    labels: Path | None = None
    report: Path | None = None
    as_json: bool = False
    yes: bool = False
    max_cost: float = 1.0
    resolve_after: timedelta | None = timedelta(hours=1)
    pauses: tuple[PauseWindow, ...] = ()
    progress: bool = False  # a progress line on `err` (a terminal) while a long replay runs


Confirm = Callable[[str], bool]


async def run_replay(cfg: Config, opt: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                     confirm: Confirm | None = None) -> int:
    try:
        return await _run(cfg, opt, out, err, confirm)
    except (ReplayError, CacheError, LabelsError, RecordingError, history.HistoryError) as exc:
        print(f"rollback-watchdog replay: {exc}", file=err)
        return EXIT_USAGE
    except SourceError as exc:
        print(f"rollback-watchdog replay: cannot fetch the history: {exc}", file=err)
        return EXIT_FAIL


async def _run(cfg: Config, opt: Options, out: TextIO, err: TextIO, confirm: Confirm | None) -> int:
    if opt.start >= opt.end:
        raise ReplayError(f"--from {opt.start:%Y-%m-%dT%H:%M:%SZ} is not before --to {opt.end:%Y-%m-%dT%H:%M:%SZ}")
    if opt.end > opt.now + timedelta(minutes=1):
        raise ReplayError(f"--to {opt.end:%Y-%m-%dT%H:%M:%SZ} is in the future: there is no history of it yet")
    # Said now, not after a fetch that was paid for; and no FIFO or device is opened (it would hang).
    if opt.report:
        _can_write(opt.report)
    for option, path in (("--labels", opt.labels), ("--cache", opt.cache)):
        if path is not None:
            _regular_or_absent(option, path)
    labels: list[Label] = read_labels(opt.labels, {t.name for t in cfg.targets}) if opt.labels else []
    recording = read_recording(opt.recording) if opt.recording else Recording({}, [])
    recorded: dict[str, Recorded] = recording.sources
    board = board_for(cfg)
    queries = {s.name: board.queries(s.name) for s in cfg.sources}
    kinds = {s.name: source_kind(s) for s in cfg.sources}  # a kind with a history of its own has it fetched
    cw = [kinds[s.name].of(s) for s in cfg.sources if kinds[s.name].history and queries[s.name]]
    notes: list[str] = list(recording.notes)
    skip = [s.name for s in cfg.sources if s.name not in recorded and not kinds[s.name].history]
    for name in skip:
        notes.append(f"source {name} skipped: it has no history of its own and the recording has none of it "
                     "(record it with `run --record FILE`); its rules stay without data")
    for s in cw:
        history.check_retention(queries[s.name], opt.start, opt.now)
    polls = {name: rec.polls for name, rec in recorded.items()}
    say = err if opt.as_json else out
    cache = HistoryCache(opt.cache)
    try:
        plans = {s.name: history.plan(s.name, queries[s.name], _lookback(queries[s.name], opt.start), opt.end,
                                      opt.now, cache) for s in cw}
        for p in plans.values():
            print(f"cost: {p.describe()}", file=say)
        counts = count_polls(cfg, opt.start, opt.end, polls, skip)
        total = sum(counts.values())
        print(f"polls: {_n(total)} to simulate (" + ", ".join(f"{name} {_n(k)}" for name, k in counts.items()) + ")",
              file=say)
        cost = sum(p.dollars for p in plans.values())
        if cost > opt.max_cost and not opt.yes:
            question = f"fetch for {history.dollars(cost)}, above --max-cost {history.dollars(opt.max_cost)}?"
            if confirm is None or not confirm(question):
                raise ReplayError(f"the fetch would cost {history.dollars(cost)}, above --max-cost "
                                  f"{history.dollars(opt.max_cost)}: re-run with --yes to pay it, or a shorter range")
        if total > MAX_POLLS and not opt.yes:
            if confirm is None or not confirm(f"simulate {_n(total)} polls, above the limit of {_n(MAX_POLLS)}?"):
                raise ReplayError(f"{_n(total)} polls to simulate, above the limit of {_n(MAX_POLLS)}: re-run with "
                                  "--yes to simulate them all, or give a shorter range")
        metrics = Metrics()
        for s in cw:
            await history.fetch(s, queries[s.name], plans[s.name], cfg.aws, metrics, cache, opt.now)
        series, unreadable = {}, {}
        for s in cw:
            start, end = plans[s.name].start, opt.end + timedelta(minutes=1)
            got = history.series(queries[s.name], start, end, cache)
            series[s.name] = Series.of_many(got)
            unreadable.update(history.unreadable(queries[s.name], start, end, cache))
    finally:
        cache.close()

    def build(c: SourceConfig, qs: Sequence[Query]) -> HistorySource:
        rec = recorded.get(c.name)
        data = series.get(c.name) or (rec.series if rec else {})
        return HistorySource(c.name, c.interval, source_kind(c).sampled, qs, data, rec.outages if rec else (),
                             rec.took if rec else None)

    shown = ProgressLine(total, err) if opt.progress else None
    try:
        r = await replay(cfg, opt.start, opt.end, build, polls=polls, skip=skip, pauses=opt.pauses,
                         resolve_after=opt.resolve_after, failures=failures(labels), progress=shown)
    finally:
        if shown is not None:
            shown.close()
    outcome = outcome_of(r, notes, unreadable)
    graded = score(outcome.incidents, labels) if opt.labels else None
    unwritten = None
    if opt.report:
        from watchdog.replay.report import write_report

        try:
            write_report(opt.report, cfg, r, outcome, labels, graded)
            notes.append(f"report written to {opt.report}")
        except OSError as exc:  # a disk that filled during the replay: the outcome is still printed below
            unwritten = (f"the report {opt.report} could not be written: {exc.strerror or exc}"
                         f"{' (the previous one is left as it was)' if opt.report.exists() else ''}")
    if opt.as_json:
        doc = outcome.to_json()
        if graded is not None:
            doc["score"] = graded.to_json()
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        for line in render_text(outcome):
            print(line, file=out)
        if graded is not None:
            print(f"{graded.line()} (against {opt.labels})", file=out)
    if unwritten is not None:
        print(f"rollback-watchdog replay: {unwritten}", file=err)
        return EXIT_FAIL
    return EXIT_UNSEEN if outcome.unseen else EXIT_OK


class ProgressLine:
    """`replay: 120 000 of 12 096 001 polls (0 %)` on a terminal, rewritten in place at most once a second,
    from the third second on: a long replay shows that it is moving and how far it has to go."""

    def __init__(self, total: int, err: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total, self._err, self._clock = max(total, 1), err, clock
        self._began = self._last = clock()
        self.shown = False

    def __call__(self, done: int) -> None:
        now = self._clock()
        if now - self._began < 2 or now - self._last < 1:
            return
        self._last = now
        self.shown = True
        print(f"\rreplay: {_n(done)} of {_n(self.total)} polls ({done * 100 // self.total} %)", end="",
              file=self._err, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=self._err, flush=True)


def _can_write(path: Path) -> None:
    where = path.resolve().parent  # a symlink is written through: the new report replaces its target
    if path.is_dir():
        raise ReplayError(f"--report {path} is a directory: give a file name")
    if path.exists() and not path.is_file():  # renaming onto /dev/null would replace the device
        raise ReplayError(f"--report {path} is not a regular file (a FIFO, a device or a socket): give a file name")
    if not where.is_dir():
        raise ReplayError(f"--report {path} cannot be written: {path.parent} is not a directory")
    if not os.access(where, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ReplayError(f"--report {path} cannot be written: permission denied")


def _regular_or_absent(option: str, path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:  # absent (a cache is created), or unreachable: its reader says which, in one line
        return
    if not stat.S_ISREG(mode):
        raise ReplayError(f"{option} {path} is not a regular file (a FIFO, a device, a socket or a directory): "
                          "give a file")


def _n(k: int) -> str:
    return f"{k:,}".replace(",", " ")


def _lookback(qs: Sequence[Query], start: datetime) -> datetime:
    return fetch_window(qs, start)[0] if qs else start
