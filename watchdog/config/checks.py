"""Cross-field checks that need the whole configuration.

What a rule may read depends on its source's kind: the kind's descriptor (watchdog.shared.kinds.SOURCES) says which
reading keys its rules take and checks what their types cannot.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from watchdog.config.models import Config, Rule
from watchdog.config.types import said
from watchdog.shared.kinds import SOURCES, SourceSchema

Problem = tuple[tuple[str | int, ...], str]

# Both turn "no evidence" into missing buckets; counting those as breaches would roll back on quiet traffic.
BREACHING_MISSING = ("breaching cannot go with min_samples or max_age: they make periods missing on purpose "
                     "(too little traffic, too old), and those must not count as breaches")


def cross_check(cfg: Config) -> list[Problem]:
    problems: list[Problem] = []
    sources = {s.name: s for s in cfg.sources}
    problems += _duplicates(("sources",), [s.name for s in cfg.sources], "source")
    problems += _duplicates(("targets",), [t.name for t in cfg.targets], "target")
    kinds = {s.name: SOURCES.get(s.type) for s in cfg.sources}
    reading = _reading_keys()
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
                problems += _reads(at, rule, source, kinds[source.name], reading)
            problems += _judged(at, rule, kinds.get(rule.source))
            if rule.m > rule.evaluation_periods:
                problems.append(
                    (
                        at + ("datapoints_to_alarm",),
                        f"{rule.m} is more than evaluation_periods ({rule.evaluation_periods})",
                    )
                )
            if target.level(rule.level) is None:
                problems.append((at + ("level",), f"level {rule.level} is not defined in this target's levels"))
    problems += _duplicates(("notifications",), [n.channel_name for n in cfg.notifications], "channel")
    targets = [t.name for t in cfg.targets]
    for ni, channel in enumerate(cfg.notifications):
        for name in channel.targets or []:
            if name not in targets:
                problems.append((("notifications", ni, "targets"), f"no target named {name!r} (targets: {', '.join(targets)})"))
    return problems


def _reading_keys() -> tuple[str, ...]:
    """Every key some source kind reads, in the order the kinds declare them."""
    return tuple(dict.fromkeys(key for kind in SOURCES for key in kind.reads.model_fields))


def _reads(at: tuple[str | int, ...], rule: Rule, source: Any, kind: SourceSchema,
           reading: tuple[str, ...]) -> list[Problem]:
    out: list[Problem] = []
    takes, wanted = kind.reads.model_fields, kind.requires
    use = f"; use {' or '.join(wanted)}" if wanted else ""
    for key in reading:
        if key not in takes and getattr(rule, key, None) is not None:
            out.append((at + (key,), f"not used by {source.type} source {source.name!r}{use}"))
    present = [k for k in wanted if getattr(rule, k, None) is not None]
    if wanted and not present:
        out.append((at + (wanted[0],), f"required: source {source.name!r} is a {source.type} source{use}"))
    else:
        if len(present) > 1:
            out.append((at, f"set one of {' or '.join(wanted)}, not both"))
        out += kind.check(at, rule, source)  # on what the rule reads: only once it reads something
    if rule.max_age is not None and kind.sampled:
        # A sampled reading is stamped when it is read, so it is never "old": the key would promise what it cannot.
        aged = _listed([k.type for k in SOURCES if not k.sampled])
        out.append((at + ("max_age",), f"a {source.type} reading is stamped when read, so it is never old; "
                    f"max_age applies to {aged} rules (a stuck source is caught by blind_after)"))
    return out


def _listed(names: list[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _judged(at: tuple[str | int, ...], rule: Rule, kind: SourceSchema | None) -> list[Problem]:
    alarms = kind is not None and kind.alarms
    if rule.threshold is not None and rule.change is not None:
        return [(at, "set threshold or change, not both")]
    if alarms and rule.change is not None:
        return [(at + ("change",), "an alert rule is in alarm while its alert fires; it has no change")]
    if not alarms and rule.threshold is None and rule.change is None:
        return [(at + ("threshold",), 'required (or change: {over: 24h, percent: "> 50"})')]
    if rule.missing_data == "breaching" and rule.max_age is not None:
        return [(at + ("missing_data",), BREACHING_MISSING)]
    return []


def budget_warnings(cfg: Config) -> list[Problem]:
    """Legal but likely wrong: a source whose tries can take longer than its interval. The next poll is
    then due before this one has given up, so a slow source looks like a stalled one."""
    out: list[Problem] = []
    for si, s in enumerate(cfg.sources):
        if SOURCES.get(s.type).pushed:  # pushed to the watchdog: it never calls out, so it has no budget
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
