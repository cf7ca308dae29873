"""Cross-field checks that need the whole configuration."""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from typing import Any

from watchdog.config.models import Config, Rule
from watchdog.config.types import format_duration, said

Problem = tuple[tuple[str | int, ...], str]


def cross_check(cfg: Config) -> list[Problem]:
    problems: list[Problem] = []
    sources = {s.name: s for s in cfg.sources}
    problems += _duplicates(("sources",), [s.name for s in cfg.sources], "source")
    problems += _duplicates(("targets",), [t.name for t in cfg.targets], "target")
    for ti, target in enumerate(cfg.targets):
        base = ("targets", ti)
        problems += _duplicates(base + ("rules",), [r.name for r in target.rules], "rule")
        numbers = sorted(lv.level for lv in target.levels)
        if numbers != list(range(1, len(numbers) + 1)):
            problems.append(
                (base + ("levels",), f"levels must be numbered 1..{len(numbers)} without gaps or repeats, got {numbers}")
            )
        for ri, rule in enumerate(target.rules):
            at = base + ("rules", ri)
            source = sources.get(rule.source)
            if source is None:
                problems.append((at + ("source",), f"no source named {rule.source!r} (sources: {', '.join(sources) or 'none'})"))
            else:
                problems += _reads(at, rule, source)
            problems += _judged(at, rule, source)
            if rule.m > rule.evaluation_periods:
                problems.append(
                    (
                        at + ("datapoints_to_alarm",),
                        f"{rule.m} is more than evaluation_periods ({rule.evaluation_periods})",
                    )
                )
            if target.level(rule.level) is None:
                problems.append((at + ("level",), f"level {rule.level} is not defined in this target's levels"))
    for si, s in enumerate(cfg.sources):
        if s.type == "cost_explorer" and s.interval < timedelta(hours=1):
            problems.append((("sources", si, "interval"),
                             f"at least 1h: every Cost Explorer call is billed (got {format_duration(s.interval)})"))
    problems += _duplicates(("notifications",), [n.channel_name for n in cfg.notifications], "channel")
    targets = [t.name for t in cfg.targets]
    for ni, channel in enumerate(cfg.notifications):
        for name in channel.targets or []:
            if name not in targets:
                problems.append((("notifications", ni, "targets"), f"no target named {name!r} (targets: {', '.join(targets)})"))
    return problems


# What a rule of each source type reads; every other reading key is refused on it.
READS = {
    "cloudwatch": ("metric", "expression"),
    "http_json": ("field",),
    "prometheus": ("promql",),
    "securityhub": ("findings",),
    "cost_explorer": ("cost",),
    "alertmanager": ("alert",),
}
ALL_READS = ("metric", "expression", "metrics", "field", "promql", "findings", "cost", "alert")


def _reads(at: tuple[str | int, ...], rule: Rule, source: Any) -> list[Problem]:
    out: list[Problem] = []
    wanted = READS[source.type]
    allowed = set(wanted) | ({"metrics"} if source.type == "cloudwatch" else set())
    for key in ALL_READS:
        if getattr(rule, key) is not None and key not in allowed:
            out.append((at + (key,), f"not used by {source.type} source {source.name!r}; use {' or '.join(wanted)}"))
    present = [k for k in wanted if getattr(rule, k) is not None]
    if not present:
        out.append((at + (wanted[0],), f"required: source {source.name!r} is a {source.type} source"
                    + (" (or expression with metrics)" if source.type == "cloudwatch" else "")))
    elif len(present) > 1:
        out.append((at, f"set one of {' or '.join(wanted)}, not both"))
    if source.type == "cloudwatch":
        out += _math(at, rule)
    if rule.max_age is not None and source.type not in ("cloudwatch", "cost_explorer"):
        # A sampled reading is stamped when it is read, so it is never "old": the key would promise what it cannot.
        out.append((at + ("max_age",), f"a {source.type} reading is stamped when read, so it is never old; "
                    "max_age applies to cloudwatch and cost_explorer rules (a stuck source is caught by blind_after)"))
    if source.type == "alertmanager" and rule.alert == {}:
        # No matcher would match every alert, and any unrelated alert would roll this target back.
        out.append((at + ("alert",), "at least one label matcher, e.g. {alertname: HighErrorRate}"))
    return out


def _math(at: tuple[str | int, ...], rule: Rule) -> list[Problem]:
    out: list[Problem] = []
    if rule.expression is not None and not rule.metrics:
        out.append((at + ("metrics",), "required with expression: the named metrics it uses"))
    if rule.metrics and rule.expression is None:
        out.append((at + ("expression",), "required with metrics"))
    if rule.metrics:
        periods = {m.period for m in rule.metrics.values()}
        if len(periods) > 1:
            out.append((at + ("metrics",), "every metric of an expression needs the same period"))
        unused = [n for n in rule.metrics if rule.expression and not re.search(rf"\b{n}\b", rule.expression)]
        if unused:
            out.append((at + ("expression",), f"does not use {', '.join(unused)} from metrics"))
    if (rule.min_samples is None) != (rule.samples is None):
        out.append((at + ("min_samples" if rule.min_samples is None else "samples",),
                    "min_samples and samples go together (samples: the metric that counts requests)"))
    elif rule.samples is not None and rule.samples not in (rule.metrics or {}):
        out.append((at + ("samples",), f"{rule.samples!r} is not one of this rule's metrics"))
    return out


def _judged(at: tuple[str | int, ...], rule: Rule, source: Any) -> list[Problem]:
    alert = source is not None and source.type == "alertmanager"
    if rule.threshold is not None and rule.change is not None:
        return [(at, "set threshold or change, not both")]
    if alert and rule.change is not None:
        return [(at + ("change",), "an alert rule is in alarm while its alert fires; it has no change")]
    if not alert and rule.threshold is None and rule.change is None:
        return [(at + ("threshold",), 'required (or change: {over: 24h, percent: "> 50"})')]
    if rule.missing_data == "breaching" and (rule.min_samples is not None or rule.max_age is not None):
        # Both turn "no evidence" into missing buckets; counting those as breaches would roll back on quiet traffic.
        return [(at + ("missing_data",), "breaching cannot go with min_samples or max_age: they make periods "
                 "missing on purpose (too little traffic, too old), and those must not count as breaches")]
    return []


def budget_warnings(cfg: Config) -> list[Problem]:
    """Legal but likely wrong: a source whose tries can take longer than its interval. The next poll is
    then due before this one has given up, so a slow source looks like a stalled one."""
    out: list[Problem] = []
    for si, s in enumerate(cfg.sources):
        if s.type == "alertmanager":  # pushed to the watchdog: it never calls out, so it has no budget
            continue
        budget = s.timeout * s.retry.attempts
        if budget > s.interval:
            out.append((("sources", si, "timeout"),
                        f"timeout x attempts ({said(s.timeout)} x {s.retry.attempts} = "
                        f"{said(budget)}) is longer than the interval ({said(s.interval)}): "
                        "a slow answer can hold a poll past the next one"))
    return out


def _duplicates(path: tuple[str | int, ...], names: list[str], what: str) -> list[Problem]:
    return [(path, f"{what} name {name!r} is used {n} times") for name, n in Counter(names).items() if n > 1]
