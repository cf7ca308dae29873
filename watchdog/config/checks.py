"""Cross-field checks that need the whole configuration."""

from __future__ import annotations

from collections import Counter

from watchdog.config.models import CloudWatchSource, Config, HttpJsonSource

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
            elif isinstance(source, CloudWatchSource):
                if rule.metric is None:
                    problems.append((at + ("metric",), f"required: source {source.name!r} is a cloudwatch source"))
                if rule.field is not None:
                    problems.append((at + ("field",), f"not used by cloudwatch source {source.name!r}; use metric"))
            elif isinstance(source, HttpJsonSource):
                if rule.field is None:
                    problems.append((at + ("field",), f"required: source {source.name!r} is an http_json source"))
                if rule.metric is not None:
                    problems.append((at + ("metric",), f"not used by http_json source {source.name!r}; use field"))
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


def _duplicates(path: tuple[str | int, ...], names: list[str], what: str) -> list[Problem]:
    return [(path, f"{what} name {name!r} is used {n} times") for name, n in Counter(names).items() if n > 1]
