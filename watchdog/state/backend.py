"""State backends: the descriptor of a kind (one per backend module, its `KIND`, registered in watchdog.shared.kinds
STATES by the `type` of `watchdog.state`), and what an opened backend hands the runtime.

A backend kind gives its config model and says how to
- `open` it for the daemon (and `rollback --offline`): the stores (watchdog/state/storage.py's Protocols), the
  outbox, a health view, the replay of notifications the outbox never got, and `aclose`, which closes what it
  opened in its own order (the SQLite file: its writer, the file, then the lock);
- `read` it for the `incidents` commands, never creating or writing it;
- `probe` it for `validate` (the SQLite file: can it be written), under the name `describe` gives.

Nothing else of the watchdog knows which backend it runs on. `run --once` and the replay keep their state in
memory (watchdog/state/memory.py): an opener through the same seam, not a kind, since a daemon configured
without a durable state would forget every incident and audit record at its next start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from watchdog.shared.clock import Clock
from watchdog.config.models import AwsSection, Config, State
from watchdog.shared.events import Event
from watchdog.shared.kinds import STATES, Descriptor, find
from watchdog.state.outbox import Outbox
from watchdog.state.peering import Peering
from watchdog.state.storage import StateHealth, StateListener, StateReader, Store

S = TypeVar("S", bound=State)
Verdict = tuple[bool, str]
# The notifier's `replay`: (audit seq, event, dry_run) of each event to queue; returns how many were queued.
Requeue = Callable[[Sequence[tuple[int, Event, bool]]], int]


@dataclass(frozen=True)
class StateDeps:
    """What opening a backend may use: who opens it (another process refused names it), the clock (the
    outbox's delivered rows are pruned by age; a lease is timed on its monotonic time), the config's `aws:` (a
    table's region and endpoint), this watchdog's instance id and the targets it watches (a shared table's
    leases are per target)."""

    owner: str
    clock: Clock
    aws: AwsSection = AwsSection()
    instance: str = "watchdog"
    targets: tuple[str, ...] = ()


class OpenState(Protocol):
    """A backend opened for writing, whole: nothing is filled in after `open` returns."""

    @property
    def store(self) -> Store: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def health(self) -> StateHealth: ...

    @property
    def peers(self) -> Peering: ...  # who may act for each target (watchdog/state/peering.py)

    async def refresh(self) -> None:
        """Read again what other watchdogs may have written (a shared table); nothing for a state of one's own."""
        ...

    def watch(self, listener: StateListener) -> None:
        """From now on `listener` hears of the state's failures; one already under way it is told at once.
        (It pages through the notifier, which is built on this backend's outbox: so it comes after.)"""
        ...

    def requeue(self, replay: Requeue, taken: str | None = None) -> None:
        """Queue the events the audit log has and the outbox never got (the process died between the two): at the
        start, this watchdog's own; `taken`, a target just taken over from a watchdog that stopped renewing
        (a shared state only): the events of that target the dead one may have recorded without queuing."""
        ...

    async def aclose(self) -> None:
        """Close what `open` opened, once nothing writes any more (the runtime's last step)."""
        ...


@dataclass(frozen=True)
class StateKind(Descriptor[S]):
    open: Callable[[S, StateDeps], Awaitable[OpenState]]  # StoreError or LockHeld, each one line
    # The config's `aws:` is handed to `read` and `probe` too: where a table lives is said there, once.
    read: Callable[[S, AwsSection], StateReader]  # StoreError (one line) when there is nothing to read
    describe: Callable[[S], str]  # the state's name in validate's table, e.g. "state path ./state/watchdog.db"
    probe: Callable[[S, AwsSection], Awaitable[Verdict]]  # validate: could the daemon open it; changes nothing
    # The key of `config` that `watchdog.state_path` sets: the one backend that has such a shorthand.
    shorthand: str | None = None
    # `state init`: make what the backend keeps its state in before any watchdog starts ("created" or "exists";
    # StoreError in one line). None: the daemon makes it itself at its first start (the SQLite file).
    init: Callable[[S, AwsSection], Awaitable[str]] | None = None


def state_kind(of: State | str) -> StateKind[Any]:
    kind: StateKind[Any] = find(STATES, of, StateKind)
    return kind


def configured(cfg: Config) -> tuple[StateKind[Any], State]:
    """The backend the config names, with its model (`state_path` has become one when parsing)."""
    state = cfg.watchdog.state
    if state is None:
        raise TypeError("the config was not parsed (watchdog.config.parse_config): its watchdog.state is unset")
    kind = state_kind(state)
    return kind, kind.of(state)


# How build_runtime gets its state: the configured backend, or (run --once, the replay) one in memory.
Opener = Callable[[Config, StateDeps], Awaitable[OpenState]]


async def open_configured(cfg: Config, deps: StateDeps) -> OpenState:
    kind, state = configured(cfg)
    return await kind.open(state, deps)


def read_configured(cfg: Config) -> StateReader:
    kind, state = configured(cfg)
    return kind.read(state, cfg.aws)


async def init_configured(cfg: Config) -> str | None:
    """`state init`: what the configured backend says of its table ("created" / "exists"); None when the
    backend makes its state itself at the daemon's first start. StoreError (one line) when it cannot."""
    kind, state = configured(cfg)
    if kind.init is None:
        return None
    return await kind.init(state, cfg.aws)
