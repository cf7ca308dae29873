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

Spreading (`plan`, over every target at once): the leases nobody holds (free, or stale) are dealt out one at a
time, in the targets' order, each to the least loaded live watchdog (ties broken by its id), counting each
lease dealt; every watchdog deals alike from what it read, and takes only what falls to it, so a dead watchdog's
leases are all taken in the first round that finds them stale, shared between the others, with no two trying
for one. A lease dealt to a watchdog that does not take it (it died since its heartbeat was read, or it does
not know the target: a reload not yet made everywhere) is taken by whoever comes first once it has stood
unchanged for another lease. A watchdog holding more than its fair share (targets over live watchdogs, rounded up) while another
holds at least two fewer **hands** a lease over to the least loaded: one conditional write names the other as
holder (`handed_by`: not yet taken up) and the other takes it up (a take at the next epoch) at its next look.
The table therefore names exactly one holder of each lease at every moment, through handovers and takeovers
alike; the giver stops acting before its write goes out, so for the moment between that write and the
taker's, nobody acts for the target (never two). A lease is handed over only for a target with no incident
open: a takeover is a recovery, not a rebalancing.

Who is live: a watchdog whose heartbeat (written at the end of each of its rounds) moved within a lease on
this watchdog's clock, unless a lease the table names it the holder of has stood unchanged for a lease: a live
watchdog renews every lease it holds at each round, so it died (or restarted under its id) since its last
heartbeat was read; the leases, read at every look, say so first, and as soon as the first of its leases is
stale. Its load is how many leases the table names it the holder of. Liveness only deals leases out; safety
never rests on it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseItem:
    """A target's lease as the table has it. `holder` None: released at a clean stop with no other watchdog
    live (nobody holds it). `handed_by`: handed to `holder` by that watchdog, not yet taken up by it."""

    holder: str | None
    epoch: int
    version: str
    handed_by: str | None = None


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
class Handover:
    """Name `to` the holder, on condition that holder and epoch are mine; this watchdog stops acting before the
    write goes out, and `to` takes it up at its next look."""

    epoch: int
    to: str


@dataclass(frozen=True)
class Release:
    """Let go of a lease at a clean stop when no other watchdog is live: holder cleared, on condition that holder
    and epoch are mine."""

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


Decision = Renew | Take | Handover | Release | Lost | Wait


def live(me: str, beats: Mapping[str, Watch], items: Mapping[str, LeaseItem], watches: Mapping[str, Watch],
         now: float, lease: float) -> tuple[dict[str, int], dict[str, Watch]]:
    """The other live watchdogs with their loads (module docstring), and the heartbeat watches to keep.

    `beats`: this watchdog's watches of their heartbeats; `items` and `watches`: the leases as last read and its
    watches of them. A watchdog found dead by a stale lease stays dead until its heartbeat moves again: its
    watch is kept as unchanged for a lease, so that once its leases are taken (and nothing names it any more)
    no lease is dealt or handed to it."""
    kept = dict(beats)
    for target, item in items.items():
        holder = item.holder
        if holder is not None and holder in kept and target in watches and watches[target].stale(now, lease):
            kept[holder] = Watch(kept[holder].version, min(kept[holder].since, now - lease))
    loads = {peer: 0 for peer, beat in kept.items() if peer != me and not beat.stale(now, lease)}
    for item in items.values():
        if item.holder in loads:
            loads[item.holder] += 1
    return loads, kept


def least_loaded(load: Mapping[str, int], but: str | None = None) -> str | None:
    """Who takes a lease: the least loaded (ties to the smaller id), `but` left out; None when there is nobody."""
    return min((p for p in load if p != but), key=lambda peer: (load[peer], peer), default=None)


def farewell(held: Mapping[str, int], others: Mapping[str, int]) -> dict[str, Handover | Release]:
    """At a clean stop: each lease held (target -> its epoch) handed over, in the targets' order, to the least
    loaded other live watchdog, counting each as it is handed; released when no other is live."""
    load, out = dict(others), {}
    for target, epoch in sorted(held.items()):
        to = least_loaded(load)
        out[target] = Release(epoch) if to is None else Handover(epoch, to)
        if to is not None:
            load[to] += 1
    return out


def plan(me: str, targets: Sequence[str], items: Mapping[str, LeaseItem], watches: Mapping[str, Watch],
         held: Mapping[str, Held], now: float, lease: float, others: Mapping[str, int],
         busy: Collection[str] = ()) -> dict[str, Decision]:
    """What to write for every target's lease at `now`.

    `items`: the leases as just read (a target missing: no item yet); `watches`: this watchdog's watch of each,
    `observe`d with that read; `held`: the leases it believes it holds; `others`: the other live watchdogs and
    their loads (`live`); `busy`: the targets with an incident open (never handed over to even the load)."""
    out: dict[str, Decision] = {}
    dealt: list[str] = []
    for target in targets:
        item, mine = items.get(target), held.get(target)
        if mine is not None and (item is None or item.holder != me or item.epoch != mine.epoch):
            now_held = "nobody" if item is None or item.holder is None else f"{item.holder} (epoch {item.epoch})"
            out[target] = Lost(f"held by {now_held}, not by {me} at epoch {mine.epoch}")
        elif item is not None and item.holder == me and mine is not None:
            out[target] = Renew(item.epoch)
        elif item is not None and item.holder == me and item.handed_by is not None:
            out[target] = Take(item.epoch + 1, item.version)  # handed to me: taken up at once
        elif item is None or item.holder is None or watches[target].stale(now, lease):
            # Free, or unrenewed for a lease: its holder (me in another life, after a restart under the same
            # id, included) acts for it no more.
            dealt.append(target)
        else:
            handed = f", handed over by {item.handed_by}" if item.handed_by else ""
            out[target] = Wait(f"held by {item.holder} (epoch {item.epoch}{handed})")
    load = {**others, me: sum(1 for d in out.values() if isinstance(d, (Renew, Take)))}
    for target in dealt:
        taker = least_loaded(load) or me
        load[taker] += 1
        item = items.get(target)
        if taker != me and not watches[target].stale(now, 2 * lease):
            was = "free" if item is None or item.holder is None else f"{item.holder} stopped renewing"
            out[target] = Wait(f"{was}; {taker} is the least loaded and takes it")
        else:  # dealt to me; or dealt to another that has not taken it for a lease more: whoever comes first
            out[target] = Take(item.epoch + 1 if item else 1, item.version if item else None)
    fair = math.ceil(len(targets) / len(load))
    for target in sorted((t for t, d in out.items() if isinstance(d, Renew) and t not in busy), reverse=True):
        to = least_loaded(load, but=me)
        if to is None or load[me] <= fair or load[me] - load[to] < 2:
            break  # even enough: never a lease passed back and forth between two that differ by one
        out[target] = Handover(items[target].epoch, to)
        load[me], load[to] = load[me] - 1, load[to] + 1
    return out
