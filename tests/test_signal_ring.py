"""The signal board's ring per rule (watchdog/core/signals.py): recent judged values, state transitions and
the last judgement's buckets, bounded by count. Expectations are derived by hand from the rule (60 s
buckets aligned to the epoch, 3 evaluation periods, alarm above 1500, 2 of 3 to alarm: metric_rule's
defaults as tests/test_signals.py builds them)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from configs import CLOSED, cloudwatch, http, hybrid_routing, level, metric_rule, parsed
from watchdog.core.rules import RuleState
from watchdog.core.ring import TRANSITIONS_KEPT, VALUES_KEPT, RuleRing
from watchdog.core.signals import SignalBoard
from watchdog.runtime.wiring import board_for

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)
KEY = "t/latency"


def board() -> SignalBoard:
    rule = metric_rule(source="cw", namespace="N", evaluation_periods=3, datapoints_to_alarm=2)
    return board_for(parsed(hybrid_routing(aws_endpoint=None, sources=[cloudwatch("cw", "60s")], target="t",
                                           rules=[rule], levels=[level(1, "l", http(f"{CLOSED}/x"))])))


def poll(b: SignalBoard, now: datetime, points: list[tuple[datetime, float]]) -> RuleRing:
    b.source_ok("cw", {KEY: points}, now)
    b.evaluate("t", now)
    return b.slots[KEY].ring


def test_the_ring_keeps_each_buckets_value_and_the_newest_takes_a_new_one() -> None:
    b = board()
    # At 12:05:10 the range is the five complete buckets 12:00..12:04 (N + 2); 12:05 is still filling.
    pts = [(T0 + k * MINUTE, 100.0 + k) for k in range(5)]
    ring = poll(b, T0 + 5 * MINUTE + timedelta(seconds=10), pts)
    assert ring.values() == pts
    # Ten seconds later the newest bucket (12:04) reads 444 and an older one (12:02) 999: the newest is
    # replaced, the older revision is not taken (the ring compares only from its newest bucket on).
    pts2 = [(T0 + k * MINUTE, 100.0 + k) for k in range(5)]
    pts2[2], pts2[4] = (T0 + 2 * MINUTE, 999.0), (T0 + 4 * MINUTE, 444.0)
    ring = poll(b, T0 + 5 * MINUTE + timedelta(seconds=20), pts2)
    assert ring.values() == [(T0, 100.0), (T0 + MINUTE, 101.0), (T0 + 2 * MINUTE, 102.0),
                             (T0 + 3 * MINUTE, 103.0), (T0 + 4 * MINUTE, 444.0)]
    # A minute later 12:05 is complete: appended.
    ring = poll(b, T0 + 6 * MINUTE + timedelta(seconds=10), pts2[1:] + [(T0 + 5 * MINUTE, 105.0)])
    assert ring.values()[-2:] == [(T0 + 4 * MINUTE, 444.0), (T0 + 5 * MINUTE, 105.0)] and len(ring.values()) == 6


def test_values_are_bounded_by_count_and_the_oldest_go_first() -> None:
    b = board()
    for k in range(VALUES_KEPT + 50):
        ring = poll(b, T0 + (k + 1) * MINUTE + timedelta(seconds=5), [(T0 + k * MINUTE, float(k))])
    values = ring.values()
    assert len(values) == VALUES_KEPT
    assert values[0] == (T0 + 50 * MINUTE, 50.0) and values[-1] == (T0 + (VALUES_KEPT + 49) * MINUTE,
                                                                    float(VALUES_KEPT + 49))


def test_a_value_older_than_the_whole_ring_is_not_kept() -> None:
    b = board()
    poll(b, T0 + 5 * MINUTE + timedelta(seconds=10), [(T0 + 4 * MINUTE, 1.0)])
    ring = poll(b, T0 + 5 * MINUTE + timedelta(seconds=20), [(T0 + 2 * MINUTE, 7.0), (T0 + 4 * MINUTE, 1.0)])
    assert ring.values() == [(T0 + 4 * MINUTE, 1.0)]  # 12:02 came late and is older than all the ring holds
    ring = poll(b, T0 + 5 * MINUTE + timedelta(seconds=30), [(T0 + 3 * MINUTE, 5.0), (T0 + 4 * MINUTE, 1.0)])
    assert ring.values() == [(T0 + 4 * MINUTE, 1.0)]


def test_transitions_are_the_changes_of_state_with_the_buckets_decided_on() -> None:
    b = board()
    at = T0 + 5 * MINUTE + timedelta(seconds=10)
    ring = poll(b, at, [(T0 + k * MINUTE, 200.0) for k in range(5)])
    assert [(t.at, t.state) for t in ring.transitions()] == [(at, RuleState.OK)]  # the first judgement
    poll(b, at + timedelta(seconds=20), [(T0 + k * MINUTE, 200.0) for k in range(5)])
    assert ring.changes == 1  # still ok: no transition
    # 12:04 and 12:05 breach: 2 of the 3 newest (12:03, 12:04, 12:05) -> alarm.
    later = T0 + 6 * MINUTE + timedelta(seconds=10)
    pts = [(T0 + k * MINUTE, 200.0) for k in range(4)] + [(T0 + 4 * MINUTE, 2000.0), (T0 + 5 * MINUTE, 2500.0)]
    ring = poll(b, later, pts)
    tr = ring.transitions()[-1]
    assert (tr.at, tr.state) == (later, RuleState.ALARM) and "2 of 3" in tr.reason
    assert [(j.start, j.value, j.breaching) for j in tr.judged] == [
        (T0 + 3 * MINUTE, 200.0, False), (T0 + 4 * MINUTE, 2000.0, True), (T0 + 5 * MINUTE, 2500.0, True)]
    assert ring.since(1) == (tr,) and ring.since(2) == ()
    # The last judgement's range: 12:01..12:05, the three newest judged.
    assert [(x.start, x.judged) for x in ring.last] == [(T0 + k * MINUTE, k >= 3) for k in range(1, 6)]


def test_transitions_are_bounded_and_since_counts_every_one_ever_made() -> None:
    b = board()
    made = 0
    for k in range(TRANSITIONS_KEPT + 10):
        value = 2000.0 if k % 2 else 100.0  # the whole range breaches, then none of it
        poll(b, T0 + 10 * MINUTE + k * timedelta(seconds=1), [(T0 + j * MINUTE, value) for j in range(10)])
        made += 1
    ring = b.slots[KEY].ring
    assert ring.changes == made
    kept = ring.transitions()
    assert len(kept) == TRANSITIONS_KEPT
    assert [t.state for t in kept[-2:]] == [RuleState.OK, RuleState.ALARM]
    assert ring.since(made - 3) == kept[-3:]
    assert ring.since(0) == kept  # more asked for than kept: what is kept


def test_a_failed_poll_adds_no_value_and_shows_as_insufficient_data() -> None:
    b = board()
    at = T0 + 5 * MINUTE + timedelta(seconds=10)
    poll(b, at, [(T0 + k * MINUTE, 200.0) for k in range(5)])
    b.source_failed("cw", "boom", at + MINUTE)
    b.evaluate("t", at + MINUTE)
    ring = b.slots[KEY].ring
    assert len(ring.values()) == 5
    assert ring.transitions()[-1].state is RuleState.INSUFFICIENT_DATA and "boom" in ring.transitions()[-1].reason
