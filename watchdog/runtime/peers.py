"""The lease rounds of a watchdog that shares its state with others (SPEC 4.5), as the runtime runs them: the
lifecycle's scheduler calls `PeerRounds.round` every `peers.every` (never for a sole watchdog).

A round renews, takes and hands over leases (the backend's Peering decides and writes them); then, on a task of
its own so that the next round's renewals never wait behind it, what changed is settled: it reads what the
other watchdogs wrote (their incidents, pauses, audit records and messages) and turns what changed into what a
person and the daemon need:
- `lease_acquired`: logged at once; the target may not be acted for yet (the Peering says so until it is
  `settled`). Once the shared state has been read since (a read that fails is tried again at the next
  settling), the events of that target a dead holder recorded and had not queued are queued (a message
  already queued, never twice), its open incident is resumed exactly as after a crash
  (watchdog/runtime/recovery.py: an action whose outcome is unknown is repeated only if idempotent), and then
  only it is settled and judged at once on what the last poll read (every watchdog polls every target): a
  breach the dead holder had not acted on is acted on now, not at the next poll;
- `lease_lost`, `lease_handed_over`: the target's level stops and its machine forgets the incident (the holder
  owns it; a handover only happens with no incident open, and an incident opened since the round began goes
  with the lease);
- `watchdog_lease_held{target}` and `watchdog_lease_takeovers_total` follow, and the notification workers look
  again (a message of a target just taken is now this watchdog's to send).
A round that cannot reach the table is logged and counted; it changes nothing, and each lease held stops
acting on its own once its renewal is overdue (state/dynamodb/leases.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from watchdog.notify import Notifier
from watchdog.runtime.executor import TargetExecutor
from watchdog.runtime.pausing import PauseKeeper
from watchdog.runtime.recovery import recover
from watchdog.runtime.reloadgate import ReloadGate
from watchdog.shared.clock import Clock
from watchdog.state.backend import OpenState
from watchdog.state.peering import Change
from watchdog.state.storage import StoreError
from watchdog.support.metrics import Metrics

log = structlog.get_logger("watchdog.runtime.peers")
FLUSH_WAIT = 5.0  # before reading the table again, what this watchdog wrote should be in it


@dataclass(frozen=True)
class RoundParts:
    """What a round reads and moves: the runtime's own parts (`executors` is the runtime's mapping, which a
    reload refills in place)."""

    state: OpenState
    executors: Mapping[str, TargetExecutor]
    metrics: Metrics
    pausing: PauseKeeper
    notifier: Notifier
    clock: Clock
    gate: ReloadGate
    evaluate: Callable[[str, datetime], Awaitable[None]]  # the runtime's: judge a target at a time
    spawn: Callable[[Coroutine[Any, Any, Any], str], object]  # the runtime's tasks: the one place that spawns


class PeerRounds:
    def __init__(self, parts: RoundParts):
        self._rt = parts
        self._one = asyncio.Lock()  # a round and a look's round never interleave their reads and writes
        self._settling = asyncio.Lock()  # what the rounds changed is settled one settling at a time, in order
        self._queued: list[Change] | None = None  # for the settling spawned and not yet started
        self._taken: dict[str, str | None] = {}  # leases taken, not yet resumed: target -> the holder it was taken from

    async def look(self) -> None:
        """Between rounds: read the leases only, and run a round at once when one has become takeable."""
        try:
            takeable = await self._rt.state.peers.look()
        except Exception as exc:  # the next look or round tries again; a round that fails says it
            log.debug("lease_look_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return
        if takeable and not self._one.locked():
            await self.round()

    async def round(self) -> None:
        """The leases written, then what changed settled on a task of its own: the next round's renewals never
        wait behind a takeover's recovery (a renewal that waits brings its holder closer to its self-fence)."""
        async with self._one:
            changes = await self._leases()
        if changes is None:
            return
        if self._queued is not None:  # one settling waits already: it takes these too (never a backlog)
            self._queued += changes
            return
        self._queued = list(changes)
        self._rt.spawn(self._settle(), "lease-settle")

    def _busy(self) -> list[str]:
        """The targets with an incident open, here or (as the shared state last read says) at another watchdog:
        a lease just taken is busy before its recovery has run."""
        rt = self._rt
        open_ = {row["target"] for row in rt.state.store.open_incidents()}
        return [name for name, ex in rt.executors.items() if ex.machine.incident is not None or name in open_]

    async def _leases(self) -> list[Change] | None:
        rt = self._rt
        try:
            changes = await rt.state.peers.round(self._busy())
        except Exception as exc:  # the table unreachable, a throttle: the next round tries again
            rt.metrics.lease_rounds_failed.inc()
            log.warning("lease_round_failed", error=f"{type(exc).__name__}: {exc}"[:300],
                        why="the shared table could not be read or written",
                        next="each lease held stops acting once its renewal is overdue")
            self.show()
            return None
        self.show()
        return changes

    async def _settle(self) -> None:
        async with self._settling:
            changes, self._queued = self._queued or [], None
            await self._apply(changes)

    async def _apply(self, changes: list[Change]) -> None:
        rt = self._rt
        peers = rt.state.peers
        for change in changes:  # said and stopped at once, whether or not the shared state can be read now
            ex = rt.executors.get(change.target)
            if change.event == "lease_acquired":
                log.warning("lease_acquired", target=change.target, why=change.why, took_from=change.took_from,
                            next="acting for it once its incident is resumed from the shared state")
                if change.took_from is not None:
                    rt.metrics.lease_takeovers.labels(change.target).inc()
                self._taken[change.target] = change.took_from
                continue
            self._taken.pop(change.target, None)
            if change.event == "lease_handed_over":
                log.info("lease_handed_over", target=change.target, why=change.why,
                         next="the other watchdog takes it up at its next look")
            else:
                log.error("lease_lost", target=change.target, why=change.why, holder=peers.holder(change.target),
                          next="no action for it here; the holder acts")
            if ex is not None:
                await ex.demote(change.why)
        if await self._refresh():
            for target, took_from in list(self._taken.items()):
                await self._resume(target, took_from)
        self.show()
        rt.notifier.wake()

    async def _resume(self, target: str, took_from: str | None) -> None:
        """A lease taken, once the shared state has been read since: what the last holder left is resumed, and
        only then may this watchdog act for the target (judged at once on what its last poll read)."""
        rt = self._rt
        if took_from is not None:  # what the dead holder recorded and had not queued (it died between the two)
            rt.state.requeue(rt.notifier.replay, taken=target)
        async with rt.gate.polling():  # no reload swaps the executors under the recovery
            if target in rt.executors:
                await recover(rt.state.store, rt.executors, rt.clock.now(), only=[target])
            rt.state.peers.settled(target)
            del self._taken[target]
            if target in rt.executors:
                await rt.evaluate(target, rt.clock.now())

    async def _refresh(self) -> bool:
        """The shared state read again; False when it could not be (what waits on it waits for the next)."""
        rt = self._rt
        try:
            await asyncio.wait_for(rt.state.store.flush(), FLUSH_WAIT)
        except TimeoutError:
            return False  # its own writes are not in the table yet: reading it now would hide them; next round
        try:
            await rt.state.refresh()
        except StoreError as exc:
            log.warning("state_refresh_failed", error=str(exc), next="the next lease round reads it again")
            return False
        rt.pausing.adopt()
        return True

    def show(self) -> None:
        rt = self._rt
        peers = rt.state.peers
        for name in rt.executors:
            rt.metrics.lease_held.labels(name).set(1 if peers.may_act(name) else 0)
