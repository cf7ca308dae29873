"""The pure lease rules (watchdog/core/lease.py), model-checked: several watchdogs, each with its own monotonic
clock (offset, and a rate off by up to the drift `margin` allows), share a table whose writes are conditional as
DynamoDB's are; hypothesis draws who crashes, who is paused (SIGSTOP) for how long, and in which order the
watchdogs run within each second. The properties are the documented rule, not the module's output:
- **never two actors**: at every moment a running watchdog checks, at most one may act for a target;
- **a lease is never lost**: once nothing more goes wrong, every target has a live holder within a lease and a
  few polls;
- **spread**: 3 watchdogs and 20 targets settle at no more than the fair share each (7, 7, 6).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.core.lease import (
    Held,
    LeaseItem,
    Lost,
    Peers,
    Release,
    Renew,
    Take,
    Wait,
    Watch,
    decide,
    may_act,
    observe,
)

LEASE, MARGIN, STEP = 10.0, 2.0, 1.0
DRIFT = 0.05  # a clock may run 5 % fast or slow: 0.5 s over a lease, inside the 2 s margin


@dataclass
class Table:
    """The shared table: leases and heartbeats, each write conditional (a failed condition changes nothing)."""

    leases: dict[str, LeaseItem] = field(default_factory=dict)
    beats: dict[str, tuple[str, int]] = field(default_factory=dict)  # watchdog -> (version, leases it holds)
    versions: int = 0

    def new_version(self) -> str:
        self.versions += 1
        return f"v{self.versions}"


@dataclass
class Dog:
    name: str
    offset: float
    rate: float
    held: dict[str, Held] = field(default_factory=dict)
    watches: dict[str, Watch] = field(default_factory=dict)
    beats: dict[str, Watch] = field(default_factory=dict)
    dead: bool = False
    paused_until: float = -1.0

    def clock(self, t: float) -> float:
        return self.offset + self.rate * t

    def running(self, t: float) -> bool:
        return not self.dead and t >= self.paused_until

    def live(self, table: Table, now: float) -> dict[str, int]:
        live = {}
        for name, (version, load) in table.beats.items():
            self.beats[name] = observe(self.beats.get(name), version, now)
            if name != self.name and not self.beats[name].stale(now, LEASE):
                live[name] = load
        return live

    def step(self, table: Table, t: float, targets: list[str], busy: set[str]) -> None:
        now = self.clock(t)
        others = self.live(table, now)
        for target in targets:
            peers = Peers({**others, self.name: len(self.held)})
            item = table.leases.get(target)
            self.watches[target] = observe(self.watches.get(target), item.version if item else None, now)
            d = decide(self.name, item, self.watches[target], self.held.get(target), now, LEASE, peers, len(targets),
                       target in busy)
            current = table.leases.get(target)
            if isinstance(d, Renew):
                if current is not None and current.holder == self.name and current.epoch == d.epoch:
                    table.leases[target] = LeaseItem(self.name, d.epoch, table.new_version())
                    self.held[target] = Held(d.epoch, table.leases[target].version, now)
                else:
                    self.held.pop(target, None)
            elif isinstance(d, Take):
                if (current.version if current else None) == d.expected:
                    table.leases[target] = LeaseItem(self.name, d.epoch, table.new_version())
                    self.held[target] = Held(d.epoch, table.leases[target].version, now)
            elif isinstance(d, Release):
                self.held.pop(target, None)  # it stops acting before the write goes out
                if current is not None and current.holder == self.name and current.epoch == d.epoch:
                    table.leases[target] = LeaseItem(None, d.epoch, table.new_version())
            elif isinstance(d, Lost):
                self.held.pop(target)
            else:
                assert isinstance(d, Wait) and d.why
        table.beats[self.name] = (table.new_version(), len(self.held))  # the round's heartbeat, with its count

    def acts(self, target: str, t: float) -> bool:
        return self.running(t) and may_act(self.held.get(target), self.clock(t), LEASE, MARGIN)


def actors(dogs: list[Dog], target: str, t: float) -> list[str]:
    return [d.name for d in dogs if d.acts(target, t)]


SCHEDULE = st.lists(st.tuples(st.integers(0, 119), st.integers(0, 2), st.sampled_from(["crash", "pause"]),
                              st.integers(1, 40)), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trouble=SCHEDULE, seed=st.integers(0, 2**32 - 1),
       rates=st.lists(st.floats(1 - DRIFT, 1 + DRIFT), min_size=3, max_size=3),
       offsets=st.lists(st.floats(0, 1e6), min_size=3, max_size=3))
def test_never_two_actors_and_no_lease_lost(trouble: list[tuple[int, int, str, int]], seed: int, rates: list[float],
                                            offsets: list[float]) -> None:
    rng = random.Random(seed)
    table = Table()
    dogs = [Dog(f"w{i}", offsets[i], rates[i]) for i in range(3)]
    targets = [f"t{k}" for k in range(4)]
    busy = {"t0"}
    events = {(at, who): (what, length) for at, who, what, length in trouble}
    crashed = 0
    for second in range(200):
        t = second * STEP
        for i, dog in enumerate(dogs):
            what, length = events.get((second, i), (None, 0))
            if what == "crash" and crashed < 2:  # one watchdog always survives
                dog.dead, crashed = True, crashed + 1
            elif what == "pause":
                dog.paused_until = t + length
        order = dogs[:]
        rng.shuffle(order)
        for dog in order:
            # a moment inside the second, before this watchdog's own step: is there ever a second actor?
            for target in targets:
                assert len(actors(dogs, target, t + rng.random() * STEP / 2)) <= 1, (second, target)
            if dog.running(t):
                dog.step(table, t, targets, busy)
            for target in targets:
                assert len(actors(dogs, target, t)) <= 1, (second, target)
    # nothing has gone wrong since second 120 + 40: every target has a live holder that may act
    end = 199 * STEP
    for target in targets:
        assert len(actors(dogs, target, end)) == 1, (target, table.leases.get(target))


def test_three_watchdogs_spread_twenty_targets_and_a_death_moves_them() -> None:
    table = Table()
    dogs = [Dog(f"w{i}", 1000.0 * i, 1.0) for i in range(3)]
    targets = [f"t{k:02}" for k in range(20)]
    for second in range(60):  # w0 starts first and takes everything; the others join at second 5
        for dog in dogs if second >= 5 else dogs[:1]:
            dog.step(table, second * STEP, targets, set())
    loads = sorted(len(d.held) for d in dogs)
    assert loads == [6, 7, 7], loads
    holders = {t: [d.name for d in dogs if d.acts(t, 59 * STEP)] for t in targets}
    assert all(len(h) == 1 for h in holders.values()), holders
    dogs[0].dead = True
    dead_at = 60
    for second in range(dead_at, dead_at + 20):
        for dog in dogs[1:]:
            dog.step(table, second * STEP, targets, set())
        if all(len(actors(dogs, t, second * STEP)) == 1 for t in targets):
            break
    # taken over within a lease and a few polls of the death, and shared between the two left
    assert second - dead_at <= LEASE + 3, second - dead_at
    assert sorted(len(d.held) for d in dogs[1:]) == [10, 10]


def test_a_holder_with_an_incident_open_keeps_its_lease_beyond_its_share() -> None:
    table = Table()
    dogs = [Dog("w0", 0.0, 1.0), Dog("w1", 0.0, 1.0)]
    targets = ["a", "b"]
    for second in range(3):
        dogs[0].step(table, second * STEP, targets, busy={"a", "b"})
    for second in range(3, 40):
        for dog in dogs:
            dog.step(table, second * STEP, targets, busy={"a", "b"})
    assert set(dogs[0].held) == {"a", "b"} and not dogs[1].held  # a takeover is a recovery, not a rebalancing
    for second in range(40, 60):
        for dog in dogs:
            dog.step(table, second * STEP, targets, busy={"a"})
    assert set(dogs[0].held) == {"a"} and set(dogs[1].held) == {"b"}


def test_a_holder_that_finds_its_lease_taken_stops_acting() -> None:
    held = Held(epoch=3, version="v9", sent_at=100.0)
    peers = Peers({"a": 1, "b": 0})
    taken = LeaseItem("b", 4, "v10")
    assert decide("a", taken, observe(None, "v10", 105.0), held, 105.0, LEASE, peers, 1, False) == \
        Lost("held by b (epoch 4), not by a at epoch 3")
    assert isinstance(decide("a", None, observe(None, None, 105.0), held, 105.0, LEASE, peers, 1, False), Lost)
    assert decide("a", LeaseItem("a", 3, "v9"), observe(None, "v9", 105.0), held, 105.0, LEASE, peers, 1,
                  False) == Renew(3)


def test_the_self_fence_comes_before_the_deadline_a_standby_waits_for() -> None:
    held = Held(epoch=3, version="v9", sent_at=100.0)
    assert may_act(held, 100.0 + LEASE - MARGIN - 0.001, LEASE, MARGIN)
    assert not may_act(held, 100.0 + LEASE - MARGIN, LEASE, MARGIN)
    assert not may_act(None, 100.0, LEASE, MARGIN)
    watch = observe(None, "v9", 100.5)  # a standby first sees v9 after it was written
    assert not watch.stale(100.5 + LEASE - 0.001, LEASE) and watch.stale(100.5 + LEASE, LEASE)
    assert observe(watch, "v9", 200.0) is watch and observe(watch, "v10", 200.0) == Watch("v10", 200.0)
