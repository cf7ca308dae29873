"""One watchdog's leases on the shared table (SPEC 4.5; issue 24, not wired to the executor yet).

A round reads every target's lease and every peer's heartbeat, decides each lease with core/lease.py, writes
each decision on its condition (state/dynamodb/table.py), then writes this watchdog's own heartbeat with the
count it now holds. Between rounds, `may_act` answers from what the last landed write said, on this watchdog's
own monotonic clock (the clock is handed in: the tests drive it). What a round changed comes back as the log's
`lease_acquired` and `lease_lost`, for the caller to log, count and turn into the executor's hold.

DynamoDB requests per round: one Query of the heartbeats, one consistent GetItem per target, one conditional
UpdateItem per lease held, taken or released, and one PutItem of the heartbeat.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from watchdog.core.lease import Held, Lost, Peers, Release, Take, Wait, Watch, decide, may_act, observe
from watchdog.state.dynamodb.table import Table


@dataclass(frozen=True)
class Change:
    """A lease this round took or lost: `lease_acquired` or `lease_lost`, and why."""

    event: str
    target: str
    why: str


class LeaseKeeper:
    def __init__(self, table: Table, me: str, targets: Sequence[str], lease: float, margin: float,
                 clock: Callable[[], float]):
        self._table, self.me, self._targets = table, me, list(targets)
        self._lease, self._margin, self._clock = lease, margin, clock
        self._held: dict[str, Held] = {}
        self._watches: dict[str, Watch] = {}
        self._beats: dict[str, Watch] = {}
        self._stamp = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)

    def _version(self) -> str:
        """A version no other write makes: this process's stamp and a counter."""
        return f"{self.me}/{self._stamp}/{next(self._counter)}"

    def may_act(self, target: str) -> bool:
        """Whether this watchdog may act for `target` now (checked again right before each action)."""
        return may_act(self._held.get(target), self._clock(), self._lease, self._margin)

    def epoch(self, target: str) -> int | None:
        """The epoch it holds `target`'s lease at: what an intent's fence names."""
        held = self._held.get(target)
        return held.epoch if held else None

    @property
    def held(self) -> list[str]:
        return sorted(self._held)

    async def round(self, busy: Collection[str] = ()) -> list[Change]:
        """One round over every target's lease (`busy`: targets with an incident open, never given away)."""
        now = self._clock()
        others: dict[str, int] = {}
        for peer, (version, load) in (await self._table.peers()).items():
            self._beats[peer] = observe(self._beats.get(peer), version, now)
            if peer != self.me and not self._beats[peer].stale(now, self._lease):
                others[peer] = load
        changes: list[Change] = []
        for target in self._targets:
            item = await self._table.lease(target)
            self._watches[target] = observe(self._watches.get(target), item.version if item else None, now)
            d = decide(self.me, item, self._watches[target], self._held.get(target), now, self._lease,
                       Peers({**others, self.me: len(self._held)}), len(self._targets), target in busy)
            if isinstance(d, Wait):
                continue
            if isinstance(d, Lost):
                del self._held[target]
                changes.append(Change("lease_lost", target, d.why))
                continue
            if isinstance(d, Release):
                del self._held[target]  # it stops acting before the write goes out
            version = self._version()
            if await self._table.write_lease(target, self.me, d, version):
                if isinstance(d, Take):
                    changes.append(Change("lease_acquired", target, f"epoch {d.epoch}"))
                if not isinstance(d, Release):
                    self._held[target] = Held(d.epoch, version, now)
            elif target in self._held:  # a renewal refused: somebody else holds it now
                del self._held[target]
                changes.append(Change("lease_lost", target, "its renewal was refused: the lease moved"))
        await self._table.beat(self.me, self._version(), len(self._held))
        return changes
