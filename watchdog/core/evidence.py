"""How a rule's evidence is said in every text: an event's why, a replayed trigger, a report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from watchdog.core.rules import Evaluation, format_value


def describe(names: Sequence[str], evals: Mapping[str, Evaluation]) -> str:
    parts = []
    for n in sorted(names):
        e = evals.get(n)
        parts.append(evidence(n, e.value, e.reason) if e else n)
    return "; ".join(parts)


def evidence(rule: str, value: float | bool | None, reason: str) -> str:
    """A rule's evidence as every text says it (an event's why, a replayed trigger): its newest real value and
    the reason, never `value threshold` side by side: under `breaching` that value need not breach."""
    return f"{rule} = {format_value(value, 'missing')} ({reason})"
