"""Which queries a poll of a periodic source reads (docs/deciding.md "When it polls"; the times are
watchdog/core/schedule.py's).

Rules that ask the same of their source (for CloudWatch: metric, dimensions, statistic, period, unit) share
one query, read once for all of them and answered to each. A query is read at the ticks of its grid, its
period apart (`read_every` apart when a rule sets it, its most frequent user deciding), `settle` after each
boundary; while one of its rules' targets is hot (an open incident, a level being verified) at each of its
period's ticks whatever `read_every` says. A failed read leaves every query owed: the next poll reads all.

The plan keeps one thing between polls: when each grid (and each hot query read apart from its grid) was
last read. The live source and the replay's history source each hold one, so both read the same queries at
the same ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, runtime_checkable

from watchdog.core.rules import Datapoint
from watchdog.core.schedule import Pace, due
from watchdog.core.signals import Query

__all__ = ["Cadence", "Due", "Periodic", "ReadPlan", "Shared"]


@dataclass(frozen=True)
class Cadence:
    """How one rule's query is read: buckets of `period`, read every `every` (a whole number of periods)."""

    period: timedelta
    every: timedelta


@dataclass(frozen=True, slots=True)  # slots: one per distinct query, 5 000 at 5 000 rules (no dict each)
class Shared:
    """One query and the rules it answers."""

    index: int  # its place in the plan: the source names its query after it
    queries: tuple[Query, ...]  # the rules asking it, first one first; each gets the answer
    period: timedelta
    every: timedelta  # the most frequent of its rules' cadences
    targets: frozenset[str]

    @property
    def first(self) -> Query:
        return self.queries[0]


@runtime_checkable
class Periodic(Protocol):
    """A source read on its rules' periods: a poll is told which targets are hot, and reads the queries due."""

    async def poll_due(self, now: datetime, hot: Collection[str]) -> Mapping[str, Sequence[Datapoint]]: ...


@dataclass
class _Grid:
    """The queries read on one grid, which are read together: one last read for all of them."""

    every: timedelta
    period: timedelta
    members: list[Shared]
    last: datetime | None = None


class Due(NamedTuple):
    """What a poll reads: whole grids (their indexes) and, apart from their grid, hot targets' queries."""

    shared: list[Shared]
    grids: tuple[int, ...]
    apart: tuple[int, ...]

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The same key, the same queries: a source keeps what it builds for a read under it."""
        return self.grids, self.apart


class ReadPlan:
    def __init__(self, queries: Sequence[Query], settle: timedelta, interval: timedelta,
                 identity: Callable[[Query], Hashable], cadence: Callable[[Query], Cadence]):
        """`identity`: what a query asks of the source (equal: read once); `cadence`: how often its rule wants
        it read."""
        by_identity: dict[Hashable, list[Query]] = {}
        for q in queries:
            by_identity.setdefault(identity(q), []).append(q)
        self.shared: list[Shared] = []
        # Queries of the same targets share one set: thousands of queries, a handful of targets (5 000 rules:
        # 2.3 -> 0.8 MB of Python objects with the slots below, tracemalloc).
        targets: dict[frozenset[str], frozenset[str]] = {}
        for same in by_identity.values():
            cadences = [cadence(q) for q in same]
            named = frozenset(_target(q) for q in same)
            self.shared.append(Shared(len(self.shared), tuple(same), cadences[0].period,
                                      min(c.every for c in cadences), targets.setdefault(named, named)))
        self.settle = settle
        self.pace = Pace.aligned(interval, sorted({s.period for s in self.shared}), settle)
        # A poll's work is per grid, not per query (thousands of rules share a handful of grids). A hot
        # target's query read apart from its grid keeps a last read of its own until its grid is read.
        grids: dict[tuple[timedelta, timedelta], _Grid] = {}
        for s in self.shared:
            grids.setdefault((s.every, s.period), _Grid(s.every, s.period, [])).members.append(s)
        self._grids = list(grids.values())
        self._of_target: dict[str, list[tuple[int, Shared]]] = {}
        for k, g in enumerate(self._grids):
            if g.every != g.period:  # only a query read less often than its period is read apart when hot
                for s in g.members:
                    for t in s.targets:
                        self._of_target.setdefault(t, []).append((k, s))
        self._apart: dict[int, datetime] = {}

    @property
    def everything(self) -> Due:
        return Due(self.shared, tuple(range(len(self._grids))), ())

    def due(self, now: datetime, hot: Collection[str]) -> Due:
        """The queries a poll at `now` reads, in a fixed order (grids, then the hot queries apart)."""
        settle, grids = self.settle, self._grids
        out: list[Shared] = []
        whole = []
        for k, g in enumerate(grids):
            if due(g.every, settle, g.last, now):
                out.extend(g.members)
                whole.append(k)
        apart: dict[int, Shared] = {}
        for t in hot:
            for k, s in self._of_target.get(t, ()):
                g = grids[k]
                if k not in whole and s.index not in apart and due(g.period, settle, self._apart.get(s.index, g.last),
                                                                    now):
                    apart[s.index] = s
        extra = sorted(apart)
        return Due(out + [apart[i] for i in extra], tuple(whole), tuple(extra))

    def read(self, d: Due, now: datetime) -> None:
        """What `d` names was read at `now`."""
        for k in d.grids:
            g = self._grids[k]
            g.last = now
            if self._apart:
                for s in g.members:
                    self._apart.pop(s.index, None)
        for i in d.apart:
            self._apart[i] = now

    def forget(self) -> None:
        """A read failed: every query's rules were left without data (a failed poll), so all are owed."""
        for g in self._grids:
            g.last = None
        self._apart.clear()


def _target(q: Query) -> str:
    return q.key.split("/", 1)[0]  # rule_key: "target/rule"; a target's name holds no "/"
