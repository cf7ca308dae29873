"""Evaluation of all rules alone: pure code, in process, no I/O.

    python -m bench.evalbench N REPEATS [--profile] [--scenario NAME]

Builds the same Config the daemon loads for N rules, a SignalBoard over it, and
feeds it what a CloudWatch poll returns (one datapoint per minute of the fetch
window per rule). Then times `board.evaluate(target, now)` for every target,
REPEATS times, in three scenarios (each round timed alone, the answer fed before
the clock starts):

- `repeat`: the same board evaluated again at the same time (what the target of
  issue 22's table, "evaluation of 5 000 rules alone", has always measured);
- `same_answer`: a poll later in the same minute brings an equal answer (new
  lists, the same values): what the daemon does on a poll that brings nothing new;
- `new_minute`: a poll a minute later, every rule's window moved on by one bucket
  with a new value: every rule is judged again (what a period-aligned read does).

Prints JSON: per scenario the per-round times (seconds); `rounds_s` is `repeat`'s.
With --profile, cProfile's top functions (share of the total time, by own time
and cumulative) for the scenario given with --scenario (default new_minute).
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

SCENARIOS = ("repeat", "same_answer", "new_minute")


def build(n: int):  # type: ignore[no-untyped-def]
    from watchdog.config import parse_config
    from watchdog.runtime.wiring import board_for

    from bench.synth import config_text

    text = config_text(n, endpoint="http://127.0.0.1:9", admin="http://127.0.0.1:9",
                       state_path="/nonexistent/state.db", interval="60s")
    cfg = parse_config(text, {})
    board = board_for(cfg)
    now = datetime.now(timezone.utc).replace(second=10, microsecond=0)
    board.source_ok("cw", answer(n, now), now)
    return cfg, board, now


def answer(n: int, now: datetime) -> dict[str, list[tuple[datetime, float]]]:
    """What moto answers for these rules at `now`: one datum per minute of the daemon's fetch window (back to
    the first bucket of the evaluation range, N + 2 = 5, and the still-filling one), so SampleCount is 1 and
    the other statistics 80..400 (a value that moves with the minute)."""
    from watchdog.core.rules import evaluation_range

    from bench.synth import EVALUATION_PERIODS, PERIOD_S, rules

    start = datetime.fromtimestamp((int(now.timestamp()) // PERIOD_S - evaluation_range(EVALUATION_PERIODS)) * PERIOD_S,
                                   timezone.utc)
    end = now
    stamps = []
    t = start
    while t < end:
        stamps.append(t)
        t += timedelta(seconds=PERIOD_S)
    return {f"{r.target}/{r.name}": [(ts, 1.0 if r.stat == "SampleCount" else 80.0 + (r.index * 37 + int(ts.timestamp()) // 60) % 320)
                                     for ts in stamps] for r in rules(n)}


def feeder(scenario: str, n: int, board: Any, start: datetime) -> Callable[[int], datetime]:
    """Before round k: what the scenario feeds the board; returns the time to evaluate at."""
    def feed(k: int) -> datetime:
        if scenario == "repeat":
            return start
        now = start + timedelta(seconds=k % 40 + 1) if scenario == "same_answer" else start + timedelta(minutes=k + 1)
        board.source_ok("cw", answer(n, now), now)
        return now
    return feed


def rounds(targets: list[str], board: Any, feed: Callable[[int], datetime], repeats: int) -> list[float]:
    out = []
    for k in range(repeats):
        now = feed(k)
        gc.collect()
        t0 = time.perf_counter()
        for t in targets:
            board.evaluate(t, now)
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    profile = "--profile" in sys.argv
    chosen = sys.argv[sys.argv.index("--scenario") + 1] if "--scenario" in sys.argv else "new_minute"
    out: dict[str, Any] = {"n": n, "scenarios": {}}
    for scenario in SCENARIOS:
        cfg, board, now = build(n)
        gc.freeze()  # as the daemon does once started (watchdog/cli/main.py): the config and board stay out of GC scans
        targets = [t.name for t in cfg.targets]
        for _ in range(3):  # warm-up
            for t in targets:
                board.evaluate(t, now)
        feed = feeder(scenario, n, board, now)
        out["scenarios"][scenario] = rounds(targets, board, feed, repeats)
        states: dict[str, int] = {}
        for t in targets:
            for view in board.evaluate(t, now).values():
                states[view.evaluation.state.value] = states.get(view.evaluation.state.value, 0) + 1
        out.setdefault("states", states)
        out.setdefault("targets", len(targets))
        if profile and scenario == chosen:
            prof = cProfile.Profile()
            more = feeder(scenario, n, board, now + timedelta(hours=1))
            for k in range(max(3, repeats // 4)):
                at = more(k)
                prof.enable()
                for t in targets:
                    board.evaluate(t, at)
                prof.disable()
            out["profile"] = top_functions(prof)
            out["profiled"] = scenario
        gc.unfreeze()
        del board, cfg
    out["rounds_s"] = out["scenarios"]["repeat"]
    print(json.dumps(out))
    return 0


def top_functions(prof: cProfile.Profile, limit: int = 12) -> list[dict]:
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values()) or 1e-9  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"where": f"{_short(filename)}:{func}", "line": line, "own_pct": 100 * tt / total,
                     "cum_pct": 100 * ct / total, "calls": nc})
    rows.sort(key=lambda r: r["own_pct"], reverse=True)
    return rows[:limit]


def _short(filename: str) -> str:
    for marker in ("/watchdog/", "/site-packages/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("watchdog/" + tail) if marker == "/watchdog/" else tail
    return filename


if __name__ == "__main__":
    raise SystemExit(main())
