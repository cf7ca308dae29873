"""CloudWatch's published tables of alarm states under missing data (User Guide, "Configuring how
CloudWatch alarms treat missing data"), as data for the unit test and the `run --once` test.

Patterns read oldest first, as the guide prints them (the most recent on the right): `0` a datapoint
that does not breach, `X` one that does, `-` a missing period. N (evaluation periods) is 3 and the
evaluation range 5 in every row. RETAIN is the guide's "Retain current state".
"""

from __future__ import annotations

TREATMENTS = ("missing", "ignore", "breaching", "not_breaching")
RETAIN = "retain"
OK, ALARM, INSUF = "ok", "alarm", "insufficient_data"

# pattern, M (datapoints to alarm), then the state under missing, ignore, breaching, not_breaching
PUBLISHED = [
    # The first table: M = N = 3.
    ("0 - X - X", 3, OK, OK, OK, OK),
    ("0 - - - -", 3, OK, OK, OK, OK),
    ("- - - - -", 3, INSUF, RETAIN, ALARM, OK),
    ("0 X X - X", 3, ALARM, ALARM, ALARM, ALARM),
    ("- - X - -", 3, ALARM, RETAIN, ALARM, OK),
    # The second table: M = 2 of N = 3.
    ("0 - X - X", 2, ALARM, ALARM, ALARM, ALARM),
    ("0 0 X 0 X", 2, ALARM, ALARM, ALARM, ALARM),
    ("0 - X - -", 2, OK, OK, ALARM, OK),
    ("- - - - 0", 2, OK, OK, ALARM, OK),
    ("- - - X -", 2, ALARM, RETAIN, ALARM, OK),
    # The guide's own example under "Avoiding premature transitions to alarm state": a breach too recent
    # to alarm on. It says only "not ALARM"; with nothing decided, missing gives insufficient_data and
    # ignore keeps the state (docs/deciding.md "Where it differs from CloudWatch").
    ("- - - - X", 3, INSUF, RETAIN, ALARM, OK),
]

# The same section's other examples, beyond the 44 cells.
PROSE = [
    ("- - - X -", 3, INSUF, RETAIN, ALARM, OK),  # "does not go immediately into ALARM"
    ("- - - X 0", 3, OK, OK, OK, OK),  # "false positives are avoided when the next data point is non-breaching"
    ("- - X - 0", 3, OK, OK, OK, OK),
    ("X - - - -", 3, ALARM, RETAIN, ALARM, OK),  # the oldest breach is at least M old, all since missing
]


def cells(rows: list[tuple[str, int, str, str, str, str]]) -> list[tuple[str, int, str, str]]:
    """One (pattern, M, treatment, state) per cell."""
    return [(p, m, t, states[i]) for p, m, *states in rows for i, t in enumerate(TREATMENTS)]
