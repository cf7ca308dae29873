"""`python -m bench.shim run -c CONFIG`: the daemon (watchdog.cli.main.main, unchanged) with each poll timed.

The scheduler's job `Runtime.poll` (one source's poll plus the evaluation of every
target that reads it) is wrapped to append one line per poll to the file named
by BENCH_POLL_LOG: `<monotonic start> <monotonic end> <thread CPU seconds>`.
time.monotonic() is CLOCK_MONOTONIC, the same clock in the bench process, so
these instants line up with the proxy's. Two clock reads and one write per poll
are all it adds.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime


def main() -> int:
    from watchdog.runtime import runtime as rtmod
    from watchdog.cli.main import main as cli_main

    path = os.environ.get("BENCH_POLL_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        original = rtmod.Runtime.poll

        async def poll(self: rtmod.Runtime, name: str, due: datetime) -> None:
            t0, c0 = time.monotonic(), time.thread_time()
            try:
                await original(self, name, due)
            finally:
                t1, c1 = time.monotonic(), time.thread_time()
                os.write(fd, f"{t0:.6f} {t1:.6f} {c1 - c0:.6f}\n".encode())

        rtmod.Runtime.poll = poll  # type: ignore[method-assign]
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
