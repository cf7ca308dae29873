"""`python -m bench.shim run -c CONFIG`: the daemon (watchdog.cli.main.main, unchanged) with each poll timed.

The scheduler's job `Runtime.poll` (one source's poll plus the evaluation of every
target that reads it) is wrapped to append one line per poll to the file named
by BENCH_POLL_LOG: `<monotonic start> <monotonic end> <thread CPU seconds>`.
time.monotonic() is CLOCK_MONOTONIC, the same clock in the bench process, so
these instants line up with the proxy's. Two clock reads and one write per poll
are all it adds.

Since issue 22 a CloudWatch source is polled on its rules' periods (a 60 s query
once a minute, `settle` after its bucket closes) and a poll reads only the queries
due. The benchmark measures a poll of all N queries, several times a minute, as it
always has: with BENCH_EVERY_INTERVAL set, the source's ticks are `interval` apart
and every query is due at each (what a read at a period boundary does, when every
query is due). A daemon without period-aligned reads (the commit before) is run as
it is.

BENCH_GC_LOG names a file (`.<pid>` added) where each poll appends the garbage collector's time so far, per generation
(`<gen0 s> <gen1 s> <gen2 s> <full collections>`, from `gc.callbacks`), to see what the collector costs a run.
BENCH_GC tries a collector setting on the daemon without changing it: `thresholds:A,B,C` (gc.set_threshold),
or `freeze-after-poll` (gc.freeze() after every poll).
BENCH_PROFILE names a file (`.<pid>` added) where cProfile's stats of the polls alone (every coroutine the loop runs
while a poll is under way, the main thread; the first two polls, start-up's one-time work, left out) are dumped at
exit: `python -m pstats FILE.<pid>`.

BENCH_PHASES names a file (`.<pid>` added) where each poll appends its thread CPU by phase, in seconds:
`<request> <scan> <source_ok> <board.evaluate> <observe> <other> <kernel>` (the request path beyond the scan;
the answers' scan; storing them; judging the rules; the executors; the rest of the poll, the rule gauges among
it; and apart, how much of the whole was the kernel's, from getrusage: sockets, mostly).
Each phase's clock reads cost about a microsecond, a few per call of 500 queries and per target, not per rule.

The daemon's CloudWatch client parses GetMetricData's answers with
watchdog/sources/cloudwatch_parse.py itself now; BENCH_FAST_PARSE changes nothing.
"""

from __future__ import annotations

import atexit
import cProfile
import gc
import os
import resource
import sys
import time
from datetime import datetime


def main() -> int:
    from watchdog.runtime import runtime as rtmod
    from watchdog.cli.main import main as cli_main

    gc_log = os.environ.get("BENCH_GC_LOG")
    gc_log = gc_log and f"{gc_log}.{os.getpid()}"  # one file per daemon run
    spent = gc_time() if gc_log else None
    setting = os.environ.get("BENCH_GC", "")
    if setting.startswith("thresholds:"):
        gc.set_threshold(*map(int, setting.split(":", 1)[1].split(",")))
    profile_path = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        atexit.register(profiler.dump_stats, f"{profile_path}.{os.getpid()}")
    path = os.environ.get("BENCH_POLL_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        original = rtmod.Runtime.poll
        seen = [0]

        async def poll(self: rtmod.Runtime, name: str, due: datetime) -> None:
            t0, c0 = time.monotonic(), time.thread_time()
            seen[0] += 1
            profiling = profiler is not None and seen[0] > 2
            if profiling:
                profiler.enable()
            try:
                await original(self, name, due)
            finally:
                if profiling:
                    profiler.disable()
                t1, c1 = time.monotonic(), time.thread_time()
                os.write(fd, f"{t0:.6f} {t1:.6f} {c1 - c0:.6f}\n".encode())
                if setting == "freeze-after-poll":
                    gc.freeze()
                if spent is not None and gc_log:
                    with open(gc_log, "a") as fh:
                        fh.write(" ".join(f"{v:.6f}" for v in spent[:3]) + f" {int(spent[3])}\n")

        rtmod.Runtime.poll = poll  # type: ignore[method-assign]
    phases_log = os.environ.get("BENCH_PHASES")
    if phases_log:
        phases(f"{phases_log}.{os.getpid()}")
    if os.environ.get("BENCH_EVERY_INTERVAL"):
        every_interval()
    return cli_main()


PHASES = ("request", "scan", "source_ok", "evaluate", "observe")


def phases(path: str) -> None:
    """Thread CPU per phase of each poll (see the module's docstring), written when the poll ends."""
    from watchdog.core import signals
    from watchdog.runtime import executor, runtime as rtmod
    from watchdog.sources import cloudwatch, cloudwatch_parse

    spent = dict.fromkeys(PHASES, 0.0)

    def timed(owner: object, attr: str, phase: str, is_async: bool) -> None:
        original = getattr(owner, attr)
        if is_async:
            async def wrapped(*a: object, **k: object) -> object:
                c0 = time.thread_time()
                try:
                    return await original(*a, **k)
                finally:
                    spent[phase] += time.thread_time() - c0
        else:
            def wrapped(*a: object, **k: object) -> object:  # type: ignore[misc]
                c0 = time.thread_time()
                try:
                    return original(*a, **k)
                finally:
                    spent[phase] += time.thread_time() - c0
        setattr(owner, attr, wrapped)

    timed(cloudwatch.CloudWatch, "_page", "request", True)  # the scan is taken out of it below
    timed(cloudwatch_parse, "scan", "scan", False)
    timed(signals.SignalBoard, "source_ok", "source_ok", False)
    timed(signals.SignalBoard, "evaluate", "evaluate", False)
    timed(executor.TargetExecutor, "observe", "observe", True)
    original = rtmod.Runtime.poll

    async def poll(self: rtmod.Runtime, name: str, due: datetime) -> None:
        for k in spent:
            spent[k] = 0.0
        c0, s0 = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        await original(self, name, due)
        total = time.thread_time() - c0
        kernel = resource.getrusage(resource.RUSAGE_THREAD).ru_stime - s0
        spent["request"] -= spent["scan"]
        other = total - sum(spent.values())
        with open(path, "a") as fh:
            fh.write(" ".join(f"{spent[k]:.6f}" for k in PHASES) + f" {other:.6f} {kernel:.6f}\n")

    rtmod.Runtime.poll = poll  # type: ignore[method-assign]


def gc_time() -> list[float]:
    """The collector's CPU time per generation and its count of full collections, kept up to date."""
    spent = [0.0, 0.0, 0.0, 0.0]
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.thread_time()
        else:
            spent[info["generation"]] += time.thread_time() - began[0]
            spent[3] += info["generation"] == 2

    gc.callbacks.append(timed)
    return spent


def every_interval() -> None:
    """Ticks `interval` apart, every query due at each (see the module's docstring); nothing on an older daemon."""
    try:
        from watchdog.lifecycle import app
        from watchdog.sources.periodic import ReadPlan
    except ImportError:
        return

    def fire(self: app.DueTrigger, previous: datetime | None, now: datetime) -> datetime:
        return self.start if previous is None else previous + self.pace.interval

    app.DueTrigger.get_next_fire_time = fire  # type: ignore[method-assign]
    app.catch_up = lambda pace, previous, start, now: now  # each run's tick is when it fires
    ReadPlan.due = lambda self, now, hot: self.everything  # type: ignore[method-assign]


if __name__ == "__main__":
    sys.exit(main())
