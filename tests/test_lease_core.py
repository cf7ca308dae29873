"""The pure lease rules (watchdog/core/lease.py), model-checked: several watchdogs, each with its own monotonic
clock (offset, and a rate off by up to the drift `margin` allows), share a table whose writes are conditional as
DynamoDB's are; hypothesis draws who crashes, who is paused (SIGSTOP) for how long, and in which order the
watchdogs run within each second. The properties are the documented rule, not the module's output:
- **never two actors**: at every moment a running watchdog checks, at most one may act for a target;
- **a lease is never lost**: once nothing more goes wrong, every target has a live holder within a lease and a
  few polls;
- **one holder named**: the table names a holder of every lease it has at every moment (handed over, never
  released between two holders);
- **spread**: 3 watchdogs and 20 targets settle at no more than the fair share each (7, 7, 6), and a dead one's
  leases are taken in the first round a lease after its last renewal, shared between the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.core.lease import (
    Handover, Held, LeaseItem, Lost, Release, Renew, Take, Wait, Watch, farewell, live, may_act, observe, plan,
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
    last_round: float = -1e9

    def clock(self, t: float) -> float:
        return self.offset + self.rate * t

    def running(self, t: float) -> bool:
        return not self.dead and t >= self.paused_until

    def step(self, table: Table, t: float, targets: list[str], busy: set[str], look: bool = False) -> None:
        """A round (or, `look`, a look: the leases read, and a round only if it would take one or find one lost)."""
        now = self.clock(t)
        if not look:
            self.last_round = t
            for name, (version, _) in table.beats.items():
                self.beats[name] = observe(self.beats.get(name), version, now)
        items = dict(table.leases)
        for target in targets:
            item = items.get(target)
            self.watches[target] = observe(self.watches.get(target), item.version if item else None, now)
        others, self.beats = live(self.name, self.beats, items, self.watches, now, LEASE)
        decisions = plan(self.name, targets, items, self.watches, self.held, now, LEASE, others, busy)
        if look:
            if any(isinstance(d, (Take, Lost)) for d in decisions.values()):
                self.step(table, t, targets, busy)
            return
        for target, d in decisions.items():
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
            elif isinstance(d, Handover):
                self.held.pop(target, None)  # it stops acting before the write goes out
                if current is not None and current.holder == self.name and current.epoch == d.epoch:
                    table.leases[target] = LeaseItem(d.to, d.epoch, table.new_version(), handed_by=self.name)
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
                # between rounds, which come at least every third of a lease, some steps are looks
                dog.step(table, t, targets, busy, look=rng.random() < 0.5 and t - dog.last_round < LEASE / 3)
            # the table names one holder of every lease it has, through takeovers and handovers alike
            assert all(item.holder is not None for item in table.leases.values()), table.leases
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
    # taken over in the first round a lease after its last renewal (second 59), and shared between the two left
    assert second == 59 + LEASE, second
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
    held = {"t": Held(epoch=3, version="v9", sent_at=100.0)}
    watch = {"t": observe(None, "v10", 105.0)}

    def decided(item: LeaseItem | None) -> object:
        return plan("a", ["t"], {"t": item} if item else {}, watch, held, 105.0, LEASE, {"b": 0})["t"]

    assert decided(LeaseItem("b", 4, "v10")) == Lost("held by b (epoch 4), not by a at epoch 3")
    assert decided(LeaseItem("b", 3, "v10", handed_by="a")) == Lost("held by b (epoch 3), not by a at epoch 3")
    assert isinstance(decided(None), Lost)
    assert decided(LeaseItem("a", 3, "v9")) == Renew(3)


def test_a_dead_watchdogs_leases_are_dealt_out_in_turn_and_each_taken_by_one() -> None:
    """w2 dies holding t0..t5; w0 holds 7, w1 holds 7. Once its leases are stale (and even before its heartbeat
    is, since every lease naming it is), both survivors deal the six alike: in the targets' order, each to the
    least loaded, ties to the smaller id: w0 t0, w1 t1, w0 t2, ... so each takes three and none tries for
    another's."""
    targets = [f"t{k:02}" for k in range(20)]
    items = {t: LeaseItem("w2" if k < 6 else "w0" if k < 13 else "w1", 1, f"v{k}") for k, t in enumerate(targets)}
    seen = {t: Watch(f"v{k}", 0.0 if k < 6 else LEASE) for k, t in enumerate(targets)}  # w2's unchanged since 0
    beats = {"w0": Watch("b0", LEASE), "w1": Watch("b1", LEASE), "w2": Watch("b2", 1.0)}  # w2's beat: fresh
    at = LEASE  # w2's leases unchanged for a whole lease; its heartbeat, for less
    takes = {}
    for me in ("w0", "w1"):
        held = {t: Held(1, i.version, at) for t, i in items.items() if i.holder == me}
        others, _ = live(me, beats, items, seen, at, LEASE)
        assert "w2" not in others and others == {("w1" if me == "w0" else "w0"): 7}
        decisions = plan(me, targets, items, seen, held, at, LEASE, others)
        takes[me] = sorted(t for t, d in decisions.items() if isinstance(d, Take))
        assert all(decisions[t] == Take(2, items[t].version) for t in takes[me])
    assert takes == {"w0": ["t00", "t02", "t04"], "w1": ["t01", "t03", "t05"]}
    assert live("w0", beats, items, seen, at - 0.5, LEASE)[0] == {"w1": 7, "w2": 6}  # half a second before: alive
    # once its leases are taken nothing names it, and its heartbeat is still fresh: it stays dead until that moves
    _, kept = live("w0", beats, items, seen, at, LEASE)
    taken = {t: LeaseItem("w0" if k % 2 else "w1", 2, f"n{k}") if i.holder == "w2" else i
             for k, (t, i) in enumerate(items.items())}
    fresh = {t: Watch(taken[t].version, at) if items[t].holder == "w2" else w for t, w in seen.items()}
    assert live("w0", kept, taken, fresh, at + 0.5, LEASE)[0] == {"w1": 10}
    assert live("w0", {**kept, "w2": Watch("b2-new", at + 0.5)}, taken, fresh, at + 0.5, LEASE)[0] == \
        {"w1": 10, "w2": 0}  # back (restarted): its heartbeat moved


def test_a_lease_over_the_share_is_handed_to_the_least_loaded_who_takes_it_up_at_once() -> None:
    targets = ["a", "b", "c", "d"]
    items = {t: LeaseItem("w0", 1, f"v-{t}") for t in targets}
    watches = {t: Watch(f"v-{t}", 0.0) for t in targets}
    held = {t: Held(1, f"v-{t}", 0.0) for t in targets}
    decisions = plan("w0", targets, items, watches, held, 1.0, LEASE, {"w1": 0}, busy=["d"])
    # fair share 2; the busy one stays; the others go from the end while w0 holds more than its share and two
    # more than w1: 4/0 -> c -> 3/1 -> b -> 2/2
    assert decisions == {"a": Renew(1), "b": Handover(1, "w1"), "c": Handover(1, "w1"), "d": Renew(1)}
    handed = {**items, "c": LeaseItem("w1", 1, "v-c2", handed_by="w0")}
    seen = {**watches, "c": Watch("v-c2", 1.0)}
    assert plan("w1", targets, handed, seen, {}, 1.5, LEASE, {"w0": 3})["c"] == Take(2, "v-c2")
    # taken up by the one it was handed to, whoever it thinks is the least loaded now
    assert plan("w1", targets, handed, seen, {}, 1.5, LEASE, {"w0": 0, "w2": 0})["c"] == Take(2, "v-c2")
    assert plan("w2", targets, handed, seen, {}, 1.5, LEASE, {"w0": 3, "w1": 1})["c"] == \
        Wait("held by w1 (epoch 1, handed over by w0)")  # not another's to take up, until a lease unchanged
    assert plan("w2", targets, handed, seen, {}, 1.0 + LEASE, LEASE, {"w0": 3})["c"] == Take(2, "v-c2")


def test_the_self_fence_comes_before_the_deadline_a_standby_waits_for() -> None:
    held = Held(epoch=3, version="v9", sent_at=100.0)
    assert may_act(held, 100.0 + LEASE - MARGIN - 0.001, LEASE, MARGIN)
    assert not may_act(held, 100.0 + LEASE - MARGIN, LEASE, MARGIN)
    assert not may_act(None, 100.0, LEASE, MARGIN)
    watch = observe(None, "v9", 100.5)  # a standby first sees v9 after it was written
    assert not watch.stale(100.5 + LEASE - 0.001, LEASE) and watch.stale(100.5 + LEASE, LEASE)
    assert observe(watch, "v9", 200.0) is watch and observe(watch, "v10", 200.0) == Watch("v10", 200.0)


def test_a_lease_dealt_to_one_that_never_takes_it_is_taken_by_anyone_a_lease_later() -> None:
    """w0 is dealt the free lease (least loaded, smaller id) but never takes it: it died since its heartbeat was
    read, or it does not know the target. Once the lease has stood unchanged for a lease beyond being
    takeable, w1 takes it rather than leave the target without an actor."""
    free = {"t": Watch(None, 0.0)}
    assert plan("w1", ["t"], {}, free, {}, 2 * LEASE - 0.1, LEASE, {"w0": 0})["t"] == \
        Wait("free; w0 is the least loaded and takes it")
    assert plan("w1", ["t"], {}, free, {}, 2 * LEASE, LEASE, {"w0": 0})["t"] == Take(1, None)
    stale = {"t": LeaseItem("w9", 4, "v")}
    seen = {"t": Watch("v", 0.0)}
    assert isinstance(plan("w1", ["t"], stale, seen, {}, LEASE, LEASE, {"w0": 0})["t"], Wait)  # w0's to take
    assert plan("w1", ["t"], stale, seen, {}, 2 * LEASE, LEASE, {"w0": 0})["t"] == Take(5, "v")


def test_a_clean_stop_hands_each_lease_to_the_least_loaded_in_turn_or_releases_it_with_nobody_left() -> None:
    """w1 holds 1 and w2 holds 2: a's three leases go w1 (1), then w1/w2 tie at 2 (w1, the smaller id), then w2."""
    held = {"c": 7, "a": 3, "b": 5}
    assert farewell(held, {"w2": 2, "w1": 1}) == {"a": Handover(3, "w1"), "b": Handover(5, "w1"),
                                                  "c": Handover(7, "w2")}
    assert farewell(held, {}) == {"a": Release(3), "b": Release(5), "c": Release(7)}  # nobody to hand them to
