"""Source kinds, keyed by the config `type`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from watchdog.config.models import AwsSection
from watchdog.config.models import Source as SourceConfig
from watchdog.config.sources import (
    AlertmanagerSource,
    CloudWatchSource,
    CostExplorerSource,
    HttpJsonSource,
    PrometheusSource,
    SecurityHubSource,
)
from watchdog.metrics import Metrics
from watchdog.sources.alertmanager import Alertmanager, AlertStore
from watchdog.sources.base import Query, Source, SourceError
from watchdog.sources.cloudwatch import CloudWatch
from watchdog.sources.cost_explorer import CostExplorer
from watchdog.sources.http_json import HttpJson
from watchdog.sources.prometheus import Prometheus
from watchdog.sources.securityhub import SecurityHub


@dataclass(frozen=True)
class SourceDeps:
    aws: AwsSection
    session: aiohttp.ClientSession
    metrics: Metrics
    alerts: AlertStore


K = TypeVar("K")


def _kind(cfg: SourceConfig, kind: type[K]) -> K:
    """The config of the kind its `type` names (the discriminated union guarantees it)."""
    if not isinstance(cfg, kind):
        raise TypeError(f"source {cfg.name}: {type(cfg).__name__} is not a {kind.__name__}")
    return cfg


Factory = Callable[[SourceConfig, Sequence[Query], SourceDeps], Source]
REGISTRY: dict[str, Factory] = {
    "cloudwatch": lambda cfg, queries, deps: CloudWatch(_kind(cfg, CloudWatchSource), queries, deps.aws, deps.metrics),
    "http_json": lambda cfg, queries, deps: HttpJson(_kind(cfg, HttpJsonSource), queries, deps.session),
    "prometheus": lambda cfg, queries, deps: Prometheus(_kind(cfg, PrometheusSource), queries, deps.session),
    "securityhub": lambda cfg, queries, deps: SecurityHub(_kind(cfg, SecurityHubSource), queries, deps.aws),
    "cost_explorer": lambda cfg, queries, deps: CostExplorer(_kind(cfg, CostExplorerSource), queries, deps.aws),
    "alertmanager": lambda cfg, queries, deps: Alertmanager(_kind(cfg, AlertmanagerSource), queries, deps.alerts),
}


# Whether each reading is complete on arrival (see Source.sampled): the board needs it before any source is built.
SAMPLED: dict[str, bool] = {
    "cloudwatch": CloudWatch.sampled,
    "http_json": HttpJson.sampled,
    "prometheus": Prometheus.sampled,
    "securityhub": SecurityHub.sampled,
    "cost_explorer": CostExplorer.sampled,
    "alertmanager": Alertmanager.sampled,
}


def build_source(cfg: SourceConfig, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return REGISTRY[cfg.type](cfg, queries, deps)


__all__ = ["SAMPLED", "AlertStore", "Factory", "Query", "Source", "SourceDeps", "SourceError", "SourceFactory",
           "build_source"]
SourceFactory = Factory  # what builds one configured source (build_source, or a replay's own)
