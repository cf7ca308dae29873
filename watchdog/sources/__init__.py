"""Source kinds: one module each, with one descriptor (`KIND`, watchdog/sources/kind.py), registered by `type`
in watchdog.shared.kinds.SOURCES. This package names none of them."""

from __future__ import annotations

from watchdog.sources.alertstore import AlertStore
from watchdog.sources.base import Query, Source, SourceError
from watchdog.sources.kind import SourceDeps, SourceFactory, SourceKind, Validating, build_source, source_kind

Factory = SourceFactory

__all__ = ["AlertStore", "Factory", "Query", "Source", "SourceDeps", "SourceError", "SourceFactory", "SourceKind",
           "Validating", "build_source", "source_kind"]
