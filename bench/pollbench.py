"""A poll's work beyond the fetch, in process: the answer stored and every target judged by the real runtime.

    python -m bench.pollbench [--rules 5000] [--rounds 15]

The runtime `run` builds (App.create, no scheduler, no HTTP server, a state file in a temporary directory) over
the benchmark's config for N rules (bench/synth.py). Each round hands the board what a poll of all N queries
returns (bench/evalbench.py's answer: the daemon's window, one datapoint per minute) and judges every target
through `Runtime.evaluate` (the board, the per-rule metric series, the escalation machine): what `Runtime._poll`
does after the fetch (and, apart, the CPU of judging the last target alone: what a breach in the poll's last
call would wait for if each target were judged as soon as its own call was answered). CPU time
(`time.process_time`) per round, median [min–max], in two scenarios: an equal answer (a poll in the same minute:
nothing new) and a new minute (every rule judged again). The fetch itself
(request, answer, parsing) is measured by `make bench` and bench/parsebench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any


class Clock:
    def __init__(self, now: datetime):
        self.at = now

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return time.monotonic()


async def run(n: int, rounds: int) -> dict[str, Any]:
    from watchdog.config import parse_config
    from watchdog.lifecycle.app import App

    from bench.evalbench import answer
    from bench.synth import config_text

    out: dict[str, Any] = {"rules": n, "rounds": rounds}
    for scenario in ("same_answer", "new_minute"):
        with tempfile.TemporaryDirectory(prefix="pollbench-") as work:
            text = config_text(n, endpoint="http://127.0.0.1:9", admin="http://127.0.0.1:9",
                               state_path=str(Path(work) / "w.db"), interval="60s")
            cfg = parse_config(text, os.environ)
            start = datetime.now(timezone.utc).replace(second=10, microsecond=0)
            clock = Clock(start)
            app = await App.create(cfg, serve_http=False, schedule=False, clock=clock)
            rt = app.runtime
            targets = [t.name for t in cfg.targets]
            try:
                gc.freeze()  # as the daemon does once started
                cpu, last = [], []
                for k in range(rounds + 2):  # the first two: warm-up
                    now = start + (timedelta(seconds=k % 40 + 1) if scenario == "same_answer" else timedelta(minutes=k))
                    clock.at = now
                    data = answer(n, now)
                    gc.collect()
                    t0 = time.process_time()
                    rt.board.source_ok("cw", data, now)
                    for t in targets:
                        t1 = time.process_time()
                        await rt.evaluate(t, now)
                    t2 = time.process_time()
                    cpu.append(t2 - t0)
                    last.append(t2 - t1)
                cpu, last = cpu[2:], last[2:]
                out[scenario] = {"cpu_s": cpu, "median": statistics.median(cpu), "min": min(cpu), "max": max(cpu),
                                 "last_target_median": statistics.median(last)}
            finally:
                gc.unfreeze()
                await app.stop()
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json", help="write every sample to this file")
    args = p.parse_args()
    res = asyncio.run(run(args.rules, args.rounds))
    for scenario in ("same_answer", "new_minute"):
        s = res[scenario]
        print(f"{args.rules} rules, {scenario}: {s['median'] * 1000:.1f} [{s['min'] * 1000:.1f}–{s['max'] * 1000:.1f}] "
              f"ms CPU a poll beyond the fetch; the last target's judging alone {s['last_target_median'] * 1000:.1f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
