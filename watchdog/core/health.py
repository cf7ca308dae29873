"""What /healthz and the systemd watchdog judge: is the loop alive and deciding? Pure: times are given.

"Deciding" means every source's polls keep coming round. Each try of each call a poll makes must start
within `attempt_deadline` of the one before (one try's timeout and the longest backoff, with slack);
the daemon cuts a poll off there and counts it failed. So in a working daemon a source makes progress
(a try starting, an evaluation ending) at least every deadline + interval, whatever the source does and
however many pages it reads: a CloudWatch that answers 500 at once and one that hangs are both a failed
poll, reported as a source down and as blind targets, never as an unhealthy watchdog (a restart would
not bring CloudWatch back). Longer without progress means the scheduler, the evaluation or the loop has
stopped: that is what a restart fixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.config.base import RetrySchedule
from watchdog.config.types import format_duration

SLACK = timedelta(seconds=2)  # reading and parsing an answer after its try, and the loop's own delays


def attempt_deadline(timeout: timedelta, retry: RetrySchedule) -> timedelta:
    """The longest a correct poll goes without starting a try: one try at `timeout`, then a backoff."""
    return timeout + retry.max_backoff + SLACK


@dataclass(frozen=True)
class PollPace:
    source: str
    interval: timedelta
    deadline: timedelta
    last_progress: datetime  # a try of its poll started, or its evaluation ended (or the daemon started)

    @property
    def limit(self) -> timedelta:
        # One interval of scheduling slack on top: a poll ends, the next one starts an interval later.
        return self.deadline + 2 * self.interval


def judge(now: datetime, scheduler_running: bool, paces: Iterable[PollPace]) -> tuple[bool, str]:
    if not scheduler_running:
        return False, "scheduler not running"
    late = [p for p in paces if now - p.last_progress > p.limit]
    if late:
        p = max(late, key=lambda p: now - p.last_progress)
        return False, (f"source {p.source}: no poll for {format_duration(_whole(now - p.last_progress))} "
                       f"(every {format_duration(p.interval)}, each try within {format_duration(p.deadline)}): "
                       "the scheduler, the evaluation or the event loop has stopped")
    return True, "polling and evaluating on schedule"


def _whole(td: timedelta) -> timedelta:
    return timedelta(seconds=int(td.total_seconds()))
