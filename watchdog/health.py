"""What /healthz and the systemd watchdog judge: is the loop alive and deciding? Pure: times are given.

"Deciding" means every source's poll keeps coming round: each poll starts on schedule and ends within its
deadline (`poll_deadline`: every call's tries and backoffs; the daemon cuts a poll off there and counts it
failed). So in a working daemon a source makes progress (a poll starting or ending) at least every
deadline + interval, whatever the source does: a CloudWatch that answers 500 at once and one that hangs
are both a failed poll, reported as a source down and as blind targets, never as an unhealthy watchdog
(a restart would not bring CloudWatch back). Longer without progress means the scheduler or the loop has
stopped: that is what a restart fixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.config.base import RetrySchedule
from watchdog.config.types import format_duration


def poll_deadline(timeout: timedelta, retry: RetrySchedule, calls: int) -> timedelta:
    """The longest a correct poll takes: each call's tries at `timeout` and the backoffs between them."""
    per_call = timeout * retry.attempts + retry.max_backoff * (retry.attempts - 1)
    return per_call * max(calls, 1)


@dataclass(frozen=True)
class PollPace:
    source: str
    interval: timedelta
    deadline: timedelta
    last_progress: datetime  # a poll of it started or ended (or the daemon started)

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
                       f"(every {format_duration(p.interval)}, each within {format_duration(p.deadline)}): "
                       "the scheduler or the event loop has stopped")
    return True, "polling and evaluating on schedule"


def _whole(td: timedelta) -> timedelta:
    return timedelta(seconds=int(td.total_seconds()))
