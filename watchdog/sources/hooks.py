"""What a source may ask of the running watchdog besides its config (SourceDeps.hooks), for a source whose data
arrives between its polls (the `cloudwatch_alarms` source's queue, watchdog/sources/alarm_queue.py):

- `ledger`: the state's durable record of what it was pushed (watchdog/state/storage.py AlarmLedger), so that
  a message is deleted only once what it said would survive a kill -9; None, or one that is not `durable`
  (`run --once`, `validate`, the replay): nothing is consumed from a queue;
- `verifying`: for a target, since when its evidence must be newer than its last level's actions and when
  that is judged (None: no level is being verified or watched), so that a source whose readings say a state
  rather than carry datapoints can give the verification only what is newer than the actions;
- `wake`: ask for a poll of a source now, when something arrived that its next poll should not wait for;
- `reach`: a failpoint (watchdog/runtime/failpoints.py), where a test freezes the daemon to kill it.

Sources are built before the runtime (which is built from them), so `wake` rings a `Doorbell` that the
composition (watchdog/runtime/wiring.py) connects to the runtime's polls once it exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchdog.state.storage import AlarmLedger

# (since, due): evidence counts from `since` (the level's actions ended); `due` is when the verification judges
# it, None while a mitigated incident is watched (then every evaluation judges it).
Verifying = tuple[datetime, datetime | None]


def _not_verifying(target: str) -> Verifying | None:
    return None


def _nobody(source: str) -> None:
    return None


async def _no_failpoint(name: str, **where: Any) -> None:
    return None


class Doorbell:
    """`ring(source)` polls that source now, once the runtime has been connected (`answer`); before, it does
    nothing (the first scheduled poll reads what arrived)."""

    def __init__(self) -> None:
        self._answer: Callable[[str], None] | None = None

    def answer(self, poll: Callable[[str], None]) -> None:
        self._answer = poll

    def ring(self, source: str) -> None:
        if self._answer is not None:
            self._answer(source)


@dataclass(frozen=True)
class SourceHooks:
    ledger: AlarmLedger | None = None
    verifying: Callable[[str], Verifying | None] = _not_verifying
    wake: Callable[[str], None] = _nobody
    reach: Callable[..., Awaitable[None]] = _no_failpoint
