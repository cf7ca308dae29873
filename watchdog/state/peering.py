"""Who may act for each target: this watchdog alone (`Sole`: the SQLite file, the in-memory state), or the holder
of the target's lease on a shared table (watchdog/state/dynamodb/leases.py, SPEC 4.5). An opened backend hands
the runtime one of these as its `peers`; nothing else of the runtime knows whether other watchdogs exist.

The runtime asks `may_act` before it lets a target's machine decide (a standby's machine is given no input, as
kopf's peering turns an outranked peer into a pause) and again right before each action's request goes out;
it runs `round` every `every` when that is set, and turns the changes it returns into the log's
`lease_acquired` / `lease_lost` / `lease_handed_over`, the metrics, and a takeover's recovery, after which it
says `settled`: a lease just taken lets its holder act only from then on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol


@dataclass(frozen=True)
class Change:
    """A lease a round took, lost or handed over: `lease_acquired`, `lease_lost` or `lease_handed_over`, and why."""

    event: str
    target: str
    why: str
    took_from: str | None = None  # a lease acquired from a holder that stopped renewing it: a takeover


class Peering(Protocol):
    @property
    def me(self) -> str: ...  # this watchdog's instance id

    @property
    def every(self) -> timedelta | None: ...  # how often `round` runs; None: never (a sole watchdog)

    @property
    def look_every(self) -> timedelta | None: ...  # how often `look` runs; None: never

    async def look(self) -> bool: ...  # read the leases only: True when a round now would take one

    def may_act(self, target: str) -> bool: ...

    def holder(self, target: str) -> str | None: ...  # who holds the lease, as last read; None: nobody

    def fence(self, target: str) -> tuple[str, str, int] | None: ...  # (target, me, epoch) an intent is written on

    def fenced(self, target: str) -> None: ...  # a write on the fence was refused: the lease is gone, act no more

    def settled(self, target: str) -> None: ...  # a lease taken: its target resumed, so it may act for it now

    async def round(self, busy: Collection[str]) -> list[Change]: ...

    def retarget(self, targets: Sequence[str]) -> None: ...  # a reload's targets


class Sole:
    """One watchdog, one state: it may always act, and there is nothing to take or lose."""

    every = None
    look_every = None

    def __init__(self, me: str):
        self.me = me

    def may_act(self, target: str) -> bool:
        return True

    def holder(self, target: str) -> str | None:
        return self.me

    def fence(self, target: str) -> tuple[str, str, int] | None:
        return None

    def fenced(self, target: str) -> None:
        return None

    def settled(self, target: str) -> None:
        return None

    async def round(self, busy: Collection[str]) -> list[Change]:
        return []

    async def look(self) -> bool:
        return False

    def retarget(self, targets: Sequence[str]) -> None:
        return None
