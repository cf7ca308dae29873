"""A source kind's descriptor: one per kind module (its `KIND`), registered in watchdog.shared.kinds.SOURCES.

It says everything the rest of the watchdog asks of a kind: the config model and the keys a rule on it reads
(with their checks), how a configured source is built, whether its readings are sampled and how they are
bucketed, whether it is pushed rather than polled, whether it keeps a history of its own (a replay fetches it;
a recording need not copy it), and how `validate` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp

from watchdog.config.base import Model
from watchdog.config.models import AwsSection, Config, Rule
from watchdog.config.sources import Source as SourceConfig
from watchdog.core.cost import Usage
from watchdog.core.schedule import Pace
from watchdog.core.signals import rule_key
from watchdog.shared.kinds import SOURCES, Descriptor, find
from watchdog.support.metrics import Metrics
from watchdog.sources.alertstore import AlertStore
from watchdog.sources.base import Query, Source
from watchdog.sources.hooks import SourceHooks
from watchdog.sources.periodic import ReadPlan

C = TypeVar("C", bound=SourceConfig)
Path_ = tuple[str | int, ...]
Problem = tuple[Path_, str]  # config.checks' shape: where in the config, and what is wrong


@dataclass(frozen=True)
class SourceDeps:
    """What building a source may use: the runtime's AWS settings, HTTP session, metrics, and the store that
    pushed data arrives in."""

    aws: AwsSection
    session: aiohttp.ClientSession
    metrics: Metrics
    alerts: AlertStore
    hooks: SourceHooks = SourceHooks()  # what a source whose data arrives between polls asks of the runtime


@dataclass(frozen=True)
class Validating:
    """What `validate` was told, for a kind that checks itself without a read."""

    include_cost: bool  # --include-cost: billed calls may be made
    api_token: bool  # watchdog.api_token is set: the control API takes pushes


Verdict = tuple[bool, str]  # pass or not, and the detail


def _no_bucket(rule: Rule) -> timedelta | None:
    return None


def _no_problems(at: Path_, rule: Rule, source: Any) -> list[Problem]:
    return []


def _read(cfg: Any, validating: Validating) -> Verdict | None:
    return None


@dataclass(frozen=True)
class SourceKind(Descriptor[C]):
    # The keys a rule on this source reads, written flat on the rule (`rule.reads(kind.reads)` gives them).
    reads: type[Model]
    # Of `reads`, the keys a rule sets exactly one of (an empty tuple: none needed).
    requires: tuple[str, ...]
    build: Callable[[C, Sequence[Query], SourceDeps], Source]
    # Each reading complete on arrival, stamped when read (so `max_age` does not apply to it); otherwise
    # readings come in buckets, the newest still filling, which the evaluation leaves out.
    sampled: bool
    # The period a rule's readings are bucketed by; None: the source's interval.
    bucket: Callable[[Rule], timedelta | None] = _no_bucket
    pushed: bool = False  # its data is pushed to the watchdog (never called out to): no budget, no read in validate
    history: bool = False  # keeps its own history: a replay fetches it, a recording writes no points for it
    alarms: bool = False  # a reading says alarm or not: its rules need no threshold and take no change
    # Problems of a rule on this source that its keys' types cannot say (`at` is the rule's path).
    check: Callable[[Path_, Rule, C], list[Problem]] = _no_problems
    # How `validate` checks a source of this kind: a verdict without reading it, or None for one real read.
    validation: Callable[[C, Validating], Verdict | None] = _read
    # A kind read on its rules' periods: which of its queries each poll reads (watchdog/sources/periodic.py).
    # None: every poll reads every query, `interval` apart.
    plan: Callable[[C, Sequence[Query]], ReadPlan] | None = None
    # What a source of this kind costs per 30 days as its schedule reads (watchdog/sources/cost.py, docs/cost.md).
    # None: AWS bills it nothing (or it calls no AWS API).
    cost: Callable[[C, Sequence[Query]], Usage] | None = None


def source_kind(of: SourceConfig | str) -> SourceKind[Any]:
    """The descriptor of a configured source (or of a `type`)."""
    kind: SourceKind[Any] = find(SOURCES, of, SourceKind)
    return kind


def build_source(cfg: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
    kind = source_kind(cfg)
    return kind.build(kind.of(cfg), queries, deps)


def pace_of(cfg: Config, source: SourceConfig) -> Pace:
    """When `source` is polled (watchdog/core/schedule.py): on its rules' periods for a kind that has a plan,
    else every `interval`."""
    kind = source_kind(source)
    if kind.plan is None:
        return Pace(source.interval)
    return kind.plan(kind.of(source), queries_of(cfg, source)).pace


def queries_of(cfg: Config, source: SourceConfig) -> list[Query]:
    """The rules that read `source`, as the queries its kind is built with (each keyed "target/rule")."""
    return [Query(rule_key(t.name, r.name), r) for t in cfg.targets for r in t.rules if r.source == source.name]


SourceFactory = Callable[[SourceConfig, Sequence[Query], SourceDeps], Source]  # build_source, or a replay's own
