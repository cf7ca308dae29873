"""The read plan's per-query state (sources/periodic.py) at many rules: what thousands of queries have in common
is held once, and each query still answers its own targets (issue 22: memory at 5 000 rules)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from watchdog.core.signals import Query
from watchdog.sources.periodic import Cadence, ReadPlan

MINUTE = timedelta(minutes=1)


def _plan(keys: list[str]) -> ReadPlan:
    # The rule is not looked at: identity and cadence below stand for a source's own.
    rule: Any = None
    return ReadPlan([Query(k, rule) for k in keys], timedelta(minutes=2), MINUTE,
                    identity=lambda q: q.key.split("/")[1].rstrip("'"), cadence=lambda q: Cadence(MINUTE, MINUTE))


def test_queries_of_the_same_targets_share_one_set_and_each_names_its_own() -> None:
    plan = _plan(["web/a", "web/b", "api/c", "api/a'", "web/d"])  # "a'" asks what "a" asks: one query
    by_name = {s.first.key: s for s in plan.shared}
    assert [s.first.key for s in plan.shared] == ["web/a", "web/b", "api/c", "web/d"]
    assert by_name["web/a"].targets == {"web", "api"}
    assert by_name["web/b"].targets == {"web"} and by_name["api/c"].targets == {"api"}
    assert by_name["web/b"].targets is by_name["web/d"].targets, "equal target sets are not held once"
    assert not hasattr(by_name["web/b"], "__dict__"), "a query's plan entry carries a dict of its own"
