"""Evaluation of all rules alone: pure code, in process, no I/O.

    python -m bench.evalbench N REPEATS [--profile]

Builds the same Config the daemon loads for N rules, a SignalBoard over it, and
feeds it what a CloudWatch poll returns (one datapoint per minute of the fetch
window per rule). Then times `board.evaluate(target, now)` for every target,
REPEATS times, and prints JSON: the per-round times (seconds). With --profile,
cProfile's top functions (share of the total time, by own time and cumulative)
for the same rounds are added.
"""

from __future__ import annotations

import cProfile
import gc
import json
import pstats
import sys
import time
from datetime import datetime, timedelta, timezone


def build(n: int):  # type: ignore[no-untyped-def]
    from watchdog.config import parse_config
    from watchdog.runtime.wiring import board_for

    from bench.synth import PERIOD_S, config_text, fetch_window, rules

    text = config_text(n, endpoint="http://127.0.0.1:9", admin="http://127.0.0.1:9",
                       state_path="/nonexistent/state.db", interval="60s")
    cfg = parse_config(text, {})
    board = board_for(cfg)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start, end = fetch_window(now)
    stamps = []
    t = start
    while t < end:
        stamps.append(t)
        t += timedelta(seconds=PERIOD_S)
    # What moto answers for these rules: one datum per minute, so SampleCount is 1, other stats 80..400.
    data = {f"{r.target}/{r.name}": [(ts, 1.0 if r.stat == "SampleCount" else 80.0 + (r.index * 37 + k) % 320)
                                     for k, ts in enumerate(stamps)] for r in rules(n)}
    board.source_ok("cw", data, now)
    return cfg, board, now


def main() -> int:
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    profile = "--profile" in sys.argv
    cfg, board, now = build(n)
    gc.freeze()  # as the daemon does once started (watchdog/cli/main.py): the config and board stay out of GC scans
    targets = [t.name for t in cfg.targets]
    for _ in range(3):  # warm-up
        for t in targets:
            board.evaluate(t, now)
    states: dict[str, int] = {}
    for t in targets:
        for view in board.evaluate(t, now).values():
            states[view.evaluation.state.value] = states.get(view.evaluation.state.value, 0) + 1
    rounds = []
    gc.collect()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in targets:
            board.evaluate(t, now)
        rounds.append(time.perf_counter() - t0)
    out: dict = {"n": n, "targets": len(targets), "rounds_s": rounds, "states": states}
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(max(3, repeats // 4)):
            for t in targets:
                board.evaluate(t, now)
        prof.disable()
        out["profile"] = top_functions(prof)
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
