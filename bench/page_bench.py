"""The status page at 50 targets x 10 rules: how large and how long to render (`python -m bench.page_bench`).

Issue 21's budget: under 200 KB and under 50 ms there. A measure, not a test (tests/test_page.py bounds
the size only). The runtime is the one `run` builds (App.create: SQLite state file, dry run, no scheduler,
no HTTP); the board is fed 130 polls of 1-minute readings, so every rule's ring is full (120 values), and
three targets breach in the last polls: three open incidents with their timelines and 30 charts drawn.
Then `render_page` runs --runs times; the same again with every target opened (`?open=` for all 50: the
largest page a reader can ask for).

    python -m bench.page_bench            # 50 runs of each
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from watchdog.config import parse_config
from watchdog.http.page import render_live, render_page
from watchdog.lifecycle.app import App

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
TARGETS, RULES, POLLS, HOT = 50, 10, 130, 3


def config(state: Path) -> dict[str, Any]:
    level = {"level": 1, "name": "flags", "deadline": "1m",
             "actions": [{"type": "http", "method": "PUT", "url": "http://127.0.0.1:9/flags"}]}
    rules = [{"name": f"latency-p99-{j}", "category": "performance", "source": "cloudwatch", "threshold": "> 1500",
              "metric": {"namespace": "Bench", "name": f"Latency{j}", "stat": "Average", "period": "60s"},
              "evaluation_periods": 3, "datapoints_to_alarm": 2} for j in range(RULES)]
    return {"watchdog": {"listen": "127.0.0.1:0", "state_path": str(state), "dry_run": True, "api_token": "bench"},
            "aws": {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
            "sources": [{"name": "cloudwatch", "type": "cloudwatch", "interval": "60s"}],
            "targets": [{"name": f"service-{k:02d}", "rules": rules, "levels": [level]} for k in range(TARGETS)]}


class Clock:
    """The time the last poll was judged at: the page's times and ages as a reader would see them then."""

    def now(self) -> datetime:
        return T0 + timedelta(minutes=POLLS, seconds=10)

    def monotonic(self) -> float:
        return time.monotonic()


async def fed(work: Path) -> App:
    # through JSON: every value its own object, so PyYAML writes no anchors (the config refuses them)
    cfg = parse_config(yaml.safe_dump(json.loads(json.dumps(config(work / "w.db")))), os.environ, "page-bench")
    app = await App.create(cfg, serve_http=False, schedule=False, clock=Clock())
    rt = app.runtime
    hot = {f"service-{k:02d}" for k in range(HOT)}
    for p in range(POLLS):
        now = T0 + timedelta(minutes=p, seconds=10)
        breach = p >= POLLS - 4
        data = {key: [(T0 + timedelta(minutes=p - m), (2400.0 if breach and slot.target in hot else 200.0) + m)
                      for m in range(1, 6)] for key, slot in rt.board.slots.items()}
        rt.board.source_ok("cloudwatch", data, now)
        for t in cfg.targets:
            await rt.evaluate(t.name, now)
    await rt.tasks.settle(("level:", "checks:"))
    await rt.journal.flush()
    return app


def ring_memory(rules: int = 5000, flapping: bool = True) -> str:
    """What full rings cost at `rules` rules: bytes allocated (tracemalloc) by the rings over VALUES_KEPT + 10
    judgements of every rule, each one a change of state when `flapping`, else only the first."""
    import tracemalloc

    from watchdog.core.rules import Bucket, Evaluation, RuleState
    from watchdog.core.ring import TRANSITIONS_KEPT, VALUES_KEPT, RuleRing

    def judgement(k: int) -> Evaluation:
        start = T0 + timedelta(minutes=k)
        buckets = tuple(Bucket(start - timedelta(minutes=m), 200.0 + m, False, m < 3) for m in range(5))
        return Evaluation(RuleState.OK if k % 2 else RuleState.ALARM, 200.0, start, 0, 3, 2, buckets,
                          "0 of 3 datapoints breach > 1500 (alarm at 2)")

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    rings = [RuleRing() for _ in range(rules)]
    for k in range(VALUES_KEPT + 10):
        ev = judgement(k)  # one per poll, shared by the rules as a poll's buckets are not: the ring's own cost
        for ring in rings:
            ring.judged(ev, ev.value_at or T0, RuleState.INSUFFICIENT_DATA if flapping or k == 0 else ev.state)
    used = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    kept = f"{TRANSITIONS_KEPT} transitions" if flapping else "1 transition"
    return (f"rings of {rules} rules, full ({VALUES_KEPT} values, {kept} each): {used / 1e6:.1f} MB "
            f"({used / rules / 1000:.2f} KB a rule)")


def timed(fn: Any, runs: int) -> tuple[list[float], str]:
    times, body = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        body = fn()
        times.append((time.perf_counter() - started) * 1000)
    return times, body


def line(name: str, times: list[float], body: str) -> str:
    raw = body.encode()
    return (f"| {name} | {len(raw) / 1000:.0f} KB | {len(gzip.compress(raw)) / 1000:.0f} KB | "
            f"{statistics.median(times):.1f} ms | {max(times):.1f} ms | {body.count('<svg')} |")


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="page-bench-") as work:
        app = await fed(Path(work))
        rt = app.runtime
        try:
            everyone = [t.name for t in rt.cfg.targets]
            normal = timed(lambda: render_page(rt), runs)
            opened = timed(lambda: render_live(rt, everyone), runs)
        finally:
            await app.stop()
    print(f"{TARGETS} targets x {RULES} rules, {HOT} in an open incident, rings full ({POLLS} polls); "
          f"{runs} renders each; Python {platform.python_version()}, {os.cpu_count()} CPUs ({platform.machine()})")
    print("| page | size | gzip | median | slowest | charts |\n|---|---|---|---|---|---|")
    print(line("`GET /` (3 targets open)", *normal))
    print(line("live part, all 50 opened", *opened))
    print(ring_memory(flapping=False))
    print(ring_memory(flapping=True))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.page_bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    asyncio.run(main(p.parse_args().runs))
