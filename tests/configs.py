"""The test config, built in one place: `hybrid_routing(...)` gives the config as a dict, and each test
names only what differs from it as keyword arguments.

Left as it is, the config is quiet: one CloudWatch source polled hourly at a closed port (nothing
answers), one latency rule on the hybrid-routing target, and two levels whose PUTs go to `admin`.
`to_yaml` writes a dict in block style, one key a line, so a test that edits the text (a bad byte, an
anchor, a repeated key) finds the line it edits and `line_of` finds the line a problem must name.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import yaml

from watchdog.config import Config, parse_config

CLOSED = "http://127.0.0.1:9"  # the discard port: a connection there is refused at once


def http(url: str, method: str | None = "PUT", **extra: Any) -> dict[str, Any]:
    """An http action (or, with method=None, a check or a bare GET action)."""
    action: dict[str, Any] = {"type": "http"} if method is None else {"type": "http", "method": method}
    return {**action, "url": url, **extra}


def level(number: int, name: str, *actions: dict[str, Any], deadline: str = "10s",
          checks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"level": number, "name": name, "deadline": deadline, "actions": list(actions)}
    if checks:
        entry["checks"] = checks
    return entry


def health_check(admin: str) -> dict[str, Any]:
    return {"type": "http", "url": f"{admin}/health", "expect_status": 200}


def cloudwatch(name: str = "cloudwatch", interval: str = "1h", timeout: str | None = None,
               retry: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    source: dict[str, Any] = {"name": name, "type": "cloudwatch", "interval": interval}
    if timeout is not None:
        source["timeout"] = timeout
    if retry is not None:
        source["retry"] = retry
    return {**source, **extra}


def metric_rule(name: str = "latency", *, namespace: str = "HybridRouting", metric: str = "Latency",
                threshold: str = "> 1500", stat: str = "Average", period: str = "60s",
                dimensions: dict[str, str] | None = None, source: str = "cloudwatch",
                category: str = "performance", **extra: Any) -> dict[str, Any]:
    """A rule on one CloudWatch metric; `extra` adds keys (level, evaluation_periods, missing_data...)."""
    spec: dict[str, Any] = {"namespace": namespace, "name": metric}
    if dimensions:
        spec["dimensions"] = dimensions
    spec.update(stat=stat, period=period)
    return {"name": name, "category": category, "source": source, "metric": spec, "threshold": threshold, **extra}


def make_target(name: str, rules: list[dict[str, Any]], levels: list[dict[str, Any]], *,
                verify_window: str | None = None, max_rollbacks_per_hour: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "rules": rules}
    escalation = {k: v for k, v in (("verify_window", verify_window),
                                     ("max_rollbacks_per_hour", max_rollbacks_per_hour)) if v is not None}
    if escalation:
        entry["escalation"] = escalation
    entry["levels"] = levels
    return entry


def hybrid_routing(
    *,
    # watchdog: (`watchdog` adds keys to the section)
    state_path: str | PurePath | None = None,
    listen: Any = "127.0.0.1:0",
    api_token: str | None = None,
    shutdown_grace: str | None = None,
    watchdog: dict[str, Any] | None = None,
    # aws: region us-east-1 and the endpoint; `aws` adds keys (a profile); no section when both are None
    aws_endpoint: str | None = CLOSED,
    aws: dict[str, Any] | None = None,
    # sources: the one CloudWatch source, unless `sources` replaces the list
    sources: list[dict[str, Any]] | None = None,
    interval: str = "1h",
    timeout: str | None = None,
    retry: dict[str, Any] | None = None,
    # the target, its latency rule (`rule` adds keys to it; `rules` replaces the list) and its levels (the
    # default two PUT to `admin`); `targets` replaces the whole list
    target: str = "hybrid-routing",
    rules: list[dict[str, Any]] | None = None,
    namespace: str = "HybridRouting",
    threshold: str = "> 1500",
    stat: str = "Average",
    period: str = "60s",
    dimensions: dict[str, str] | None = None,
    rule: dict[str, Any] | None = None,
    verify_window: str | None = None,
    max_rollbacks_per_hour: int | None = None,
    admin: str = CLOSED,
    levels: list[dict[str, Any]] | None = None,
    targets: list[dict[str, Any]] | None = None,
    notifications: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    section: dict[str, Any] = {"listen": listen}
    if state_path is not None:
        section["state_path"] = str(state_path)
    if api_token is not None:
        section["api_token"] = api_token
    if shutdown_grace is not None:
        section["shutdown_grace"] = shutdown_grace
    config["watchdog"] = {**section, **(watchdog or {})}

    aws_section = {"region": "us-east-1", "endpoint_url": aws_endpoint} if aws_endpoint is not None else {}
    aws_section.update(aws or {})
    if aws_section:
        config["aws"] = aws_section

    config["sources"] = sources if sources is not None else [cloudwatch(interval=interval, timeout=timeout,
                                                                        retry=retry)]
    if rules is None:
        rules = [metric_rule(namespace=namespace, threshold=threshold, stat=stat, period=period,
                             dimensions=dimensions, **(rule or {}))]
    if levels is None:
        levels = [level(1, "flags", http(f"{admin}/l1")), level(2, "route", http(f"{admin}/l2"))]
    config["targets"] = targets if targets is not None else [
        make_target(target, rules, levels, verify_window=verify_window, max_rollbacks_per_hour=max_rollbacks_per_hour)]
    if notifications is not None:
        config["notifications"] = notifications
    return config


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a dict used twice is written out twice: the loader refuses anchors


_Dumper.add_multi_representer(PurePath, lambda dumper, path: dumper.represent_str(str(path)))


def to_yaml(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000)


def write(where: str | Path, config: dict[str, Any], name: str = "config.yaml") -> str:
    """The config as a file `name` in the directory `where`; its path."""
    path = Path(where) / name
    path.write_text(to_yaml(config))
    return str(path)


def parsed(config: dict[str, Any], environ: dict[str, str] | None = None) -> Config:
    return parse_config(to_yaml(config), environ or {})


def insert_after(text: str, needle: str, *lines: str) -> str:
    """`lines` added after the one line that holds `needle`, indented as that line is: keys beside its key
    (so not after the first key of a list item, whose siblings stand two further in)."""
    old = text.splitlines(keepends=True)
    [at] = [i for i, ln in enumerate(old) if needle in ln]
    indent = old[at][:len(old[at]) - len(old[at].lstrip())]
    return "".join(old[:at + 1] + [f"{indent}{line}\n" for line in lines] + old[at + 1:])


def line_of(text: str, needle: str) -> int:
    """The number of the one line that holds `needle`."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]
