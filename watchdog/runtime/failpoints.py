"""Named instants where a test can freeze the daemon, to kill it exactly there.

Crash safety is claimed for every instant of a rollback, and two of them are
too short to hit from outside: just after an intent is written but before the
request leaves, and just after the request returned but before its outcome is
written. A third is the `cloudwatch_alarms` source's: messages received from its
queue, not yet recorded (`after_receive`, watchdog/sources/alarm_queue.py). An
armed failpoint logs `failpoint_reached` and then holds that one task forever,
so the test can SIGKILL the process at that exact point. One goes on instead:
`before_request` (the last instant before an action's request, after its intent
and the lease's check of it) holds its task for `PAUSE` seconds and then continues,
long enough for a test to SIGSTOP the process there and wake it later. Nothing
is armed unless WATCHDOG_TEST_FAILPOINTS names it; the daemon warns at start
when one is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

log = structlog.get_logger("watchdog.runtime.failpoints")

KNOWN = frozenset({"after_intent", "before_request", "before_outcome", "after_receive"})
GOES_ON = frozenset({"before_request"})
PAUSE = 1.0


class Failpoints:
    def __init__(self, armed: Iterable[str] = ()):
        self.armed = frozenset(armed)

    async def reach(self, name: str, **where: Any) -> None:
        if name not in self.armed:
            return
        log.critical("failpoint_reached", failpoint=name, **where)
        if name in GOES_ON:
            await asyncio.sleep(PAUSE)
            return
        await asyncio.Event().wait()  # held until the test kills the process
