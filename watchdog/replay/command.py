"""`rollback-watchdog replay`: history in, the runtime driven over it, what it would have done out.

The order an operator needs: what the fetch will cost is printed (and agreed to, above the limit) before
anything is fetched; a replay that cannot be run as asked says so in one line, exit 2, and fetches nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from watchdog.config.models import Config
from watchdog.config.models import Source as SourceConfig
from watchdog.config.sources import CloudWatchSource
from watchdog.metrics import Metrics
from watchdog.replay import history
from watchdog.replay.cache import CacheError, HistoryCache
from watchdog.replay.engine import PauseWindow, replay
from watchdog.replay.labels import Label, LabelsError, failures, read_labels, score
from watchdog.replay.outcome import outcome_of, render_text
from watchdog.replay.recorded import Recorded, RecordingError, read_recording
from watchdog.replay.sources import HistorySource, Series
from watchdog.signals import Query
from watchdog.sources import SAMPLED
from watchdog.sources.base import SourceError
from watchdog.sources.cloudwatch import fetch_window
from watchdog.wiring import board_for

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


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
    if opt.report:
        _can_write(opt.report)  # said now, not after a fetch that was paid for
    labels: list[Label] = read_labels(opt.labels, {t.name for t in cfg.targets}) if opt.labels else []
    recorded: dict[str, Recorded] = read_recording(opt.recording) if opt.recording else {}
    board = board_for(cfg)
    queries = {s.name: board.queries(s.name) for s in cfg.sources}
    cw = [s for s in cfg.sources if isinstance(s, CloudWatchSource) and queries[s.name]]
    notes: list[str] = []
    skip = [s.name for s in cfg.sources if s.name not in recorded and not isinstance(s, CloudWatchSource)]
    for name in skip:
        notes.append(f"source {name} skipped: it has no history of its own and the recording has none of it "
                     "(record it with `run --record FILE`); its rules stay without data")
    cache = HistoryCache(opt.cache)
    try:
        plans = {s.name: history.plan(s.name, queries[s.name], _lookback(queries[s.name], opt.start), opt.end,
                                      opt.now, cache) for s in cw}
        say = err if opt.as_json else out
        for p in plans.values():
            print(f"cost: {p.describe()}", file=say)
        cost = sum(p.dollars for p in plans.values())
        if cost > opt.max_cost and not opt.yes:
            question = f"fetch for {history.dollars(cost)}, above --max-cost {history.dollars(opt.max_cost)}?"
            if confirm is None or not confirm(question):
                raise ReplayError(f"the fetch would cost {history.dollars(cost)}, above --max-cost "
                                  f"{history.dollars(opt.max_cost)}: re-run with --yes to pay it, or a shorter range")
        metrics = Metrics()
        for s in cw:
            await history.fetch(s, queries[s.name], plans[s.name], cfg.aws, metrics, cache, opt.now)
        series = {s.name: {k: Series.of(v) for k, v in history.series(
            queries[s.name], plans[s.name].start, opt.end + timedelta(minutes=1), cache).items()} for s in cw}
    finally:
        cache.close()

    def build(c: SourceConfig, qs: Sequence[Query]) -> HistorySource:
        rec = recorded.get(c.name)
        data = series.get(c.name) or (rec.series if rec else {})
        return HistorySource(c.name, c.interval, SAMPLED[c.type], qs, data, rec.outages if rec else (),
                             rec.took if rec else None)

    polls = {name: rec.polls for name, rec in recorded.items()}
    r = await replay(cfg, opt.start, opt.end, build, polls=polls, skip=skip, pauses=opt.pauses,
                     resolve_after=opt.resolve_after, failures=failures(labels))
    outcome = outcome_of(r, notes)
    graded = score(outcome.incidents, labels) if opt.labels else None
    unwritten = None
    if opt.report:
        from watchdog.replay.report import write_report

        try:
            write_report(opt.report, cfg, r, outcome, labels, graded)
            notes.append(f"report written to {opt.report}")
        except OSError as exc:  # a disk that filled during the replay: the outcome is still printed below
            unwritten = f"the report {opt.report} could not be written: {exc.strerror or exc}"
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
    return EXIT_OK


def _can_write(path: Path) -> None:
    where = path.parent
    if path.is_dir():
        raise ReplayError(f"--report {path} is a directory: give a file name")
    if not where.is_dir():
        raise ReplayError(f"--report {path} cannot be written: {where} is not a directory")
    if not os.access(where, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ReplayError(f"--report {path} cannot be written: permission denied")


def _lookback(qs: Sequence[Query], start: datetime) -> datetime:
    return fetch_window(qs, start)[0] if qs else start
