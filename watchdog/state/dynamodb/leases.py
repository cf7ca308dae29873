"""One watchdog's leases on the shared table (SPEC 4.5): the Peering (watchdog/state/peering.py) of the `dynamodb`
backend.

A round reads every target's lease and every peer's heartbeat, decides each lease with core/lease.py, writes
each decision on its condition (table.py), then writes this watchdog's own heartbeat with the count it now
holds. Between rounds, `may_act` answers from what the last landed write said, on this watchdog's own monotonic
clock (handed in: the tests drive it): it turns False once the time since the last renewal began passes the
lease minus the margin, whether or not a round could run since (a partition, a SIGSTOP). A write refused on its
fence (`fenced`) gives the lease up at once. What a round changed comes back as `lease_acquired` and
`lease_lost` for the runtime to log, count and act on (a takeover's recovery).

DynamoDB requests per round: one Query of the heartbeats, one consistent Query of every lease, one conditional
UpdateItem per lease held, taken or released, and one PutItem of the heartbeat.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from watchdog.core.lease import Held, Lost, Peers, Release, Take, Wait, Watch, decide, may_act, observe
from watchdog.state.dynamodb.table import Table
from watchdog.state.peering import Change


class LeaseKeeper:
    def __init__(self, table: Table, me: str, targets: Sequence[str], lease: float, margin: float,
                 clock: Callable[[], float]):
        self._table, self.me, self._targets = table, me, list(targets)
        self._lease, self._margin, self._clock = lease, margin, clock
        self.every: timedelta | None = timedelta(seconds=lease / 3)  # two renewals may fail before it self-fences
        # Between rounds the leases are only read (one Query), so that a dead holder's last version is seen soon
        # after it was written and its lease taken soon after it goes stale: a takeover a lease and at most two
        # twentieths of one after the last renewal, not a lease and two rounds.
        self.look_every: timedelta | None = timedelta(seconds=lease / 20)
        self._others: dict[str, int] = {}  # the other live watchdogs' loads at the last round
        self._held: dict[str, Held] = {}
        self._holders: dict[str, str | None] = {}
        self._watches: dict[str, Watch] = {}
        self._beats: dict[str, Watch] = {}
        self._fenced: dict[str, str] = {}  # given up since the last round, and why: reported by the next
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

    def holder(self, target: str) -> str | None:
        return self.me if self.may_act(target) else self._holders.get(target)

    def fence(self, target: str) -> tuple[str, str, int] | None:
        held = self._held.get(target)
        return (target, self.me, held.epoch) if held else None

    def fenced(self, target: str) -> None:
        if self._held.pop(target, None) is not None:
            self._fenced[target] = "a write on its fence was refused: the lease is another's"

    def retarget(self, targets: Sequence[str]) -> None:
        self._targets = list(targets)

    async def release_all(self) -> list[str]:
        """At a clean stop, after the last write: every lease held given up, so that a standby takes each at
        once instead of a lease later (a rolling upgrade, a reboot). A lease whose release fails is left to
        expire; this watchdog acts for nothing from the start of the call."""
        held, self._held = self._held, {}
        released = []
        for target, h in held.items():
            try:
                if await self._table.write_lease(target, self.me, Release(h.epoch), self._version()):
                    released.append(target)
            except Exception:  # unreachable table: the lease expires on its own
                continue
        return released

    async def look(self) -> bool:
        """Read every lease (one Query) and watch their versions: True when core/lease.py would take one now
        (held by another and unchanged for a lease on this clock, or free and within this watchdog's share),
        judged with the peers' loads of the last round: a round now would take it."""
        now = self._clock()
        items = await self._table.leases()
        peers = Peers({**self._others, self.me: len(self._held)})
        takeable = False
        for target in self._targets:
            item = items.get(target)
            self._holders[target] = item.holder if item else None
            self._watches[target] = observe(self._watches.get(target), item.version if item else None, now)
            if target not in self._held:
                d = decide(self.me, item, self._watches[target], None, now, self._lease, peers, len(self._targets),
                           False)
                takeable = takeable or isinstance(d, Take)
        return takeable

    @property
    def held(self) -> list[str]:
        return sorted(self._held)

    async def round(self, busy: Collection[str] = ()) -> list[Change]:
        """One round over every target's lease (`busy`: targets with an incident open, never given away)."""
        changes = [Change("lease_lost", t, why) for t, why in self._fenced.items()]
        self._fenced.clear()
        now = self._clock()
        others: dict[str, int] = {}
        for peer, (version, load) in (await self._table.peers()).items():
            self._beats[peer] = observe(self._beats.get(peer), version, now)
            if peer != self.me and not self._beats[peer].stale(now, self._lease):
                others[peer] = load
        self._others = others
        items = await self._table.leases()
        for target in self._targets:
            item = items.get(target)
            self._holders[target] = item.holder if item else None
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
                    took = item.holder if item is not None and item.holder != self.me else None
                    changes.append(Change("lease_acquired", target, f"epoch {d.epoch}" + (
                        f", taken over from {took} (its lease unrenewed for {self._lease:g}s)" if took else ""),
                        took))
                if not isinstance(d, Release):
                    self._held[target] = Held(d.epoch, version, now)
                    self._holders[target] = self.me
                else:
                    self._holders[target] = None
            elif target in self._held:  # a renewal refused: somebody else holds it now
                del self._held[target]
                changes.append(Change("lease_lost", target, "its renewal was refused: the lease moved"))
        await self._table.beat(self.me, self._version(), len(self._held))
        return changes
