"""Source kinds, keyed by the config `type`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from watchdog.config.models import AwsSection, CloudWatchSource, HttpJsonSource
from watchdog.metrics import Metrics
from watchdog.sources.base import Query, Source, SourceError
from watchdog.sources.cloudwatch import CloudWatch
from watchdog.sources.http_json import HttpJson


@dataclass(frozen=True)
class SourceDeps:
    aws: AwsSection
    session: aiohttp.ClientSession
    metrics: Metrics


def _cloudwatch(cfg: Any, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return CloudWatch(cfg, queries, deps.aws, deps.metrics)


def _http_json(cfg: Any, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return HttpJson(cfg, queries, deps.session)


REGISTRY: dict[str, Callable[[Any, Sequence[Query], SourceDeps], Source]] = {
    "cloudwatch": _cloudwatch,
    "http_json": _http_json,
}


def build_source(cfg: CloudWatchSource | HttpJsonSource, queries: Sequence[Query], deps: SourceDeps) -> Source:
    return REGISTRY[cfg.type](cfg, queries, deps)


__all__ = ["Query", "Source", "SourceDeps", "SourceError", "build_source"]
