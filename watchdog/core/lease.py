"""Who may act for a target when several watchdogs share one state (SPEC 4.5): the lease, decided purely.

Each target has one lease item in the shared table: its holder, an epoch that grows with every takeover, and a
version that changes with every renewal. Nothing here reads the table or a clock: the caller hands in what it
read and its own monotonic time, and gets back what to write (conditionally) and whether it may act.

Safety rests on two rules that need no clock sync, only clocks that run at about the same rate:
- **A standby takes a lease only after watching its version stay unchanged for the whole lease on its own
  clock** (`Watch`). A holder that renews at all keeps changing the version, so a live holder is never taken
  from; one that stopped (dead, paused, cut off) is, one lease after the standby last saw it move.
- **A holder stops acting on its own** once `lease - margin` has passed since it *sent* its last successful
  renewal (`may_act`): the renewal was written after it was sent, so the standby's watch started later still,
  and its takeover comes at least `margin` after the old holder stopped. `margin` covers the clocks' drift over
  one lease and the time an action's request takes to leave.
The epoch is the fence behind both: every action intent is written in one transaction with a condition on
holder and epoch, so a deposed holder that somehow kept going cannot record an intent, and so never acts.

Spreading: a lease nobody holds (free, or stale) is taken by the least loaded live watchdog, ties broken by its
id, so that several watchdogs share many targets; one holding more than its fair share (targets over live
watchdogs, rounded up) lets go of a lease it holds for a target with no incident open, and the least loaded
takes it (only when the least loaded holds at least two fewer: never back and forth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseItem:
    """A target's lease as the table has it. `holder` None: released (nobody holds it)."""

    holder: str | None
    epoch: int
    version: str


@dataclass(frozen=True)
class Watch:
    """What this watchdog has seen of one item (a lease, or a peer's heartbeat): its version, and since when on
    this watchdog's own monotonic clock it has seen that version unchanged (None: the item does not exist)."""

    version: str | None
    since: float

    def stale(self, now: float, lease: float) -> bool:
        return now - self.since >= lease


def observe(watch: Watch | None, version: str | None, now: float) -> Watch:
    """The watch after reading `version` at `now`: it starts again whenever the version moved."""
    if watch is None or watch.version != version:
        return Watch(version, now)
    return watch


@dataclass(frozen=True)
class Held:
    """This watchdog's own hold of a lease: the epoch it holds, the version it last wrote, and when (on its own
    clock) it sent the write that landed last (taking it or renewing it)."""

    epoch: int
    version: str
    sent_at: float


def may_act(held: Held | None, now: float, lease: float, margin: float) -> bool:
    """Whether this watchdog may act for the target now: it holds the lease, and its last landed renewal was
    sent less than `lease - margin` ago. Checked again right before each action's request goes out."""
    return held is not None and now - held.sent_at < lease - margin


@dataclass(frozen=True)
class Renew:
    """Write a new version, on condition that holder is me and epoch is `epoch`."""

    epoch: int


@dataclass(frozen=True)
class Take:
    """Take the lease at `epoch` (the old one plus one), on condition that its version is still `expected`
    (None: that the item does not exist)."""

    epoch: int
    expected: str | None


@dataclass(frozen=True)
class Release:
    """Let go of a lease held beyond the fair share: holder cleared, on condition that holder and epoch are mine."""

    epoch: int


@dataclass(frozen=True)
class Lost:
    """This watchdog believed it held the lease, and the table says otherwise (taken over while it was paused or
    cut off): it stops acting now (the log's `lease_lost`) and watches like any standby."""

    why: str


@dataclass(frozen=True)
class Wait:
    """Nothing to write: somebody else holds it and renews it, or another watchdog should take it."""

    why: str


Decision = Renew | Take | Release | Lost | Wait


@dataclass(frozen=True)
class Peers:
    """The live watchdogs (this one included), each with how many leases it holds: from the peers' heartbeat
    items (written at the end of each of their rounds, with the count they then held), those whose version
    moved within a lease on this watchdog's clock; this watchdog's own count as it is now, so that it changes
    with each lease it takes or lets go of in a round."""

    load: Mapping[str, int]

    def taker(self) -> str:
        """Who takes a lease nobody holds: the least loaded, then the smallest id."""
        return min(self.load, key=lambda peer: (self.load[peer], peer))

    def fair_share(self, targets: int) -> int:
        return math.ceil(targets / max(1, len(self.load)))

    def uneven(self, me: str, targets: int) -> bool:
        """`me` holds more than its fair share, and the least loaded at least two fewer: moving one lease makes
        it more even (never a lease passed back and forth between two that differ by one)."""
        mine = self.load.get(me, 0)
        return mine > self.fair_share(targets) and mine - self.load[self.taker()] >= 2


def decide(me: str, item: LeaseItem | None, watch: Watch, held: Held | None, now: float, lease: float,
           peers: Peers, targets: int, busy: bool) -> Decision:
    """What to write for one target's lease at `now`.

    `item`: the lease as just read (None: no item yet); `watch`: this watchdog's watch of it, `observe`d with
    that read; `held`: this watchdog's hold, if it believes it holds the lease; `peers`: the live watchdogs
    and their loads; `targets`: how many targets there are; `busy`: the target has an incident open (a lease
    for it is never given away to even the load: a takeover is a recovery, not a rebalancing)."""
    if held is not None and (item is None or item.holder != me or item.epoch != held.epoch):
        now_held = "nobody" if item is None or item.holder is None else f"{item.holder} (epoch {item.epoch})"
        return Lost(f"held by {now_held}, not by {me} at epoch {held.epoch}")
    if item is not None and item.holder == me:
        if held is None or held.epoch != item.epoch:
            # The table says mine, but this process does not hold it (a restart under the same id): the epoch
            # written is another life's. Taken again like any stale lease, once it has stayed unchanged.
            return _take_if_stale(me, item, watch, now, lease, peers, targets)
        if not busy and peers.uneven(me, targets):
            return Release(item.epoch)
        return Renew(item.epoch)
    if item is None or item.holder is None:
        if not _may_take(me, peers, targets):
            return Wait(f"free; {peers.taker()} is the least loaded and takes it")
        return Take((item.epoch + 1) if item else 1, item.version if item else None)
    return _take_if_stale(me, item, watch, now, lease, peers, targets)


def _may_take(me: str, peers: Peers, targets: int) -> bool:
    """The least loaded takes a free or stale lease, and so does any watchdog below its fair share: a dead one's
    leases are then all taken in the first round that may take them, not one share a round. Two that try for
    one lease are safe: its conditional write gives it to one."""
    return peers.taker() == me or peers.load.get(me, 0) < peers.fair_share(targets)


def _take_if_stale(me: str, item: LeaseItem, watch: Watch, now: float, lease: float, peers: Peers,
                   targets: int) -> Decision:
    if not watch.stale(now, lease):
        return Wait(f"held by {item.holder} (epoch {item.epoch})")
    if not _may_take(me, peers, targets):
        return Wait(f"{item.holder} stopped renewing; {peers.taker()} is the least loaded and takes it")
    return Take(item.epoch + 1, item.version)
