"""Datapoints as two columns: a query's answer as the CloudWatch source reads it, its times and its values.

An answer of 500 results carries 3 000 datapoints at a one-minute period and N = 3; a (time, value) tuple for
each was a tenth of the answers' scan (two such answers 3.56 -> 3.21 ms) and of placing a rule's range in its
buckets (1.31 -> 1.12 µs a rule, rules.columns). `Points` are still a sequence of (time, value) pairs to whoever reads it so (the replay, the recording, verification,
change rules); the board's hot paths read its columns. Its `times` list is shared by every result of an answer
with the same times, and is never changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import overload

Value = float | bool
Datapoint = tuple[datetime, Value]

__all__ = ["Points", "same_answer", "zero_signs"]

_value = itemgetter(1)


class Points(Sequence[Datapoint]):
    """Datapoints `zip(times, values)`, the two of equal length."""

    __slots__ = ("times", "values")

    def __init__(self, times: Sequence[datetime], values: Sequence[Value]) -> None:
        if len(times) != len(values):
            raise ValueError(f"{len(times)} times for {len(values)} values")
        self.times, self.values = times, values

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, index: int) -> Datapoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[Datapoint]: ...

    def __getitem__(self, index: int | slice) -> Datapoint | list[Datapoint]:
        if isinstance(index, slice):
            return list(zip(self.times[index], self.values[index]))
        return self.times[index], self.values[index]

    def __iter__(self) -> Iterator[Datapoint]:
        return zip(self.times, self.values)

    def __eq__(self, other: object) -> bool:
        """Equal to another Points of the same columns, or to a list or tuple of the same pairs."""
        if isinstance(other, Points):
            return list(self.times) == list(other.times) and list(self.values) == list(other.values)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a sequence, compared by value

    def __repr__(self) -> str:
        return f"Points({list(self)!r})"


def same_answer(new: Sequence[Datapoint], old: Sequence[Datapoint]) -> bool:
    """The same datapoints, value for value and of the same kinds: `==` alone says True == 1.0 (a bool where a
    number belongs is missing) and 0.0 == -0.0 (shown "-0")."""
    if new is old:
        return True
    if isinstance(new, Points) and isinstance(old, Points):  # by their columns
        a, b = new.values, old.values
        if len(a) != len(b) or a != b or new.times != old.times:
            return False
        return list(map(type, a)) == list(map(type, b)) and (0.0 not in a or zero_signs(a) == zero_signs(b))
    if len(new) != len(old) or new != old:
        return False
    a, b = list(map(_value, new)), list(map(_value, old))
    return list(map(type, a)) == list(map(type, b)) and (0.0 not in a or zero_signs(a) == zero_signs(b))


def zero_signs(values: Sequence[Value | None]) -> list[float]:
    return [math.copysign(1.0, v) for v in values if v is not None and v == 0]
