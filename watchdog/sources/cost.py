"""What a config's sources will cost per 30 days (docs/cost.md), projected from the objects the daemon polls
with: each billed kind's descriptor says how (`SourceKind.cost`: a CloudWatch source's read plan walked over
the schedule's ticks, here in `plan_usage`; a cloudwatch_alarms source's requests per poll and reconcile; Cost
Explorer's call per rule and poll). The prices and the arithmetic are watchdog/core/cost.py's; the gauge shows
the total (SPEC 3.4) and each source.

Projected as the schedule makes them when calm: no failed read made up, no hot target read every period (an
open incident's seldom-read queries), no alarm paged past 100 in ALARM, no GetMetricData answer paged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from watchdog.config.models import Config
from watchdog.core.cost import MONTH, Usage
from watchdog.core.schedule import EPOCH, detection_delay, ticks
from watchdog.sources.kind import queries_of, source_kind
from watchdog.sources.periodic import ReadPlan
from watchdog.support.metrics import Metrics

__all__ = ["CYCLE_TICKS", "plan_usage", "project", "show"]

# A CloudWatch source's reads repeat every least common multiple of its grids (60 s and 300 s: 5 minutes), so
# one cycle is walked and scaled to 30 days. Periods of little common measure could make that cycle long
# (7, 11 and 13 minutes: 1 001 ticks); past this many ticks the walk stops there and scales what it saw.
CYCLE_TICKS = 20_000
US = timedelta(microseconds=1)


def project(cfg: Config) -> list[Usage]:
    """Each source whose requests AWS bills, in the config's order."""
    out = []
    for s in cfg.sources:
        kind = source_kind(s)
        if kind.cost is not None:
            out.append(kind.cost(kind.of(s), queries_of(cfg, s)))
    return out


def show(metrics: Metrics, usages: Sequence[Usage]) -> None:
    """The gauges, at start and after a reload: the total under the contract name, each billed source under
    its name (a source gone, or no longer billed, loses its series)."""
    metrics.projected_cost.set(sum(u.dollars for u in usages))
    kept = {u.source for u in usages}
    shown = {sample.labels["source"] for m in metrics.source_projected_cost.collect() for sample in m.samples}
    for name in shown - kept:
        metrics.source_projected_cost.remove(name)
    for u in usages:
        metrics.source_projected_cost.labels(u.source).set(u.dollars)


def plan_usage(cfg: Any, plan: ReadPlan, sizes: Sequence[int],
               pack: Callable[[Sequence[Sequence[None]]], Sequence[Sequence[None]]]) -> Usage:
    """A periodic source's read plan, walked tick by tick over one cycle of its grids: each poll's due queries
    packed into calls as the source packs them (`pack`; `sizes`: how many queries each shared one sends), each
    one sent counted. `cfg` is the source's config (name, type, interval, settle)."""
    # Only how many queries each sends, which is all the packing reads: 5 000 rules' queries held at once
    # took the projection's peak from 5 MB to 8 MB (tracemalloc), at start, for nothing.
    sent = [(None,) * n for n in sizes]
    if not sent:
        return Usage(cfg.name, cfg.type, {"GetMetricData": 0})
    cycle = math.lcm(*(s.every // US for s in plan.shared)) * US
    start = EPOCH + cfg.settle  # a tick of every grid: the first poll (which reads everything) is one too
    step = plan.pace.step or cfg.interval
    end = start + min(cycle, step * CYCLE_TICKS)
    calls = metrics = 0
    seen: dict[Any, tuple[int, int]] = {}  # a due set recurs: packed once
    for tick in ticks(plan.pace, start, end - US):
        due = plan.due(tick, ())
        if not due.shared:
            continue
        if due.key not in seen:
            batches = pack([sent[s.index] for s in due.shared])
            seen[due.key] = len(batches), sum(map(len, batches))
        c, m = seen[due.key]
        calls, metrics = calls + c, metrics + m
        plan.read(due, tick)
    scale = MONTH / (end - start)
    delay = max(detection_delay(s.period, q.rule.m, cfg.settle, s.every if s.every > s.period else None)
                for s in plan.shared for q in s.queries)
    seldom = any(s.every > s.period for s in plan.shared)
    return Usage(cfg.name, cfg.type, {"GetMetricData": calls * scale}, metrics * scale, delay,
                 unprojected=("a target with an open incident is read every period meanwhile",) if seldom else ())


