"""Two watchdogs' lease keepers (watchdog/state/dynamodb/leases.py) on one table in moto's DynamoDB, each with its own
monotonic clock driven by the test, each round one request after another (moto's server is not isolated under
concurrent requests). The expectations are the documented rules (core/lease.py): four targets spread two and
two; a keeper that stops (killed, or paused) loses its leases to the other a lease after its last renewal, and
may act for none of them from `lease - margin` after it; a woken keeper learns it lost them."""

from __future__ import annotations


from typing import Any

import pytest

from watchdog.state.dynamodb.leases import LeaseKeeper
from watchdog.state.peering import Change
from watchdog.state.dynamodb.table import Table

LEASE, MARGIN = 10.0, 2.0
TARGETS = ["a", "b", "c", "d"]


class Clock:
    def __init__(self, at: float):
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def table(shared_table: Table) -> Table:
    return shared_table


def actors(keepers: list[LeaseKeeper], target: str) -> list[str]:
    return [k.me for k in keepers if k.may_act(target)]


async def rnd(keeper: LeaseKeeper, busy: list[str] | tuple[str, ...] = ()) -> list[Change]:
    """A round, and what the runtime does after it (watchdog/runtime/peers.py): each lease taken is settled."""
    changes = await keeper.round(busy)
    for c in changes:
        if c.event == "lease_acquired":
            keeper.settled(c.target)
    return changes


async def named(table: Table) -> list[str]:
    """The targets whose lease names a holder."""
    return sorted(t for t, item in (await table.leases()).items() if item.holder is not None)


async def test_two_keepers_share_the_targets_and_one_takes_over_when_the_other_stops(table: Table) -> None:
    ca, cb = Clock(1000.0), Clock(50.0)  # their clocks agree on nothing but their rate
    a = LeaseKeeper(table, "w-a", TARGETS, LEASE, MARGIN, ca)
    b = LeaseKeeper(table, "w-b", TARGETS, LEASE, MARGIN, cb)
    first = await rnd(a)
    assert [c.event for c in first] == ["lease_acquired"] * 4 and a.held == TARGETS  # alone: it takes them all
    handed = []
    for _ in range(12):  # b joins; a hands over what is beyond its share, b takes it up
        ca.at += 1
        cb.at += 1
        handed += [c.target for c in await rnd(a) if c.event == "lease_handed_over"]
        assert await named(table) == TARGETS  # handed over: the table never names nobody
        await rnd(b)
    assert sorted(handed) == sorted(b.held)  # each handover said, so that the runtime stops what a began for it
    assert (len(a.held), len(b.held)) == (2, 2) and sorted(a.held + b.held) == TARGETS
    assert all(len(actors([a, b], t)) == 1 for t in TARGETS)
    stopped = ca.at  # a stops (SIGSTOP) right after its last round
    taken: list[Change] = []
    for step in range(1, 20):
        cb.at += 1
        ca.at += 1  # a's clock runs on while it is stopped
        if ca.at - stopped >= LEASE - MARGIN:
            assert not any(a.may_act(t) for t in TARGETS)  # a would act for none of them any more
        taken += await rnd(b)
        if b.held == TARGETS:
            break
    assert b.held == TARGETS and step <= LEASE + 1  # within a lease and a round of a's last renewal
    assert sorted(c.target for c in taken if c.event == "lease_acquired") == sorted(a.held)
    assert all(actors([a, b], t) == ["w-b"] for t in TARGETS)
    had = a.held
    woke = await rnd(a)  # a wakes: every lease it believed it held is another's
    assert sorted(c.target for c in woke if c.event == "lease_lost") == had and not a.held
    assert a.epoch(had[0]) is None and b.epoch(had[0]) == 2  # taken over: the epoch moved on


async def test_a_keeper_keeps_a_lease_with_an_incident_open_beyond_its_share(table: Table) -> None:
    ca, cb = Clock(0.0), Clock(0.0)
    a = LeaseKeeper(table, "w-a", TARGETS, LEASE, MARGIN, ca)
    b = LeaseKeeper(table, "w-b", TARGETS, LEASE, MARGIN, cb)
    await rnd(a, TARGETS)
    for _ in range(6):
        ca.at += 1
        cb.at += 1
        await rnd(a, TARGETS)
        await rnd(b)
    assert a.held == TARGETS and not b.held  # a takeover is a recovery, not a rebalancing


async def test_a_look_between_rounds_says_when_a_stopped_holders_lease_may_be_taken(table: Table) -> None:
    """Between rounds a standby reads the leases alone: it says a round would take one exactly once the lease has
    stayed unchanged for a whole lease on its clock, not before, and the round then takes it."""
    ca, cb = Clock(0.0), Clock(500.0)
    a = LeaseKeeper(table, "w-a", TARGETS, LEASE, MARGIN, ca)
    b = LeaseKeeper(table, "w-b", TARGETS, LEASE, MARGIN, cb)
    await rnd(a, TARGETS)  # a takes every lease and keeps them (each has an incident open)
    await rnd(b)
    assert not await b.look()  # a renewed just now
    seen = cb.at  # b's look has now seen the versions a last wrote; a stops renewing
    while cb.at - seen < LEASE:
        assert not await b.look(), cb.at - seen
        cb.at += 0.5
    assert await b.look()  # unchanged for a lease on b's clock
    taken = await rnd(b)
    assert sorted(c.target for c in taken if c.event == "lease_acquired") == TARGETS
    assert all(c.took_from == "w-a" for c in taken)


async def test_three_keepers_a_dead_ones_leases_are_taken_at_the_first_look_a_lease_on_shared_by_the_others(
        table: Table) -> None:
    """Six targets on three keepers, two each. c dies right after a round. a and b run a round every third of a
    lease and look every half second between, running a round at once when a look says so: the first step a
    whole lease after they last saw c's versions move takes all of c's leases, dealt in turn (one to a, one
    to b); none is taken early, and at every step the table names one holder of each."""
    targets = [f"t{k}" for k in range(6)]
    clocks = {n: Clock(100.0 * i) for i, n in enumerate(["w-a", "w-b", "w-c"])}
    keepers = {n: LeaseKeeper(table, n, targets, LEASE, MARGIN, clocks[n]) for n in clocks}
    for _ in range(8):
        for n, k in keepers.items():
            clocks[n].at += 1
            await rnd(k)
    assert sorted(len(k.held) for k in keepers.values()) == [2, 2, 2] and await named(table) == targets
    c_had = keepers["w-c"].held
    live = {n: keepers[n] for n in ("w-a", "w-b")}
    last = {n: clocks[n].at for n in live}
    seen = {n: clocks[n].at + 0.5 for n in live}  # c's last round came after theirs: their next read sees it
    taken: dict[str, list[str]] = {n: [] for n in live}
    while not all(taken.values()):
        for n, k in live.items():
            clocks[n].at += 0.5
            if clocks[n].at - last[n] >= LEASE / 3 or await k.look():
                last[n] = clocks[n].at
                got = sorted(ch.target for ch in await rnd(k) if ch.event == "lease_acquired")
                assert not got or clocks[n].at - seen[n] == LEASE  # the first step a lease after c's last renewal
                taken[n] += got
            assert await named(table) == targets
        assert all(clocks[n].at - seen[n] <= LEASE for n in live), taken
    assert sorted(taken["w-a"] + taken["w-b"]) == c_had and len(taken["w-a"]) == len(taken["w-b"]) == 1
    assert sorted(len(live[n].held) for n in live) == [3, 3]


async def test_a_lease_just_taken_lets_its_holder_act_only_once_settled(table: Table) -> None:
    """Taken, a lease is the holder's in the table at once, but the holder may act only once the runtime has
    resumed what the last holder left (it says `settled`): a poll judged in between must not act on a target
    whose open incident has not been read yet."""
    a = LeaseKeeper(table, "w-a", ["x"], LEASE, MARGIN, Clock(0.0))
    taken = await a.round()
    assert [c.event for c in taken] == ["lease_acquired"] and a.held == ["x"] and a.holder("x") == "w-a"
    assert not a.may_act("x")
    a.settled("x")
    assert a.may_act("x")
    a.fenced("x")  # a lease given up is not settled any more: taken again, it waits for its settling again
    a.settled("x")
    assert not a.may_act("x")


class SlowRead(Table):
    """The table, with one read of the leases during which `during` happens: a Query that takes a while and is
    answered after a renewal that landed meanwhile."""

    def __init__(self, table: Table, during: Any):
        super().__init__(table._client, table.name)
        self.during = during

    async def leases(self) -> Any:
        during, self.during = self.during, None
        if during is not None:
            await during()
        return await super().leases()


async def test_a_renewal_that_lands_while_a_standby_reads_is_watched_from_after_the_read(table: Table) -> None:
    """b's read of the leases takes 3 s, more than the 2 s margin; a renews 3 s into it and is then stopped.
    a may act until 8 s (lease minus margin) after it sent that renewal; b must watch the version it read from
    when its read was answered, not from when it began, or it would take the lease while a may still act."""
    ca, cb = Clock(0.0), Clock(100.0)  # their clocks agree on nothing but their rate
    a = LeaseKeeper(table, "w-a", ["x"], LEASE, MARGIN, ca)
    await rnd(a)

    async def renewed_meanwhile() -> None:
        ca.at += 3
        cb.at += 3
        await rnd(a)

    b = LeaseKeeper(SlowRead(table, renewed_meanwhile), "w-b", ["x"], LEASE, MARGIN, cb)
    assert not await b.look()
    last = cb.at
    for _ in range(40):  # a is stopped from now on; both clocks run on; b looks, and runs a round every 3 s
        ca.at += 0.5
        cb.at += 0.5
        if cb.at - last >= LEASE / 3 or await b.look():
            last = cb.at
            await rnd(b)
        assert not (a.may_act("x") and b.may_act("x")), (ca.at, cb.at)
    assert b.may_act("x") and not a.may_act("x")
