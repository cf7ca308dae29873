"""The lease rounds of a watchdog that shares its state with others (SPEC 4.5), as the runtime runs them: the
lifecycle's scheduler calls `PeerRounds.round` every `peers.every` (never for a sole watchdog).

A round renews, takes and gives up leases (the backend's Peering decides and writes them), then reads what the
other watchdogs wrote (their incidents, pauses, audit records and messages) and turns what changed into what a
person and the daemon need:
- `lease_acquired`: the open incident of that target is resumed from the shared state exactly as after a crash
  (watchdog/runtime/recovery.py: an action whose outcome is unknown is repeated only if idempotent);
- `lease_lost`: the target's level stops and its machine forgets the incident (the holder owns it);
- `watchdog_lease_held{target}` and `watchdog_lease_takeovers_total` follow, and the notification workers look
  again (a message of a target just taken is now this watchdog's to send).
A round that cannot reach the table is logged and counted; it changes nothing, and each lease held stops
acting on its own once its renewal is overdue (state/dynamodb/leases.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from watchdog.notify import Notifier
from watchdog.runtime.executor import TargetExecutor
from watchdog.runtime.pausing import PauseKeeper
from watchdog.runtime.recovery import recover
from watchdog.runtime.reloadgate import ReloadGate
from watchdog.shared.clock import Clock
from watchdog.state.backend import OpenState
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


class PeerRounds:
    def __init__(self, parts: RoundParts):
        self._rt = parts
        self._one = asyncio.Lock()  # a round and a look's round never interleave their reads and writes

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
        async with self._one:
            await self._round()

    async def _round(self) -> None:
        rt = self._rt
        peers = rt.state.peers
        busy = [name for name, ex in rt.executors.items() if ex.machine.incident is not None]
        try:
            changes = await peers.round(busy)
        except Exception as exc:  # the table unreachable, a throttle: the next round tries again
            rt.metrics.lease_rounds_failed.inc()
            log.warning("lease_round_failed", error=f"{type(exc).__name__}: {exc}"[:300],
                        why="the shared table could not be read or written",
                        next="each lease held stops acting once its renewal is overdue")
            self.show()
            return
        await self._refresh()
        now = rt.clock.now()
        for change in changes:
            ex = rt.executors.get(change.target)
            if change.event == "lease_lost":
                log.error("lease_lost", target=change.target, why=change.why, holder=peers.holder(change.target),
                          next="no action for it here; the holder acts")
                if ex is not None:
                    await ex.demote(change.why)
            else:
                log.warning("lease_acquired", target=change.target, why=change.why, took_from=change.took_from,
                            next="acting for it; an open incident resumes as after a restart")
                if change.took_from is not None:
                    rt.metrics.lease_takeovers.labels(change.target).inc()
                if ex is not None:
                    async with rt.gate.polling():  # no reload swaps the executors under the recovery
                        await recover(rt.state.store, rt.executors, now, only=[change.target])
        self.show()
        rt.notifier.wake()

    async def _refresh(self) -> None:
        rt = self._rt
        try:
            await asyncio.wait_for(rt.state.store.flush(), FLUSH_WAIT)
        except TimeoutError:
            return  # its own writes are not in the table yet: reading it now would hide them; next round
        try:
            await rt.state.refresh()
        except StoreError as exc:
            log.warning("state_refresh_failed", error=str(exc), next="the next lease round reads it again")
            return
        rt.pausing.adopt()

    def show(self) -> None:
        rt = self._rt
        peers = rt.state.peers
        for name in rt.executors:
            rt.metrics.lease_held.labels(name).set(1 if peers.may_act(name) else 0)
