"""One watchdog's leases on the shared table (SPEC 4.5): the Peering (watchdog/state/peering.py) of the `dynamodb`
backend.

A round reads every target's lease and every peer's heartbeat, plans every lease with core/lease.py, writes
each decision on its condition (table.py), then writes this watchdog's own heartbeat with the count it now
holds. Between rounds a look reads the leases alone, and says when a round now would take one (a stale lease,
or one handed over to this watchdog) or find one lost. Between rounds, `may_act` answers from what the last
landed write said, on this watchdog's own monotonic clock (handed in: the tests drive it): it turns False once
the time since the last renewal was sent passes the lease minus the margin, whether or not a round could run
since (a partition, a SIGSTOP). A write refused on its fence (`fenced`) gives the lease up at once. What a
round changed comes back as `lease_acquired`, `lease_lost` and `lease_handed_over` for the runtime to log,
count and act on (a takeover's recovery, a demotion).

DynamoDB requests per round: one Query of the heartbeats, one consistent Query of every lease, one conditional
UpdateItem per lease held, taken or handed over (sent at once), and one PutItem of the heartbeat; per look, one
consistent Query of every lease.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from watchdog.core.lease import (
    Handover, Held, LeaseItem, Lost, Renew, Take, Watch, farewell, live, may_act, observe, plan,
)
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
        self._items: dict[str, LeaseItem] = {}  # the leases as last read
        self._held: dict[str, Held] = {}
        # The holds whose taking the runtime has settled (the incident resumed): only those may act, so that a
        # target just taken is not acted on from what this watchdog knew before the dead holder's state was read.
        self._settled: set[str] = set()
        self._holders: dict[str, str | None] = {}
        self._watches: dict[str, Watch] = {}
        self._beats: dict[str, Watch] = {}
        self._unsaid: list[Change] = []  # what changed since the last round that returned: reported by the next
        self._stamp = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)

    def _version(self) -> str:
        """A version no other write makes: this process's stamp and a counter."""
        return f"{self.me}/{self._stamp}/{next(self._counter)}"

    def may_act(self, target: str) -> bool:
        """Whether this watchdog may act for `target` now (checked again right before each action)."""
        return target in self._settled and may_act(self._held.get(target), self._clock(), self._lease, self._margin)

    def settled(self, target: str) -> None:
        """The runtime has resumed what the lease's last holder left of `target`: it may act for it now."""
        if target in self._held:
            self._settled.add(target)

    def _drop(self, target: str) -> Held | None:
        self._settled.discard(target)
        return self._held.pop(target, None)

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
        if self._drop(target) is not None:
            self._unsaid.append(Change("lease_lost", target,
                                       "a write on its fence was refused: the lease is another's"))

    def retarget(self, targets: Sequence[str]) -> None:
        self._targets = list(targets)
        for target in [t for t in self._held if t not in self._targets]:
            self._drop(target)  # a target gone from the config is acted for no more; its lease expires

    async def release_all(self) -> list[str]:
        """At a clean stop, after the last write: every lease held handed over to the least loaded other live
        watchdog (released when there is none), so that it takes each up at its next look instead of a lease
        later (a rolling upgrade, a reboot). A lease whose write fails is left to expire; this watchdog acts for
        nothing from the start of the call."""
        held, self._held = self._held, {}
        self._settled.clear()
        others, _ = live(self.me, self._beats, self._items, self._watches, self._clock(), self._lease)
        given = []
        for target, d in farewell({t: h.epoch for t, h in held.items()}, others).items():
            try:
                if await self._table.write_lease(target, self.me, d, self._version()):
                    given.append(target)
            except Exception:  # unreachable table: the lease expires on its own
                continue
        return given

    def _read(self, every: dict[str, LeaseItem]) -> tuple[dict[str, LeaseItem], float]:
        """The leases of this watchdog's targets as just read, watched from now: from after the read, never
        before it, since a renewal may land while the Query is on its way and must not be seen as older than it
        was sent (a holder stops acting a lease minus the margin after it sent its last renewal; a standby
        takes a lease after watching it unchanged for a whole lease). A lease of a target this watchdog does not
        know (a reload removed it here) is not its to watch, deal or judge anyone by."""
        now = self._clock()
        items = {t: every[t] for t in self._targets if t in every}
        self._items = items
        self._watches = {t: observe(self._watches.get(t), items[t].version if t in items else None, now)
                         for t in self._targets}
        for target in self._targets:
            self._holders[target] = items[target].holder if target in items else None
        return items, now

    async def look(self) -> bool:
        """Read every lease (one Query) and watch their versions: True when a round now would take one (stale on
        this clock, free and dealt to this watchdog, or handed over to it) or find one it holds lost, judged
        with the heartbeats of the last round."""
        items, now = self._read(await self._table.leases())
        others, self._beats = live(self.me, self._beats, items, self._watches, now, self._lease)
        decisions = plan(self.me, self._targets, items, self._watches, self._held, now, self._lease, others)
        return any(isinstance(d, (Take, Lost)) for d in decisions.values())

    @property
    def held(self) -> list[str]:
        return sorted(self._held)

    async def round(self, busy: Collection[str] = ()) -> list[Change]:
        """One round over every target's lease (`busy`: targets with an incident open, never handed over)."""
        changes, self._unsaid = self._unsaid, []
        try:
            return await self._round(changes, busy)
        except BaseException:
            self._unsaid = changes + self._unsaid  # a round cut short: what it changed is said by the next
            raise

    async def _round(self, changes: list[Change], busy: Collection[str]) -> list[Change]:
        beats = await self._table.peers()
        read = self._clock()  # after the read (see _read)
        for peer, (version, _) in beats.items():
            self._beats[peer] = observe(self._beats.get(peer), version, read)
        items, now = self._read(await self._table.leases())
        others, self._beats = live(self.me, self._beats, items, self._watches, now, self._lease)
        decisions = plan(self.me, self._targets, items, self._watches, self._held, now, self._lease, others, busy)
        for target, d in decisions.items():
            if isinstance(d, Lost):
                self._drop(target)
                changes.append(Change("lease_lost", target, d.why))
            elif isinstance(d, Handover):
                self._drop(target)  # it stops acting before the write goes out
        writes = [(t, d) for t, d in decisions.items() if isinstance(d, (Take, Renew, Handover))]
        # At once, not one after another: each is conditional on its own item, and a renewal that waited behind
        # the others would bring its holder closer to its self-fence.
        results = await asyncio.gather(*(self._write(t, d, items.get(t)) for t, d in writes), return_exceptions=True)
        changes += [c for r in results if isinstance(r, list) for c in r]
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        await self._table.beat(self.me, self._version(), len(self._held))
        return changes

    async def _write(self, target: str, d: Take | Renew | Handover, item: LeaseItem | None) -> list[Change]:
        version, sent = self._version(), self._clock()  # its hold counts from when this write was sent
        if not await self._table.write_lease(target, self.me, d, version):
            if self._drop(target) is not None or isinstance(d, Handover):  # somebody else holds it now
                what = "renewal" if isinstance(d, Renew) else "handover"
                return [Change("lease_lost", target, f"its {what} was refused: the lease moved")]
            return []
        if isinstance(d, Handover):
            self._holders[target] = d.to
            # Reported, so that the runtime stops whatever this watchdog had begun for it since the round began
            return [Change("lease_handed_over", target, f"handed to {d.to} (beyond the fair share)")]
        if isinstance(d, Take):
            self._settled.discard(target)  # a new hold: it acts once the runtime has settled it
        self._held[target] = Held(d.epoch, version, sent)
        self._holders[target] = self.me
        return [self._took(target, item, d)] if isinstance(d, Take) else []

    def _took(self, target: str, item: LeaseItem | None, d: Take) -> Change:
        if item is not None and item.handed_by is not None and item.holder == self.me:
            return Change("lease_acquired", target, f"epoch {d.epoch}, handed over by {item.handed_by}")
        took = item.holder if item is not None and item.holder != self.me else None
        return Change("lease_acquired", target, f"epoch {d.epoch}" + (
            f", taken over from {took} (its lease unrenewed for {self._lease:g}s)" if took else ""), took)
