"""Points (watchdog/core/points.py): datapoints as two columns, as the CloudWatch source hands an answer to the
board. To whoever reads it as a sequence it is the list of its (time, value) pairs; the board's shortcuts that
read its columns judge it as they judge that list."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.core.rules import columns
from watchdog.core.points import Points, same_answer

from test_replay_fast_paths import answers, placed, same  # tests/ is on sys.path

UTC = timezone.utc
T0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)


def pairs_of(times: list[datetime], values: list[float]) -> list[tuple[datetime, float]]:
    return [(times[k], values[k]) for k in range(len(times))]


def test_points_read_as_the_list_of_its_pairs() -> None:
    times = [T0 + timedelta(minutes=k) for k in range(4)]
    values = [1.0, -0.0, 3.5, 1e300]
    s, listed = Points(times, values), pairs_of(times, values)
    assert len(s) == 4 and bool(s) and not Points([], [])
    assert [s[k] for k in range(4)] == listed and s[-1] == (times[3], 1e300) and s[-4] == listed[0]
    assert s[1:3] == listed[1:3] and s[::-1] == listed[::-1] and s[:0] == []
    assert list(s) == listed and list(reversed(s)) == listed[::-1]
    assert (times[2], 3.5) in s and (times[2], 3.0) not in s
    assert s.index((times[1], -0.0)) == 1 and s.count((times[0], 1.0)) == 1
    assert s == listed and listed == s and s == tuple(listed) and s == Points(list(times), list(values))
    assert s != listed[:3] and s != [*listed[:3], (times[3], 2.0)] and s != Points(times[:3], values[:3])
    with pytest.raises(IndexError):
        s[4]
    with pytest.raises(TypeError):
        hash(s)


def test_points_refuse_columns_of_unequal_length() -> None:
    with pytest.raises(ValueError, match="3 times for 2 values"):
        Points([T0, T0, T0], [1.0, 2.0])


values_st = st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, -0.0, 1.0, True, False]),
                      st.integers(-3, 3))


@st.composite
def two_answers(draw):  # type: ignore[no-untyped-def]
    """Two answers of a query, the second often equal to the first or one value or time apart."""
    n = draw(st.integers(0, 7))
    times = [T0 + timedelta(minutes=k) for k in sorted(draw(st.sets(st.integers(0, 20), min_size=n, max_size=n)))]
    first = draw(st.lists(values_st, min_size=n, max_size=n))
    second, later = list(first), list(times)
    if n and draw(st.booleans()):
        second[draw(st.integers(0, n - 1))] = draw(values_st)
    if n and draw(st.booleans()):
        later[-1] = later[-1] + timedelta(seconds=draw(st.integers(0, 1)))
    if draw(st.booleans()):
        later, second = later[:-1], second[:-1]
    return (times, first), (later, second)


def by_hand(a: list[tuple[datetime, float]], b: list[tuple[datetime, float]]) -> bool:
    """same_answer's rule, restated: the same times, and each value the same number of the same kind, zero's
    sign included. A NaN equals only itself (the same object), as Python's sequences compare; the source never
    hands one to the board (it is a missing datapoint there)."""
    return len(a) == len(b) and all(
        ta == tb and type(va) is type(vb) and (va is vb or va == vb)
        and (va != 0 or math.copysign(1, va) == math.copysign(1, vb))
        for (ta, va), (tb, vb) in zip(a, b))


@settings(max_examples=400, deadline=None)
@given(two_answers())
def test_two_answers_are_the_same_as_points_exactly_when_they_are_as_lists(case) -> None:  # type: ignore[no-untyped-def]
    (t1, v1), (t2, v2) = case
    a, b = pairs_of(t1, v1), pairs_of(t2, v2)
    want = by_hand(a, b)
    assert same_answer(Points(t1, v1), Points(t2, v2)) is want
    assert same_answer(Points(t1, v1), b) is want and same_answer(a, Points(t2, v2)) is want
    assert same_answer(a, b) is want


@settings(max_examples=600, deadline=None)
@given(answers())
def test_columns_place_points_as_they_place_its_pairs(case) -> None:  # type: ignore[no-untyped-def]
    """The board's shortcut for Points (its columns read as they are) places every answer as the rule says,
    as for the same points given as pairs (tests/test_replay_fast_paths.py)."""
    spec, edges, points = case
    vals, hits = columns(spec, Points([t for t, _ in points], [v for _, v in points]), edges)
    want_vals, want_hits = placed(points, edges, spec.threshold.op, spec.threshold.value)
    assert same(vals, want_vals), (points, vals, want_vals)
    assert list(hits) == want_hits
