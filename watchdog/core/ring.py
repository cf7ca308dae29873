"""A rule's recent history, as the status page and the replay's report show it: the values its judgements saw
and its state transitions, bounded by count."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from datetime import datetime, timezone

from watchdog.core.rules import Bucket, Evaluation, RuleState

__all__ = ["TRANSITIONS_KEPT", "VALUES_KEPT", "RuleRing", "Transition"]


# What a ring keeps per rule: 60 values (an hour of 1-minute buckets) as two arrays of doubles, a tenth of
# what datetime and float objects would take, and 8 transitions. Full, at 5 000 rules: about 12 MB, most of
# it the transitions of rules that flap (bench/README.md, "The status page").
VALUES_KEPT = 60
TRANSITIONS_KEPT = 8


@dataclass(frozen=True, slots=True)
class Transition:
    at: datetime  # when the board judged it (a poll's time)
    state: RuleState
    reason: str
    # The buckets an alarm was decided on (real datapoints and filled gaps), which the replay's report marks;
    # empty for other states: every rule's first judgement is a transition, and at 5 000 rules their buckets
    # were 2 MB kept for nobody (bench: peak RSS).
    judged: tuple[Bucket, ...]


class RuleRing:
    """A rule's recent history, bounded by count: the values its judgements saw (one per bucket, the newest
    reading of each, oldest first), its state transitions, and the buckets its last judgement used."""

    __slots__ = ("_times", "_values", "_newest", "_transitions", "changes", "_last")

    def __init__(self) -> None:
        self._times = array("d")  # bucket starts, seconds since the epoch, ascending
        self._values = array("d")
        self._newest: datetime | None = None  # the start of the newest bucket kept
        self._transitions: list[Transition] = []
        self.changes = 0  # transitions ever recorded: `since` counts from it
        self._last: Evaluation | None = None

    @property
    def last(self) -> tuple[Bucket, ...]:
        """The evaluation range of the last judgement, judged ones marked (made when read)."""
        return () if self._last is None else self._last.buckets

    def judged(self, ev: Evaluation, now: datetime, previous: RuleState) -> None:
        """One judgement: its buckets' values join the ring, and a change of state is a transition (the
        first judgement is one too: it leaves the state the rule started in). Only the newest bucket kept
        takes a new value (a sampled source's filling bucket): an older one revised later stays as first
        seen, which spares comparing every bucket of every rule at every poll (bench: 5 000 rules)."""
        self._last = ev
        starts, vals = ev.series()  # columns: the judgement's Buckets are not made for this
        times, values, newest = self._times, self._values, self._newest
        first = r = len(vals)
        if r and newest is not None and starts[r - 1] == newest:
            # The same range again (a sampled source's poll within its bucket, a query read twice in a period): only
            # the ring's newest takes its value again, what the walk below comes to (timeit: a judgement 0.60 -> 0.48 µs).
            v = vals[r - 1]
            if v is not None:
                values[-1] = float(v)
            first = r
        elif r > 1 and newest is not None and starts[r - 2] == newest:
            # The range moved on by one bucket, as at every poll of a period-aligned read: the ring's newest
            # takes its value again and the range's newest joins, without the walk below (timeit, CPU, a judgement
            # 1.15 -> 0.95 µs). `starts` holds the range's end too: the buckets are its first r.
            v = vals[r - 2]
            if v is not None:
                values[-1] = float(v)
            first = r - 1
        else:
            # Back from the newest bucket to the first one not older than the ring's newest: usually one or two
            # of the N + 2, not all of them (0.6 µs whatever N; a walk over the range took 0.6 at N = 3, 7.9 at 60).
            while first and (newest is None or starts[first - 1] >= newest):
                first -= 1
        for k in range(first, r):  # oldest first
            v = vals[k]
            if v is None:
                continue
            if starts[k] == newest:
                values[-1] = float(v)
                continue
            newest = starts[k]
            times.append(newest.timestamp())
            values.append(float(v))
        self._newest = newest
        if len(times) > VALUES_KEPT:
            del times[:len(times) - VALUES_KEPT]
            del values[:len(values) - VALUES_KEPT]
        if ev.state != previous or self.changes == 0:
            judged = tuple(b for b in ev.buckets if b.judged) if ev.state is RuleState.ALARM else ()
            self._transitions.append(Transition(now, ev.state, ev.reason, judged))
            self.changes += 1
            if len(self._transitions) > TRANSITIONS_KEPT:
                del self._transitions[0]

    def values(self) -> list[tuple[datetime, float]]:
        return [(datetime.fromtimestamp(t, timezone.utc), v) for t, v in zip(self._times, self._values)]

    def transitions(self) -> tuple[Transition, ...]:
        """The newest TRANSITIONS_KEPT, oldest first."""
        return tuple(self._transitions)

    def since(self, seen: int) -> tuple[Transition, ...]:
        """The transitions after the first `seen` ever recorded (those still kept)."""
        fresh = self.changes - seen
        return tuple(self._transitions[-fresh:]) if fresh > 0 else ()
