"""The state kept in memory, for what acts on nothing lasting: `run --once`, the replay, tests.

Opened through the same seam as a configured backend (`build_runtime(state=in_memory())`), so the runtime
cannot tell them apart; it is not a kind of `watchdog.state` (watchdog/state/backend.py says why). Nothing
here can fail to be written, so its health is always good; there is no lock, no file, nothing to close.
"""

from __future__ import annotations

from watchdog.config.models import Config
from watchdog.state.journal import MemoryStore
from watchdog.state.outbox import MemoryOutbox
from watchdog.state.backend import Opener, OpenState, Requeue, StateDeps
from watchdog.state.peering import Sole
from watchdog.state.storage import StateListener, WriteFailure


class _AlwaysWritable:
    failure: WriteFailure | None = None
    pending = 0


class MemoryState:
    def __init__(self, store: MemoryStore, instance: str = "watchdog"):
        self.store, self.outbox, self.health = store, MemoryOutbox(), _AlwaysWritable()
        self.peers = Sole(instance)

    async def refresh(self) -> None:
        return None  # nobody else writes it

    def watch(self, listener: StateListener) -> None:
        return None  # memory never fails to take a write

    def requeue(self, replay: Requeue, taken: str | None = None) -> None:
        return None  # the outbox is as new as the store: nothing was ever left out of it

    async def aclose(self) -> None:
        return None


def in_memory(store: MemoryStore | None = None) -> Opener:
    """An opener of the state in `store` (a new one when not given; the replay passes its own to read after)."""
    async def opened(cfg: Config, deps: StateDeps) -> OpenState:
        return MemoryState(store if store is not None else MemoryStore(), deps.instance)

    return opened
