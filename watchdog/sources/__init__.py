"""Source kinds, keyed by the config `type`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from watchdog.config.models import AwsSection
from watchdog.config.models import Source as SourceConfig
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


def _cloudwatch(cfg: Any, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return CloudWatch(cfg, queries, deps.aws, deps.metrics)


def _http_json(cfg: Any, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return HttpJson(cfg, queries, deps.session)


REGISTRY: dict[str, Callable[[Any, Sequence[Query], SourceDeps], Source]] = {
    "cloudwatch": _cloudwatch,
    "http_json": _http_json,
    "prometheus": lambda cfg, queries, deps: Prometheus(cfg, queries, deps.session),
    "securityhub": lambda cfg, queries, deps: SecurityHub(cfg, queries, deps.aws),
    "cost_explorer": lambda cfg, queries, deps: CostExplorer(cfg, queries, deps.aws),
    "alertmanager": lambda cfg, queries, deps: Alertmanager(cfg, queries, deps.alerts),
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


__all__ = ["SAMPLED", "AlertStore", "Query", "Source", "SourceDeps", "SourceError", "build_source"]
