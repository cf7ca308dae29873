"""How long `rollback-watchdog demo` takes: `python -m bench.demo_time` (what `make bench-demo` runs).

The README promises "about one minute" ("Set up"). tests/test_demo.py checks the story the demo tells; its length is a
measure, and measures belong here, not in a test that a loaded machine would fail. Each run is the real
command in a process of its own, as a user starts it; wall time and the CPU the process used are printed
per run, then the median.

    python -m bench.demo_time             # 3 runs
    python -m bench.demo_time --runs 1
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time


def one_run() -> tuple[float, float, float | None]:
    """Wall seconds, CPU seconds of the demo process, and when its story's fault began (seconds in)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "watchdog", "demo"], capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"the demo exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    fault = re.search(r"\[\s*([\d.]+)s\] FAULT", r.stdout)
    return wall, cpu, float(fault.group(1)) if fault else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_time", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="how many demos to time (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    walls = []
    for n in range(1, args.runs + 1):
        wall, cpu, fault = one_run()
        walls.append(wall)
        at = "?" if fault is None else f"{fault:.1f}s"
        print(f"run {n}: {wall:.1f}s wall, {cpu:.1f}s CPU, fault at {at}", flush=True)
    print(f"median: {statistics.median(walls):.1f}s wall over {len(walls)} runs (min {min(walls):.1f}s, "
          f"max {max(walls):.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
